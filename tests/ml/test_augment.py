"""Augmentations: label sets kept, identity at sigma 0, seeds reproduce, agreement with scipy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from labseg.ml.augment import (
    augment_batch,
    bias_field,
    displacement_field,
    elastic_deform,
    random_flip_rot90,
    random_intensity,
    random_shift,
    warp,
)

torch.set_num_threads(1)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def batch(b=2, c=2, h=48, w=61, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(b, c, h, w, generator=g)
    # sparse, huge ids: nearest-neighbour must keep them exactly (float32 would not)
    lab = torch.randint(0, 4, (b, h, w), generator=g) * (2**40 + 3)
    wt = torch.rand(b, h, w, generator=g) * 10
    return img.to(device), lab.to(device), wt.to(device)


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("device", DEVICES)
def test_elastic_labels_stay_in_input_label_set(device):
    img, lab, wt = batch(device=device)
    _, out, ow = elastic_deform(img, lab, wt, sigma=25.0, generator=gen(3))
    assert out.dtype == torch.int64 and out.shape == lab.shape and out.device == lab.device
    assert set(out.unique().tolist()) <= set(lab.unique().tolist())
    assert (out != lab).any()  # it did deform
    assert ow.shape == wt.shape and ow.min() >= 0


def test_elastic_sigma_zero_is_identity():
    img, lab, wt = batch()
    oi, ol, ow = elastic_deform(img, lab, wt, sigma=0.0, generator=gen(1))
    assert torch.equal(oi, img) and torch.equal(ol, lab) and torch.equal(ow, wt)
    oi, ol, ow = elastic_deform(img, lab, None, sigma=0.0)
    assert ow is None and torch.equal(oi, img)


def test_elastic_same_seed_same_result_other_seed_differs():
    img, lab, wt = batch()
    a = elastic_deform(img, lab, wt, generator=gen(7))
    b = elastic_deform(img, lab, wt, generator=gen(7))
    c = elastic_deform(img, lab, wt, generator=gen(8))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_displacement_nodes_are_gaussian_with_std_sigma():
    sigma, grid = 10.0, 3
    field = displacement_field(3000, 9, 9, grid=grid, sigma=sigma, generator=gen(11))
    nodes = field[:, :, ::4, ::4]  # align_corners: nodes at rows/cols 0, 4, 8
    # the nodes are exactly the drawn N(0, sigma) values (same generator stream)
    drawn = torch.randn((3000, 2, grid, grid), generator=gen(11)) * sigma
    torch.testing.assert_close(nodes, drawn, rtol=1e-5, atol=1e-4)
    assert abs(float(nodes.std()) - sigma) < 0.03 * sigma
    assert abs(float(nodes.mean())) < 0.05 * sigma
    # between nodes the bicubic field is smooth: neighbouring pixels move by much less than sigma
    big = displacement_field(50, 65, 65, grid=grid, sigma=sigma, generator=gen(12))
    assert float((big[..., 1:] - big[..., :-1]).abs().max()) < 0.5 * sigma
    assert float(big.abs().max()) > 2 * sigma


@pytest.mark.parametrize("huge_ids", [True, False])
@pytest.mark.parametrize("shape", [(40, 57), (64, 64), (17, 90), (150, 171)])
def test_elastic_matches_scipy_map_coordinates_of_same_field(shape, huge_ids):
    h, w = shape
    img, lab, wt = batch(h=h, w=w)
    if not huge_ids:  # small ids take the grid_sample path, huge ones the exact index gather
        lab = lab % 7
    oi, ol, ow = elastic_deform(img, lab, wt, grid=3, sigma=12.0, generator=gen(5))
    field = displacement_field(2, h, w, grid=3, sigma=12.0, generator=gen(5)).double().numpy()
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    for b in range(2):
        coords = [ys + field[b, 0], xs + field[b, 1]]
        for c in range(img.shape[1]):
            ref = ndi.map_coordinates(img[b, c].double().numpy(), coords, order=1, mode="mirror")
            np.testing.assert_allclose(oi[b, c].numpy(), ref, atol=1e-4)
        ref_w = ndi.map_coordinates(wt[b].double().numpy(), coords, order=1, mode="mirror")
        np.testing.assert_allclose(ow[b].numpy(), ref_w, atol=1e-3)
        ref_l = ndi.map_coordinates(lab[b].numpy(), coords, order=0, mode="mirror")
        # nearest neighbour may round an exact .5 differently: allow a few ties, nothing more
        assert (ol[b].numpy() != ref_l).mean() < 0.005


def test_warp_with_the_drawn_field_reproduces_elastic_deform():
    img, lab, wt = batch(h=90, w=77)
    lab = lab % 5
    ei, el, ew = elastic_deform(img, lab, wt, sigma=8.0, generator=gen(21))
    field = displacement_field(2, 90, 77, sigma=8.0, generator=gen(21))
    wi, wl, ww = warp(img, lab, wt, field)
    torch.testing.assert_close(wi, ei, rtol=0, atol=1e-4)
    torch.testing.assert_close(ww, ew, rtol=0, atol=1e-3)  # weights go up to 10
    assert (wl != el).float().mean() < 0.005  # nearest-neighbour ties may round either way


def _symmetries(x: torch.Tensor):
    out = []
    for k in range(4):
        r = x.rot90(k, (-2, -1))
        out += [r, r.flip(-1)]
    return out


def test_flip_rot90_applies_one_symmetry_consistently_to_image_labels_weights():
    img, lab, wt = batch(b=6, h=32, w=32)
    oi, ol, ow = random_flip_rot90(img, lab, wt, generator=gen(2))
    seen = set()
    for k in range(6):
        cands = [j for j, s in enumerate(_symmetries(img[k])) if torch.equal(s, oi[k])]
        assert len(cands) == 1
        j = cands[0]
        assert torch.equal(_symmetries(lab[k])[j], ol[k]) and torch.equal(_symmetries(wt[k])[j], ow[k])
        seen.add(j)
    assert len(seen) > 1
    img2, lab2, _ = batch(b=3, h=20, w=33)
    oi2, ol2, _ = random_flip_rot90(img2, lab2, generator=gen(2))
    assert oi2.shape == img2.shape and ol2.shape == lab2.shape  # non-square: no 90-degree turns


def test_random_shift_equals_numpy_mirror_padded_crop():
    img, lab, wt = batch(b=4, h=30, w=41)
    m = 5
    oi, ol, ow = random_shift(img, lab, wt, max_shift=m, generator=gen(9))
    for k in range(4):
        x = img[k, 0].numpy()
        padded = np.pad(x, m, mode="reflect")  # numpy "reflect" = mirror about the edge pixel
        hits = [(dy, dx) for dy in range(-m, m + 1) for dx in range(-m, m + 1)
                if np.array_equal(padded[m + dy : m + dy + 30, m + dx : m + dx + 41], oi[k, 0].numpy())]
        assert len(hits) == 1
        dy, dx = hits[0]
        pl = np.pad(lab[k].numpy(), m, mode="reflect")[m + dy : m + dy + 30, m + dx : m + dx + 41]
        assert np.array_equal(pl, ol[k].numpy())


def test_random_intensity_reproducible_and_identity_without_changes():
    img, _, _ = batch()
    a = random_intensity(img, generator=gen(4))
    b = random_intensity(img, generator=gen(4))
    assert torch.equal(a, b) and not torch.equal(a, img)
    same = random_intensity(img, generator=gen(4), gamma=(1, 1), contrast=(1, 1), brightness=0, noise=0)
    torch.testing.assert_close(same, img, rtol=0, atol=1e-5)


def test_bias_field_is_the_bilinear_upsampling_of_its_lattice():
    """Reference: the same lattice values (drawn from the same seed) interpolated by scipy (order 1) at
    the corner-aligned coordinates, then exp."""
    b, c, h, w, grid, bias = 2, 3, 29, 41, 4, 0.6
    field = bias_field(b, c, h, w, bias=bias, grid=grid, generator=gen(7))
    nodes = ((2 * torch.rand((b, c, grid, grid), generator=gen(7)) - 1) * bias).numpy().astype(np.float64)
    rows = np.linspace(0, grid - 1, h)[:, None].repeat(w, 1)
    cols = np.linspace(0, grid - 1, w)[None, :].repeat(h, 0)
    for i in range(b):
        for j in range(c):
            ref = np.exp(ndi.map_coordinates(nodes[i, j], [rows, cols], order=1))
            np.testing.assert_allclose(field[i, j].numpy(), ref, rtol=1e-5)
    assert float(field.min()) >= np.exp(-bias) - 1e-6 and float(field.max()) <= np.exp(bias) + 1e-6
    assert float(field.max() / field.min()) > 1.5  # it does vary
    with pytest.raises(ValueError, match="grid"):
        bias_field(1, 1, 8, 8, bias=0.5, grid=1)


def test_random_intensity_bias_scales_the_height_above_the_minimum_smoothly():
    img, _, _ = batch(b=2, c=1, h=40, w=40)
    img = img + 0.5  # no pixel at 0, so the ratio below is defined everywhere but at the minimum
    out = random_intensity(img, generator=gen(2), gamma=(1, 1), contrast=(1, 1), brightness=0, noise=0, bias=0.5)
    lo = img.amin(dim=(-2, -1), keepdim=True)
    ratio = (out - lo) / (img - lo)
    ok = (img - lo) > 1e-3
    assert float(ratio[ok].min()) >= np.exp(-0.5) - 1e-4 and float(ratio[ok].max()) <= np.exp(0.5) + 1e-4
    assert float(ratio[ok].max() / ratio[ok].min()) > 1.3
    # smooth: neighbouring pixels' factors differ by far less than the field's range
    assert float((ratio[..., 1:] - ratio[..., :-1]).abs()[ok[..., 1:] & ok[..., :-1]].max()) < 0.1
    torch.testing.assert_close(out.amin(dim=(-2, -1)), img.amin(dim=(-2, -1)))  # the minimum stays
    off = random_intensity(img, generator=gen(2), gamma=(1, 1), contrast=(1, 1), brightness=0, noise=0, bias=0.0)
    torch.testing.assert_close(off, img, rtol=0, atol=1e-5)


def test_augment_batch_contrast_range_reaches_the_intensity_step():
    img, lab, wt = batch(b=8, c=1, h=32, w=32)
    kw = dict(flips=False, elastic=False)
    narrow = augment_batch(img, lab, wt, generator=gen(3), contrast=0.0, **kw)[0]
    wide = augment_batch(img, lab, wt, generator=gen(3), contrast=0.6, **kw)[0]
    spread = lambda x: x.std(dim=(-2, -1)) / img.std(dim=(-2, -1))  # noqa: E731
    # gamma, brightness and noise are drawn alike; only the contrast factor differs (1 vs 1 +- 0.6)
    assert float((spread(wide) - spread(narrow)).abs().max()) > 0.2


def test_augment_batch_keeps_shapes_and_labels():
    img, lab, wt = batch(b=3, h=36, w=36)
    oi, ol, ow = augment_batch(img, lab, wt, generator=gen(0), max_shift=4)
    assert oi.shape == img.shape and ol.shape == lab.shape and ow.shape == wt.shape
    assert set(ol.unique().tolist()) <= set(lab.unique().tolist())
    again = augment_batch(img, lab, wt, generator=gen(0), max_shift=4)
    assert torch.equal(again[0], oi) and torch.equal(again[1], ol)


def test_elastic_rejects_mismatched_shapes():
    img, lab, _ = batch()
    with pytest.raises(ValueError, match=r"labels must be \(B, H, W\)"):
        elastic_deform(img, lab[:, :-1], generator=gen(0))
    with pytest.raises(ValueError, match=r"image must be \(B, C, H, W\)"):
        elastic_deform(img[0], lab, generator=gen(0))
