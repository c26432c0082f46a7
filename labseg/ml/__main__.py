"""Command line: train a U-Net on labelled images, predict on new ones.

    python -m labseg.ml train --image A.tif --labels A_classes.png [--instances A_inst.png] --out model.pt
    python -m labseg.ml predict --model model.pt --image B.tif --out B_labels.tif [--probs B_probs.tif]

``--image/--labels/--instances`` may be repeated (one per training image). Class masks: 0 unlabelled,
1 background, 2.. classes. Hyper-parameters: ``--set key=value`` (any ``TrainConfig`` field, JSON
values) or the shortcuts ``--steps``, ``--max-seconds``, ``--device``, ``--threads``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from labseg.ml.config_bounds import OBJECT_DIAMETER_BOUNDS


def _read_mask(path: str) -> np.ndarray:
    from labseg.ml.io import read_image

    mask = read_image(path)
    if mask.shape[0] != 1:
        raise ValueError(f"{path}: a label mask must have one channel, it has {mask.shape[0]}")
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"{path}: a label mask must hold integers, got {mask.dtype}")
    return mask[0]


def write_array(path: str, array: np.ndarray) -> None:
    """Write by extension: .tif/.tiff (tifffile, any dtype), .png (8/16-bit, one channel), .npy."""
    suffix = Path(path).suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, array, compression="zlib")
    elif suffix == ".npy":
        np.save(path, array)
    elif suffix == ".png":
        from PIL import Image

        if array.ndim != 2 or array.min(initial=0) < 0 or array.max(initial=0) > 65535:
            raise ValueError("PNG output needs a 2-D array with values 0..65535; use .tif")
        dtype = np.uint8 if array.max(initial=0) < 256 else np.uint16
        Image.fromarray(array.astype(dtype)).save(path)
    else:
        raise ValueError(f"unknown output format {suffix!r}: use .tif, .png or .npy")


def _overrides(args: argparse.Namespace) -> dict:
    values: dict = {}
    for item in args.set or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {item!r}")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    for key in ("steps", "max_seconds", "device", "num_threads", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            values[key] = None if (key == "max_seconds" and value <= 0) else value
    return values


def _object_size(diameter: float | None) -> float | None:
    """The object radius of an ``--object-diameter`` (px, within the app's project setting's bounds), None when
    not given."""
    if diameter is None:
        return None
    low, high = OBJECT_DIAMETER_BOUNDS
    if not math.isfinite(diameter) or not low <= diameter <= high:
        raise ValueError(f"--object-diameter must be between {low:g} and {high:g} px, got {diameter}")
    return diameter / 2.0


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from labseg.ml.io import read_image
    from labseg.ml.postprocess import object_scale, painted_radius, painted_split
    from labseg.ml.train import fit, save_checkpoint, sized_crops, validate_config_overrides

    if len(args.image) != len(args.labels):
        raise ValueError(f"give one --labels per --image ({len(args.image)} images, {len(args.labels)} masks)")
    if args.instances and len(args.instances) != len(args.image):
        raise ValueError("give one --instances per --image, or none")
    overrides = _overrides(args)
    config = validate_config_overrides(overrides)
    images = [read_image(p) for p in args.image]
    classes = [_read_mask(p) for p in args.labels]
    instances = [_read_mask(p) for p in args.instances] if args.instances else None
    painted = painted_radius(instances, classes) if instances else None
    size = _object_size(args.object_diameter)  # the set size wins over the painted one, as in the app
    if "tile_output" not in overrides:  # crops whose input holds 3 object diameters (sized_crops)
        config = sized_crops(config, object_scale(size, painted))
    print(f"training config: {json.dumps(config.to_dict())}", file=sys.stderr)
    bar = tqdm(total=config.steps, unit="step", disable=args.quiet, file=sys.stderr)

    def progress(step: int, loss: float, **info: object) -> bool:
        if isinstance(info.get("steps"), int) and info["steps"] != bar.total:  # self-training adds a round
            bar.total = info["steps"]
            bar.refresh()
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.4f}")
        return True

    try:
        model, history = fit(images, classes, instances, config=config, init=args.init, progress=progress)
    finally:
        bar.close()
    names = args.class_names.split(",") if args.class_names else None
    if names is not None and len(names) != model.num_classes:
        raise ValueError(f"--class-names has {len(names)} names, the model has {model.num_classes} classes")
    from labseg.ml.baselines import edge_setting, fit_intensity_gate, fit_split_intensity
    from labseg.ml.train import apply_normalization

    split = painted_split(classes, instances)
    normalized = [apply_normalization(im, history["normalization"]) for im in images]
    _, gate_info = fit_intensity_gate(normalized, classes, enabled=config.intensity_gate, split=split)
    _, split_info = fit_split_intensity(normalized, classes, enabled=config.intensity_split, split=split,
                                        painted_radius=painted)
    # the command line holds nothing out to choose on: auto keeps the network's own edges
    edges_info = edge_setting(enabled=config.edge_calibration, split=split, held_out=False)
    save_checkpoint(args.out, model, config, history["normalization"], names, history,
                    {"images": args.image, "labels": args.labels, "instances": args.instances or [],
                     "split": split, "intensity_gate": gate_info, "intensity_split": split_info,
                     "edge_calibration": edges_info,
                     "object_size": size, "object_radius": painted})
    print(f"saved {args.out}: {history['steps']} steps in {history['seconds']:.1f}s, "
          f"final loss {history['loss'][-1]:.4f} ({history['stop_reason']})", file=sys.stderr)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from labseg.ml.baselines import IntensityGate, SplitIntensity, calibrate_edges_at, edges_on
    from labseg.ml.device import configure_threads, pick_device
    from labseg.ml.io import read_image
    from labseg.ml.postprocess import instances_from_probs, object_scale, recorded_radius, recorded_split
    from labseg.ml.tiling import predict_tiled, predict_tiled_with_uncertainty
    from labseg.ml.train import apply_normalization, load_checkpoint

    configure_threads(args.num_threads)
    device = pick_device(args.device or "auto")
    model, checkpoint = load_checkpoint(args.model)
    x = apply_normalization(read_image(args.image), checkpoint["normalization"])
    bar = tqdm(unit="tile", disable=args.quiet, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    kwargs = dict(tile_output=args.tile, batch_size=args.batch, device=device, progress=progress)
    try:
        if args.tta or args.uncertainty:
            result = predict_tiled_with_uncertainty(model, x, **kwargs)
            probs = result.probs
        else:
            probs = predict_tiled(model, x, **kwargs)
    finally:
        bar.close()
    extra = checkpoint.get("extra") or {}
    gate = None if args.no_gate else IntensityGate.from_dict(extra.get("intensity_gate"))
    splitter = None if args.plain_split else SplitIntensity.from_dict(extra.get("intensity_split"))
    if gate is not None:  # what the app's predictions do: object pixels the threshold calls background go
        gate.apply(probs, x)
    # auto: what the training labels said (painted_split), the watershed when not recorded
    split = recorded_split(extra.get("split")) if args.split == "auto" else args.split
    # the object size: --radius (the grey values always take part), else --object-diameter or the one the model
    # was trained with (set: they split merged colonies only), else the radius of the objects painted whole for
    # training (as the app's predictions), else estimated from the foreground
    size = None if args.radius is not None else _object_size(args.object_diameter) or recorded_radius(
        extra.get("object_size"))
    radius = args.radius if args.radius is not None or size is not None else recorded_radius(extra.get("object_radius"))
    if edges_on(extra.get("edge_calibration")) and not args.no_edges:  # as the app's predictions: after the gate
        edges = calibrate_edges_at(probs, x, object_scale(size, radius))
        print(f"edges: {json.dumps(edges)}", file=sys.stderr)
    labels = instances_from_probs(probs, fg_class=1 if probs.shape[0] == 2 else None, threshold=args.threshold,
                                  min_size=args.min_size, radius=radius,
                                  image=None if splitter is None else splitter.landscape(x), split=split, size=size)
    write_array(args.out, labels.astype(np.uint16) if labels.max(initial=0) < 65536 else labels)
    if args.probs:
        write_array(args.probs, probs)
    if args.classes:
        write_array(args.classes, (probs.argmax(0) + 1).astype(np.uint8))
    if args.uncertainty:
        write_array(args.uncertainty, result.entropy)
    print(f"{args.out}: {int(labels.max())} objects", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labseg.ml", description="LabSeg U-Net: train and predict.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (or fine-tune) a U-Net")
    t.add_argument("--image", action="append", required=True, help="training image (repeat for several)")
    t.add_argument("--labels", action="append", required=True, help="class mask: 0 unlabelled, 1 bg, 2.. classes")
    t.add_argument("--instances", action="append", help="instance mask (enables touching-border weights)")
    t.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    t.add_argument("--init", help="checkpoint to fine-tune from")
    t.add_argument("--class-names", help="comma-separated names of the classes (background first)")
    t.add_argument("--steps", type=int)
    t.add_argument("--max-seconds", dest="max_seconds", type=float, help="time budget (0 = none)")
    t.add_argument("--seed", type=int)
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="any TrainConfig field")
    t.add_argument("--object-diameter", dest="object_diameter", type=float, default=None,
                   help="typical object width in px (a round nucleus: its diameter): sizes the training crops and is "
                        "stored for predict (default: the objects painted whole, else estimated)")
    p = sub.add_parser("predict", help="predict instance labels (and probabilities) for an image")
    p.add_argument("--model", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--out", required=True, help="instance labels (.tif / .png / .npy)")
    p.add_argument("--probs", help="softmax probabilities float32 (K, H, W)")
    p.add_argument("--classes", help="class mask (arg-max + 1)")
    p.add_argument("--uncertainty", help="normalised entropy of the TTA mean (implies --tta)")
    p.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    p.add_argument("--no-gate", dest="no_gate", action="store_true",
                   help="skip the intensity gate the training run chose (keep every pixel the network calls object)")
    p.add_argument("--no-edges", dest="no_edges", action="store_true",
                   help="skip the edge calibration the training run chose (keep the network's own edges)")
    p.add_argument("--tile", type=int, default=None, help="output tile side (default by device)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--min-size", dest="min_size", type=int, default=None,
                   help="drop smaller objects (px; default: a fifth of the typical object's area)")
    p.add_argument("--object-diameter", dest="object_diameter", type=float, default=None,
                   help="typical object width in px (default: the one the model was trained with, else estimated); "
                        "merged colonies are still split by the grey values")
    p.add_argument("--radius", type=float, default=None,
                   help="typical object radius in px for splitting (default: measured on the foreground)")
    p.add_argument("--split", choices=("auto", "shape", "boundaries"), default="auto",
                   help="how touching objects are separated: shape (distance-transform watershed), boundaries "
                        "(connected components: objects part only where background was predicted), auto (what "
                        "the training labels said: boundaries when the painted background is thin lines)")
    p.add_argument("--plain-split", dest="plain_split", action="store_true",
                   help="split touching objects by shape alone, without the grey values the training run projected "
                        "for the watershed (its intensity-aware split, on by default where objects split by shape)")
    for sp in (t, p):
        sp.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
        sp.add_argument("--threads", dest="num_threads", type=int, default=None, help="torch CPU threads")
        sp.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return cmd_train(args) if args.command == "train" else cmd_predict(args)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
