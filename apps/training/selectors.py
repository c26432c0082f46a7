"""Read queries of the training app: what its views list and fetch (scoped by membership), and what other
apps (and the version serializers) share."""
from __future__ import annotations

from django.db.models import Prefetch

from apps.annotate.models import Image, Project, Role
from apps.annotate.selectors import get_scoped

from .models import MetricScore, ModelVersion, ScoreMethod, TrainingRun

#: ``details["source"]`` of the scores a training run's own validation stored (later scorers keep them).
TRAINING_VALIDATION = "training-validation"
#: The training-run rows a project's run list shows (newest first).
RUN_LIST_LIMIT = 50


def get_run_for(user, run_id: int, min_role: str = Role.VIEWER) -> TrainingRun:
    """The run if ``user`` has ``min_role`` in its project, else 404."""
    return get_scoped(TrainingRun.objects.select_related("project", "created_by"), run_id, user, min_role,
                      label="Training run")


def get_version_for(user, version_id: int, min_role: str = Role.VIEWER) -> ModelVersion:
    """The version (with its run, parent, creator and scores) if ``user`` has ``min_role`` in its project."""
    qs = ModelVersion.objects.select_related("run", "parent", "created_by").prefetch_related("metric_scores")
    return get_scoped(qs, version_id, user, min_role, label="Model version")


def runs_of(project: Project):
    """The project's newest runs (at most ``RUN_LIST_LIMIT``), newest first."""
    return TrainingRun.objects.filter(project=project).select_related("created_by", "model_version")[:RUN_LIST_LIMIT]


def versions_of(project: Project):
    """The project's model versions, newest first, with what their serializer reads."""
    # the list shows aggregates only: per-image rows (images x metrics x methods each) stay unread
    return (ModelVersion.objects.filter(project=project).select_related("run", "parent", "created_by")
            .prefetch_related(Prefetch("metric_scores", queryset=MetricScore.objects.filter(image__isnull=True))))


def has_training_scores(version: ModelVersion, image: Image) -> bool:
    """Whether the version's training run scored this image (its validation, against the annotation
    version recorded in the provenance): those rows stay the version's validation scores."""
    return MetricScore.objects.filter(model_version=version, image=image, method=ScoreMethod.UNET,
                                      details__source=TRAINING_VALIDATION).exists()

# Lower is better for these; higher is better for every other metric (IoU, F1, ...).
LOWER_IS_BETTER = ("pixel_error", "rand_error", "adapted_rand_error", "warping_error")


def lower_is_better(name: str) -> bool:
    return name in LOWER_IS_BETTER


#: Compared with the baselines, in this order of importance (the first one the scores have is the headline).
COMPARED_METRICS = ("f1_iou50", "iou_fg", "adapted_rand_error", "mean_iou", "pixel_error")
#: A difference smaller than this is a tie (seed-to-seed noise of few-label training is far larger).
TIE = 0.005
ADVICE = ("Open a training image and step through its 'Objects to check' (the image grid shows how many; each "
          "image is predicted after training, or press Predict): where objects look merged, paint a short "
          "background line in the gap between them. Where the prediction runs wide of the objects, paint "
          "background strokes right up to their edges. Paint a few objects whole too (instance mode, including "
          "their outline as background); then train again.")
#: When the U-Net wins the headline but its foreground IoU is below a baseline's: it finds the objects and misses
#: their extent (on the real benchmark sets: halos where no background stroke is near, dim parts left out).
OUTLINE_ADVICE = ("The U-Net finds the objects, but its outlines match the labels less well than the {who}'s "
                  "(foreground IoU). Where its outlines run wide of the objects, paint background strokes right up "
                  "to their edges; where parts of objects are missing (dim cytoplasm, thin ends), paint a few "
                  "objects whole (instance mode, with their outline as background); then train again.")

#: The baselines as the advice names them.
_NAMES = {ScoreMethod.THRESHOLD: "threshold", ScoreMethod.FOREST: "random forest"}


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
    loses_to = _beaten_by(metrics, headline, baselines)
    # the headline won (or tied) but the objects' extent lost: a second, milder note with its own advice
    outline = _beaten_by(metrics, "iou_fg", baselines) if headline != "iou_fg" and not loses_to else []
    return {"baselines": baselines, "comparison": {
        "split": unet["split"], "images": unet["images"], "metrics": metrics, "headline": headline,
        "unet_loses_to": loses_to, "advice": ADVICE if loses_to else "",
        "outline_loses_to": outline,
        "outline_advice": OUTLINE_ADVICE.format(who=" and the ".join(_NAMES.get(m, m) for m in outline))
        if outline else "",
    }}



def _beaten_by(metrics: dict, name: str | None, baselines: dict) -> list[str]:
    """The baselines ahead of the U-Net on ``name`` by more than a tie ([] when the metric was not scored, or
    ``name`` is None: no metric shared)."""
    if name not in metrics:
        return []
    u = metrics[name]["unet"]
    sign = -1.0 if lower_is_better(name) else 1.0
    return [m for m in baselines if m in metrics[name] and sign * (metrics[name][m] - u) > TIE]
