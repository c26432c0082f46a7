"""Services and pipeline pieces without a worker: recovery rule, activation rule, progress/ETA,
checkpoint upload validation, hold-out split and the weight-map cache."""
from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from apps.training import pipeline, services
from apps.training.models import ModelVersion, RunStatus, TrainingRun

from .conftest import add_image
from .test_api import make_version

pytestmark = pytest.mark.django_db


def running_run(project, *, attempts: int, age_s: float, cancel: bool = False, worker: str = "w1") -> TrainingRun:
    return TrainingRun.objects.create(
        project=project, status=RunStatus.RUNNING, attempts=attempts, worker=worker, cancel_requested=cancel,
        heartbeat_at=timezone.now() - timedelta(seconds=age_s), started_at=timezone.now(),
    )


# --- recovery ------------------------------------------------------------------------------------
def test_stale_run_on_first_attempt_is_requeued(project):
    run = running_run(project, attempts=1, age_s=300)
    assert services.recover_stale_runs(timeout_s=120) == {"requeued": [run.pk], "failed": [], "cancelled": []}
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.worker == "" and "stopped responding" in run.message


def test_stale_run_on_second_attempt_fails_with_a_message(project):
    run = running_run(project, attempts=2, age_s=300)
    assert services.recover_stale_runs(timeout_s=120)["failed"] == [run.pk]
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.finished_at is not None
    assert "stopped responding" in run.error and "twice" in run.error


def test_stale_run_with_cancel_requested_ends_cancelled(project):
    run = running_run(project, attempts=1, age_s=300, cancel=True)
    assert services.recover_stale_runs(timeout_s=120)["cancelled"] == [run.pk]
    assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.CANCELLED


def test_fresh_heartbeat_is_left_alone(project):
    run = running_run(project, attempts=1, age_s=5)
    assert services.recover_stale_runs(timeout_s=120) == {"requeued": [], "failed": [], "cancelled": []}
    assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.RUNNING


def test_a_recovered_worker_that_wakes_up_is_stopped_at_its_next_write(project):
    run = running_run(project, attempts=1, age_s=300)
    services.recover_stale_runs(timeout_s=120)
    with pytest.raises(services.RunStopped) as stop:
        services.heartbeat(run.pk, "w1")
    assert stop.value.reason == "lost"
    assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.QUEUED  # nothing written by the zombie


# --- progress --------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_progress_writes_step_curve_and_eta_and_throttles(project):
    run = running_run(project, attempts=1, age_s=0)
    clock = FakeClock()
    rep = services.ProgressReporter(run.pk, "w1", total_steps=100, interval=2.0, clock=clock)
    clock.t += 10.0
    rep(20, 0.9, steps=100)  # 20 steps in 10 s -> 40 s for the 80 left
    run.refresh_from_db()
    assert (run.step, run.total_steps, run.progress) == (20, 100, 0.2)
    assert run.eta_seconds == pytest.approx(40.0) and run.elapsed_seconds == pytest.approx(10.0)
    assert run.loss_curve == [[20, 0.9]]
    clock.t += 1.0
    rep(21, 0.8)  # within the interval: not written
    assert TrainingRun.objects.get(pk=run.pk).step == 20
    clock.t += 1.5
    rep(22, 0.7)
    assert TrainingRun.objects.get(pk=run.pk).loss_curve == [[20, 0.9], [21, 0.8], [22, 0.7]]


def test_eta_is_capped_by_the_time_budget():
    rep = services.ProgressReporter(0, "w", total_steps=1000, max_seconds=60, clock=lambda: 0.0)
    assert rep.eta(10, 30.0) == pytest.approx(30.0)  # 2970 s by steps, 30 s left in the budget
    assert rep.eta(500, 10.0) == pytest.approx(10.0)  # by steps: 10 s


