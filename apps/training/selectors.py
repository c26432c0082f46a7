"""Read queries of the training app that other apps (and the version serializers) share."""
from __future__ import annotations

from .models import MetricScore, ModelVersion, ScoreMethod

# Lower is better for these; higher is better for every other metric (IoU, F1, ...).
LOWER_IS_BETTER = ("pixel_error", "rand_error", "adapted_rand_error", "warping_error")


def lower_is_better(name: str) -> bool:
    return name in LOWER_IS_BETTER


#: Compared with the baselines, in this order of importance (the first one the scores have is the headline).
COMPARED_METRICS = ("f1_iou50", "iou_fg", "adapted_rand_error", "mean_iou", "pixel_error")
#: A difference smaller than this is a tie (seed-to-seed noise of few-label training is far larger).
TIE = 0.005
ADVICE = ("Paint more background strokes between objects, where they touch or nearly touch, and paint a few "
          "objects whole (instance mode, including their outline as background); then train again.")


def baseline_comparison(version: ModelVersion, rows=None) -> dict:
    """The U-Net beside the baselines its training run fitted on the same labels and scored on the same
    held-out images: ``{"baselines": {method: {"split", "images", "scores"}}, "comparison": {...} | None}``.

    Only the run's own aggregates are compared (all methods scored on exactly the same images). The
    comparison names each metric's best method, the baselines the U-Net loses to on the headline
    metric, and what to paint next when it does. ``rows``: the version's scores when already loaded."""
    if rows is None:
        rows = MetricScore.objects.filter(model_version=version, image__isnull=True)
    by_method: dict[str, dict] = {}
    for row in rows:
        if row.image_id is not None:
            continue
        entry = by_method.setdefault(row.method, {"split": row.split, "images": None, "scores": {}})
        entry["scores"][row.name] = row.value
        if isinstance(row.details, dict) and row.details.get("images") is not None:
            entry["images"] = row.details["images"]
    unet = by_method.pop(ScoreMethod.UNET, None)
    baselines = {m: by_method[m] for m in (ScoreMethod.THRESHOLD, ScoreMethod.FOREST) if m in by_method}
    if unet is None or not baselines:
        return {"baselines": baselines, "comparison": None}
    metrics: dict[str, dict] = {}
    for name in COMPARED_METRICS:
        values = {"unet": unet["scores"].get(name), **{m: b["scores"].get(name) for m, b in baselines.items()}}
        values = {m: v for m, v in values.items() if v is not None}
        if "unet" not in values or len(values) < 2:
            continue
        pick = min if lower_is_better(name) else max
        best = pick(values, key=values.get)
        metrics[name] = {**values, "best": best, "lower_is_better": lower_is_better(name)}
    headline = next(iter(metrics), None)
    loses_to = []
    if headline is not None:
        u = metrics[headline]["unet"]
        sign = -1.0 if lower_is_better(headline) else 1.0
        loses_to = [m for m in baselines if m in metrics[headline] and sign * (metrics[headline][m] - u) > TIE]
    return {"baselines": baselines, "comparison": {
        "split": unet["split"], "images": unet["images"], "metrics": metrics, "headline": headline,
        "unet_loses_to": loses_to, "advice": ADVICE if loses_to else "",
    }}
