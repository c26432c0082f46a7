"""U-Net training from dense masks or sparse scribbles, and self-describing checkpoints.

``fit`` trains ``labseg.ml.unet.UNet`` with the paper's recipe adapted to few labels: softmax
cross-entropy weighted per pixel by ``labseg.ml.weights.weight_map`` (class balance + touching-border
term, exactly 0 on unlabelled pixels), crops centred on labelled pixels (class-balanced), and the
paper's augmentation on the training device (flips/rot90, elastic 3x3 grid with 10 px std, grey values;
``labseg.ml.augment.augment_batch``). Adam with warm-up + cosine decay by default; SGD with momentum
0.99 as in the paper is available. Training stops at ``steps`` or ``max_seconds``, or when
``progress(...)`` returns False / raises ``TrainingCancelled``.

A checkpoint (``save_checkpoint`` / ``load_checkpoint``) holds the network config and weights, the
training config, the input normalisation, the class names, the history and provenance, so loading it
needs nothing else.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi
from torch.nn import functional as F

from labseg.ml.augment import augment_batch
from labseg.ml.config_bounds import bound_error
from labseg.ml.device import DEVICE_CHOICES, configure_threads, pick_device
from labseg.ml.io import normalize
from labseg.ml.postprocess import instances_from_probs, object_radius
from labseg.ml.tiling import predict_tiled, reflect_index
from labseg.ml.unet import UNet, centre_crop, input_size_for
from labseg.ml.weights import BALANCE_CHOICES, weight_map

CHECKPOINT_FORMAT = "labseg.unet/1"
ProgressFn = Callable[..., Any]


class TrainingCancelled(Exception):
    """Raise from a ``progress`` callback (or return False from it) to stop ``fit`` cleanly."""


@dataclass
class TrainConfig:
    """Training hyper-parameters. The defaults are the few-label CPU preset (a few minutes on 2 cores)."""

    # network
    base_channels: int = 16
    depth: int = 3
    dropout: float = 0.1
    batch_norm: bool = False
    num_classes: int | None = None  # None: the largest class value in the masks (at least 2)
    # budget
    steps: int = 800
    max_seconds: float | None = 270.0
    # data
    batch_size: int = 4
    tile_output: int = 64  # output side of one training crop; the input adds 2 * margin
    jitter: float = 0.5  # crop centre moves up to jitter * tile_output / 2 from the labelled pixel
    norm_low: float = 1.0
    norm_high: float = 99.8
    # optimisation
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.99
    weight_decay: float = 1e-5
    warmup_steps: int = 20
    # loss
    w0: float = 10.0
    sigma: float = 5.0
    balance: str | None = "inverse"
    # scribble regulariser: Potts/CRF loss on all pixels (Tang et al. 2018), boundaries follow edges
    crf_weight: float = 0.0  # off by default: it hurt on the real benchmark sets (bench/fewlabel.py)
    crf_sigma: float = 0.15  # intensity scale of the affinity, in normalised units
    crf_radius: int = 8  # neighbour offsets 1, 2, 4, .. up to this distance
    # self-training on sparse labels: the network's own confident prediction labels the unlabelled pixels
    # (touching predicted objects get the paper's separation borders + border weights), then training goes on
    self_training: int = 0  # extra rounds (0 = off, the default: see bench/fewlabel.py); only on sparse labels
    pseudo_low: float = 0.1  # foreground probability below this: background
    pseudo_high: float = 0.9  # above this, inside a predicted object: that object's class
    pseudo_edge: int = 0  # px along each predicted object's outline left unlabelled
    # threshold prior on sparse labels: unlabelled pixels that the threshold baseline (fitted on the same
    # labels) calls clearly background / clearly object are labelled so, with this weight (0 = off).
    # None: MEMBRANE_PRIOR_WEIGHT where the painted background is membranes between objects (EM:
    # postprocess.painted_split says "boundaries"), else off (it hurt on nuclei and rods: bench/fewlabel.py)
    prior_weight: float | None = None
    # intensity gate: predicted object pixels that the threshold baseline, fitted on the same labels, calls
    # background are dropped (labseg.ml.baselines.IntensityGate). Applied by the callers of the network (the
    # app's predictions and validation scores, the benchmark), only where objects are split by shape (not on
    # painted membranes) and the threshold keeps >= 90 % of every painted object class (bench/fewlabel.py)
    intensity_gate: bool = True
    # intensity-aware split: where a predicted foreground is merged colonies, touching objects are split by a
    # watershed on the distance transform plus the channels projected from painted background to painted
    # objects (objects bright on it, dark rods and haematoxylin too: labseg.ml.baselines.SplitIntensity,
    # labseg.ml.postprocess.split_where_merged). Applied by the callers, where objects are split by shape and
    # were not painted whole (bench/fewlabel.py)
    intensity_split: bool = True
    # edge calibration: within one object radius of the network's objects, their edges are redrawn at the one grey
    # level of each predicted image that best reproduces the network's own foreground on it (dim cytoplasm of a
    # dimmer image, halos: labseg.ml.baselines.calibrate_edges). Applied by the callers, where objects are split
    # by shape. Always on, it lifted Huh7 (whole cells, dim cytoplasm) a lot and cost HeLa and trpL foreground IoU,
    # so it depends on how a lab outlines its objects. None (auto, the default): the run's held-out labels choose
    # (labseg.ml.baselines.choose_edges: on where it lifts their foreground IoU; off with nothing held out); over the
    # real sets, run as the app runs, auto beat both always and never (README, bench/fewlabel.py --holdout)
    edge_calibration: bool | None = None
    # augmentation
    flips: bool = True
    max_shift: int = 0
    elastic: bool = True
    elastic_grid: int = 3
    elastic_sigma: float = 10.0
    intensity: bool = True
    intensity_contrast: float = 0.25  # contrast factor uniform in 1 +- this
    bias_field: float = 0.0  # smooth brightness field: factors exp(-b)..exp(b) over the crop (0 = off)
    # run
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None  # None / 0: free cores minus one
    log_every: int = 10

    def validate(self) -> TrainConfig:
        """Raise ValueError with a clear message on the first bad value; return self."""
        checks = [
            (self.base_channels >= 1, "base_channels must be >= 1"),
            (1 <= self.depth <= 6, "depth must be between 1 and 6"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (self.num_classes is None or self.num_classes >= 2, "num_classes must be >= 2"),
            (self.steps >= 1, "steps must be >= 1"),
            (self.max_seconds is None or self.max_seconds > 0, "max_seconds must be > 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.tile_output >= 1, "tile_output must be >= 1"),
            (0.0 <= self.jitter <= 1.0, "jitter must be in [0, 1]"),
            (0.0 <= self.norm_low < self.norm_high <= 100.0, "need 0 <= norm_low < norm_high <= 100"),
            (self.optimizer in ("adam", "sgd"), "optimizer must be 'adam' or 'sgd'"),
            (self.lr > 0, "lr must be > 0"),
            (0.0 <= self.momentum < 1.0, "momentum must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (self.w0 >= 0, "w0 must be >= 0"),
            (self.sigma > 0, "sigma must be > 0"),
            (self.balance in BALANCE_CHOICES, f"balance must be one of {BALANCE_CHOICES}"),
            (self.crf_weight >= 0, "crf_weight must be >= 0"),
            (self.crf_sigma > 0, "crf_sigma must be > 0"),
            (self.crf_radius >= 1, "crf_radius must be >= 1"),
            (0 <= self.self_training <= 5, "self_training must be between 0 and 5 rounds"),
            (0.0 < self.pseudo_low < self.pseudo_high < 1.0, "need 0 < pseudo_low < pseudo_high < 1"),
            (0 <= self.pseudo_edge <= 50, "pseudo_edge must be between 0 and 50 px"),
            (self.prior_weight is None or 0.0 <= self.prior_weight <= 1.0, "prior_weight must be in [0, 1]"),
            (self.max_shift >= 0, "max_shift must be >= 0"),
            (self.elastic_grid >= 2, "elastic_grid must be >= 2"),
            (self.elastic_sigma >= 0, "elastic_sigma must be >= 0"),
            (0.0 <= self.intensity_contrast < 1.0, "intensity_contrast must be in [0, 1)"),
            (self.bias_field >= 0, "bias_field must be >= 0"),
            (self.device in DEVICE_CHOICES or str(self.device).startswith("cuda:"),
             f"device must be one of {DEVICE_CHOICES}"),
            (self.num_threads is None or self.num_threads >= 0, "num_threads must be >= 0"),
            (self.log_every >= 1, "log_every must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(name: str, value: Any, annotation: str) -> Any:
    """Convert a JSON value to the field's type; ValueError with the field name otherwise."""
    optional = "None" in annotation
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} must not be null")
    base = annotation.replace("| None", "").strip()
    if base == "bool":
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a number, got {value!r}")
        return float(value)
    if base == "str":
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
        return value
    return value  # pragma: no cover - every field has one of the types above


