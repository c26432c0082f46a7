"""Data augmentation for U-Net training, in torch on the training device (Ronneberger et al. 2015).

Shapes: image (B, C, H, W) float, labels (B, H, W) int64, weights (B, H, W) float (optional). Every
function takes an explicit ``torch.Generator`` (MONAI style) so a run is reproducible; random numbers
are drawn on the generator's device (CPU when none is given) and then moved to the data's device, so
the same seed gives the same augmentation on CPU and GPU. Labels are never interpolated: they are
gathered by nearest neighbour, so an output label is always a value of the input.
"""
from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=32)
def _cubic_matrix(size: int, grid: int) -> Tensor:
    """(size, grid) matrix of ``F.interpolate(mode="bicubic", align_corners=True)`` along one axis.

    PyTorch's bicubic upsampling is separable, so a 2-D field is ``A_h @ nodes @ A_w.T``; the matrix
    is read off the library itself by upsampling indicator rows (exact, cached per size).
    """
    basis = torch.eye(grid, dtype=torch.float64).view(grid, 1, grid, 1).expand(grid, 1, grid, 2)
    up = F.interpolate(basis.contiguous(), size=(size, 2), mode="bicubic", align_corners=True)
    return up[:, 0, :, 0].T.contiguous().float()


def _node_field(nodes: Tensor, height: int, width: int) -> Tensor:
    """Upsample node vectors (B, 2, g, g) to (B, H, W, 2) with bicubic interpolation (separable)."""
    grid = nodes.shape[-1]
    ah = _cubic_matrix(height, grid).to(nodes.device)
    aw = _cubic_matrix(width, grid).to(nodes.device)
    return torch.einsum("hi,bcij,wj->bhwc", ah, nodes, aw)


def displacement_field(
    batch: int, height: int, width: int, *, grid: int = 3, sigma: float = 10.0,
    generator: torch.Generator | None = None, device: torch.device | str | None = None,
) -> Tensor:
    """Per-pixel displacements (B, 2, H, W) in pixels, channel 0 = dy, 1 = dx.

    One N(0, sigma) vector per node of a ``grid x grid`` lattice spanning the image corner to corner,
    upsampled bicubically (``align_corners=True``: the nodes keep their drawn values exactly). Equal
    to ``F.interpolate(nodes, (H, W), mode="bicubic", align_corners=True)``, computed separably.
    """
    if grid < 2:
        raise ValueError(f"grid must be >= 2, got {grid}")
    nodes = _randn((batch, 2, grid, grid), generator, device) * float(sigma)
    return _node_field(nodes, height, width).permute(0, 3, 1, 2)


def _sampling_grid(nodes: Tensor, height: int, width: int, pad: int = 0) -> Tensor:
    """grid_sample's grid (B, H, W, 2): identity + bicubically upsampled node displacements (dy, dx).

    Normalised (x, y) coordinates of the image padded by ``pad`` px on every side. One batched matmul
    writes it contiguously: with A_h, A_w the bicubic matrices (rows sum to 1),
    ``grid[b, h, w, :] = sum_i A_h[h, i] T[b, i, w, :] + (0, y_h)`` and
    ``T[b, i, w, :] = sum_j nodes[b, ::-1, i, j] * scale * A_w[w, j] + (x_w, 0)``; the ``(0, y_h)``
    term is one more column of A_h against a constant row of T.
    """
    b, _, g, _ = nodes.shape
    dev = nodes.device
    hp, wp = height + 2 * pad, width + 2 * pad
    sx, sy = 2.0 / max(wp - 1, 1), 2.0 / max(hp - 1, 1)
    ah = _cubic_matrix(height, g).to(dev)
    aw = _cubic_matrix(width, g).to(dev)
    scale = torch.tensor([sx, sy], device=dev).view(1, 2, 1, 1)
    t = torch.einsum("bcij,wj->biwc", nodes.flip(1) * scale, aw)  # (B, g, W, 2) in (x, y) order
    t[..., 0] += (torch.arange(width, device=dev) + pad) * sx - 1.0 if wp > 1 else 0.0
    ys = (torch.arange(height, device=dev) + pad) * sy - 1.0 if hp > 1 else torch.zeros(height, device=dev)
    extra = torch.zeros(b, 1, width, 2, device=dev)
    extra[..., 1] = 1.0
    t = torch.cat([t, extra], dim=1).reshape(b, g + 1, width * 2)
    a = torch.cat([ah, ys[:, None]], dim=1)  # (H, g + 1)
    out = torch.empty(b, height, width * 2, device=dev)
    torch.bmm(a.expand(b, height, g + 1), t, out=out)  # (far faster than broadcasting matmul on CPU)
    return out.view(b, height, width, 2)


