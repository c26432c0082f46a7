"""Normalisation is the same whatever dtype and range the pixels come in (checked against a hand formula)."""
import numpy as np
import pytest

from labseg.ml.io import normalize


def test_an_8_bit_range_stored_in_16_bits_normalises_like_the_8_bit_image():
    rng = np.random.default_rng(0)
    u8 = rng.integers(10, 240, (2, 40, 50)).astype(np.uint8)
    assert np.allclose(normalize(u8.astype(np.uint16)), normalize(u8), atol=1e-6)
    # and a float image in [0, 1] (EM exported as float) like its 0..255 version
    assert np.allclose(normalize(u8 / 255.0), normalize(u8), atol=1e-5)


def test_each_channel_is_scaled_by_its_own_percentiles():
    rng = np.random.default_rng(1)
    rgb = np.stack([rng.normal(200, 5, (30, 30)), rng.normal(90, 30, (30, 30)), rng.normal(150, 10, (30, 30))])
    out = normalize(rgb.astype(np.float32), 1, 99.8)
    for c in range(3):
        lo, hi = np.percentile(rgb[c], [1, 99.8])
        assert np.allclose(out[c], (rgb[c] - lo) / (hi - lo), atol=1e-4)
        assert np.percentile(out[c], 1) == pytest.approx(0.0, abs=1e-4)
        assert np.percentile(out[c], 99.8) == pytest.approx(1.0, abs=1e-4)


def test_a_high_offset_narrow_range_16_bit_image_uses_its_own_range():
    # widefield fluorescence: a camera offset of ~33000 and objects ~1000 counts above it (the HeLa set)
    rng = np.random.default_rng(2)
    img = (33000 + rng.normal(0, 20, (64, 64)) + np.where(rng.random((64, 64)) > 0.8, 1000, 0)).astype(np.uint16)
    out = normalize(img)[0]
    assert out.min() > -0.2 and out.max() < 1.2 and np.ptp(out) > 0.9


def test_eight_threads_opening_one_uncached_image_all_get_its_pixels_and_leave_no_temp_file(tmp_path):
    """Issue: two threads of one web process shared a pid-named temp file for the .npy cache (500s on
    the first view of a large prediction); every call now writes its own temp file and renames it."""
    import threading

    from PIL import Image

    from labseg.ml.io import open_array, read_image

    rng = np.random.default_rng(5)
    src = tmp_path / "a.png"
    Image.fromarray(rng.integers(0, 65535, (300, 400)).astype(np.uint16)).save(src)
    expected = read_image(src)
    cache = tmp_path / "a.cache.npy"
    results, errors = [], []
    start = threading.Barrier(8)

    def work():
        try:
            start.wait()
            for _ in range(5):
                results.append(np.array(open_array(src, cache)))
                cache.unlink(missing_ok=True)  # uncached again: the next call writes it anew
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 40
    assert all(np.array_equal(r, expected) for r in results)
    assert not list(tmp_path.glob("*.tmp"))