def test_progress_sees_the_cancel_flag(project):
    run = running_run(project, attempts=1, age_s=0)
    rep = services.ProgressReporter(run.pk, "w1", total_steps=10, interval=0.0)
    rep(1, 1.0)
    services.cancel_run(run)
    with pytest.raises(services.RunStopped) as stop:
        rep(2, 1.0)
    assert stop.value.reason == "cancelled"


# --- activation rule -------------------------------------------------------------------------------
def _finish(project, parent, tmp_path):
    run = TrainingRun.objects.create(project=project, status=RunStatus.RUNNING, worker="w", parent_version=parent)
    ckpt = tmp_path / f"c{run.pk}.pt"
    ckpt.write_bytes(b"weights")
    return services.finish_run(run.pk, "w", checkpoint_path=ckpt, architecture={}, config={}, provenance={},
                               scores=[services.ImageScores(None, "validation", {"pixel_error": 0.25})])


def test_version_activation_rule(project, tmp_path):
    v1 = _finish(project, None, tmp_path)
    assert v1.is_active and v1.number == 1  # no active version yet
    v2 = _finish(project, v1, tmp_path)
    v1.refresh_from_db()
    assert v2.is_active and not v1.is_active  # fine-tuned from the active one: replaces it
    v3 = _finish(project, v1, tmp_path)
    v2.refresh_from_db()
    assert not v3.is_active and v2.is_active  # branched from an older version: the lab decides
    v4 = _finish(project, None, tmp_path)
    assert not ModelVersion.objects.get(pk=v4.pk).is_active and v4.number == 4
    assert v4.metric_scores.get().value == 0.25
    assert TrainingRun.objects.get(pk=v4.run_id).status == RunStatus.SUCCEEDED


def test_finish_by_a_worker_that_lost_the_run_creates_nothing(project, tmp_path):
    run = TrainingRun.objects.create(project=project, status=RunStatus.RUNNING, worker="other")
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"x")
    assert services.finish_run(run.pk, "me", checkpoint_path=ckpt, architecture={}, config={}, provenance={}) is None
    assert not ModelVersion.objects.exists()


