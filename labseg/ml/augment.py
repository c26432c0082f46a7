"""Data augmentation for U-Net training, in torch on the training device (Ronneberger et al. 2015).

Shapes: image (B, C, H, W) float, labels (B, H, W) int64, weights (B, H, W) float (optional). Every
function takes an explicit ``torch.Generator`` (MONAI style) so a run is reproducible; random numbers
are drawn on the generator's device (CPU when none is given) and then moved to the data's device, so
the same seed gives the same augmentation on CPU and GPU. Labels are never interpolated: they are
gathered by nearest neighbour, so an output label is always a value of the input.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Triple = tuple[Tensor, Tensor, "Tensor | None"]


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _randn(shape, generator, device) -> Tensor:
    return torch.randn(shape, generator=generator, device=_gen_device(generator)).to(device)


def _rand(shape, generator, device) -> Tensor:
    return torch.rand(shape, generator=generator, device=_gen_device(generator)).to(device)


def _check(image: Tensor, labels: Tensor, weights: Tensor | None) -> None:
    if image.ndim != 4:
        raise ValueError(f"image must be (B, C, H, W), got {tuple(image.shape)}")
    b, _, h, w = image.shape
    if tuple(labels.shape) != (b, h, w):
        raise ValueError(f"labels must be (B, H, W) = {(b, h, w)}, got {tuple(labels.shape)}")
    if weights is not None and tuple(weights.shape) != (b, h, w):
        raise ValueError(f"weights must be (B, H, W) = {(b, h, w)}, got {tuple(weights.shape)}")


def mirror(coord: Tensor, size: int) -> Tensor:
    """Reflect coordinates into ``[0, size - 1]`` about the edge pixel centres (``d c b | a b c d``).

    This is ``grid_sample(padding_mode="reflection", align_corners=True)`` and scipy's ``mode="mirror"``.
    """
    if size == 1:
        return torch.zeros_like(coord)
    period = 2.0 * (size - 1)
    c = torch.remainder(coord.abs(), period)
    return torch.where(c > size - 1, period - c, c)


def displacement_field(
    batch: int, height: int, width: int, *, grid: int = 3, sigma: float = 10.0,
    generator: torch.Generator | None = None, device: torch.device | str | None = None,
) -> Tensor:
    """Per-pixel displacements (B, 2, H, W) in pixels, channel 0 = dy, 1 = dx.

    One N(0, sigma) vector per node of a ``grid x grid`` lattice spanning the image corner to corner,
    upsampled bicubically (``align_corners=True``: the nodes keep their drawn values exactly).
    """
    if grid < 2:
        raise ValueError(f"grid must be >= 2, got {grid}")
    nodes = _randn((batch, 2, grid, grid), generator, device) * float(sigma)
    return F.interpolate(nodes, size=(height, width), mode="bicubic", align_corners=True)


def warp(
    image: Tensor, labels: Tensor, weights: Tensor | None, field: Tensor, *, mode: str = "bilinear"
) -> Triple:
    """Resample so that ``out[y, x] = in[y + dy, x + dx]`` with mirrored borders.

    ``image`` and ``weights`` by ``mode`` (``"bilinear"`` or ``"bicubic"``) interpolation, ``labels`` by
    nearest neighbour (index gather, exact for any int64 id).
    """
    b, _, h, w = image.shape
    ys = torch.arange(h, device=image.device, dtype=field.dtype).view(1, h, 1)
    xs = torch.arange(w, device=image.device, dtype=field.dtype).view(1, 1, w)
    sy = ys + field[:, 0]
    sx = xs + field[:, 1]
    # grid_sample reflects about pixel centres itself; normalised coordinates (x, y) in [-1, 1]
    norm = torch.stack((2.0 * sx / max(w - 1, 1) - 1.0, 2.0 * sy / max(h - 1, 1) - 1.0), dim=-1)
    out_img = F.grid_sample(
        image, norm.to(image.dtype), mode=mode, padding_mode="reflection", align_corners=True
    )
    out_w = None
    if weights is not None:
        out_w = F.grid_sample(
            weights.unsqueeze(1), norm.to(weights.dtype), mode=mode, padding_mode="reflection",
            align_corners=True,
        ).squeeze(1)
        if mode == "bicubic":
            out_w = out_w.clamp_min(0)  # bicubic overshoot must not make a loss weight negative
    iy = torch.round(mirror(sy, h)).long().clamp_(0, h - 1)
    ix = torch.round(mirror(sx, w)).long().clamp_(0, w - 1)
    out_lab = labels.reshape(b, h * w).gather(1, (iy * w + ix).reshape(b, h * w)).reshape(b, h, w)
    return out_img, out_lab, out_w


def elastic_deform(
    image: Tensor, labels: Tensor, weights: Tensor | None = None, *, grid: int = 3,
    sigma: float = 10.0, generator: torch.Generator | None = None, mode: str = "bilinear",
) -> Triple:
    """The paper's elastic deformation: returns ``(image, labels, weights)`` (weights None if not given).

    A random displacement per node of a ``grid x grid`` lattice with standard deviation ``sigma`` px,
    bicubically upsampled to every pixel (:func:`displacement_field`), applied with ``grid_sample``
    (reflection at the borders). ``sigma == 0`` returns the inputs unchanged (copies).
    """
    _check(image, labels, weights)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return image.clone(), labels.clone(), None if weights is None else weights.clone()
    b, _, h, w = image.shape
    field = displacement_field(b, h, w, grid=grid, sigma=sigma, generator=generator, device=image.device)
    return warp(image, labels, weights, field.float(), mode=mode)


def _gather_rows_cols(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``x[..., rows, :][..., cols]`` for one sample (any dtype)."""
    return x.index_select(-2, rows).index_select(-1, cols)


