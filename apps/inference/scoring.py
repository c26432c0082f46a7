"""Score a finished prediction against the image's annotation with the ML core's metrics.

Only images in the validation or test split with labelled pixels are scored. ``labseg.ml.metrics.
score_all`` computes pixel-wise metrics on labelled pixels only and skips the metrics that need a
dense ground truth (Rand, adapted Rand, warping, F1) on sparse annotations; every stored row says
whether the ground truth was dense and which metrics were skipped (``details.dense``/``skipped``).
Rows are stored with ``apps.training.services.record_metric_scores`` (one per version, image, name),
named as the training run's validation rows (``labseg.ml.metrics.metric_rows``); an image the
version's training run already scored keeps those validation rows.
"""
from __future__ import annotations

import numpy as np

from apps.annotate.masks import annotation_arrays
from apps.annotate.models import Annotation, Split

from .models import Prediction

SCORED_SPLITS = (Split.VALIDATION, Split.TEST)


def score_masks(pred_classes: np.ndarray, pred_instances: np.ndarray | None, gt_classes: np.ndarray,
                gt_instances: np.ndarray | None) -> dict:
    """``{name: {"value", "dense", "skipped", ...details}}`` ready for ``record_metric_scores``."""
    from labseg.ml.metrics import metric_rows, score_all

    result = score_all(pred_classes, pred_instances, gt_classes, gt_instances)
    dense = result["n_labelled"] == result["n_pixels"]
    skipped = sorted(result.get("skipped") or {})
    rows = {}
    for name, raw in metric_rows(result).items():
        row = dict(raw) if isinstance(raw, dict) else {"value": raw}
        row.update(dense=dense, skipped=skipped, n_labelled=result["n_labelled"])
        rows[name] = row
    return rows


def score_prediction(prediction_id: int, *, classes: np.ndarray, instances: np.ndarray) -> dict:
    """Score the prediction if its image is in a scored split and annotated; returns the stored rows."""
    from apps.training.selectors import has_training_scores
    from apps.training.services import record_metric_scores

    pred = Prediction.objects.select_related("image", "model_version").get(pk=prediction_id)
    if pred.image.split not in SCORED_SPLITS:
        return {}
    if has_training_scores(pred.model_version, pred.image):
        # the run already scored this image at the end of training (without TTA): those rows are the
        # version's validation scores and are not replaced by the auto-prediction's (TTA) scores
        return {}
    annotation = Annotation.objects.filter(image=pred.image).first()
    gt_classes, gt_instances = annotation_arrays(annotation) if annotation is not None else (None, None)
    if gt_classes is None or not gt_classes.any():
        return {}
    rows = score_masks(classes, instances, gt_classes, gt_instances)
    record_metric_scores(pred.model_version, pred.image, pred.image.split, rows, source="prediction")
    return rows
