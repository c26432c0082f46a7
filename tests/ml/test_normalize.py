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