def _reach(nodes: Tensor, height: int, width: int) -> float:
    """An upper bound (px) of the upsampled displacement: max |node| x the matrices' max row |sums|."""
    g = nodes.shape[-1]
    gain = float(_cubic_matrix(height, g).abs().sum(1).max() * _cubic_matrix(width, g).abs().sum(1).max())
    return float(nodes.abs().max()) * gain


def _base_grid(height: int, width: int, device) -> Tensor:
    """Identity sampling grid (H, W, 2) in grid_sample's normalised (x, y) coordinates."""
    ys = torch.linspace(-1.0, 1.0, height, device=device) if height > 1 else torch.zeros(1, device=device)
    xs = torch.linspace(-1.0, 1.0, width, device=device) if width > 1 else torch.zeros(1, device=device)
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


def warp(
    image: Tensor, labels: Tensor, weights: Tensor | None, field: Tensor, *, mode: str = "bilinear"
) -> Triple:
    """Resample so that ``out[y, x] = in[y + dy, x + dx]`` (field (B, 2, H, W), pixels), mirrored borders.

    ``image`` and ``weights`` by ``mode`` (``"bilinear"`` or ``"bicubic"``) interpolation, ``labels`` by
    nearest neighbour (never a value that is not in the input).
    """
    b, _, h, w = image.shape
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=image.device)
    norm = (field.flip(1) * scale.view(1, 2, 1, 1)).permute(0, 2, 3, 1) + _base_grid(h, w, image.device)
    return _sample(image, labels, weights, norm, mode)


