"""``labseg.ml.train.LiveTrainer``: training step by step while the data change (no Django)."""
from __future__ import annotations

import numpy as np
import pytest

from labseg.ml.synthetic import classes_from_instances, make_nuclei
from labseg.ml.train import LiveTrainer, TrainConfig, load_checkpoint

TINY = TrainConfig(base_channels=4, depth=2, tile_output=32, batch_size=2, warmup_steps=0, seed=0, device="cpu")


def test_live_trainer_learns_from_a_draft_and_checkpoints(tmp_path):
    pixels, instances = make_nuclei((64, 64), seed=1)
    classes = classes_from_instances(instances)
    trainer = LiveTrainer(TINY, in_channels=1, num_classes=2)
    assert trainer.train(3) is None and not trainer.has_data  # nothing to learn from yet
    assert trainer.set_draft(pixels, np.zeros_like(classes)) is False
    assert trainer.set_draft(pixels, classes, instances)
    first = trainer.train(5)
    for _ in range(8):
        last = trainer.train(5)
    assert trainer.steps == 45 and last < first
    probs = trainer.predict(np.zeros((1, 40, 30), np.float32))
    assert probs.shape == (2, 40, 30) and np.allclose(probs.sum(0), 1, atol=1e-4)
    trainer.checkpoint(tmp_path / "live.pt", extra={"provenance": {"draft": 1}})
    model, meta = load_checkpoint(tmp_path / "live.pt")
    assert meta["history"]["steps"] == 45 and meta["extra"]["provenance"] == {"draft": 1}
    warm = LiveTrainer(TINY, in_channels=1, num_classes=2, init=str(tmp_path / "live.pt"))
    assert all(np.allclose(a, b) for a, b in zip(model.state_dict().values(), warm.model.state_dict().values()))


def test_live_trainer_refuses_data_that_does_not_fit():
    trainer = LiveTrainer(TINY, in_channels=1, num_classes=2)
    with pytest.raises(ValueError, match="channel"):
        trainer.set_data([np.zeros((2, 16, 16), np.float32)], [np.ones((16, 16), np.uint8)])
    with pytest.raises(ValueError, match="exceeds num_classes"):
        trainer.set_draft(np.zeros((16, 16), np.float32), np.full((16, 16), 3, np.uint8))
