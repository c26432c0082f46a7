"""``python -m bench.fewlabel``: few-label quality on real images, every method side by side in one run.

For each real set (``bench.realdata``), seed and labelling protocol, one training crop is labelled as
a user would label it and every method is trained on exactly those labels, then scored on test images
that share no pixel with the training crop:

- protocols: ``scribbles`` (~15 strokes, background strokes > 8 px from objects), ``near`` (the same
  with background strokes up to 2 px from objects), ``lines`` (the scribbles plus 8 short background
  lines in the gaps between touching objects: what a user paints after seeing objects merged),
  ``guided`` (the scribbles plus up to 8 such lines, but only inside the objects the app lists to check
  (``labseg.ml.review.suspect_merges``) on the scribble-trained U-Net's prediction of the training crop:
  the annotate page's "Objects to check" loop; on membrane sets only objects holding two painted strokes;
  ``guided-ft``: the same labels, the U-Net of round 2 fine-tuned from round 1's, as the app's next run
  starts from the active version by default; ``guided-edges``: as ``guided-ft`` plus 8 background strokes
  where round 1's prediction of the crop ran wide of the objects (``realdata.edge_strokes``: what the
  "Outlines" advice asks for)),
  ``objects`` (3 objects painted whole with their outline as background, plus the background strokes:
  the correction workflow), ``dense`` (every known pixel of the crop).
- methods: ``threshold`` (Otsu on the label-aware channel projection: objects bright or dark as
  painted, RGB too), ``forest`` (ilastik-style random forest on multiscale features), ``unet`` (the
  default ``TrainConfig``), and the U-Net with each optional component switched on in turn
  (``unet+crf``: the CRF term, ``unet+st``: a self-training round; on the ablation protocols only),
  plus, from the same trained network, ``unet+tta`` (8-fold test-time augmentation) and, where the
  default's intensity gate is on (``labseg.ml.baselines.fit_intensity_gate``: objects split by shape, the
  threshold keeping >= 90 % of the painted object pixels), ``unet-nogate`` (the same network without it).
  Every U-Net row goes through the gate as the app's predictions do (round 1 of the guided protocols too),
  then through the edge calibration where it is on (``labseg.ml.baselines.calibrate_edges``: objects split by
  shape); ``unet-noedges`` is the same network without it. Its default, auto, chooses on held-out labels: with
  ``--holdout`` every method trains, as the app's run on one labelled image does, without a quarter of its
  labels (``holdout_strip``: the right-most columns unless they hold most of a class), and each network's
  choice is made on them (``unet+edges``: the same network with it); without
  ``--holdout`` nothing is held out and auto keeps the network's own edges.
  Where the default's intensity-aware split is on (``fit_split_intensity``: objects split by shape), every
  method's watershed adds the image projected from painted background to painted objects, and
  ``unet-plain``, ``threshold-plain``, ``forest-plain`` are the same foregrounds split by shape alone.

Every method's foreground goes through the same instance step, chosen from the labels as the app chooses
it (``labseg.ml.postprocess.painted_split``): the watershed (distance transform plus, by default, the
projected intensity; object radius from the painted objects when there are some, else from the foreground
itself), or, where the painted background is thin lines between objects (CREMI's membranes), connected
components. So the comparison is of the foreground each method finds. Scores: instance F1 at IoU 0.5
(tp/fp/fn pooled over the test images), foreground IoU, and the ISBI adapted Rand error where the set has
dense ids (CREMI). Only pixels whose labels are known count. Means ± std over seeds. ``--rescore DUMP``
scores the foregrounds a ``--dump`` run saved again, with today's instance step (paired, no training).

    python -m bench.fewlabel                      # all sets, 3 seeds, all protocols
    python -m bench.fewlabel --sets hela --seeds 1 --protocols scribbles --json var/fewlabel.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from bench import realdata

PROTOCOLS = ("scribbles", "near", "lines", "guided", "guided-ft", "guided-edges", "objects", "dense")
#: Protocols whose round 2 is fine-tuned from round 1's network (as the app's next run starts from the active version).
FINE_TUNED = ("guided-ft", "guided-edges")
BASELINES = ("threshold", "forest")
UNET_VARIANTS = {"unet": {}, "unet+crf": {"crf_weight": 3.0}, "unet+st": {"self_training": 1},
                 "unet+logbal": {"balance": "log"}}
#: What ``--variants`` trains by default (``unet+logbal`` only when asked: it measured worse, 2026-12-04).
DEFAULT_VARIANTS = ("unet", "unet+crf", "unet+st")
#: Rows from a network or baseline fitted above: ``-plain`` is the same foreground through the plain
#: distance-transform watershed where the default split adds the projected intensity; ``unet+isplit`` (older
#: runs): the first channel's intensity added, when the default was the plain watershed.
DERIVED = ("unet+tta", "unet+isplit", "unet-nogate", "unet-noedges", "unet+edges", "unet-plain", "threshold-plain",
           "forest-plain")


def labels_for(task: realdata.Task, protocol: str, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    crop = task.train
    if protocol == "scribbles":
        return realdata.scribbles(crop, seed, touching=task.touching), None
    if protocol == "near":
        return realdata.scribbles(crop, seed, bg_margin=2.0, touching=task.touching), None
    if protocol == "lines":
        return realdata.scribbles_with_lines(crop, seed, touching=task.touching), None
    if protocol == "objects":
        return realdata.painted_objects(crop, seed, touching=task.touching)
    if protocol == "dense":
        return realdata.dense(crop)
    raise ValueError(f"unknown protocol {protocol!r}")


def guided_labels(task: realdata.Task, seed: int, *, threads: int, unet_overrides: dict,
                  dilate: int = 3, edges: bool = False) -> tuple[np.ndarray, None, dict, object]:
    """The ``guided`` protocol's labels: train the default U-Net on the scribbles (round 1), predict the
    training crop, list its objects to check as the app does (``apps.inference.runner.review_of``: holding
    two of the painted strokes, or (not for membrane labels) large, or large and not convex), and add the
    separation lines only inside those objects (grown by ``dilate`` px: the gap beside them). ``edges``: also
    the background strokes where that prediction ran wide of the objects (``realdata.edge_strokes``).
    -> (classes, None, what it did, the round-1 network)."""
    from scipy import ndimage as ndi

    from labseg.ml.io import normalize
    from labseg.ml.postprocess import instances_from_probs, painted_split
    from labseg.ml.review import painted_objects, suspect_merges
    from labseg.ml.train import fit, validate_config_overrides

    scribbled, _ = labels_for(task, "scribbles", seed)
    split = painted_split(scribbled, None)
    start = time.monotonic()
    where = np.zeros(scribbled.shape, bool)
    config = validate_config_overrides({"num_threads": threads, "device": "cpu", "seed": seed, **unet_overrides})
    net, _ = fit(task.train.raw, scribbled, None, config=config)
    x_train = normalize(task.train.raw, config.norm_low, config.norm_high)  # as the network saw it
    gate, _ = intensity_gate(config, x_train, scribbled, split)
    splitter, _ = split_intensity(config, x_train, scribbled, split)
    calibrate, _ = edges_for(config, split)

    def landscape(x: np.ndarray) -> np.ndarray | None:
        return None if splitter is None else splitter.landscape(x)

    fg = unet_foreground(net, x_train, gate, edges=calibrate)
    pred = instances_from_probs(fg, radius=None, split=split, image=landscape(x_train))
    review = suspect_merges(pred, radius=None, painted=painted_objects(scribbled), by_shape=split != "boundaries")
    # round 1 is the scribbles protocol's U-Net: its scores in the same run, for the comparison
    tests = [normalize(t.raw, config.norm_low, config.norm_high) for t in task.tests]
    round1 = score([instances_from_probs(unet_foreground(net, x, gate, edges=calibrate), radius=None, split=split,
                                         image=landscape(x)) for x in tests], task.tests)
    flagged = review["total"]
    for obj in review["objects"]:
        where |= pred == obj["id"]
    where = ndi.binary_dilation(where, iterations=dilate)
    classes = realdata.scribbles_with_lines(task.train, seed, touching=task.touching, where=where)
    line_pixels = int(((classes == 1) & (scribbled == 0)).sum())
    info = {"round1_seconds": time.monotonic() - start, "flagged": flagged, "round1": round1,
            "line_pixels": line_pixels}
    if edges:
        strokes = realdata.edge_strokes(task.train, pred, seed) & (classes == 0)
        classes[strokes] = 1
        info["edge_pixels"] = int(strokes.sum())
    return classes, None, info, net


def split_intensity(config, x_train: np.ndarray, classes: np.ndarray, split: str, painted: float | None = None):
    """The app's intensity-aware split for these labels (``labseg.ml.baselines.fit_split_intensity``);
    -> (SplitIntensity or None, info)."""
    from labseg.ml.baselines import fit_split_intensity

    return fit_split_intensity(x_train, classes, enabled=config.intensity_split, split=split, painted_radius=painted)


#: The methods whose foregrounds are also scored split by shape alone (``-plain``) where the split adds grey values.
PLAIN_ROWS = ("threshold", "forest", "unet")


def instance_step(config, task: realdata.Task, classes: np.ndarray, split: str, painted: float | None,
                  xs: list[np.ndarray], power: float | None | str = "app", seed_prob: float | None | str = "app"):
    """The instance step every method's foregrounds of ``task``'s test images (normalised: ``xs``) go through,
    as the app's: ``(scored(fgs, plain=False) -> scores, plain rows wanted, split_intensity record)``.
    ``power``: the watershed's distance weighted by each method's probability to it
    (``labseg.ml.postprocess.CONFIDENCE_POWER``; "app": the app's); ``seed_prob``: objects whose probability never
    reaches it are dropped (``labseg.ml.postprocess.SEED_PROB``; "app": the app's)."""
    from labseg.ml.io import normalize
    from labseg.ml.postprocess import instances_from_probs

    power, seed_prob = app_power(power), app_seed_prob(seed_prob)

    x_train = normalize(task.train.raw, config.norm_low, config.norm_high)  # as the network sees images
    splitter, split_info = split_intensity(config, x_train, classes, split, painted)
    landscapes = [None if splitter is None else splitter.landscape(x) for x in xs]

    def scored(fgs: list[np.ndarray], plain: bool = False) -> dict:
        return score([instances_from_probs(fg, radius=painted, image=None if plain else ls, split=split,
                                           confidence_power=power, seed_prob=seed_prob)
                      for fg, ls in zip(fgs, landscapes)], task.tests)

    return scored, splitter is not None, split_info


def intensity_gate(config, x_train: np.ndarray, classes: np.ndarray, split: str):
    """The app's intensity gate for these labels (``apps.training.pipeline.fit_intensity``); -> (gate or None, info)."""
    from labseg.ml.baselines import fit_intensity_gate

    return fit_intensity_gate(x_train, classes, enabled=config.intensity_gate, split=split)


def unet_foreground(net, x: np.ndarray, gate=None, tta: bool = False, edges: bool = False,
                    radius: float | None = None) -> np.ndarray:
    """The network's foreground probability of a normalised image, through the gate when there is one, then
    with its edges calibrated when ``edges`` (within ``radius``, None: measured on the foreground), as the app's
    predictions do (``labseg.ml.baselines.calibrate_edges_at``)."""
    from labseg.ml.baselines import calibrate_edges_at
    from labseg.ml.tiling import predict_tiled

    probs = predict_tiled(net, x, tta=tta)
    if gate is not None:
        gate.apply(probs, x)
    if edges:
        calibrate_edges_at(probs, x, radius)
    return 1.0 - probs[0]


def edges_for(config, split: str, held_out: bool = False) -> tuple[bool, dict]:
    """The app's edge calibration for these labels (``apps.training.pipeline.fit_intensity``): (on, info); auto
    (``edges_auto(info)``, only where labels are ``held_out``) is off until a network's held-out labels choose
    (``held_out_edges``); with nothing held out auto is off at once."""
    from labseg.ml.baselines import edge_setting, edges_on

    info = edge_setting(enabled=config.edge_calibration, split=split, held_out=held_out)
    return edges_on(info), info


def held_out_edges(net, x: np.ndarray, gate, held: np.ndarray, radius: float | None) -> tuple[bool, dict]:
    """The auto edge calibration's choice for ``net``, as the app's run makes it: the foreground IoU of the
    held-out labels ``held`` (classes, 0 unlabelled) of the training image ``x`` predicted without and with it
    (``labseg.ml.baselines.choose_edges``). -> (on, the setting with both IoUs)."""
    from labseg.ml.baselines import choose_edges, edges_on
    from labseg.ml.metrics import iou

    ious = [iou(unet_foreground(net, x, gate, edges=on, radius=radius) > 0.5, held >= 2, held > 0)
            for on in (False, True)]
    info = choose_edges(*ious)
    return edges_on(info), info


def _keep_inside(pred: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Predicted objects with at least half of their pixels where labels are known; the rest dropped."""
    if valid.all() or not pred.any():
        return pred
    total = np.bincount(pred.ravel())
    inside = np.bincount(pred[valid].ravel(), minlength=len(total))
    keep = inside * 2 >= total
    keep[0] = False
    return np.where(keep[pred], pred, 0)


def score(preds: list[np.ndarray], tests: list[realdata.Crop]) -> dict:
    """Pooled F1@0.5, mean foreground IoU and (where there are ids) mean adapted Rand error.

    Objects mostly outside the known pixels do not count for F1 and the Rand error (``_keep_inside``);
    the foreground IoU is of every predicted object pixel on the known pixels."""
    from labseg.ml.metrics import adapted_rand_error, f1_at_iou

    tp = fp = fn = 0
    ious, ares = [], []
    for pred, crop in zip(preds, tests):
        gt = np.where(crop.valid, crop.instances, 0)
        a, b, v = pred > 0, gt > 0, crop.valid  # the foreground on known pixels, whatever the objects
        pred = _keep_inside(pred, crop.valid)
        _, t, f, n = f1_at_iou(pred, gt, 0.5)
        tp, fp, fn = tp + t, fp + f, fn + n
        ious.append(float(((a & b) & v).sum() / max(((a | b) & v).sum(), 1)))
        if crop.ids is not None:
            ares.append(adapted_rand_error(np.where(crop.valid, pred, 0), crop.ids))
    return {"f1": 2 * tp / max(2 * tp + fp + fn, 1), "iou": float(np.mean(ious)), "tp": tp, "fp": fp, "fn": fn,
            "are": float(np.mean(ares)) if ares else None}


def run_one(task: realdata.Task, protocol: str, seed: int, *, variants: list[str], threads: int,
            unet_overrides: dict, finetune_overrides: dict | None = None, log=print,
            dump: Path | None = None, sized: bool = True, holdout: bool = False,
            power: float | None | str = "app", seed_prob: float | None | str = "app") -> dict:
    """Every method on one (set, protocol, seed); returns {method: scores + seconds}.
    ``finetune_overrides``: TrainConfig overrides for the ``guided-ft`` protocol's round 2 only.
    ``dump``: also save the labels and every method's foreground probability of each test image there
    (``{set}-{protocol}-{seed}.npz``, float16), to study post-processing without training again. ``sized``:
    training crops grow to hold the objects painted whole, as the app's runs do (``labseg.ml.train.sized_crops``;
    unless ``unet_overrides`` set ``tile_output``). ``holdout``: as the app's run on one labelled image, the
    quarter of the labelled columns or rows (``labseg.ml.metrics.holdout_strip``) is held out of every
    method's training; where ``edge_calibration`` is auto (null), each network's choice is made on it
    (``labseg.ml.baselines.choose_edges``), with rows ``unet-noedges`` and ``unet+edges`` beside. ``power``: the
    instance step's probability weight for every method ("app": ``labseg.ml.postprocess.CONFIDENCE_POWER``)."""
    import torch

    from labseg.ml.baselines import ForestBaseline, ThresholdBaseline, edges_auto
    from labseg.ml.io import normalize
    from labseg.ml.postprocess import painted_radius, painted_split
    from labseg.ml.train import fit, sized_crops, validate_config_overrides

    torch.set_num_threads(threads)
    guided, init = {}, None
    if protocol in ("guided", *FINE_TUNED):
        classes, instances, guided, round1_net = guided_labels(task, seed, threads=threads,
                                                               unet_overrides=unet_overrides,
                                                               edges=protocol == "guided-edges")
        if protocol in FINE_TUNED:
            init, unet_overrides = round1_net, {**unet_overrides, **(finetune_overrides or {})}
    else:
        classes, instances = labels_for(task, protocol, seed)
    split = painted_split(classes, instances)  # read from the whole labels, as the app's run does (run_split)
    held, strip = None, None
    if holdout:
        from labseg.ml.metrics import holdout_strip

        if protocol in ("guided", *FINE_TUNED):
            raise ValueError("--holdout runs the scribble, object and dense protocols only")
        strip = holdout_strip(classes)
        if strip is not None:  # as the app: the classes trimmed, painted instances kept whole
            inside = strip.mask(classes.shape)
            held, classes = np.where(inside, classes, 0), np.where(inside, 0, classes)
    painted = painted_radius([instances], [classes]) if instances is not None else None

    config0 = validate_config_overrides(dict(unet_overrides))
    # every method sees the images normalised as the network does (the app's gate and baselines too)
    x_train = normalize(task.train.raw, config0.norm_low, config0.norm_high)
    xs = [normalize(t.raw, config0.norm_low, config0.norm_high) for t in task.tests]
    if sized and painted is not None and "tile_output" not in unet_overrides:  # as the app's run sizes its crops
        config0 = sized_crops(config0, painted)
        unet_overrides = {**unet_overrides, "tile_output": config0.tile_output, "batch_size": config0.batch_size}
    gate, gate_info = intensity_gate(config0, x_train, classes, split)
    edges, edges_info = edges_for(config0, split, held_out=held is not None)
    auto = edges_auto(edges_info)
    scored, with_plain, split_info = instance_step(config0, task, classes, split, painted, xs, power, seed_prob)
    out = {"seed": seed, "protocol": protocol, "labelled_fraction": float((classes > 0).mean()),
           "confidence_power": app_power(power), "seed_prob": app_seed_prob(seed_prob),
           "painted_radius": painted, "split": split, "gate": gate_info, "split_intensity": split_info,
           "edges": edges_info,
           "holdout": None if strip is None else strip.describe(),
           "crops": [config0.tile_output, config0.batch_size], **guided}
    if protocol in FINE_TUNED and finetune_overrides:
        out["finetune"] = dict(finetune_overrides)
    saved: dict[str, np.ndarray] = {"classes": classes}
    for method in [*BASELINES, *variants]:
        start = time.monotonic()
        if method == "threshold":
            model = ThresholdBaseline().fit(x_train, classes)
            fgs = [model.predict(x)[1] for x in xs]
        elif method == "forest":
            model = ForestBaseline(threads=threads, seed=seed).fit(x_train, classes)
            fgs = [model.predict(x)[1] for x in xs]
        else:
            config = validate_config_overrides({"num_threads": threads, "device": "cpu", "seed": seed,
                                                **unet_overrides, **UNET_VARIANTS[method]})
            net, history = fit(task.train.raw, classes, instances, config=config, init=init)
            out.setdefault("unet_steps", {})[method] = history["steps"]
            edges_now = edges
            if auto:  # the network's choice, on the held-out labels of the training crop
                edges_now, out.setdefault("edges_chosen", {})[method] = held_out_edges(net, x_train, gate, held,
                                                                                       painted)
            fgs = [unet_foreground(net, x, gate, edges=edges_now, radius=painted) for x in xs]
        train_s = time.monotonic() - start
        saved.update({f"{method}/{i}": fg.astype(np.float16) for i, fg in enumerate(fgs)})
        out[method] = {**scored(fgs), "seconds": train_s}
        if with_plain and method in PLAIN_ROWS:
            out[f"{method}-plain"] = {**scored(fgs, plain=True), "seconds": train_s}
        if method == "unet":
            tta = [unet_foreground(net, x, gate, tta=True, edges=edges_now, radius=painted) for x in xs]
            out["unet+tta"] = {**scored(tta), "seconds": train_s}
            saved.update({f"unet+tta/{i}": fg.astype(np.float16) for i, fg in enumerate(tta)})
            if gate is not None:  # the same network without the gate, for the comparison
                plain = [unet_foreground(net, x, edges=edges_now, radius=painted) for x in xs]
                out["unet-nogate"] = {**scored(plain), "seconds": train_s}
                saved.update({f"unet-nogate/{i}": fg.astype(np.float16) for i, fg in enumerate(plain)})
            if edges_now or auto:  # and without the edge calibration
                own = fgs if not edges_now else [unet_foreground(net, x, gate) for x in xs]
                out["unet-noedges"] = {**scored(own), "seconds": train_s}
                saved.update({f"unet-noedges/{i}": fg.astype(np.float16) for i, fg in enumerate(own)})
            if auto:  # and with it, whatever the held-out labels chose
                cal = fgs if edges_now else [unet_foreground(net, x, gate, edges=True, radius=painted) for x in xs]
                out["unet+edges"] = {**scored(cal), "seconds": train_s}
                saved.update({f"unet+edges/{i}": fg.astype(np.float16) for i, fg in enumerate(cal)})
        r = out[method]
        log(f"  {task.name:6s} {protocol:9s} seed {seed} {method:11s} F1 {r['f1']:.3f} IoU {r['iou']:.3f}"
            + (f" ARE {r['are']:.3f}" if r["are"] is not None else "") + f"  {train_s:6.1f} s")
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(dump / f"{task.name}-{protocol}-{seed}.npz", **saved)
    return out


def _fmt(values: list[float], n_all: int | None = None) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    out = f"{np.mean(values):.3f} ± {np.std(values):.3f}"
    return out if n_all is None or len(values) == n_all else f"{out} (n={len(values)})"


def protocol_label(r: dict) -> str:
    """The protocol's name, with its round-2 overrides where a run set them (``guided-ft steps=400``)."""
    return r["protocol"] + "".join(f" {k}={v}" for k, v in sorted(r.get("finetune", {}).items()))


def result_key(r: dict) -> tuple:
    """What makes two results the same measurement (``merge`` joins them, ``--resume`` skips the second)."""
    return r["set"], protocol_label(r), r["seed"]


def summarise(results: list[dict]) -> str:
    """A Markdown table per set: rows = methods, columns = protocols (F1@0.5 and fg IoU, ARE for EM)."""
    lines = []
    for name in dict.fromkeys(r["set"] for r in results):
        rows = [r for r in results if r["set"] == name]
        by_protocol: dict[str, list[dict]] = {}
        for r in rows:
            by_protocol.setdefault(protocol_label(r), []).append(r)
        methods = [m for m in (*BASELINES, *UNET_VARIANTS, *DERIVED) if any(m in r for r in rows)]
        has_are = any(r[m].get("are") is not None for r in rows for m in methods if m in r)
        lines.append(f"\n**{name}** (seeds and labelled share of the training crop: " + ", ".join(
            f"{p} {len(group)} seeds, {100 * np.mean([r['labelled_fraction'] for r in group]):.1f} %"
            for p, group in by_protocol.items()) + "; ablation rows: the seeds they ran on, see n)\n")
        head = "| method | " + " | ".join(f"{p} F1@0.5 | {p} fg IoU" + (f" | {p} ARE" if has_are else "")
                                          for p in by_protocol) + " | train s |"
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for m in methods:
            cells = []
            for group in by_protocol.values():
                sel = [r[m] for r in group if m in r]
                cells += [_fmt([s["f1"] for s in sel], len(group)), _fmt([s["iou"] for s in sel], len(group))]
                if has_are:
                    cells.append(_fmt([s["are"] for s in sel], len(group)))
            secs = [r[m]["seconds"] for r in rows if m in r and m not in DERIVED and "seconds" in r[m]]
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {np.mean(secs):.0f} |" if secs else
                         f"| {m} | " + " | ".join(cells) + (" | (same net) |" if m in DERIVED else " | - |"))
    return "\n".join(lines)


def merge(runs: list[list[dict]]) -> list[dict]:
    """Results of several runs as one list: entries of the same (set, protocol, seed) are joined (the
    methods of a later run are added; a method measured twice keeps the later value)."""
    merged: dict[tuple, dict] = {}
    for results in runs:
        for r in results:
            entry = merged.setdefault(result_key(r), {})
            steps = {**entry.get("unet_steps", {}), **r.get("unet_steps", {})}
            seconds = {m: v["seconds"] for m, v in entry.items() if isinstance(v, dict) and "seconds" in v}
            entry.update(r)
            entry["unet_steps"] = steps
            for m, v in r.items():  # a rescored method keeps the training time its run measured
                if isinstance(v, dict) and "f1" in v and "seconds" not in v and m in seconds:
                    entry[m] = {**v, "seconds": seconds[m]}
    return list(merged.values())


def app_power(power: float | None | str) -> float | None:
    """The probability weight an instance step uses (``instance_step``'s ``power``, "app" resolved)."""
    from labseg.ml.postprocess import CONFIDENCE_POWER

    return CONFIDENCE_POWER if power == "app" else power


def app_seed_prob(seed_prob: float | None | str) -> float | None:
    """The seed probability an instance step uses (``instance_step``'s ``seed_prob``, "app" resolved)."""
    from labseg.ml.postprocess import SEED_PROB

    return SEED_PROB if seed_prob == "app" else seed_prob


def _app_none_or(text: str, flag: str, low: float, high: float, what: str) -> float | None | str:
    """An instance-step flag's value: "app" (kept, resolved later), "none" (None), or a number in (low, high]."""
    if text in ("app", "none"):
        return None if text == "none" else text
    value = float(text)
    if not low < value <= high:
        raise argparse.ArgumentTypeError(f"{flag} must be app, none or {what} in ({low:g}, {high:g}], got {text}")
    return value


def parse_seed_prob(text: str) -> float | None | str:
    """``--seed-prob``: "app" (the app's ``SEED_PROB``), "none", or a probability in (0.5, 1]."""
    return _app_none_or(text, "--seed-prob", 0.5, 1.0, "a probability")


def parse_power(text: str) -> float | None | str:
    """``--confidence``: "app" (the app's ``CONFIDENCE_POWER``), "none", or a power in (0, 16]."""
    return _app_none_or(text, "--confidence", 0.0, 16.0, "a power")


def rescore(dump: Path, unet_overrides: dict | None = None, log=print,
            power: float | None | str = "app", seed_prob: float | None | str = "app") -> list[dict]:
    """Every ``--dump`` file of ``dump`` scored again through today's instance step: the same foregrounds
    (the same trained networks, paired), split as ``run_one`` splits them now (with the intensity-aware split
    when ``unet_overrides`` leave it on, plus the ``-plain`` rows). Labels of the scribble, object and dense
    protocols are made again from the seed and must equal the dumped ones; the guided protocols' are the
    dumped ones (their painted objects, and so the object radius, are none). ``power``, ``seed_prob``: as
    ``run_one``'s.
    -> results like ``run_one``'s."""
    from labseg.ml.io import normalize
    from labseg.ml.metrics import holdout_strip
    from labseg.ml.postprocess import painted_radius, painted_split
    from labseg.ml.train import validate_config_overrides

    config = validate_config_overrides(dict(unet_overrides or {}))
    results = []
    for path in sorted(Path(dump).glob("*.npz")):
        name, rest = path.stem.split("-", 1)
        protocol, seed = rest.rsplit("-", 1)
        task, saved = realdata.SETS[name](int(seed)), np.load(path)
        classes, instances = saved["classes"], None
        whole, strip = classes, None
        if protocol not in ("guided", *FINE_TUNED):
            whole, instances = labels_for(task, protocol, int(seed))
            if not np.array_equal(whole, classes):  # a --holdout run dumped the labels it trained on
                strip = holdout_strip(whole)
                if strip is None or not np.array_equal(np.where(strip.mask(whole.shape), 0, whole), classes):
                    raise ValueError(f"{path.name}: the labels made again differ from the dumped ones")
        painted = painted_radius([instances], [classes]) if instances is not None else None
        split = painted_split(whole, instances)  # from the whole labels, as run_one (and the app's run)
        xs = [normalize(t.raw, config.norm_low, config.norm_high) for t in task.tests]
        scored, with_plain, split_info = instance_step(config, task, classes, split, painted, xs, power, seed_prob)
        out = {"set": name, "seed": int(seed), "protocol": protocol, "rescored": path.name,
               "confidence_power": app_power(power), "seed_prob": app_seed_prob(seed_prob),
               "labelled_fraction": float((classes > 0).mean()), "painted_radius": painted, "split": split,
               "split_intensity": split_info,
               "holdout": None if strip is None else strip.describe()}
        for method in dict.fromkeys(k.split("/")[0] for k in saved.files if "/" in k):
            fgs = [saved[f"{method}/{i}"].astype(np.float32) for i in range(len(xs))]
            out[method] = scored(fgs)  # no "seconds": not trained here
            if with_plain and method in PLAIN_ROWS:
                out[f"{method}-plain"] = scored(fgs, plain=True)
        log(f"  {name:6s} {protocol:12s} seed {seed}: " + "  ".join(
            f"{m} {out[m]['f1']:.3f}" for m in ("threshold", "forest", "unet", "unet-plain") if m in out))
        results.append(out)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fewlabel", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(realdata.SETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--protocols", default="scribbles,objects,dense")
    parser.add_argument("--ablate", default="scribbles", help="protocols on which the U-Net variants also run")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--unet", default="{}", help="JSON TrainConfig overrides for every U-Net")
    parser.add_argument("--finetune", default="{}",
                        help="JSON TrainConfig overrides for round 2 of guided-ft and guided-edges (the fine-tune)")
    parser.add_argument("--json", help="write the per-seed results here (rewritten after each one)")
    parser.add_argument("--dump", type=Path, help="save labels and foreground probabilities here (see run_one)")
    parser.add_argument("--resume", action="store_true", help="skip what the --json file already holds")
    parser.add_argument("--fixed-crops", action="store_true",
                        help="train on the preset's crops even where objects painted whole are larger (the app "
                             "grows them: labseg.ml.train.sized_crops)")
    parser.add_argument("--holdout", action="store_true",
                        help="hold a quarter of the labels out of training (labseg.ml.metrics.holdout_strip), as "
                             "the app's run on one labelled image does; auto edge calibration "
                             "(--unet '{\"edge_calibration\": null}') chooses on it")
    parser.add_argument("--rescore", type=Path, metavar="DUMP",
                        help="score every file a --dump run left in DUMP again with today's instance step (no "
                             "training; --unet's overrides choose the split), write --json, print the table, exit")
    parser.add_argument("--confidence", type=parse_power, default="app",
                        help="the instance step's watershed distance weighted by every method's probability to "
                             "this power: app (labseg.ml.postprocess.CONFIDENCE_POWER), none, or a power")
    parser.add_argument("--seed-prob", type=parse_seed_prob, default="app",
                        help="every method's objects must hold a pixel of at least this probability: app "
                             "(labseg.ml.postprocess.SEED_PROB), none, or a probability in (0.5, 1]")
    parser.add_argument("--summary", nargs="+", metavar="JSON",
                        help="print the table of these --json files (merged: a later file adds methods) and exit")
    args = parser.parse_args(argv)
    if args.summary:
        print(summarise(merge([json.loads(Path(f).read_text())["results"] for f in args.summary])))
        return 0
    if args.rescore:
        results = rescore(args.rescore, json.loads(args.unet), power=args.confidence, seed_prob=args.seed_prob)
        if args.json:
            Path(args.json).write_text(json.dumps({"results": results, "rescored_from": str(args.rescore),
                                                   "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
                                                  indent=1))
        print(summarise(results))
        return 0
    sets = [s for s in args.sets.split(",") if s]
    unknown = set(sets) - set(realdata.SETS)
    if unknown:
        parser.error(f"unknown set(s): {', '.join(sorted(unknown))}")
    protocols = [p for p in args.protocols.split(",") if p]
    if set(protocols) - set(PROTOCOLS):
        parser.error(f"protocols are {', '.join(PROTOCOLS)}")
    variants = [v for v in args.variants.split(",") if v]
    ablate = set(args.ablate.split(","))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results: list[dict] = []
    if args.resume and args.json and Path(args.json).exists():
        results = json.loads(Path(args.json).read_text())["results"]
    done = {result_key(r) for r in results}
    finetune = json.loads(args.finetune)
    print(f"held out, never used: {'; '.join(realdata.HELD_OUT)}")
    loads = []
    # a set whose seeds alternate between two test sides gets an even number of seeds (both sides equally)
    counts = {name: args.seeds + (args.seeds % 2 if name in realdata.TWO_SIDED else 0) for name in sets}
    for seed in range(args.first_seed, args.first_seed + max(counts.values())):
        for name in [n for n in sets if seed < args.first_seed + counts[n]]:
            task = realdata.SETS[name](seed)
            for protocol in protocols:
                planned = {"set": name, "protocol": protocol, "seed": seed,
                           "finetune": finetune if protocol in FINE_TUNED else {}}
                if result_key(planned) in done:
                    continue
                loads.append(os.getloadavg()[0])
                chosen = variants if protocol in ablate else ["unet"]
                r = run_one(task, protocol, seed, variants=chosen, threads=args.threads,
                            unet_overrides=json.loads(args.unet), finetune_overrides=finetune,
                            dump=args.dump, sized=not args.fixed_crops, holdout=args.holdout,
                            power=args.confidence, seed_prob=args.seed_prob)
                results.append({"set": name, **r})
                if args.json:
                    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                    Path(args.json).write_text(json.dumps({"results": results, "started": started,
                                                           "loadavg_before_each": loads}, indent=1))
    print(summarise(results))
    load = os.getloadavg()
    print(f"\nstarted {started}; load average {np.mean(loads) if loads else 0:.2f} before each run "
          f"(now {load[0]:.2f}) on {os.cpu_count()} CPUs, {args.threads} torch threads")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