def _sample(
    image: Tensor, labels: Tensor, weights: Tensor | None, norm: Tensor, mode: str, pad: int = 0
) -> Triple:
    """grid_sample image and weights smoothly, labels by nearest neighbour.

    With ``pad > 0`` the grid addresses the inputs mirrored by ``pad`` px (``F.pad`` "reflect", the
    same mirror as grid_sample's reflection with align_corners) and every sample lies inside them, so
    the cheaper ``padding_mode="border"`` gives the reflection result; else grid_sample reflects.
    """
    b, c, h, w = image.shape
    norm = norm.to(image.dtype)
    border = "border" if pad else "reflection"

    def padded(x: Tensor) -> Tensor:
        return F.pad(x, (pad, pad, pad, pad), mode="reflect") if pad else x

    out_img = F.grid_sample(padded(image), norm, mode=mode, padding_mode=border, align_corners=True)
    out_w = None
    if weights is not None:
        out_w = F.grid_sample(
            padded(weights.unsqueeze(1).to(image.dtype)), norm, mode=mode, padding_mode=border,
            align_corners=True,
        )[:, 0].to(weights.dtype)
        if mode == "bicubic":
            out_w = out_w.clamp_min(0)  # bicubic overshoot must not make a loss weight negative
    lo, hi = torch.aminmax(labels) if labels.numel() else (torch.tensor(0), torch.tensor(0))
    if max(abs(int(lo)), abs(int(hi))) < 2**24:  # exact in float32: let grid_sample pick
        out_lab = F.grid_sample(
            padded(labels.unsqueeze(1).float()), norm.float(), mode="nearest", padding_mode=border,
            align_corners=True,
        )[:, 0].to(labels.dtype)
    else:  # huge ids: gather by index, exact for any int64
        sx = (norm[..., 0].double() + 1.0) * (max(w + 2 * pad - 1, 1) / 2.0) - pad
        sy = (norm[..., 1].double() + 1.0) * (max(h + 2 * pad - 1, 1) / 2.0) - pad
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
    if grid < 2:
        raise ValueError(f"grid must be >= 2, got {grid}")
    nodes = _randn((b, 2, grid, grid), generator, image.device) * float(sigma)
    # mirror-pad once by the field's reach, so grid_sample need not reflect every sample itself
    pad = math.ceil(_reach(nodes, h, w)) + 2
    if pad >= min(h, w):  # displacements beyond one mirror image: let grid_sample reflect
        pad = 0
    return _sample(image, labels, weights, _sampling_grid(nodes, h, w, pad), mode, pad)


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
    bias: float = 0.0, bias_grid: int = 4,
) -> Tensor:
    """Grey-value changes per sample and channel: gamma, contrast, brightness, Gaussian noise, and
    (``bias`` > 0) a smooth multiplicative field.

    Gamma acts on the sample's min..max range (so it works for any normalisation); brightness and
    noise are relative to the channel's standard deviation. Log-uniform gamma, uniform contrast.
    The field (:func:`bias_field`) scales each pixel's height above the sample's minimum by a factor
    between ``exp(-bias)`` and ``exp(bias)`` that varies smoothly over a ``bias_grid`` lattice: objects
    in one crop get different brightness, as cells of one field do (dim and bright cells side by side).
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
    if bias > 0:
        x = lo + (x - lo) * bias_field(b, c, image.shape[-2], image.shape[-1], bias=bias, grid=bias_grid,
                                       generator=generator, device=dev)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = x.std(dim=(-2, -1), keepdim=True) if x.shape[-1] * x.shape[-2] > 1 else torch.ones_like(mean)
    x = mean + (x - mean) * ctr + bright * std
    if noise > 0:
        x = x + _randn(tuple(image.shape), generator, dev) * (noise * std)
    return x.to(image.dtype)


def bias_field(
    b: int, c: int, h: int, w: int, *, bias: float, grid: int = 4,
    generator: torch.Generator | None = None, device: torch.device | str = "cpu",
) -> Tensor:
    """(B, C, H, W) smooth positive factors: ``exp`` of a log-field uniform in ``[-bias, bias]`` on a
    ``grid x grid`` lattice, bilinearly upsampled (corners aligned), so every factor lies in
    ``[exp(-bias), exp(bias)]``."""
    if grid < 2:
        raise ValueError(f"grid must be >= 2, got {grid}")
    if bias < 0:
        raise ValueError(f"bias must be >= 0, got {bias}")
    nodes = (2 * _rand((b, c, grid, grid), generator, device) - 1) * float(bias)
    return torch.exp(F.interpolate(nodes, size=(h, w), mode="bilinear", align_corners=True))


def augment_batch(
    image: Tensor, labels: Tensor, weights: Tensor | None = None, *,
    generator: torch.Generator | None = None, flips: bool = True, max_shift: int = 0,
    elastic: bool = True, grid: int = 3, sigma: float = 10.0, intensity: bool = True,
    contrast: float = 0.25, bias: float = 0.0,
) -> Triple:
    """The paper's augmentation chain: flips/rot90, shift, elastic deformation, grey-value changes
    (contrast factor uniform in ``1 ± contrast``; ``bias``: :func:`random_intensity`'s smooth field)."""
    if flips:
        image, labels, weights = random_flip_rot90(image, labels, weights, generator=generator)
    if max_shift > 0:
        image, labels, weights = random_shift(image, labels, weights, max_shift=max_shift, generator=generator)
    if elastic and sigma > 0:
        image, labels, weights = elastic_deform(
            image, labels, weights, grid=grid, sigma=sigma, generator=generator
        )
    if intensity:
        image = random_intensity(image, generator=generator, contrast=(1.0 - contrast, 1.0 + contrast), bias=bias)
    return image, labels, weights
