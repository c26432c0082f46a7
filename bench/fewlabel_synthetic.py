"""Few-label quality evaluation: the default U-Net preset against Otsu and an ilastik-style random forest.

For each seed: one realistic synthetic fluorescence crop (touching nuclei, blur, shot + read noise, an
uneven illumination field and background) gets about 15 scribbles (~5 % of its pixels labelled, the
rest 0), and three methods are scored by instance F1 at IoU 0.5 on held-out crops from other seeds:

- ``otsu``: Otsu threshold of the lightly smoothed normalised image (no training);
- ``forest``: ``RandomForestClassifier`` on ``skimage.feature.multiscale_basic_features`` trained on
  the scribbled pixels (what ilastik's pixel classification does);
- ``unet``: ``labseg.ml.train.fit`` with the default ``TrainConfig`` on the same scribbles: a first
  round on the strokes, then one self-training round on the network's own confident labels with
  separation borders where predicted nuclei touch (scored without and with test-time augmentation,
  ``unet_tta``: the mean of the 8 flips/rotations).

All three use the same post-processing (``labseg.ml.postprocess.split_instances`` with the image), so
the comparison measures the foreground each method finds. Run:
``python -m bench.fewlabel_synthetic --seeds 3 --threads 2`` (prints a table; ``--json`` writes the numbers).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from labseg.ml.io import normalize
from labseg.ml.metrics import f1_at_iou
from labseg.ml.postprocess import instances_from_probs, split_instances
from labseg.ml.synthetic import make_nuclei, scribbles

METHODS = ("otsu", "forest", "unet")


def realistic_crop(seed: int, shape: tuple[int, int] = (256, 256)) -> tuple[np.ndarray, np.ndarray]:
    """A uint16 (1, H, W) fluorescence-like crop and its instances, harder than ``make_nuclei`` alone:
    random blur / noise / packing, and a smooth illumination field (bright to 45 % dimmer) plus an
    uneven background offset, as with a widefield microscope's vignetting and out-of-focus haze."""
    rng = np.random.default_rng(10_000 + seed)
    image, instances = make_nuclei(
        shape, seed=seed, touching=float(rng.uniform(0.4, 0.8)), blur=float(rng.uniform(1.0, 2.5)),
        noise=float(rng.uniform(0.03, 0.08)), dtype="float32",
    )
    h, w = shape
    field = ndi.gaussian_filter(rng.normal(size=(h, w)), min(h, w) / 5, mode="wrap")
    field = (field - field.min()) / max(np.ptp(field), 1e-9)
    shading = 0.55 + 0.45 * field
    haze = ndi.gaussian_filter(rng.normal(size=(h, w)), min(h, w) / 6, mode="wrap")
    haze = 0.12 * (haze - haze.min()) / max(np.ptp(haze), 1e-9)
    raw = image * shading + haze
    raw = raw / raw.max()
    return np.round(raw * 30000 + 300).astype(np.uint16), instances


def scribble_mask(instances: np.ndarray, seed: int, n_strokes: int = 15, bg_margin: float | None = None,
                  separations: int = 0) -> np.ndarray:
    """About 15 brush strokes (radius 5 px, 32 px long): ~5 % of a 256x256 crop labelled.

    ``bg_margin``: how close (px) background strokes come to nuclei; None = radius + 3 (8 px).
    """
    return scribbles(instances, n_strokes, radius=5, length=32, seed=seed, bg_margin=bg_margin,
                     separations=separations)


def _score(preds: list[np.ndarray], gts: list[np.ndarray]) -> tuple[float, float]:
    """Pooled instance F1 at IoU 0.5 (tp/fp/fn summed over crops) and mean foreground IoU."""
    tp = fp = fn = 0
    ious = []
    for pred, gt in zip(preds, gts):
        _, t, f, n = f1_at_iou(pred, gt, 0.5)
        tp, fp, fn = tp + t, fp + f, fn + n
        a, b = pred > 0, gt > 0
        ious.append((a & b).sum() / max((a | b).sum(), 1))
    return 2 * tp / max(2 * tp + fp + fn, 1), float(np.mean(ious))


def otsu_instances(x: np.ndarray) -> np.ndarray:
    """Baseline (a): Otsu threshold of the smoothed normalised image, then the shared watershed."""
    from skimage.filters import threshold_otsu

    smooth = ndi.gaussian_filter(x[0], 1.0)
    return split_instances(smooth > threshold_otsu(smooth), x)


def forest_features(x: np.ndarray) -> np.ndarray:
    """ilastik-like pixel features: intensity, edges and texture at scales 1..16 px, (H, W, F)."""
    from skimage.feature import multiscale_basic_features

    return multiscale_basic_features(x[0], intensity=True, edges=True, texture=True, sigma_min=1, sigma_max=16)


