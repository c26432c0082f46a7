"""Overlap-tile inference for valid-convolution networks (U-Net paper, Fig. 2), for images of any size.

The image is mirrored at its borders by the network's context margin and cut into input tiles whose
valid outputs cover the image. Tile origins lie on a ``2**depth`` grid (a valid-conv U-Net is shift
equivariant only by multiples of that), so the stitched result equals one whole-image pass up to float
rounding, whatever the tile size. Tiles are cut lazily (reflection by index arithmetic, no padded copy
of the image) and streamed in batches; only the float32 (K, H, W) output is held (or written into an
``np.memmap`` given as ``out``).

Inputs must be normalised by the caller (see ``labseg.ml.io.normalize``).

The model must expose ``margin`` (context in px), ``depth`` (pooling steps; grid 2**depth),
``output_size(n)`` and ``input_size_for(n)``, as ``labseg.ml.unet.UNet`` does.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from labseg.ml.device import free_cuda_cache, is_oom

ProgressFn = Callable[[int, int], object]

#: Default output tile side per device type (clamped to the image size).
DEFAULT_TILE_OUTPUT = {"cpu": 256, "cuda": 512}


@dataclass
class TiledResult:
    """Probabilities with uncertainty maps from test-time augmentation.

    ``probs``: float32 (K, H, W), mean softmax over the augmentations. ``entropy``: float32 (H, W),
    entropy of ``probs`` divided by ln K (0 = certain, 1 = uniform). ``disagreement``: float32 (H, W),
    share of augmentations whose arg-max class differs from the arg-max of ``probs``.
    """

    probs: np.ndarray
    entropy: np.ndarray
    disagreement: np.ndarray


@dataclass(frozen=True)
class _AxisPlan:
    tile_in: int  # input tile side
    tile_out: int  # output side of one tile
    origins: tuple[int, ...]  # output-coordinate origins (multiples of the grid)


def reflect_index(index: np.ndarray, n: int) -> np.ndarray:
    """Map any integer positions to ``0..n-1`` by mirror reflection without repeating the edge
    (numpy's ``"reflect"`` mode), also for offsets larger than ``n``."""
    index = np.asarray(index)
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    i = np.mod(index, period)
    return np.where(i >= n, period - i, i)


def _axis_plan(size: int, tile_output: int, model: nn.Module) -> _AxisPlan:
    grid = 2 ** int(model.depth)
    want = max(min(int(tile_output), size), grid)
    tile_in = model.input_size_for(want)
    tile_out = model.output_size(tile_in)
    stride = max(grid, (tile_out // grid) * grid)
    n = 1 + max(0, math.ceil((size - tile_out) / stride))
    return _AxisPlan(tile_in, tile_out, tuple(k * stride for k in range(n)))


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        return p.dtype
    return torch.float32


def _as_chw(image: np.ndarray, model: nn.Module) -> np.ndarray:
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W) or (C, H, W), got shape {image.shape}")
    expected = getattr(model, "in_channels", None)
    if expected is not None and image.shape[0] != expected:
        raise ValueError(f"model expects {expected} channel(s), image has {image.shape[0]}")
    if image.shape[1] < 1 or image.shape[2] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
    return image


def _tiles(image: np.ndarray, py: _AxisPlan, px: _AxisPlan, margin: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(oy, ox, tile (C, tile_in_y, tile_in_x) float32)`` in row-major order."""
    _, h, w = image.shape
    for oy in py.origins:
        rows = reflect_index(np.arange(oy - margin, oy - margin + py.tile_in), h)
        for ox in px.origins:
            cols = reflect_index(np.arange(ox - margin, ox - margin + px.tile_in), w)
            yield oy, ox, np.asarray(image[:, rows[:, None], cols[None, :]], dtype=np.float32)


def _run_pass(
    model: nn.Module,
    image: np.ndarray,
    out: np.ndarray,
    tile_output: int,
    batch_size: int,
    device: torch.device,
    tick: Callable[[], None],
) -> None:
    """One tiled pass of ``model`` over ``image`` writing softmax into ``out`` (K, H, W)."""
    _, h, w = image.shape
    py, px = _axis_plan(h, tile_output, model), _axis_plan(w, tile_output, model)
    dtype = _model_dtype(model)
    pending: list[tuple[int, int, np.ndarray]] = []

    def flush() -> None:
        batch = torch.from_numpy(np.stack([t for _, _, t in pending])).to(device=device, dtype=dtype)
        probs = torch.softmax(model(batch).float(), dim=1).cpu().numpy()
        for (oy, ox, _), p in zip(pending, probs):
            hh, ww = min(py.tile_out, h - oy), min(px.tile_out, w - ox)
            out[:, oy : oy + hh, ox : ox + ww] = p[:, :hh, :ww]
            tick()
        pending.clear()

    for item in _tiles(image, py, px, int(model.margin)):
        pending.append(item)
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()


def _tile_count(shape: tuple[int, int], tile_output: int, model: nn.Module) -> int:
    return len(_axis_plan(shape[0], tile_output, model).origins) * len(_axis_plan(shape[1], tile_output, model).origins)


def _predict_into(
    model: nn.Module,
    image: np.ndarray,
    out: np.ndarray,
    tile_output: int,
    batch_size: int,
    device: torch.device,
    tick: Callable[[], None],
) -> None:
    """``_run_pass`` with an out-of-memory fallback: halve the batch, then the tile, then give up."""
    while True:
        try:
            _run_pass(model, image, out, tile_output, batch_size, device, tick)
            return
        except (RuntimeError, MemoryError) as error:
            if not is_oom(error):
                raise
            free_cuda_cache()
            grid = 2 ** int(model.depth)
            if batch_size > 1:
                batch_size //= 2
            elif tile_output > 2 * grid:
                tile_output //= 2
            else:
                raise


# The 8 symmetries of the square: (rotations k, flip); applied as rot90(flip(x), k) on the last two axes.
_DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]


def _forward_transform(x: np.ndarray, k: int, flip: bool) -> np.ndarray:
    if flip:
        x = x[..., ::-1]
    return np.rot90(x, k, axes=(-2, -1))


def _inverse_transform(x: np.ndarray, k: int, flip: bool) -> np.ndarray:
    x = np.rot90(x, -k, axes=(-2, -1))
    return x[..., ::-1] if flip else x


def _prepare(
    model: nn.Module, image: np.ndarray, tile_output: int | None, device: torch.device | str | None
) -> tuple[np.ndarray, int, torch.device]:
    image = _as_chw(np.asarray(image) if not isinstance(image, np.memmap) else image, model)
    device = torch.device(device) if device is not None else _model_device(model)
    if tile_output is None:
        tile_output = DEFAULT_TILE_OUTPUT.get(device.type, 256)
    if tile_output < 1:
        raise ValueError(f"tile_output must be >= 1, got {tile_output}")
    return image, int(tile_output), device


def _check_out(out: np.ndarray | None, shape: tuple[int, int, int]) -> np.ndarray:
    if out is None:
        return np.zeros(shape, np.float32)
    if tuple(out.shape) != shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 with shape {shape}, got {out.dtype} {tuple(out.shape)}")
    return out


def _tile_counter(total: int, progress: ProgressFn | None) -> Callable[[], None]:
    """A ``tick()`` to call after each tile: reports ``progress(done, total)`` when a callback is given."""
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    return tick


def predict_tiled_with_uncertainty(
    model: nn.Module,
    image: np.ndarray,
    *,
    tile_output: int | None = None,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    out: np.ndarray | None = None,
) -> TiledResult:
    """Test-time augmentation over the 8 flips/rotations: mean probabilities plus uncertainty maps.

    Each augmentation is a full overlap-tile pass on the transformed image, mapped back. See
    ``TiledResult`` for the maps; other arguments as in ``predict_tiled``.
    """
    image, tile_output, device = _prepare(model, image, tile_output, device)
    k_classes = int(model.num_classes)
    _, h, w = image.shape
    probs = _check_out(out, (k_classes, h, w))
    probs[...] = 0
    votes = np.zeros((k_classes, h, w), np.uint8)
    passes = [(k, f, _forward_transform(image, k, f)) for k, f in _DIHEDRAL]
    total = sum(_tile_count(t.shape[1:], tile_output, model) for _, _, t in passes)
    tick = _tile_counter(total, progress)

    with _eval_mode(model), torch.inference_mode():
        model.to(device)
        for k, flip, transformed in passes:
            part = np.zeros((k_classes,) + transformed.shape[1:], np.float32)
            _predict_into(model, transformed, part, tile_output, batch_size, device, tick)
            part = _inverse_transform(part, k, flip)
            probs += part
            winner = part.argmax(0)
            for c in range(k_classes):
                votes[c] += winner == c
    probs /= len(passes)
    consensus = probs.argmax(0)
    agree = np.take_along_axis(votes, consensus[None], 0)[0].astype(np.float32)
    disagreement = 1.0 - agree / len(passes)
    p = np.clip(probs, 1e-12, 1.0)
    entropy = -(p * np.log(p)).sum(0) / max(math.log(k_classes), 1e-12)
    return TiledResult(probs=probs, entropy=entropy.astype(np.float32), disagreement=disagreement.astype(np.float32))


class _eval_mode:
    """Context manager: put the model in eval mode, restore its training flag afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def predict_tiled(
    model: nn.Module,
    image: np.ndarray,
    *,
    tile_output: int | None = None,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    tta: bool = False,
    progress: ProgressFn | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Softmax probabilities float32 (K, H, W) for a normalised image (C, H, W) or (H, W) of any size.

    ``tile_output``: wanted output side of one tile (rounded up to a valid size, shrunk to the image;
    default 256 on CPU, 512 on CUDA); the result does not depend on it beyond float rounding.
    ``batch_size`` tiles go through the model at once. ``device``: where to run (default: the model's
    device; the model is moved there). ``tta=True`` averages the 8 flips/rotations (for the uncertainty
    maps use ``predict_tiled_with_uncertainty``). ``progress(done, total)`` is called after each tile.
    ``out``: optional float32 (K, H, W) array (e.g. ``np.memmap``) written in place and returned.
    On out-of-memory the batch, then the tile size, is halved and the pass retried.
    """
    if tta:
        return predict_tiled_with_uncertainty(
            model, image, tile_output=tile_output, batch_size=batch_size, device=device, progress=progress, out=out
        ).probs
    image, tile_output, device = _prepare(model, image, tile_output, device)
    _, h, w = image.shape
    result = _check_out(out, (int(model.num_classes), h, w))
    total = _tile_count((h, w), tile_output, model)
    tick = _tile_counter(total, progress)

    with _eval_mode(model), torch.inference_mode():
        model.to(device)
        _predict_into(model, image, result, tile_output, batch_size, device, tick)
    return result
