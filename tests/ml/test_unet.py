"""The paper's U-Net: parameter count, sizes, He initialisation, clear errors on bad sizes."""
import math

import pytest
import torch
from torch import nn

from labseg.ml.unet import UNet, count_parameters, input_size_for, is_valid_input_size, output_size, valid_input_size

torch.set_num_threads(1)


def test_paper_configuration_has_31030658_parameters_and_margin_92():
    model = UNet()
    assert count_parameters(model) == 31_030_658
    assert model.margin == 92
    assert len([m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]) == 23


def test_paper_sizes_572_to_388_and_back():
    model = UNet()
    assert model.output_size(572) == 388
    assert model.input_size_for(388) == 572
    assert model.input_size_for(389) == 588  # next valid input on the 16-px grid
    assert model.input_size_for(1) == 188 and model.output_size(188) == 4


def naive_valid_sizes(depth, limit):
    """Independent enumeration by running the size arithmetic the paper describes, layer by layer."""
    sizes = []
    for n in range(1, limit):
        s, ok = n, True
        for _ in range(depth):
            s -= 4
            ok &= s > 0 and s % 2 == 0
            s //= 2
        s -= 4
        ok &= s > 0
        for _ in range(depth):
            s = 2 * s - 4
            ok &= s > 0
        if ok:
            sizes.append((n, s))
    return sizes


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_valid_sizes_match_layer_by_layer_arithmetic(depth):
    expected = naive_valid_sizes(depth, 400)
    got = [(n, output_size(n, depth)) for n in range(1, 400) if is_valid_input_size(n, depth)]
    assert got == expected
    for n, out in expected:
        assert n - out == 2 * UNet(depth=depth, base_channels=1).margin
    for want in range(1, 100):
        n = input_size_for(want, depth)
        assert output_size(n, depth) >= want
        assert all(o < want for m, o in expected if m < n)
    assert valid_input_size(expected[1][0] - 1, depth) == expected[1][0]


@pytest.mark.parametrize("depth,out_h,out_w", [(2, 12, 20), (3, 30, 17), (4, 4, 36)])
def test_forward_shapes_match_output_size_including_rectangular_tiles(depth, out_h, out_w):
    model = UNet(in_channels=3, num_classes=4, base_channels=2, depth=depth).eval()
    h, w = model.input_size_for(out_h), model.input_size_for(out_w)
    with torch.no_grad():
        y = model(torch.randn(2, 3, h, w))
    assert y.shape == (2, 4, model.output_size(h), model.output_size(w))


def test_channels_last_gives_same_output():
    model = UNet(base_channels=4, depth=2).eval()
    x = torch.randn(1, 1, 60, 60)
    with torch.no_grad():
        ref = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-5)


def test_invalid_input_size_raises_clear_error():
    model = UNet(base_channels=2, depth=3)
    with pytest.raises(ValueError, match="not valid.*valid neighbours are 100 and 108"):
        model(torch.randn(1, 1, 101, 108))
    with pytest.raises(ValueError, match="too small"):
        model.output_size(40)
    with pytest.raises(ValueError, match=r"expected input \(B, 1, H, W\)"):
        model(torch.randn(1, 2, 108, 108))


def test_he_init_std_is_sqrt_2_over_fan_in():
    torch.manual_seed(0)
    model = UNet()  # the paper net: large layers give a tight estimate
    conv = model.down[1][2]  # second 3x3 conv of level 2: 128 -> 128 channels, N = 9 * 128
    w = conv.weight.detach().double()
    n = w.numel()
    expected = math.sqrt(2.0 / (9 * 128))
    # the sample std of n Gaussian draws has relative standard error ~ 1/sqrt(2n); allow 6 of them
    assert abs(w.std().item() - expected) / expected < 6 / math.sqrt(2 * n)
    assert abs(w.mean().item()) < 6 * expected / math.sqrt(n)
    up = model.ups[0]  # 1024 -> 512 up-convolution, one tap per input channel: N = 1024
    assert abs(up.weight.std().item() - math.sqrt(2 / 1024)) / math.sqrt(2 / 1024) < 0.01
    assert all(float(m.bias.detach().abs().max()) == 0 for m in model.modules() if isinstance(m, nn.Conv2d))


def test_dropout_only_active_in_training_mode():
    model = UNet(base_channels=2, depth=2, dropout=0.5)
    x = torch.randn(1, 1, 60, 60)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))