# --- checkpoint upload -----------------------------------------------------------------------------
def checkpoint_bytes(in_channels: int, num_classes: int = 2) -> bytes:
    import os
    import tempfile

    from labseg.ml.train import save_checkpoint
    from labseg.ml.unet import UNet

    model = UNet(in_channels, num_classes, base_channels=2, depth=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.pt")
        save_checkpoint(path, model)
        return open(path, "rb").read()


def upload(client, project, data: bytes, name="model.pt"):
    return client.post(f"/api/v1/projects/{project.pk}/model-versions/",
                       {"checkpoint": SimpleUploadedFile(name, data), "name": "from the web"}, format="multipart")


def test_upload_with_the_wrong_channel_count_is_refused_with_a_clear_message(client_for, project, owner):
    add_image(project, seed=1, channels=1)
    r = upload(client_for(owner), project, checkpoint_bytes(in_channels=3))
    assert r.status_code == 400
    assert r.json()["detail"] == ("checkpoint: This model expects 3-channel images, but the images of this project "
                                  "have 1 channel. Upload a model trained on 1-channel images.")
    assert not ModelVersion.objects.exists()


def test_upload_with_the_wrong_class_count_is_refused(client_for, project, owner):
    add_image(project, seed=1)
    r = upload(client_for(owner), project, checkpoint_bytes(in_channels=1, num_classes=3))
    assert r.status_code == 400 and "predicts 3 classes, but this project has 2" in r.json()["detail"]


def test_upload_of_a_file_that_is_not_a_checkpoint_answers_400(client_for, project, owner):
    r = upload(client_for(owner), project, b"GIF89a not a model")
    assert r.status_code == 400 and "not a LabSeg checkpoint" in r.json()["detail"]


def test_matching_upload_becomes_the_first_active_version(client_for, project, owner):
    add_image(project, seed=1)
    data = checkpoint_bytes(in_channels=1)
    r = upload(client_for(owner), project, data)
    assert r.status_code == 201, r.content
    v = ModelVersion.objects.get(pk=r.json()["id"])
    assert v.is_active and v.number == 1 and v.name == "from the web" and v.provenance["uploaded"] is True
    assert v.architecture["in_channels"] == 1 and v.architecture["num_classes"] == 2
    download = client_for(owner).get(f"/api/v1/model-versions/{v.pk}/checkpoint")
    assert download.status_code == 200 and b"".join(download.streaming_content) == data


# --- hold-out and weight cache ---------------------------------------------------------------------
def _example(project, seed: int, split: str = "train") -> pipeline.Example:
    img = add_image(project, seed=seed, split=split)
    from apps.annotate.masks import annotation_arrays

    classes, inst = annotation_arrays(img.annotation)
    return pipeline.Example(img, img.annotation, np.zeros((1,) + classes.shape, np.float32), classes, inst)


def test_validation_split_images_are_scored_not_trained(project):
    a, b = _example(project, 1), _example(project, 2, "validation")
    train, held = pipeline.split_holdout([a, b])
    assert train == [a] and [(h.example, h.split) for h in held] == [(b, "validation")]


def test_single_image_holds_out_a_quarter_of_its_labels(project):
    """The four candidate strips made here by hand (the last / first quarter of the labelled columns / rows), each
    with the largest distance of a class's share of labels in it from a quarter: the right one unless a class's
    share is over half, else the one whose shares stray least."""
    a = _example(project, 1)
    train, held = pipeline.split_holdout([a])
    labelled = a.classes > 0
    strips = {}
    for side, axis in (("right", 0), ("left", 0), ("bottom", 1), ("top", 1)):
        lines = np.flatnonzero(labelled.any(axis=axis))
        width = lines[-1] + 1 - int(lines[0] + (lines[-1] - lines[0] + 1) * 0.75)
        mask = np.zeros_like(labelled)
        span = slice(lines[-1] + 1 - width, None) if side in ("right", "bottom") else slice(None, lines[0] + width)
        mask[(slice(None), span) if axis == 0 else (span, slice(None))] = True
        shares = [((a.classes == k) & mask).sum() / (a.classes == k).sum() for k in (1, 2)]
        strips[side] = mask, max(abs(s - 0.25) for s in shares)
    expected = "right" if strips["right"][1] <= 0.25 else min(strips, key=lambda s: strips[s][1])
    assert held[0].strip.side == expected and held[0].strip.deviation == pytest.approx(strips[expected][1])
    inside = held[0].strip.mask(a.classes.shape)
    np.testing.assert_array_equal(inside, strips[expected][0])
    assert not train[0].classes[inside].any()  # nothing in the strip is trained on
    np.testing.assert_array_equal(train[0].classes[~inside], a.classes[~inside])


def test_the_runs_split_is_read_from_the_whole_labels_of_its_training_images(project):
    """With one labelled image the run trains on three quarters of its labels, but the split is read from all of
    them: here most membrane lines lie in the held-out quarter (1000 of the 2150 background pixels: under half,
    so the right quarter is held out), and the rest (object strokes, one thick background patch and one line)
    alone would read as blobs."""
    from types import SimpleNamespace

    from labseg.ml.postprocess import painted_split

    classes = np.zeros((100, 200), np.uint8)
    classes[10:20, 10:20] = classes[10:20, 60:70] = 2  # object strokes
    classes[50:80, 30:65] = 1  # a thick background patch: 1050 px
    classes[0:50, 100:102] = 1  # one 2-px membrane line on the training side: 100 px
    for col in (155, 165, 175, 185, 195):  # 2-px membrane lines: 1000 px, all right of the hold-out cut
        classes[:, col:col + 2] = 1

    def example(split):
        return pipeline.Example(SimpleNamespace(split=split), None, np.zeros((1, 100, 200), np.float32), classes,
                                None)

    one = example("train")
    train, held = pipeline.split_holdout([one])
    assert held[0].region == (slice(None), slice(150, None)) and painted_split([e.classes for e in train]) == "shape"
    assert painted_split(classes) == "boundaries" and pipeline.run_split([one]) == "boundaries"
    blobs = pipeline.Example(SimpleNamespace(split="train"), None, one.raw, train[0].classes, None)
    assert pipeline.run_split([blobs, example("validation")]) == "shape"  # a validation image is not read


def test_a_single_images_hold_out_never_takes_most_of_a_class(project):
    """Membrane lines as in ``test_the_runs_split_is_read_...`` (1000 px in columns 155..196), a 900-px background
    patch and three 100-px object strokes: the right quarter would hold 1000 of the 1900 background pixels (0.53,
    over half). By hand, (background, object) shares and their largest distance from a quarter (labelled rows
    0..99, columns 10..196): left (columns ..56): the patch's columns 30..56 (810 px: 0.43) and the first stroke
    (0.33): 0.18; bottom (rows 75..): 5 rows of the patch and 25 of each line (150 + 250 px: 0.21) and the third
    stroke (0.33): 0.08; top (rows ..24): 25 rows of each line (250 px: 0.13) and the first stroke: 0.12. So the
    bottom quarter is held out, training keeps three quarters of every line, and only that strip is scored."""
    from types import SimpleNamespace

    classes = np.zeros((100, 200), np.uint8)
    classes[10:20, 10:20] = classes[40:50, 60:70] = classes[80:90, 100:110] = 2
    classes[50:80, 30:60] = 1
    for col in (155, 165, 175, 185, 195):
        classes[:, col:col + 2] = 1
    one = pipeline.Example(SimpleNamespace(split="train"), None, np.zeros((1, 100, 200), np.float32), classes, None)
    train, held = pipeline.split_holdout([one])
    strip = held[0].strip
    assert (strip.side, strip.rows, strip.cols) == ("bottom", slice(75, None), slice(None))
    assert strip.shares == ((1, pytest.approx(400 / 1900)), (2, pytest.approx(1 / 3)))
    assert held[0].region == (slice(75, None), slice(None))
    np.testing.assert_array_equal(train[0].classes[:75], classes[:75])
    assert not train[0].classes[75:].any() and (train[0].classes[:, 155:] == 1).sum() == 750
    assert train[0].variant == "held-75:None-None:None"

    def predict(raw, on_tile):  # objects everywhere
        return np.full((100, 200), 2, np.uint8), None

    one.image.original_filename, one.image.pk = "one.tif", 7
    scored = pipeline.score_images(predict, held, lambda *_: None)[0].scores
    assert scored["pixel_error"]["n_labelled"] == 500  # the strip's labels: 400 background, 100 object
    assert scored["pixel_error"]["value"] == pytest.approx(400 / 500)  # (over the whole image: 1900 / 2200)


def test_weight_map_cache_is_keyed_by_annotation_version(project, settings, tmp_path):
    from labseg.ml.weights import weight_map

    settings.MEDIA_ROOT = tmp_path
    ex = _example(project, 1)
    first, hit1 = pipeline.cached_weight_map(ex, 10.0, 5.0)
    again, hit2 = pipeline.cached_weight_map(ex, 10.0, 5.0)
    assert (hit1, hit2) == (False, True)
    np.testing.assert_allclose(again, weight_map(ex.classes, ex.instances, w0=10.0, sigma=5.0), atol=1e-6)
    ex.annotation.version += 1  # a new save of the annotation: a new cache entry
    assert pipeline.cached_weight_map(ex, 10.0, 5.0)[1] is False
    assert pipeline.cached_weight_map(ex, 10.0, 3.0)[1] is False  # other parameters: another entry


# --- device and out-of-memory ---------------------------------------------------------------------
def test_labseg_device_picks_the_device_or_fails_with_a_clear_message(settings):
    import torch

    settings.LABSEG_DEVICE = "cpu"
    assert pipeline.resolve_device().type == "cpu"
    settings.LABSEG_DEVICE = "cuda"
    if torch.cuda.is_available():
        assert pipeline.resolve_device().type == "cuda"
    else:
        with pytest.raises(services.TrainingError, match="cannot train: device 'cuda' requested but CUDA is not"):
            pipeline.resolve_device()


class OOMThenOK:
    """A ``fit`` stand-in for the GPU edge: out of memory until the tile is small enough."""

    def __init__(self, fits_at: int):
        self.fits_at, self.tiles = fits_at, []

    def __call__(self, images, classes, instances, config, init, progress, weights=None):
        self.tiles.append((config.tile_output, config.batch_size))
        if config.tile_output > self.fits_at:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "model", {"stop_reason": "steps"}


def _oom_setup(project):
    from labseg.ml.train import validate_config_overrides

    run = running_run(project, attempts=1, age_s=0)
    reporter = services.ProgressReporter(run.pk, "w1", total_steps=10, interval=0.0)
    config = validate_config_overrides({"tile_output": 256, "batch_size": 4})
    return [_example(project, 1)], config, reporter


def test_out_of_memory_retries_with_half_the_tile_and_batch(project):
    examples, config, reporter = _oom_setup(project)
    fit = OOMThenOK(fits_at=64)
    assert pipeline._fit_with_oom_fallback(fit, examples, None, config, None, reporter)[0] == "model"
    assert fit.tiles == [(256, 4), (128, 2), (64, 1)]


def test_out_of_memory_after_the_retries_fails_with_a_message(project):
    examples, config, reporter = _oom_setup(project)
    fit = OOMThenOK(fits_at=16)
    with pytest.raises(services.TrainingError, match="ran out of memory, even with training tiles of 64 px"):
        pipeline._fit_with_oom_fallback(fit, examples, None, config, None, reporter)
    assert len(fit.tiles) == pipeline.OOM_RETRIES + 1


@pytest.mark.django_db(transaction=True)
def test_unreachable_broker_fails_the_run_instead_of_leaving_it_queued(project, owner, monkeypatch):
    from kombu.exceptions import OperationalError

    from apps.training import tasks

    def broker_down(*args, **kwargs):  # the external edge: Redis refuses the connection
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.run_training, "delay", broker_down)
    from labseg.api import ServiceUnavailable

    with pytest.raises(ServiceUnavailable) as info:  # the API's 503, not a "queued" run nobody will receive
        services.start_run(project, owner)
    run = TrainingRun.objects.get(pk=info.value.extra["run_id"])
    assert run.status == RunStatus.FAILED and "training queue could not be reached (OperationalError)" in run.error
    assert services.active_run(project.pk) is None  # the project is not blocked


