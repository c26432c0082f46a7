"""Plain helpers shared by the inference tests and the inference browser tests."""
from __future__ import annotations


def predict_inline(version, image):
    """Run the prediction task body in this process (the worker's code, without broker or worker)."""
    import torch

    from apps.inference import runner
    from apps.inference.models import Prediction
    from apps.inference.services import claim_prediction

    torch.set_num_threads(1)
    pred = Prediction.objects.create(image=image, model_version=version)
    assert claim_prediction(pred.pk, "inline:1")
    runner.run_prediction(pred.pk, "inline:1")
    pred.refresh_from_db()
    assert pred.status == "succeeded", pred.error
    return pred
