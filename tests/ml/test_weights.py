"""border_weights / weight_map against the naive definition (one full-image EDT per instance)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from labseg.ml.synthetic import make_nuclei, scribbles
from labseg.ml.weights import border_weights, class_weights, weight_map


def naive_border(instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """The definition: stack a full-image EDT per instance, sort, take the two smallest."""
    ids = [i for i in np.unique(instances) if i != 0]
    if len(ids) < 2:
        return np.zeros(instances.shape)
    dist = np.sort(np.stack([ndi.distance_transform_edt(instances != i) for i in ids]), axis=0)
    s = dist[0] + dist[1]
    return np.where(instances == 0, w0 * np.exp(-(s**2) / (2 * sigma**2)), 0.0)


def random_blobs(shape, n, seed, max_id=None):
    """Random rectangles and discs with sparse ids (possibly huge), some overlapping, some cut by the border."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.int64)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    ids = rng.choice(np.arange(1, max_id or 10 * n + 2), size=n, replace=False)
    for i in ids:
        cy, cx = rng.integers(-3, shape[0] + 3), rng.integers(-3, shape[1] + 3)
        r = rng.uniform(1, 9)
        if rng.random() < 0.5:
            out[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
        else:
            out[(abs(yy - cy) <= r) & (abs(xx - cx) <= r / 2)] = i
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 60])
def test_border_weights_match_naive_definition_on_random_labels(seed, n):
    inst = random_blobs((61, 83), n, seed)
    got = border_weights(inst)
    assert got.dtype == np.float32 and got.shape == inst.shape
    np.testing.assert_allclose(got, naive_border(inst), rtol=0, atol=1e-4)


def test_border_weights_match_naive_on_touching_nuclei():
    _, inst = make_nuclei((256, 256), n=70, touching=0.9, seed=3)
    assert len(np.unique(inst)) > 50
    ref = naive_border(inst)
    got = border_weights(inst)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
    assert got.max() > 5.0  # touching pairs: a one-pixel gap gives w0 * exp(-4/50) ~ 9.2


@pytest.mark.parametrize("w0,sigma", [(10.0, 5.0), (30.0, 2.0), (5.0, 12.0), (1e-5, 5.0)])
def test_border_weights_other_parameters_match_naive(w0, sigma):
    _, inst = make_nuclei((128, 160), n=30, touching=0.8, seed=5)
    np.testing.assert_allclose(
        border_weights(inst, w0=w0, sigma=sigma), naive_border(inst, w0, sigma), rtol=0, atol=1e-4
    )


def test_border_weights_accept_huge_sparse_uint_ids():
    inst = random_blobs((50, 50), 12, seed=7)
    ids = np.unique(inst)[1:]
    huge = np.zeros(inst.shape, np.uint64)
    for k, i in enumerate(ids):
        huge[inst == i] = np.uint64(2**63 + 977 * k + 5)
    np.testing.assert_allclose(border_weights(huge), naive_border(inst), rtol=0, atol=1e-4)
    big32 = np.where(inst > 0, inst.astype(np.uint32) + np.uint32(4_000_000_000 - 200), 0).astype(np.uint32)
    np.testing.assert_allclose(border_weights(big32), naive_border(inst), rtol=0, atol=1e-4)


def test_border_weights_hand_worked_two_pixel_gap():
    inst = np.zeros((5, 7), np.int32)
    inst[:, :2] = 4
    inst[:, 4:] = 9
    got = border_weights(inst, w0=10.0, sigma=5.0)
    # column 2: d1 = 1 (to id 4), d2 = 2 (to id 9); column 3: d1 = 1, d2 = 2
    np.testing.assert_allclose(got[:, 2:4], 10 * np.exp(-9 / 50), rtol=1e-6)
    assert (got[:, :2] == 0).all() and (got[:, 4:] == 0).all()


def test_border_weights_zero_when_fewer_than_two_instances_or_no_background():
    assert not border_weights(np.zeros((9, 9), np.int32)).any()
    one = np.zeros((9, 9), np.int32)
    one[2:4, 2:4] = 3
    assert not border_weights(one).any()
    full = np.ones((6, 6), np.int32)
    full[:, 3:] = 2
    assert not border_weights(full).any()


def test_border_weights_reject_bad_input():
    with pytest.raises(ValueError, match=r"instances must be 2-D"):
        border_weights(np.zeros((3, 3, 3), np.int32))
    with pytest.raises(ValueError, match=r"instances must be an integer label image"):
        border_weights(np.zeros((3, 3), np.float32))


def test_class_weights_inverse_frequency_mean_one_over_labelled_pixels():
    classes = np.zeros((10, 10), np.uint8)
    classes[:2] = 1  # 20 px
    classes[2:3] = 2  # 10 px, 70 unlabelled
    wc = class_weights(classes, "inverse")
    assert wc[2] / wc[1] == pytest.approx(2.0)
    assert (20 * wc[1] + 10 * wc[2]) / 30 == pytest.approx(1.0)
    log = class_weights(classes, "log")
    assert log[1] == pytest.approx(1 / np.log(1.02 + 2 / 3)) and log[2] == pytest.approx(1 / np.log(1.02 + 1 / 3))
    assert class_weights(classes, None) == {1: 1.0, 2: 1.0}
    with pytest.raises(ValueError, match=r"balance must be one of"):
        class_weights(classes, "median")


def test_weight_map_is_zero_on_unlabelled_and_adds_border_term_on_labelled():
    _, inst = make_nuclei((96, 96), n=25, touching=0.9, seed=2)
    classes = scribbles(inst, n_strokes=12, seed=1)
    assert (classes == 0).mean() > 0.5
    wm = weight_map(classes, inst, w0=10.0, sigma=5.0, balance="inverse")
    assert wm.dtype == np.float32
    assert (wm[classes == 0] == 0).all()
    wc = class_weights(classes, "inverse")
    expected = np.vectorize(lambda c: wc.get(int(c), 0.0))(classes) + naive_border(inst)
    lab = classes > 0
    np.testing.assert_allclose(wm[lab], expected[lab], rtol=1e-6, atol=1e-4)
    dense = np.where(inst > 0, 2, 1).astype(np.uint8)
    only_class = weight_map(dense, None, balance=None)
    assert (only_class == 1).all()


def test_weight_map_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"instances shape .* != classes shape"):
        weight_map(np.ones((4, 4), np.uint8), np.zeros((4, 5), np.int32))