def test_fine_tuning_a_version_trained_for_fewer_classes_fails_with_advice(project, owner, settings):
    from apps.annotate.models import LabelClass

    settings.LABSEG_DEVICE = "cpu"
    add_image(project, seed=1)
    parent = make_version(project, 1, active=True)  # architecture: 1 channel, 2 classes
    LabelClass.objects.create(project=project, index=3, name="mitosis")
    run = services.start_run(project, owner)
    assert services.claim_run(run.pk, "w1")
    with pytest.raises(services.TrainingError,
                       match="Version 1 was trained for 2 classes .* now has 3. Train from scratch"):
        pipeline.execute_run(run.pk, "w1")
    assert run.parent_version_id == parent.pk


def test_the_painted_radius_counts_objects_drawn_whole_not_strokes_with_ids(project):
    ex = _example(project, 1)
    classes = np.zeros((64, 64), np.uint8)
    inst = np.zeros((64, 64), np.int32)
    for k, x0 in enumerate((4, 24, 44), start=1):  # three 12x12 squares in instance mode, nothing around them
        classes[20:32, x0:x0 + 12], inst[20:32, x0:x0 + 12] = 2, k
    classes[50:60, :] = 1  # background painted far from them
    plain = dataclasses.replace(ex, classes=classes, instances=inst, raw=np.zeros((1, 64, 64), np.float32))
    assert pipeline.painted_objects([plain])[0] is None  # brush strokes, for all we know: not the objects' size
    drawn = dataclasses.replace(plain, whole_ids=frozenset({1, 2, 3}))  # drawn with the polygon tool: whole
    assert pipeline.painted_objects([drawn])[0] == pytest.approx(6.0)  # a 12-px square's inscribed radius, by hand


