"""Fixtures of the inference tests: synthetic images and tiny model versions (no training run needed)."""
from __future__ import annotations

import pytest

from tests.helpers import image_row, tiff_bytes  # noqa: F401 - tiff_bytes: re-exported, tests import it from here

from .helpers import predict_inline


@pytest.fixture
def make_image(db):
    """``make_image(project, shape=(64, 64), seed=0, split="train") -> (Image, pixels (C,H,W), instances)``."""
    from labseg.ml.synthetic import make_nuclei

    def make(project, shape=(64, 64), seed=0, split="train", channels=1, touching=0.6):
        pixels, instances = make_nuclei(shape, seed=seed, channels=channels, radius=(4.0, 7.0), touching=touching)
        return image_row(project, pixels, f"img{seed}.tif", split=split), pixels, instances

    return make


@pytest.fixture
def make_version(db):
    """``make_version(project, number=1, base_channels=4, depth=2, seed=0) -> ModelVersion`` with a real
    checkpoint of a freshly initialised tiny UNet (He init, so its predictions are not trivial)."""
    def make(project, number=1, base_channels=4, depth=2, seed=0, parent=None, in_channels=1, num_classes=2,
             threshold=None, provenance=None):
        return create_tiny_version(project, number, base_channels, depth, seed, parent, in_channels, num_classes,
                                   threshold=threshold, provenance=provenance)

    return make


def make_threshold_unet(model, threshold: float = 0.35, gain: float = 25.0):
    """Set a UNet's weights so it thresholds channel 0: every conv passes input channel 0 through its
    centre tap (the decoder uses only the skip connection), the head gives logit(class 2) - logit(class 1)
    = gain * (x - threshold). A known, non-trivial segmenter without a training run."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                m.weight.zero_()
                if m.bias is not None:
                    m.bias.zero_()
                if isinstance(m, torch.nn.Conv2d) and m is not model.head:
                    m.weight[0, 0, 1, 1] = 1.0
        model.head.weight[1, 0, 0, 0] = gain
        model.head.bias[1] = -gain * threshold
    return model


def create_tiny_version(project, number=1, base_channels=4, depth=2, seed=0, parent=None, in_channels=1,
                        num_classes=2, is_active=False, threshold: float | None = None,
                        provenance: dict | None = None):
    import tempfile
    from pathlib import Path

    import torch
    from django.core.files import File

    from apps.training.models import ModelVersion
    from labseg.ml.train import save_checkpoint
    from labseg.ml.unet import UNet

    torch.manual_seed(seed)
    model = UNet(in_channels=in_channels, num_classes=num_classes, base_channels=base_channels, depth=depth)
    if threshold is not None:
        make_threshold_unet(model, threshold)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        save_checkpoint(path, model, class_names=["background", "nucleus"][:num_classes],
                        extra={"provenance": provenance} if provenance else None)
        mv = ModelVersion(project=project, number=number, parent=parent, architecture=model.config,
                          is_active=is_active, provenance=provenance or {})
        with path.open("rb") as fh:
            mv.checkpoint.save("model.pt", File(fh), save=False)
        mv.save()
    return mv


@pytest.fixture
def run_inline(db):
    """``run_inline(version, image) -> Prediction``: the task body in this process (no broker, no worker)."""
    return predict_inline