@dataclass
class ForestModel:
    """Baseline (b): a random forest on multiscale features, trained on the scribbled pixels."""

    threads: int = 1
    trees: int = 100

    def fit(self, x: np.ndarray, classes: np.ndarray) -> ForestModel:
        from sklearn.ensemble import RandomForestClassifier

        features = forest_features(x)
        labelled = classes > 0
        self.forest = RandomForestClassifier(n_estimators=self.trees, n_jobs=self.threads, random_state=0)
        self.forest.fit(features[labelled], classes[labelled])
        return self

    def instances(self, x: np.ndarray) -> np.ndarray:
        features = forest_features(x)
        proba = self.forest.predict_proba(features.reshape(-1, features.shape[-1]))
        fg = proba[:, list(self.forest.classes_).index(2)].reshape(x.shape[1:])
        return instances_from_probs(fg, image=x)


def run_seed(seed: int, *, n_test: int = 3, threads: int = 2, methods=METHODS, unet_overrides: dict | None = None,
             log=print, bg_margin: float | None = None, separations: int = 0) -> dict:
    """Train every method on one scribbled crop and score it on ``n_test`` held-out crops."""
    import torch

    from labseg.ml.tiling import predict_tiled
    from labseg.ml.train import fit, validate_config_overrides

    torch.set_num_threads(threads)
    raw, instances = realistic_crop(1000 * seed)
    classes = scribble_mask(instances, seed, bg_margin=bg_margin, separations=separations)
    tests = [realistic_crop(1000 * seed + k) for k in range(1, n_test + 1)]
    xs = [normalize(t) for t, _ in tests]
    gts = [g for _, g in tests]
    result = {"seed": seed, "labelled_fraction": float((classes > 0).mean()), "strokes": 15}
    for method in methods:
        start = time.monotonic()
        if method == "otsu":
            preds = [otsu_instances(x) for x in xs]
            train_s = 0.0
        elif method == "forest":
            model = ForestModel(threads=threads).fit(normalize(raw), classes)
            train_s = time.monotonic() - start
            preds = [model.instances(x) for x in xs]
        else:
            config = validate_config_overrides({"num_threads": threads, "device": "cpu", **(unet_overrides or {})})
            net, history = fit(raw, classes, config=config)
            train_s = history["seconds"]
            result["unet_steps"] = history["steps"]
            preds = [instances_from_probs(predict_tiled(net, x), image=x) for x in xs]
            tta_start = time.monotonic()
            tta = [instances_from_probs(predict_tiled(net, x, tta=True), image=x) for x in xs]
            f1, iou = _score(tta, gts)
            result["unet_tta"] = {"f1": f1, "iou": iou, "train_s": train_s,
                                  "total_s": train_s + time.monotonic() - tta_start}
            log(f"seed {seed} unet+tta F1@0.5 {f1:.3f}  fg IoU {iou:.3f}")
        f1, iou = _score(preds, gts)
        result[method] = {"f1": f1, "iou": iou, "train_s": train_s, "total_s": time.monotonic() - start}
        log(f"seed {seed} {method:6s} F1@0.5 {f1:.3f}  fg IoU {iou:.3f}  train {train_s:.1f}s")
    return result


def summarise(results: list[dict], methods=METHODS) -> str:
    """A text table of mean ± std over seeds."""
    lines = [f"{'method':9s}{'F1@0.5':>16s} {'fg IoU':>16s} {'train s':>14s}"]
    if "unet" in methods:
        methods = [*methods, "unet_tta"]
    for m in methods:
        f1 = np.array([r[m]["f1"] for r in results])
        iou = np.array([r[m]["iou"] for r in results])
        ts = np.array([r[m]["train_s"] for r in results])
        lines.append(f"{m:9s}{f1.mean():8.3f} ± {f1.std():5.3f} {iou.mean():8.3f} ± {iou.std():5.3f} "
                     f"{ts.mean():7.1f} ± {ts.std():4.1f}")
    frac = np.mean([r["labelled_fraction"] for r in results])
    lines.append(f"{len(results)} seed(s), {frac * 100:.1f} % of the training crop labelled (15 strokes)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fewlabel_synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (training crops)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--test", type=int, default=3, help="held-out crops per seed")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and the forest")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--unet", default="{}", help="JSON TrainConfig overrides for the U-Net")
    parser.add_argument("--json", help="write per-seed results here")
    parser.add_argument("--bg-margin", type=float, default=None,
                        help="px between background strokes and nuclei (default: brush radius + 3 = 8)")
    parser.add_argument("--separations", type=int, default=0,
                        help="how many of the background strokes are thin lines between touching nuclei")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown method(s): {', '.join(sorted(unknown))}")
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    results = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        results.append(run_seed(seed, n_test=args.test, threads=args.threads, methods=methods,
                                unet_overrides=json.loads(args.unet), bg_margin=args.bg_margin,
                                separations=args.separations))
    print(summarise(results, methods))
    load = os.getloadavg()
    print(f"started {started}; load average now {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"results": results, "loadavg": load, "started": started}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
