"""Read queries of the inference app, each scoped by membership (404 non-members, 403 below the role)."""
from __future__ import annotations

from collections import defaultdict

from rest_framework.exceptions import NotFound, ValidationError

from apps.annotate.models import Image, LabelClass, Role
from apps.annotate.selectors import get_scoped
from apps.training.models import MetricScore, ModelVersion, ScoreMethod
from apps.training.selectors import LOWER_IS_BETTER, baseline_comparison, lower_is_better

from .models import ModelExport, Prediction, PredictionStatus

# Metrics that need dense ground truth (every pixel labelled); skipped on sparse annotations.
DENSE_ONLY_METRICS = ("rand_error", "adapted_rand_error", "warping_error", "f1_iou50")


def get_version_for(user, version_id: int, min_role: str = Role.VIEWER) -> ModelVersion:
    return get_scoped(ModelVersion.objects.select_related("project"), version_id, user, min_role,
                      label="Model version")


def get_prediction_for(user, prediction_id: int, min_role: str = Role.VIEWER) -> Prediction:
    return get_scoped(Prediction.objects.select_related("image", "model_version"), prediction_id, user, min_role,
                      label="Prediction", project_attr="image.project_id")


def get_export_for(user, export_id: int, min_role: str = Role.VIEWER) -> ModelExport:
    return get_scoped(ModelExport.objects.select_related("model_version"), export_id, user, min_role,
                      label="Export")


def active_version(project_id: int) -> ModelVersion | None:
    return ModelVersion.objects.filter(project_id=project_id, is_active=True).first()


def newest_per(predictions, key: str) -> list[Prediction]:
    """The first prediction per value of ``key`` in an ordered iterable (portable DISTINCT ON)."""
    seen, out = set(), []
    for pred in predictions:
        value = getattr(pred, key)
        if value not in seen:
            seen.add(value)
            out.append(pred)
    return out


def latest_predictions(version: ModelVersion, related: tuple[str, ...] = ()) -> list[Prediction]:
    """The newest succeeded prediction of each image by ``version``."""
    rows = (Prediction.objects.filter(model_version=version, status=PredictionStatus.SUCCEEDED)
            .select_related(*related).order_by("image_id", "-finished_at", "-id"))
    return newest_per(rows, "image_id")


def version_metrics(version: ModelVersion) -> dict:
    """Per-image scores and aggregates (mean per split and overall; F1 also pooled over TP/FP/FN)."""
    rows = list(MetricScore.objects.filter(model_version=version, method=ScoreMethod.UNET).select_related("image"))
    per_image: dict[int, dict] = {}
    stored_aggregates: dict[str, dict] = defaultdict(dict)
    for row in rows:
        if row.image_id is None:
            stored_aggregates[row.split or "all"][row.name] = row.value
            continue
        entry = per_image.setdefault(row.image_id, {
            "image": row.image_id, "filename": row.image.original_filename, "split": row.split or row.image.split,
            "scores": {}, "details": {}, "dense": True, "skipped": [],
        })
        entry["scores"][row.name] = row.value
        if row.details:
            entry["details"][row.name] = row.details
            if row.details.get("dense") is False:
                entry["dense"] = False
                entry["skipped"] = sorted(set(entry["skipped"]) | set(row.details.get("skipped") or []))
    images = sorted(per_image.values(), key=lambda e: e["image"])
    aggregate = {"all": _aggregate(images)}
    for split in sorted({e["split"] for e in images}):
        aggregate[split] = _aggregate([e for e in images if e["split"] == split])
    return {
        "model_version": version.pk, "number": version.number, "images": images, "aggregate": aggregate,
        "stored_aggregates": stored_aggregates, "dense_only_metrics": list(DENSE_ONLY_METRICS),
        "lower_is_better": [m for m in LOWER_IS_BETTER],
        **baseline_comparison(version),
    }




def _aggregate(images: list[dict]) -> dict:
    """Mean of each metric over the images that have it, with the count; pooled F1 from TP/FP/FN."""
    sums: dict[str, list[float]] = defaultdict(list)
    tp = fp = fn = 0
    pooled = False
    for entry in images:
        for name, value in entry["scores"].items():
            sums[name].append(value)
        d = entry["details"].get("f1_iou50")
        if d and all(k in d for k in ("tp", "fp", "fn")):
            tp, fp, fn, pooled = tp + int(d["tp"]), fp + int(d["fp"]), fn + int(d["fn"]), True
    out = {name: {"mean": sum(vals) / len(vals), "n": len(vals)} for name, vals in sorted(sums.items())}
    if pooled:
        denom = 2 * tp + fp + fn
        out["f1_iou50_pooled"] = {"value": (2 * tp / denom) if denom else 1.0, "tp": tp, "fp": fp, "fn": fn}
    return out


def compare_versions(project_id: int, a_id, b_id) -> dict:
    """Metrics of versions a and b side by side: per image and aggregated over the images both were
    scored on (see ``shared_aggregate``), with b's change marked."""
    try:
        a_id, b_id = int(a_id), int(b_id)
    except (TypeError, ValueError) as exc:
        raise ValidationError({"a": "Give two model version ids as ?a=..&b=.."}) from exc
    versions = {v.pk: v for v in ModelVersion.objects.filter(project_id=project_id, pk__in=[a_id, b_id])}
    if a_id not in versions or b_id not in versions:
        raise NotFound("Model version not found in this project.")
    ma, mb = version_metrics(versions[a_id]), version_metrics(versions[b_id])
    by_image_b = {e["image"]: e for e in mb["images"]}
    images = []
    for ea in ma["images"]:
        eb = by_image_b.get(ea["image"])
        if eb is None:
            continue
        images.append({"image": ea["image"], "filename": ea["filename"], "split": ea["split"],
                       "metrics": _side_by_side(ea["scores"], eb["scores"])})
    shared = shared_aggregate(ma["images"], mb["images"])
    return {
        "a": {"id": a_id, "number": versions[a_id].number}, "b": {"id": b_id, "number": versions[b_id].number},
        **shared, "images": images,
    }