def random_flip_rot90(
    image: Tensor, labels: Tensor, weights: Tensor | None = None, *,
    generator: torch.Generator | None = None,
) -> Triple:
    """Per sample, one of the 8 symmetries of the square (4 if H != W: flips and 180 degrees)."""
    _check(image, labels, weights)
    b, _, h, w = image.shape
    draws = (_rand((b, 3), generator, "cpu") < 0.5).tolist()
    imgs, labs, wts = [], [], []
    for k, (fy, fx, rot) in enumerate(draws):
        xi, xl = image[k], labels[k]
        xw = None if weights is None else weights[k]
        dims = [d for d, on in ((-2, fy), (-1, fx)) if on]
        if dims:
            xi, xl = xi.flip(dims), xl.flip(dims)
            xw = None if xw is None else xw.flip(dims)
        if rot and h == w:
            xi, xl = xi.rot90(1, (-2, -1)), xl.rot90(1, (-2, -1))
            xw = None if xw is None else xw.rot90(1, (-2, -1))
        imgs.append(xi)
        labs.append(xl)
        wts.append(xw)
    return (
        torch.stack(imgs).contiguous(), torch.stack(labs).contiguous(),
        None if weights is None else torch.stack(wts).contiguous(),
    )


def random_shift(
    image: Tensor, labels: Tensor, weights: Tensor | None = None, *, max_shift: int = 16,
    generator: torch.Generator | None = None,
) -> Triple:
    """Per sample, an integer translation by up to ``max_shift`` px per axis, mirrored at the borders."""
    _check(image, labels, weights)
    b, _, h, w = image.shape
    shifts = (_rand((b, 2), generator, "cpu") * (2 * max_shift + 1)).floor().long() - max_shift
    dev = image.device
    imgs, labs, wts = [], [], []
    for k, (dy, dx) in enumerate(shifts.tolist()):
        rows = mirror(torch.arange(h, device=dev, dtype=torch.float32) + dy, h).long()
        cols = mirror(torch.arange(w, device=dev, dtype=torch.float32) + dx, w).long()
        imgs.append(_gather_rows_cols(image[k], rows, cols))
        labs.append(_gather_rows_cols(labels[k], rows, cols))
        if weights is not None:
            wts.append(_gather_rows_cols(weights[k], rows, cols))
    return torch.stack(imgs), torch.stack(labs), None if weights is None else torch.stack(wts)


def random_intensity(
    image: Tensor, *, generator: torch.Generator | None = None, gamma: tuple[float, float] = (0.7, 1.5),
    contrast: tuple[float, float] = (0.75, 1.25), brightness: float = 0.1, noise: float = 0.03,
) -> Tensor:
    """Grey-value changes per sample and channel: gamma, contrast, brightness, Gaussian noise.

    Gamma acts on the sample's min..max range (so it works for any normalisation); brightness and
    noise are relative to the channel's standard deviation. Log-uniform gamma, uniform contrast.
    """
    if image.ndim != 4:
        raise ValueError(f"image must be (B, C, H, W), got {tuple(image.shape)}")
    b, c = image.shape[:2]
    dev = image.device
    u = _rand((4, b, c, 1, 1), generator, dev)
    g = torch.exp(math.log(gamma[0]) + u[0] * (math.log(gamma[1]) - math.log(gamma[0])))
    ctr = contrast[0] + u[1] * (contrast[1] - contrast[0])
    bright = (2 * u[2] - 1) * brightness
    x = image.float()
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    span = (hi - lo).clamp_min(1e-6)
    x = lo + span * ((x - lo) / span).clamp(0, 1).pow(g)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = x.std(dim=(-2, -1), keepdim=True) if x.shape[-1] * x.shape[-2] > 1 else torch.ones_like(mean)
    x = mean + (x - mean) * ctr + bright * std
    if noise > 0:
        x = x + _randn(tuple(image.shape), generator, dev) * (noise * std)
    return x.to(image.dtype)


def augment_batch(
    image: Tensor, labels: Tensor, weights: Tensor | None = None, *,
    generator: torch.Generator | None = None, flips: bool = True, max_shift: int = 0,
    elastic: bool = True, grid: int = 3, sigma: float = 10.0, intensity: bool = True,
) -> Triple:
    """The paper's augmentation chain: flips/rot90, shift, elastic deformation, grey-value changes."""
    if flips:
        image, labels, weights = random_flip_rot90(image, labels, weights, generator=generator)
    if max_shift > 0:
        image, labels, weights = random_shift(image, labels, weights, max_shift=max_shift, generator=generator)
    if elastic and sigma > 0:
        image, labels, weights = elastic_deform(
            image, labels, weights, grid=grid, sigma=sigma, generator=generator
        )
    if intensity:
        image = random_intensity(image, generator=generator)
    return image, labels, weights
