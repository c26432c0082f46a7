"""Overlap-tile inference: exact stitching against known answers and a whole-image pass."""
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from torch import nn
from torch.nn import functional as F

from labseg.ml.tiling import predict_tiled, predict_tiled_with_uncertainty, reflect_index
from labseg.ml.unet import UNet

torch.set_num_threads(1)


class KnownAnswer(nn.Module):
    """Valid 'network' with a known output: channel 0 = the centre pixel, channel 1 = the mean of the
    full (2m+1)^2 context window. Valid sizes mimic a grid of 2**depth so tiling logic is exercised."""

    def __init__(self, margin=6, depth=2):
        super().__init__()
        self.margin, self.depth, self.num_classes, self.in_channels = margin, depth, 2, 1
        self.dummy = nn.Parameter(torch.zeros(()))
        self.seen_shapes = set()

    def output_size(self, n):
        out = n - 2 * self.margin
        if out < 1 or out % 2**self.depth != 4 % 2**self.depth:
            raise ValueError(f"invalid size {n}")
        return out

    def input_size_for(self, out):
        n = out + 2 * self.margin
        while True:
            try:
                self.output_size(n)
                return n
            except ValueError:
                n += 1

    def forward(self, x):
        self.seen_shapes.add(tuple(x.shape))
        m = self.margin
        centre = x[:, :1, m:-m, m:-m]
        mean = F.avg_pool2d(x[:, :1], 2 * m + 1, stride=1)
        return torch.cat([centre, mean], 1) + self.dummy


def known_answer_reference(image, m):
    padded = np.pad(image.astype(np.float64), m, mode="reflect")
    mean = ndi.uniform_filter(padded, 2 * m + 1)[m:-m, m:-m]
    logits = np.stack([image.astype(np.float64), mean])
    e = np.exp(logits - logits.max(0))
    return e / e.sum(0)


def test_reflect_index_matches_numpy_reflect_padding_even_beyond_the_image():
    for n in (1, 2, 3, 7):
        a = np.arange(n)
        pad = 3 * n + 2
        expected = np.pad(a, pad, mode="reflect") if n > 1 else np.zeros(n + 2 * pad, int)
        assert np.array_equal(reflect_index(np.arange(-pad, n + pad), n), expected)


@pytest.mark.parametrize("shape,tile", [((37, 53), 8), ((37, 53), 20), ((5, 3), 12), ((1, 40), 16), ((64, 64), 64)])
def test_known_answer_model_is_stitched_exactly(shape, tile):
    rng = np.random.default_rng(0)
    image = rng.normal(size=shape).astype(np.float32)
    model = KnownAnswer(margin=6, depth=2)
    probs = predict_tiled(model, image, tile_output=tile, batch_size=3)
    assert probs.dtype == np.float32 and probs.shape == (2,) + shape
    np.testing.assert_allclose(probs, known_answer_reference(image, 6), atol=1e-5)
    assert all(s[-1] <= tile + 12 + 4 and s[-2] <= tile + 12 + 4 for s in model.seen_shapes)


def whole_image_pass(model, image):
    """Reference: mirror-pad once to a valid size and run the network on the whole image."""
    _, h, w = image.shape
    m = model.margin
    in_h, in_w = model.input_size_for(h), model.input_size_for(w)
    padded = np.pad(image, ((0, 0), (m, in_h - h - m), (m, in_w - w - m)), mode="reflect")
    with torch.no_grad():
        logits = model(torch.from_numpy(padded)[None])
    return torch.softmax(logits, 1)[0, :, :h, :w].numpy()


def test_real_unet_is_tile_size_invariant_on_odd_image():
    torch.manual_seed(0)
    model = UNet(in_channels=2, num_classes=3, base_channels=4, depth=3).eval()
    rng = np.random.default_rng(1)
    image = rng.normal(size=(2, 77, 131)).astype(np.float32)
    reference = whole_image_pass(model, image)
    for tile in (17, 40, 100):
        probs = predict_tiled(model, image, tile_output=tile, batch_size=2)
        np.testing.assert_allclose(probs, reference, atol=1e-4)
        np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)


def test_image_smaller_than_one_tile_and_memmap_output(tmp_path):
    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2).eval()
    image = np.random.default_rng(2).normal(size=(9, 14)).astype(np.float32)
    out = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=np.float32, shape=(2, 9, 14))
    calls = []
    result = predict_tiled(model, image, tile_output=256, out=out, progress=lambda d, t: calls.append((d, t)))
    assert result is out
    np.testing.assert_allclose(np.asarray(out), whole_image_pass(model, image[None]), atol=1e-5)
    assert calls == [(1, 1)]


def test_progress_counts_every_tile_and_training_flag_is_restored():
    model = UNet(base_channels=2, depth=2).train()
    calls = []
    predict_tiled(model, np.zeros((50, 70), np.float32), tile_output=16, progress=lambda d, t: calls.append((d, t)))
    assert [d for d, _ in calls] == list(range(1, len(calls) + 1)) and calls[-1][0] == calls[-1][1] == 4 * 5
    assert model.training


def test_tta_of_a_symmetric_model_equals_plain_prediction_with_zero_disagreement():
    model = KnownAnswer(margin=4, depth=2)
    image = np.random.default_rng(3).normal(size=(21, 34)).astype(np.float32)
    plain = predict_tiled(model, image, tile_output=12)
    result = predict_tiled_with_uncertainty(model, image, tile_output=12)
    np.testing.assert_allclose(result.probs, plain, atol=1e-5)
    assert np.all(result.disagreement == 0)
    p = plain.astype(np.float64)
    np.testing.assert_allclose(result.entropy, -(p * np.log(p)).sum(0) / np.log(2), atol=1e-4)


def test_tta_on_real_unet_gives_probabilities_and_bounded_uncertainty():
    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2).eval()
    image = np.random.default_rng(4).normal(size=(1, 23, 30)).astype(np.float32)
    result = predict_tiled_with_uncertainty(model, image, tile_output=20)
    assert result.probs.shape == (2, 23, 30) and result.entropy.shape == result.disagreement.shape == (23, 30)
    np.testing.assert_allclose(result.probs.sum(0), 1, atol=1e-5)
    assert result.entropy.min() >= 0 and result.entropy.max() <= 1 + 1e-6
    assert result.disagreement.min() >= 0 and result.disagreement.max() <= 0.5 + 1e-6  # consensus wins >= half
    np.testing.assert_allclose(predict_tiled(model, image, tile_output=20, tta=True), result.probs, atol=1e-6)


def test_bad_inputs_raise_clear_errors():
    model = UNet(base_channels=2, depth=2)
    with pytest.raises(ValueError, match="expects 1 channel"):
        predict_tiled(model, np.zeros((2, 10, 10), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(C, H, W\)"):
        predict_tiled(model, np.zeros((10,), np.float32))
    with pytest.raises(ValueError, match="out must be float32"):
        predict_tiled(model, np.zeros((10, 10), np.float32), out=np.zeros((2, 10, 9), np.float32))