def shared_aggregate(images_a: list[dict], images_b: list[dict]) -> dict:
    """Both versions' means over the images *both* were scored on, metric by metric (a metric counts an
    image only when both versions have that metric there), so a version scored on other or fewer images
    never looks better for it. ``{"aggregate": {metric: {"a", "b", "delta", "verdict", "n"}},
    "shared_images": n, "shared_splits": {split: n}, "only_a": n, "only_b": n}``."""
    by_b = {e["image"]: e for e in images_b}
    shared_ids = [e["image"] for e in images_a if e["image"] in by_b]
    by_a = {e["image"]: e for e in images_a}
    sums: dict[str, list[tuple[float, float]]] = defaultdict(list)
    splits: dict[str, int] = defaultdict(int)
    for image_id in shared_ids:
        sa, sb = by_a[image_id]["scores"], by_b[image_id]["scores"]
        splits[by_a[image_id]["split"] or "unknown"] += 1
        for name in set(sa) & set(sb):
            sums[name].append((sa[name], sb[name]))
    means_a = {k: sum(a for a, _ in v) / len(v) for k, v in sums.items()}
    means_b = {k: sum(b for _, b in v) / len(v) for k, v in sums.items()}
    aggregate = _side_by_side(means_a, means_b)
    for name, side in aggregate.items():
        side["n"] = len(sums[name])
    return {"aggregate": aggregate, "shared_images": len(shared_ids), "shared_splits": dict(sorted(splits.items())),
            "only_a": len(images_a) - len(shared_ids), "only_b": len(images_b) - len(shared_ids)}


def _side_by_side(a: dict, b: dict) -> dict:
    """``{metric: {"a", "b", "delta", "verdict"}}`` where verdict says whether b is better than a."""
    out = {}
    for name in sorted(set(a) & set(b)):
        delta = b[name] - a[name]
        if abs(delta) < 1e-12:
            verdict = "same"
        else:
            better = delta < 0 if lower_is_better(name) else delta > 0
            verdict = "better" if better else "worse"
        out[name] = {"a": a[name], "b": b[name], "delta": delta, "verdict": verdict}
    return out


def next_uncertain_image(project_id: int, exclude: list[int] | None = None) -> dict | None:
    """The image where a label helps most: highest mean uncertainty of the active version's predictions,
    preferring images with few labelled pixels (ranked by mean uncertainty x (1 - labelled fraction))."""
    version = active_version(project_id)
    if version is None:
        return None
    best = None
    for pred in latest_predictions(version, ("image", "image__annotation")):
        if pred.mean_uncertainty is None or (exclude and pred.image_id in exclude):
            continue
        image: Image = pred.image
        labelled = getattr(getattr(image, "annotation", None), "labelled_pixels", 0) or 0
        fraction = labelled / max(1, image.width * image.height)
        score = pred.mean_uncertainty * (1.0 - fraction)
        if best is None or score > best["score"]:
            best = {"image": image.pk, "filename": image.original_filename, "prediction": pred.pk,
                    "mean_uncertainty": pred.mean_uncertainty, "labelled_fraction": fraction, "score": score,
                    "model_version": version.pk}
    return best


def to_check(counts: dict) -> int | None:
    """How many objects of a prediction look merged (``counts.review.total``); None when it has no list
    (predicted before lists existed, or a membrane-split version)."""
    review = counts.get("review") if isinstance(counts, dict) else None
    total = review.get("total") if isinstance(review, dict) else None
    return int(total) if isinstance(total, int) else None


def project_predictions(project_id: int, version: ModelVersion | None) -> dict:
    """For the image grid: each image's newest finished prediction by ``version`` (default: the active
    one), its level for a ~128-px thumbnail, its F1 / pixel error where the image was scored, and how
    many of its objects look merged (``to_check``)."""
    version = version or active_version(project_id)
    if version is None:
        return {"model_version": None, "images": []}
    scores: dict[int, dict] = defaultdict(dict)
    for image_id, name, value in MetricScore.objects.filter(
        model_version=version, image__isnull=False, name__in=("f1_iou50", "pixel_error"), method=ScoreMethod.UNET
    ).values_list("image_id", "name", "value"):
        scores[image_id][name] = value
    rows = []
    for pred in latest_predictions(version, ("image",)):
        side = max(pred.image.width, pred.image.height)
        level = max(0, (side - 1).bit_length() - 7)  # 2**level >= side / 128
        rows.append({"image": pred.image_id, "prediction": pred.pk, "level": level,
                     "thumbnail_url": f"/api/v1/predictions/{pred.pk}/classes.png?style=colour&level={level}",
                     "instances": pred.counts.get("instances"),
                     "instances_per_class": pred.counts.get("instances_per_class"),
                     "to_check": to_check(pred.counts),
                     "mean_uncertainty": pred.mean_uncertainty,
                     "f1_iou50": scores[pred.image_id].get("f1_iou50"),
                     "pixel_error": scores[pred.image_id].get("pixel_error")})
    classes = list(LabelClass.objects.filter(project_id=project_id, index__gte=2).order_by("index")
                   .values("index", "name"))
    return {"model_version": {"id": version.pk, "number": version.number}, "classes": classes, "images": rows}