def test_auto_edge_calibration_keeps_the_scores_of_its_choice_and_runs_the_network_once_per_held_out_image(
        project, monkeypatch):
    """``edge_calibration: null``: the held-out labels are scored without and with the calibration (each image
    through the network once), the calibration goes on only where it lifts their foreground IoU
    (``choose_edges``), and the scores kept are those of the choice, as scored each way on its own."""
    from labseg.ml import baselines, tiling
    from labseg.ml.baselines import edge_setting
    from labseg.ml.unet import UNet
    from tests.inference.conftest import make_threshold_unet

    from .conftest import make_nuclei

    model = make_threshold_unet(UNet(in_channels=1, num_classes=2, base_channels=4, depth=2), threshold=0.7)
    holdouts = []
    for seed in (3, 4):
        img = add_image(project, seed=seed, split="validation", dense=True)
        raw, _ = make_nuclei((96, 96), seed=seed, channels=1)
        classes, inst = pipeline.annotation_arrays(img.annotation)
        holdouts.append(pipeline.Holdout(pipeline.Example(img, img.annotation, raw, classes, inst), "validation"))
    normalization, beat = {"method": "percentile", "low": 1.0, "high": 99.8}, lambda *a: None
    fitted = {"gate": None, "splitter": None, "edges": False, "edges_info": edge_setting(enabled=None)}

    def separately(edges: bool) -> list:
        return pipeline.score_holdouts(
            lambda raw, on_tile: pipeline.predict_classes(model, raw, normalization, "cpu", on_tile, None, "shape",
                                                          edges=edges), holdouts, beat)

    without, with_edges = separately(False), separately(True)
    iou_without, iou_with = pipeline._aggregate(without, "iou_fg"), pipeline._aggregate(with_edges, "iou_fg")
    assert abs(iou_with - iou_without) > 0.01, "the calibration must move these edges, or the test shows nothing"
    calls = []
    real = tiling.predict_tiled
    monkeypatch.setattr(tiling, "predict_tiled", lambda *a, **k: calls.append(1) or real(*a, **k))
    for margin, chosen in ((-1.0, with_edges), (1.0, without), (baselines.EDGE_AUTO_MARGIN, None)):
        monkeypatch.setattr(baselines, "EDGE_AUTO_MARGIN", margin)
        calls.clear()
        scores, info = pipeline.score_unet(model, normalization, "cpu", holdouts, beat, fitted, None, "shape", None)
        assert len(calls) == len(holdouts)
        assert (info["iou_fg_without"], info["iou_fg_with"]) == (round(iou_without, 4), round(iou_with, 4))
        if chosen is None:  # the shipped margin: the better one, by more than the margin
            chosen = with_edges if iou_with > iou_without + margin else without
        assert baselines.edges_on(info) == (chosen is with_edges)
        assert [(s.image_id, s.scores) for s in scores] == [(s.image_id, s.scores) for s in chosen]
    # a setting that is not auto scores once, as asked
    scores, info = pipeline.score_unet(model, normalization, "cpu", holdouts, beat,
                                       {**fitted, "edges": True, "edges_info": {"on": True}}, None, "shape", None)
    assert info == {"on": True} and [s.scores for s in scores] == [s.scores for s in with_edges]