def validate_config_overrides(overrides: dict | None, base: TrainConfig | None = None) -> TrainConfig:
    """``TrainConfig`` from ``base`` (default preset) with ``overrides`` applied and validated.

    Raises ValueError naming unknown keys, wrongly typed or out-of-range values (the API maps it to 400).
    """
    overrides = dict(overrides or {})
    if not isinstance(overrides, dict):  # pragma: no cover - dict() above already fails
        raise ValueError("hyper-parameters must be an object")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown training option(s): {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}")
    values = dataclasses.asdict(base or TrainConfig())
    for key, value in overrides.items():
        problem = bound_error(key, value)  # before _coerce: float(10**400) would raise OverflowError
        if problem:
            raise ValueError(problem)
        values[key] = _coerce(key, value, str(fields[key].type))
    return TrainConfig(**values).validate()


#: A training crop's input (its output plus the network's context on every side) spans at least this many object
#: diameters (``sized_crops``): each output pixel sees the object it lies in and its neighbours.
CROP_DIAMETERS = 3
#: The largest output side ``sized_crops`` grows a crop to (larger objects are learnt from their parts).
SIZED_TILE_MAX = 256


def sized_crops(config: TrainConfig, radius: float | None) -> TrainConfig:
    """``config`` with training crops that hold the objects: where ``CROP_DIAMETERS`` object diameters (``radius``,
    px: from the objects painted whole or the project's object size) exceed the input crop, the output side grows
    (a multiple of 8, at most ``SIZED_TILE_MAX``) until the input holds them, and the batch shrinks so that a
    step's input crops cover about as many pixels as before (at least one crop), keeping the time per step.
    Smaller objects, or None: ``config`` unchanged (the preset's 64-px output has a 156-px input: objects up to
    a 26-px radius). Returns a copy; ``config`` is not changed.

    Why not more: growing the preset's crops to 4 radii (64 to 72 px on Huh7's 17.5-17.9-px cells, batch kept)
    cost 0.04 fg IoU with objects painted whole (3 seeds) and moved dense labels by +0.004 (2 seeds)
    (``bench/fewlabel.py``); the input's context already holds several such cells."""
    if radius is None or not math.isfinite(radius):
        return config
    need = 2 * CROP_DIAMETERS * radius
    before = input_size_for(config.tile_output, config.depth)
    tile = config.tile_output
    while input_size_for(tile, config.depth) < need and tile < SIZED_TILE_MAX:
        tile = min(SIZED_TILE_MAX, 8 * (tile // 8 + 1))
    if tile == config.tile_output:
        return config
    # a step's cost is the input crops' area (the output plus the network's context margin on every side)
    batch = max(1, round(config.batch_size * (before / input_size_for(tile, config.depth)) ** 2))
    return dataclasses.replace(config, tile_output=tile, batch_size=batch)


# ----------------------------------------------------------------------------------------- data


def _as_list(x: Any) -> list:
    if isinstance(x, np.ndarray):
        return [x]
    return list(x)


@dataclass
class _Sample:
    image: np.ndarray  # normalised float32 (C, H, W)
    labels: np.ndarray  # the class mask as given: 0 unlabelled, 1 background, 2.. objects
    targets: np.ndarray  # int64 (H, W): class index (class value - 1), 0 where unlabelled
    weights: np.ndarray  # float32 (H, W), 0 where unlabelled
    by_class: list[np.ndarray] = field(default_factory=list)  # flat indices of labelled pixels per class


def _prepare_samples(images: Sequence, classes: Sequence, instances: Sequence | None, config: TrainConfig,
                     weights: Sequence | None = None, normalized: bool = False) -> list[_Sample]:
    images, classes = _as_list(images), _as_list(classes)
    instances = [None] * len(images) if instances is None else _as_list(instances)
    weights = [None] * len(images) if weights is None else _as_list(weights)
    if not images:
        raise ValueError("no training images")
    if not (len(images) == len(classes) == len(instances) == len(weights)):
        raise ValueError(f"got {len(images)} images, {len(classes)} class masks, {len(instances)} instance masks, "
                         f"{len(weights)} weight maps")
    samples, channels = [], None
    for k, (img, cls, inst, wmap) in enumerate(zip(images, classes, instances, weights)):
        img = np.asarray(img)
        img = img[None] if img.ndim == 2 else img
        cls = np.asarray(cls)
        if img.ndim != 3 or cls.shape != img.shape[1:]:
            raise ValueError(f"image {k}: image {img.shape} and class mask {cls.shape} do not match (C, H, W) / (H, W)")
        if not np.issubdtype(cls.dtype, np.integer) or cls.min(initial=0) < 0:
            raise ValueError(f"image {k}: the class mask must hold non-negative integers")
        if channels is not None and img.shape[0] != channels:
            raise ValueError(f"image {k} has {img.shape[0]} channels, the first one {channels}")
        channels = img.shape[0]
        if inst is not None and np.asarray(inst).shape != cls.shape:
            raise ValueError(f"image {k}: instance mask {np.asarray(inst).shape} != class mask {cls.shape}")
        if wmap is None:
            wmap = weight_map(cls, inst, w0=config.w0, sigma=config.sigma, balance=config.balance)
        else:
            wmap = np.asarray(wmap, dtype=np.float32)
            if wmap.shape != cls.shape:
                raise ValueError(f"image {k}: weight map {wmap.shape} != class mask {cls.shape}")
            if np.any(wmap[cls == 0] != 0):
                raise ValueError(f"image {k}: the weight map must be 0 on unlabelled pixels")
        flat = cls.ravel()
        by_class = [np.flatnonzero(flat == v) for v in np.unique(flat) if v > 0]
        samples.append(_Sample(
            image=img.astype(np.float32) if normalized else normalize(img, config.norm_low, config.norm_high),
            labels=cls,
            targets=np.maximum(cls.astype(np.int64) - 1, 0),
            weights=wmap,
            by_class=by_class,
        ))
    if not any(s.by_class for s in samples):
        raise ValueError("no labelled pixels: paint at least one stroke (class mask values > 0)")
    return samples


def _crop_batch(
    samples: list[_Sample], rng: np.random.Generator, batch: int, tile_in: int, tile_out: int, jitter: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``batch`` input-sized crops centred near labelled pixels (class chosen uniformly, then a pixel).

    The image is mirrored outside its borders; targets/weights are 0 there (no invented labels).
    """
    labelled = [s for s in samples if s.by_class]
    xs, ts, ws = [], [], []
    half = tile_in // 2
    reach = int(jitter * tile_out / 2)
    for _ in range(batch):
        s = labelled[rng.integers(len(labelled))]
        pixels = s.by_class[rng.integers(len(s.by_class))]
        cy, cx = np.unravel_index(pixels[rng.integers(len(pixels))], s.targets.shape)
        cy += int(rng.integers(-reach, reach + 1))
        cx += int(rng.integers(-reach, reach + 1))
        h, w = s.targets.shape
        ry = np.arange(cy - half, cy - half + tile_in)
        rx = np.arange(cx - half, cx - half + tile_in)
        xs.append(s.image[:, reflect_index(ry, h)[:, None], reflect_index(rx, w)[None, :]])
        inside = ((ry >= 0) & (ry < h))[:, None] & ((rx >= 0) & (rx < w))[None, :]
        cy_i, cx_i = np.clip(ry, 0, h - 1), np.clip(rx, 0, w - 1)
        ts.append(s.targets[cy_i[:, None], cx_i[None, :]])
        ws.append(np.where(inside, s.weights[cy_i[:, None], cx_i[None, :]], 0.0).astype(np.float32))
    return np.stack(xs), np.stack(ts), np.stack(ws)


# ---------------------------------------------------------------------------------- model / init


def build_model(config: dict) -> UNet:
    """A ``UNet`` from its ``config`` dict (``UNet.config``)."""
    return UNet(**config)


def _state_and_config(init: Any) -> tuple[dict, dict | None]:
    """Accept a state dict, a checkpoint dict, a UNet or a checkpoint path; return (state, model config)."""
    if isinstance(init, (str, os.PathLike)):
        init = torch.load(init, map_location="cpu", weights_only=True)
    if isinstance(init, UNet):
        return init.state_dict(), init.config
    if isinstance(init, dict) and "state_dict" in init:
        return init["state_dict"], init.get("model_config")
    if isinstance(init, dict):
        return init, None
    raise ValueError(f"init must be a state dict, a checkpoint (dict or path) or a UNet, got {type(init).__name__}")


def _init_model(init: Any, in_channels: int, num_classes: int, config: TrainConfig) -> UNet:
    state, model_config = _state_and_config(init)
    first = state.get("down.0.0.weight")
    head = state.get("head.weight")
    if first is None or head is None:
        raise ValueError("init is not a LabSeg U-Net state dict (no down.0.0.weight / head.weight)")
    if first.shape[1] != in_channels:
        raise ValueError(f"init model expects {first.shape[1]} input channel(s), the images have {in_channels}")
    if head.shape[0] != num_classes:
        raise ValueError(f"init model predicts {head.shape[0]} classes, the masks need {num_classes}")
    if model_config is None:  # infer the architecture from the weights
        depth = sum(1 for k in state if k.startswith("down.") and k.endswith(".0.weight"))
        model_config = {"in_channels": in_channels, "num_classes": num_classes, "base_channels": int(first.shape[0]),
                        "depth": depth, "dropout": config.dropout,
                        "batch_norm": any("running_mean" in k for k in state)}
    model = build_model({**model_config, "dropout": config.dropout})
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"init weights do not fit the network: {error}") from error
    return model


# ---------------------------------------------------------------------------------------- training


def _lr_factor(step: int, config: TrainConfig, elapsed: float, seconds: float | None = None) -> float:
    """Linear warm-up, then cosine decay over the step budget or the time budget, whichever is nearer.

    ``step`` / ``elapsed`` count from the start of the current round; ``seconds``: that round's time
    budget (default ``config.max_seconds``)."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    frac = max(step / config.steps, _budget_fraction(config, elapsed, seconds))
    return 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))


def _budget_fraction(config: TrainConfig, elapsed: float, seconds: float | None = None) -> float:
    """Share of the (round's) time budget used (0 without one)."""
    budget = config.max_seconds if seconds is None else seconds
    return elapsed / budget if budget else 0.0


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum of per-pixel weighted softmax cross-entropy divided by the weight sum (0 if no weight)."""
    ce = F.cross_entropy(logits, targets, reduction="none")
    total = weights.sum()
    return (ce * weights).sum() / total.clamp_min(1e-8)


def crf_loss(probs: torch.Tensor, image: torch.Tensor, sigma: float = 0.15, radius: int = 8) -> torch.Tensor:
    """Pairwise Potts loss on soft labels with intensity affinities (a local dense-CRF loss).

    Mean over pixel pairs (i, j) at offsets (0, d), (d, 0), (d, d), (d, -d), d = 1, 2, 4, .. <= radius,
    of ``a_ij * (1 - <p_i, p_j>)`` with ``a_ij = exp(-|x_i - x_j|^2 / (2 sigma^2))``. Long-range pairs make
    the position of a boundary matter (not only its sharpness): a boundary in a flat region separates
    similar pixels and costs, one on an intensity edge is cheap.
    It is small when label changes sit on intensity edges, so with sparse scribbles the unlabelled
    pixels between strokes take the label that the image edges support instead of whatever the
    network extrapolates (Tang et al., "On Regularized Losses for Weakly-supervised CNN Segmentation",
    ECCV 2018). ``probs`` (B, K, H, W) softmax, ``image`` (B, C, H, W) aligned with it.
    """
    total = probs.new_zeros(())
    distances = [2**k for k in range(int(math.log2(radius)) + 1)]
    for d in distances:
        for dy, dx in ((0, d), (d, 0), (d, d), (d, -d)):
            h, w = probs.shape[-2] - dy, probs.shape[-1] - abs(dx)
            x0, x1 = (0, dx) if dx >= 0 else (-dx, 0)
            pa, pb = probs[..., :h, x0 : x0 + w], probs[..., dy : dy + h, x1 : x1 + w]
            ia, ib = image[..., :h, x0 : x0 + w], image[..., dy : dy + h, x1 : x1 + w]
            affinity = torch.exp(-((ia - ib) ** 2).sum(1) / (2.0 * sigma * sigma))
            total = total + (affinity * (1.0 - (pa * pb).sum(1))).mean()
    norm = 4 * len(distances)
    return total / norm


def fit(
    images: Sequence | np.ndarray,
    classes: Sequence | np.ndarray,
    instances: Sequence | np.ndarray | None = None,
    config: TrainConfig | None = None,
    init: Any = None,
    progress: ProgressFn | None = None,
    weights: Sequence | np.ndarray | None = None,
    on_round_end: Callable[[int, int, UNet, dict], None] | None = None,
) -> tuple[UNet, dict]:
    """Train a U-Net; return ``(model in eval mode on the CPU, history)``.

    ``images``: one or a list of (C, H, W) / (H, W) arrays (raw; normalised here per image and channel
    with the config's percentiles). ``classes``: matching uint8 masks, 0 unlabelled, 1 background,
    2.. object classes (network output k is class value k + 1). ``instances``: optional instance masks
    (enable the touching-border weights). ``init``: state dict / checkpoint (dict or path) / UNet to
    fine-tune from; its architecture is kept and a channel or class mismatch raises ValueError.
    ``progress(step, loss, **info)`` is called every ``log_every`` steps and at the end (``info`` holds
    ``steps``, ``lr``, ``elapsed``, and ``round`` / ``rounds``: the current round, 1-based, of how many);
    returning False or raising ``TrainingCancelled`` stops training. ``on_round_end(round, rounds, model,
    history)`` is called after each round that was not cancelled, with the model in eval mode (e.g. to
    score the validation images per round); it may raise to stop training.
    Deterministic for a seed on one device when ``max_seconds`` is None (the schedule then follows steps only).
    ``weights``: optional precomputed per-pixel loss weights, one float32 (H, W) map per image (e.g. cached
    per annotation version by the app); default: ``weight_map(classes, instances, w0, sigma, balance)``.

    ``history``: ``loss`` and ``lr`` per step, ``steps`` (over all rounds), ``seconds``, ``stop_reason``
    ("steps", "time" or "cancelled"), ``normalization``, ``num_classes``, ``in_channels``, ``config``,
    ``rounds`` (steps, seconds so far and labelled share of each round).

    Self-training (``config.self_training`` rounds, only when most pixels are unlabelled): after
    ``steps`` steps the network predicts its training images, ``pseudo_labels`` turns its confident
    answer into labels for the unlabelled pixels (the user's labels win), with separation borders where
    predicted objects touch and the paper's border weights on them, and training goes on for another
    ``steps`` steps with a fresh optimizer. Scribbles say nothing about where two touching nuclei part;
    this round teaches it. ``max_seconds`` covers all rounds; progress counts their steps together.
    """
    config = (config or TrainConfig()).validate()
    configure_threads(config.num_threads)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)

    samples = _prepare_samples(images, classes, instances, config, weights)
    in_channels = samples[0].image.shape[0]
    max_class = max(int(s.targets.max()) + 1 for s in samples)
    num_classes = config.num_classes or max(2, max_class)
    if max_class > num_classes:
        raise ValueError(f"class value {max_class} exceeds num_classes={num_classes}")
    if init is not None:
        model = _init_model(init, in_channels, num_classes, config)
    else:
        model = UNet(in_channels, num_classes, config.base_channels, config.depth, config.dropout, config.batch_norm)
    model.to(device).train()
    tile_in = model.input_size_for(config.tile_output)
    tile_out = model.output_size(tile_in)

    sparse = _mostly_unlabelled(samples)
    prior = _prior_weight(config, samples, instances) if sparse else 0.0
    if prior > 0:
        samples = _with_threshold_prior(samples, prior)
    rounds = config.self_training if sparse else 0
    total_steps = config.steps * (1 + rounds)
    history: dict = {"loss": [], "lr": [], "steps": 0, "seconds": 0.0, "stop_reason": "steps",
                     "normalization": {"method": "percentile", "low": config.norm_low, "high": config.norm_high},
                     "num_classes": num_classes, "in_channels": in_channels, "config": config.to_dict(),
                     "model_config": model.config, "tile_input": tile_in, "device": str(device), "rounds": [],
                     "prior_weight": prior}
    start = time.monotonic()
    current_round = [1]

    def report(step: int, loss: float) -> bool:
        if progress is None:
            return True
        try:
            keep_going = progress(step, loss, steps=total_steps, lr=history["lr"][-1],
                                  elapsed=time.monotonic() - start, round=current_round[0], rounds=1 + rounds)
        except TrainingCancelled:
            return False
        return keep_going is not False

    for round_ in range(1 + rounds):
        current_round[0] = round_ + 1
        if round_ > 0:  # relabel the unlabelled pixels with the network's own confident prediction
            model.eval()
            tta = sum(s.labels.size for s in samples) <= PSEUDO_TTA_PIXELS
            labels = [pseudo_labels(predict_tiled(model, s.image, device=device, tta=tta), s.labels, s.image,
                                    low=config.pseudo_low, high=config.pseudo_high, edge=config.pseudo_edge)
                      for s in samples]
            samples = _prepare_samples([s.image for s in samples], [c for c, _ in labels], [i for _, i in labels],
                                       config, normalized=True)
            model.train()
        seconds = None
        if config.max_seconds is not None:  # what is left of the budget, shared by the rounds still to come
            seconds = max(config.max_seconds - (time.monotonic() - start), 0.0) / (1 + rounds - round_)
        labelled = float(np.mean([(s.labels > 0).mean() for s in samples]))
        done = _train_round(model, samples, config, device, rng, generator, tile_in, tile_out, seconds,
                            history, report)
        history["rounds"].append({"steps": done, "seconds": round(time.monotonic() - start, 3),
                                  "labelled_fraction": round(labelled, 4), "pseudo_labels": round_ > 0})
        if history["stop_reason"] == "cancelled":
            break
        if on_round_end is not None:
            model.eval()
            on_round_end(round_ + 1, 1 + rounds, model, history)
            model.train()
    history["seconds"] = time.monotonic() - start
    model.eval()
    return model.cpu(), history


PSEUDO_TTA_PIXELS = 4_000_000  # pseudo-labels use the 8-fold test-time augmentation up to this many pixels


#: The threshold prior's weight when ``TrainConfig.prior_weight`` is None and the painted background is
#: membranes between objects. Chosen on CREMI (EM), the one membrane set of bench/fewlabel.py: with 3
#: neurites painted the U-Net's foreground IoU went from 0.57 to 0.80 (3 seeds); 0.1 did less on seed 0.
MEMBRANE_PRIOR_WEIGHT = 0.3


def _prior_weight(config: TrainConfig, samples: list[_Sample], instances: Any) -> float:
    """The threshold prior weight of this run: the config's, or for None, ``MEMBRANE_PRIOR_WEIGHT`` where
    ``painted_split`` calls the labels "boundaries" (0 otherwise)."""
    if config.prior_weight is not None:
        return config.prior_weight
    from labseg.ml.postprocess import painted_split

    # _prepare_samples has checked that there is one instance mask (or None) per sample
    split = painted_split([s.labels for s in samples], None if instances is None else _as_list(instances))
    return MEMBRANE_PRIOR_WEIGHT if split == "boundaries" else 0.0


def _with_threshold_prior(samples: list[_Sample], weight: float, low: float = 0.1, high: float = 0.9) -> list[_Sample]:
    """The samples with their unlabelled pixels labelled by the threshold baseline where it is clear.

    The baseline (``labseg.ml.baselines.ThresholdBaseline``) is fitted on the same labels; an unlabelled
    pixel whose soft score is below ``low`` becomes background, above ``high`` the painted object class
    (only when one object class was painted; with several, only background), each with loss weight
    ``weight`` (the painted pixels keep theirs). Crops are still drawn near the painted pixels."""
    from labseg.ml.baselines import ThresholdBaseline

    labelled = [s for s in samples if (s.labels >= 2).any() and (s.labels == 1).any()]
    if not labelled:
        return samples
    baseline = ThresholdBaseline().fit([s.image for s in labelled], [s.labels for s in labelled])
    one_class = len({int(v) for s in samples for v in np.unique(s.labels) if v >= 2}) == 1
    out = []
    for s in samples:
        score = baseline.foreground(s.image)
        free = s.labels == 0
        bg = free & (score < low)
        fg = free & (score > high) if one_class else np.zeros_like(free)
        targets, weights = s.targets.copy(), s.weights.copy()
        targets[bg] = 0
        targets[fg] = baseline.object_class - 1
        weights[bg | fg] = weight
        out.append(dataclasses.replace(s, targets=targets, weights=weights))
    return out


def _mostly_unlabelled(samples: list[_Sample]) -> bool:
    """Sparse labels (scribbles): more than half of all pixels unlabelled."""
    labelled = sum(int((s.labels > 0).sum()) for s in samples)
    return labelled < 0.5 * sum(s.labels.size for s in samples)


def _train_round(model: UNet, samples: list[_Sample], config: TrainConfig, device: torch.device,
                 rng: np.random.Generator, generator: torch.Generator, tile_in: int, tile_out: int,
                 seconds: float | None, history: dict, report: Callable[[int, float], bool]) -> int:
    """Up to ``config.steps`` steps (or ``seconds``) with a fresh optimizer and schedule; returns the steps done.

    Appends to ``history`` (loss, lr, steps counted over all rounds) and sets its ``stop_reason``."""
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
    began, offset = time.monotonic(), history["steps"]
    history["stop_reason"] = "steps"
    for step in range(config.steps):
        elapsed = time.monotonic() - began
        if seconds is not None and elapsed >= seconds:
            history["stop_reason"] = "time"
            return step
        for group in optimizer.param_groups:
            group["lr"] = config.lr * _lr_factor(step, config, elapsed, seconds)
        x, t, w = _crop_batch(samples, rng, config.batch_size, tile_in, tile_out, config.jitter)
        x, t, w = (torch.from_numpy(a).to(device) for a in (x, t, w))
        x, t, w = augment_batch(
            x, t, w, generator=generator, flips=config.flips, max_shift=config.max_shift, elastic=config.elastic,
            grid=config.elastic_grid, sigma=config.elastic_sigma, intensity=config.intensity,
            contrast=config.intensity_contrast, bias=config.bias_field,
        )
        logits = model(x)
        t = centre_crop(t, tile_out, tile_out)
        w = centre_crop(w, tile_out, tile_out)
        loss = weighted_cross_entropy(logits, t, w)
        if config.crf_weight > 0:  # ramped in over the first third, after the scribbles set the classes
            ramp = min(1.0, 3.0 * max(step / config.steps, _budget_fraction(config, elapsed, seconds)))
            x_out = centre_crop(x, tile_out, tile_out)
            loss = loss + ramp * config.crf_weight * crf_loss(torch.softmax(logits, 1), x_out, config.crf_sigma,
                                                       config.crf_radius)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        history["loss"].append(value)
        history["lr"].append(optimizer.param_groups[0]["lr"])
        history["steps"] = offset + step + 1
        if ((step + 1) % config.log_every == 0 or step + 1 == config.steps) and not report(history["steps"], value):
            history["stop_reason"] = "cancelled"
            return step + 1
    return config.steps


def pseudo_labels(probs: np.ndarray, classes: np.ndarray, image: np.ndarray | None = None, *,
                  low: float = 0.1, high: float = 0.9, edge: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Self-training labels from a prediction: ``(class mask uint8, instances int32)``, both (H, W).

    ``probs`` (K, H, W) softmax of the network on the training image, ``classes`` the user's labels
    (they always win). Unlabelled pixels become background where the foreground probability is below
    ``low`` and the predicted object class where it is above ``high`` inside an object of
    ``instances_from_probs``; pixels where two predicted objects touch become background, the
    separation borders of the paper, and the returned instances give them its border weights.
    ``edge`` > 0 leaves that many pixels along each object's outline unlabelled (where a network
    trained on far-away background strokes is least sure where the object ends). Everything else
    stays unlabelled (0).
    """
    probs = np.asarray(probs, np.float32)
    classes = np.asarray(classes)
    foreground = 1.0 - probs[0]
    # a radius given: the grey values, when passed, always take part (not only in merged colonies)
    radius = None if image is None else object_radius(foreground=foreground > 0.5)
    objects = instances_from_probs(foreground, image=image, radius=radius)
    out = np.zeros(classes.shape, np.uint8)
    out[foreground < low] = 1
    sure = (objects > 0) & (probs[1:].max(0) > high)
    if edge > 0:
        sure &= ndi.distance_transform_edt(objects > 0) > edge
    out[sure] = (probs[1:].argmax(0) + 2)[sure]
    touching = np.zeros(classes.shape, bool)
    padded = np.pad(objects, 1)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        other = padded[dy:dy + objects.shape[0], dx:dx + objects.shape[1]]
        touching |= (objects > 0) & (other > 0) & (other != objects)
    out[touching] = 1
    out[classes > 0] = classes[classes > 0]
    instances = np.where(touching | (out < 2), 0, objects).astype(np.int32)
    return out, instances


# -------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    path: str | os.PathLike,
    model: UNet,
    config: TrainConfig | dict | None = None,
    normalization: dict | None = None,
    class_names: Sequence[str] | None = None,
    history: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """Write a self-describing checkpoint (``torch.save`` of plain data + tensors); return the dict.

    ``class_names[k]`` names network output k (class value k + 1). Loading needs nothing else.
    """
    if isinstance(config, TrainConfig):
        config = config.to_dict()
    if normalization is None and history is not None:
        normalization = history.get("normalization")
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "model_config": model.config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_config": config or {},
        "normalization": normalization or {"method": "percentile", "low": 1.0, "high": 99.8},
        "class_names": list(class_names) if class_names is not None else
        ["background"] + [f"class {k}" for k in range(2, model.num_classes + 1)],
        "history": _plain(history or {}),
        "extra": _plain(extra or {}),
        "versions": {"torch": str(torch.__version__), "numpy": str(np.__version__)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)
    return checkpoint


def _plain(value: Any) -> Any:
    """Plain Python data (for ``weights_only`` loading): numpy scalars/arrays become Python lists/numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[UNet, dict]:
    """Read a checkpoint written by ``save_checkpoint``: ``(model in eval mode, checkpoint dict)``."""
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{os.fspath(path)} is not a LabSeg U-Net checkpoint ({CHECKPOINT_FORMAT})")
    model = build_model(checkpoint["model_config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint


def apply_normalization(image: np.ndarray, normalization: dict | None) -> np.ndarray:
    """Normalise a raw image (C, H, W) / (H, W) the way the checkpoint's model was trained."""
    normalization = normalization or {}
    method = normalization.get("method", "percentile")
    if method != "percentile":
        raise ValueError(f"unknown normalisation method {method!r}")
    return normalize(image, normalization.get("low", 1.0), normalization.get("high", 99.8))


# ------------------------------------------------------------------------------------- live training


class LiveTrainer:
    """Training driven step by step while its data changes: the building block of live sessions.

    ``fit`` trains a fixed set of images to a budget; a live session instead trains for as long as the
    user paints, swaps in the newest draft between steps and predicts the visible region every few
    steps. This class holds the model, the optimizer and the samples of one such session::

        trainer = LiveTrainer(config, in_channels=1, num_classes=3, init=None)
        trainer.set_data(images, classes, instances)           # the project's saved labels
        trainer.set_draft(image, draft_classes, draft_instances)  # the unsaved draft, sampled more often
        loss = trainer.train(10)                               # ten optimizer steps, mean loss
        probs = trainer.predict(pixels)                        # softmax (K, H, W) of a normalised crop

    The recipe is ``fit``'s (same crops, augmentation, weighted cross-entropy, He init or ``init``) with
    a warm-up and then a constant learning rate (there is no budget to decay over). ``draft_weight``:
    the draft is drawn this many times as often as one saved image. Deterministic for a seed on one
    device when the same data arrive between the same steps. No Django here.
    """

    def __init__(self, config: TrainConfig | None = None, *, in_channels: int, num_classes: int,
                 init: Any = None, draft_weight: int = 4):
        self.config = (config or TrainConfig()).validate()
        self.device = pick_device(self.config.device)
        torch.manual_seed(self.config.seed)
        self.rng = np.random.default_rng(self.config.seed)
        self.generator = torch.Generator(device="cpu").manual_seed(self.config.seed)
        self.in_channels, self.num_classes = int(in_channels), int(num_classes)
        if init is not None:
            self.model = _init_model(init, self.in_channels, self.num_classes, self.config)
        else:
            c = self.config
            self.model = UNet(self.in_channels, self.num_classes, c.base_channels, c.depth, c.dropout, c.batch_norm)
        self.model.to(self.device)
        self.tile_in = self.model.input_size_for(self.config.tile_output)
        self.tile_out = self.model.output_size(self.tile_in)
        if self.config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr,
                                              weight_decay=self.config.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.config.lr,
                                             momentum=self.config.momentum, weight_decay=self.config.weight_decay)
        self.draft_weight = max(1, int(draft_weight))
        self.steps = 0
        self.losses: list[float] = []
        self._saved: list[_Sample] = []
        self._draft: list[_Sample] = []

    @property
    def normalization(self) -> dict:
        return {"method": "percentile", "low": self.config.norm_low, "high": self.config.norm_high}

    def _samples(self, images, classes, instances) -> list[_Sample]:
        samples = [s for s in _prepare_samples(images, classes, instances, self.config) if s.by_class]
        for s in samples:
            if s.image.shape[0] != self.in_channels:
                raise ValueError(f"an image has {s.image.shape[0]} channel(s), the network {self.in_channels}")
            if int(s.labels.max(initial=0)) > self.num_classes:
                raise ValueError(f"class value {int(s.labels.max())} exceeds num_classes={self.num_classes}")
        return samples

    def set_data(self, images: Sequence, classes: Sequence, instances: Sequence | None = None) -> int:
        """Replace the saved training images (raw (C, H, W) + class masks); returns how many have labels."""
        images = _as_list(images)
        self._saved = self._samples(images, classes, instances) if images and any(
            np.any(np.asarray(c) > 0) for c in _as_list(classes)) else []
        return len(self._saved)

    def set_draft(self, image: np.ndarray | None, classes: np.ndarray | None = None,
                  instances: np.ndarray | None = None) -> bool:
        """Replace the draft (None or an empty mask: no draft); True when it has labelled pixels."""
        if image is None or classes is None or not np.any(np.asarray(classes) > 0):
            self._draft = []
            return False
        self._draft = self._samples([image], [classes], None if instances is None else [instances])
        return bool(self._draft)

    @property
    def has_data(self) -> bool:
        return bool(self._saved or self._draft)

    def train(self, steps: int = 1) -> float | None:
        """``steps`` optimizer steps on the saved images and the draft; the mean loss (None: no labels yet)."""
        pool = self._saved + self._draft * self.draft_weight
        if not pool:
            return None
        c = self.config
        self.model.train()
        losses = []
        for _ in range(max(1, int(steps))):
            lr = c.lr * ((self.steps + 1) / c.warmup_steps if c.warmup_steps and self.steps < c.warmup_steps else 1.0)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            x, t, w = _crop_batch(pool, self.rng, c.batch_size, self.tile_in, self.tile_out, c.jitter)
            x, t, w = (torch.from_numpy(a).to(self.device) for a in (x, t, w))
            x, t, w = augment_batch(x, t, w, generator=self.generator, flips=c.flips, max_shift=c.max_shift,
                                    elastic=c.elastic, grid=c.elastic_grid, sigma=c.elastic_sigma,
                                    intensity=c.intensity, contrast=c.intensity_contrast, bias=c.bias_field)
            logits = self.model(x)
            loss = weighted_cross_entropy(logits, centre_crop(t, self.tile_out, self.tile_out),
                                          centre_crop(w, self.tile_out, self.tile_out))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.steps += 1
            losses.append(float(loss.detach()))
        self.losses.extend(losses)
        return float(np.mean(losses))

    @torch.no_grad()
    def predict(self, pixels: np.ndarray, tile_output: int | None = None) -> np.ndarray:
        """Softmax probabilities (K, H, W) of a normalised (C, H, W) crop (mirrored at its borders)."""
        self.model.eval()
        try:
            return predict_tiled(self.model, pixels, device=self.device, tile_output=tile_output)
        finally:
            self.model.train()

    def checkpoint(self, path: str | os.PathLike, class_names: Sequence[str] | None = None,
                   extra: dict | None = None) -> dict:
        """A ``save_checkpoint`` of the network as it is now (the model is copied to the CPU for it)."""
        history = {"loss": self.losses[-400:], "steps": self.steps, "normalization": self.normalization,
                   "num_classes": self.num_classes, "in_channels": self.in_channels,
                   "config": self.config.to_dict(), "model_config": self.model.config,
                   "stop_reason": "live", "device": str(self.device)}
        return save_checkpoint(path, self.model, config=self.config, class_names=class_names, history=history,
                               extra=extra)
