"""The U-Net of Ronneberger, Fischer & Brox (MICCAI 2015), with valid convolutions.

Contracting path of ``depth`` steps [3x3 conv + ReLU, 3x3 conv + ReLU, 2x2 max-pool], a bottom block,
an expanding path of ``depth`` steps [2x2 up-convolution halving the channels, concatenation with the
centre-cropped skip, two 3x3 convs + ReLU], and a final 1x1 conv to the class logits. No padding: every
3x3 conv loses 2 px, so the output is smaller than the input by ``2 * margin`` (184 px for depth 4).

With the defaults (C=1, K=2, base 64, depth 4) the network has exactly 31,030,658 parameters and maps a
572x572 tile to 388x388. Dropout follows the deepest contracting block and the bottom block, as in the
released Caffe model. Weights use He initialisation, N(0, sqrt(2/N)) with N the fan-in of one neuron.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _simulate(input_size: int, depth: int) -> int | None:
    """Spatial output size for ``input_size`` at ``depth``, or None when some map is odd or empty."""
    s = int(input_size)
    for _ in range(depth):
        s -= 4
        if s <= 0 or s % 2:
            return None
        s //= 2
    s -= 4
    if s <= 0:
        return None
    for _ in range(depth):
        s = 2 * s - 4
        if s <= 0:
            return None
    return s


def margin_for(depth: int) -> int:
    """Context margin ``(input - output) / 2`` of a valid U-Net: 4 px lost per level, scaled by 2^level."""
    return 2 * sum(2**level for level in range(depth)) + 2 * 2**depth + 2 * sum(2**level for level in range(depth))


def is_valid_input_size(n: int, depth: int = 4) -> bool:
    """True if a tile of side ``n`` passes through the net with every pooled map even-sized."""
    return _simulate(n, depth) is not None


def valid_input_size(n: int, depth: int = 4) -> int:
    """The smallest valid input size ``>= n`` (valid sizes are spaced by ``2**depth``)."""
    n = max(int(n), 1)
    step = 2**depth
    for candidate in range(n, n + step + 1):
        if _simulate(candidate, depth) is not None:
            return candidate
    # below the smallest valid size the loop never finds one: jump up to it
    return input_size_for(1, depth)


def output_size(input_size: int, depth: int = 4) -> int:
    """Output side for an input side; raises ValueError with the nearest valid sizes if invalid."""
    out = _simulate(input_size, depth)
    if out is None:
        smallest = input_size_for(1, depth)
        if input_size < smallest:
            raise ValueError(
                f"input size {input_size} is too small for a depth-{depth} U-Net; the smallest valid input "
                f"is {smallest}"
            )
        up = valid_input_size(input_size, depth)
        raise ValueError(
            f"input size {input_size} is not valid for a depth-{depth} U-Net (every pooled map must be "
            f"even); valid neighbours are {up - 2**depth} and {up}"
        )
    return out


def input_size_for(output: int, depth: int = 4) -> int:
    """The smallest valid input size whose output is at least ``output``."""
    if output < 1:
        raise ValueError(f"output size must be >= 1, got {output}")
    step = 2**depth
    margin2 = 2 * margin_for(depth)
    # valid inputs form an arithmetic progression with difference 2**depth and output = input - 2 margin
    n = output + margin2
    for candidate in range(n, n + step):
        if _simulate(candidate, depth) is not None:
            return candidate
    raise AssertionError("unreachable: one of 2**depth consecutive sizes is valid")  # pragma: no cover


def centre_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Centre-crop the last two dimensions of ``x`` to ``(height, width)``."""
    dy = (x.shape[-2] - height) // 2
    dx = (x.shape[-1] - width) // 2
    return x[..., dy : dy + height, dx : dx + width]


class DoubleConv(nn.Sequential):
    """Two valid 3x3 convolutions, each followed by (optional BatchNorm and) ReLU."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool = False) -> None:
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(nn.Conv2d(c_in, out_channels, 3, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UNet(nn.Module):
    """The paper's U-Net; see the module docstring. Input (B, C, H, W) with valid H, W; output (B, K, h, w)."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        base_channels: int = 64,
        depth: int = 4,
        dropout: float = 0.5,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if in_channels < 1 or num_classes < 1 or base_channels < 1:
            raise ValueError("in_channels, num_classes and base_channels must be >= 1")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.base_channels = base_channels
        self.depth = depth
        self.dropout_p = dropout
        self.batch_norm = batch_norm
        self.margin = margin_for(depth)
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList()
        c_in = in_channels
        for w in widths[:-1]:
            self.down.append(DoubleConv(c_in, w, batch_norm))
            c_in = w
        self.bottom = DoubleConv(widths[-2], widths[-1], batch_norm)
        self.ups = nn.ModuleList()
        self.up_convs = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.ups.append(nn.ConvTranspose2d(2 * w, w, kernel_size=2, stride=2))
            self.up_convs.append(DoubleConv(2 * w, w, batch_norm))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.reset_parameters()

    @property
    def config(self) -> dict:
        """The constructor arguments, enough to rebuild the network."""
        return {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "base_channels": self.base_channels,
            "depth": self.depth,
            "dropout": self.dropout_p,
            "batch_norm": self.batch_norm,
        }

    def reset_parameters(self) -> None:
        """He init: weights ~ N(0, sqrt(2/N)), N = inputs of one neuron; biases 0.

        For a conv N = k*k*C_in. For the 2x2 stride-2 up-convolution each output pixel sees exactly one
        kernel tap per input channel, so N = C_in (PyTorch's own fan-in rule would use C_out*4 here).
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            elif isinstance(m, nn.ConvTranspose2d):
                taps = (m.kernel_size[0] // m.stride[0]) * (m.kernel_size[1] // m.stride[1])
                fan_in = m.in_channels * max(taps, 1)
            else:
                continue
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def output_size(self, input_size: int) -> int:
        """Output side for a given input side (ValueError if not a valid size)."""
        return output_size(input_size, self.depth)

    def input_size_for(self, output: int) -> int:
        """Smallest valid input side whose output side is at least ``output``."""
        return input_size_for(output, self.depth)

    def valid_input_size(self, n: int) -> int:
        """Smallest valid input side ``>= n``."""
        return valid_input_size(n, self.depth)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        for side in x.shape[-2:]:
            output_size(int(side), self.depth)  # raises with a helpful message

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        skips = []
        for level, block in enumerate(self.down):
            x = block(x)
            if level == self.depth - 1:
                x = self.drop(x)  # after the deepest contracting block (512 in the paper)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.drop(self.bottom(x))  # after the bottom block (1024)
        for up, block, skip in zip(self.ups, self.up_convs, reversed(skips)):
            x = up(x)
            x = block(torch.cat([centre_crop(skip, x.shape[-2], x.shape[-1]), x], dim=1))
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
