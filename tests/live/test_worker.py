"""Live sessions with a real Celery worker on the ``live`` queue (tiny network: see tests/conftest.py)."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from django.core.files import File
from PIL import Image as PILImage

from apps.live.models import LiveSession
from apps.training.models import ModelVersion

from .conftest import add_image, b64

pytestmark = pytest.mark.django_db(transaction=True)


def tiny_version(project, tmp_path) -> ModelVersion:
    """A model version of the project: a tiny U-Net checkpoint (1 channel, 2 classes)."""
    from labseg.ml.train import save_checkpoint
    from labseg.ml.unet import UNet

    model = UNet(1, 2, base_channels=4, depth=2)
    path = tmp_path / "v.pt"
    save_checkpoint(path, model, class_names=["background", "nucleus"])
    version = ModelVersion(project=project, number=1, architecture=model.config, is_active=True)
    with open(path, "rb") as fh:
        version.checkpoint.save("v1.pt", File(fh), save=False)
    version.save()
    return version


def test_session_trains_from_a_version_draft_reaches_the_overlay_keep_and_stop(
        celery_worker, project, annotator, start_page, tmp_path):
    image = add_image(project, size=96)
    parent = tiny_version(project, tmp_path)
    page = start_page(annotator, image, region={"x": 16, "y": 8, "width": 64, "height": 48})
    st = page.wait(lambda s: s["overlay_url"], what="the first overlay")
    assert st["state"] == "running" and st["parent"] == parent.pk  # omitted parent: the active version
    first = st["overlay_step"]
    st = page.wait(lambda s: s["overlay_step"] > first, what="a newer overlay")
    assert st["loss"] is not None and st["overlay_age_s"] < 30
    r = page.client.get(st["overlay_url"])
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    with PILImage.open(io.BytesIO(r.content)) as png:
        assert png.size == (64, 48) and png.mode == "RGBA"
    # a draft (unsaved strokes) reaches the network: an overlay trained on it follows. It paints membranes, as an
    # EM annotator does: 1-px background lines of a 16-px lattice, and two cells of it as objects
    draft = np.zeros((96, 96), np.uint8)
    draft[40:47, 40:47] = draft[56:63, 24:31] = 2
    draft[::16, :] = draft[:, ::16] = 1
    r = page.beat(classes_png=b64(draft))
    assert r.status_code == 200, r.content
    version_sent = r.json()["draft_version"]
    st = page.wait(lambda s: s["overlay_draft_version"] >= version_sent, what="an overlay trained on the draft")
    # keep: a new version with the parent and the provenance of what the network saw
    st = page.wait(lambda s: s["checkpoint_step"] > 0 and s["overlay_draft_version"] >= version_sent, what="checkpoint")
    page.wait(lambda s: LiveSession.objects.get(pk=page.sid).checkpoint_provenance.get("draft"),
              what="draft checkpoint")
    r = page.client.post(page.base + "keep/", {"name": "live one"}, format="json")
    assert r.status_code == 201, r.content
    kept = ModelVersion.objects.get(pk=r.json()["id"])
    assert kept.parent_id == parent.pk and kept.number == 2 and kept.name == "live one"
    assert kept.is_active  # fine-tuned from the active version, like a run's version
    prov = kept.provenance
    assert prov["live_session"] == page.sid and prov["warm_start"] == "parent"
    assert prov["draft"]["image"] == image.pk and prov["draft"]["draft_version"] >= 1
    assert prov["draft"]["based_on_annotation_version"] == 1
    assert prov["images"] == []  # the draft replaces the saved labels of its own image (the only one)
    # and its predictions take from those labels what a training run's version takes: objects are what the painted
    # membranes enclose (no watershed, no object size), so the gate and the intensity split are off
    assert prov["split"] == "boundaries" and prov["object_radius"] is None
    assert "membrane" in prov["intensity_gate"]["off"] and "membrane" in prov["intensity_split"]["off"]
    from apps.inference.runner import load_model

    loaded = load_model(kept)
    assert (loaded.split, loaded.gate, loaded.splitter, loaded.object_radius) == ("boundaries", None, None, None)
    # Live off: the session ends and the worker stops writing
    r = page.client.delete(page.base)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    time.sleep(2.5)
    row = LiveSession.objects.get(pk=page.sid)
    time.sleep(1.5)
    assert LiveSession.objects.get(pk=page.sid).heartbeat_at == row.heartbeat_at
    assert "ended" in page.client.put(page.base + "draft/", {}, format="json").json()["detail"]


def test_the_overlay_goes_through_the_intensity_gate_a_kept_version_applies(celery_worker, project, annotator,
                                                                             start_page):
    from scipy import ndimage as ndi

    from labseg.ml.io import normalize, read_image

    image = add_image(project, size=96)  # bright synthetic nuclei painted with strokes: the gate is on
    page = start_page(annotator, image, region={"x": 0, "y": 0, "width": 96, "height": 96})

    def gate_fitted(_):
        return "weights" in (LiveSession.objects.get(pk=page.sid).checkpoint_provenance.get("intensity_gate") or {})

    page.wait(gate_fitted, what="a checkpoint with the intensity gate")
    row = LiveSession.objects.get(pk=page.sid)
    gate = row.checkpoint_provenance["intensity_gate"]
    assert gate["weights"] == [1.0]  # one channel, bright objects
    # the gate by hand from its stored numbers: the smoothed normalised image above the threshold. Inside only
    # (the overlay's crop is mirrored past the image's border, the whole-image filter reflects: they differ there)
    x = normalize(read_image(image.file.path))[0].astype(np.float64)
    keep = ndi.gaussian_filter(x, gate["smooth"]) > gate["threshold"]
    edge = int(np.ceil(4 * gate["smooth"])) + 1
    inner = np.zeros(keep.shape, bool)
    inner[edge:-edge, edge:-edge] = True
    dropped = ~keep & inner
    assert dropped.sum() > 100, "the dark background between the nuclei is dropped by the gate"

    def drawn(step: int) -> tuple[int, np.ndarray]:
        st = page.wait(lambda s: s["overlay_step"] > step, what="a newer overlay")
        with PILImage.open(io.BytesIO(page.client.get(st["overlay_url"]).content)) as png:
            return st["overlay_step"], np.asarray(png)[..., 3]

    step, alpha = drawn(row.checkpoint_step)  # drawn after the checkpoint that fitted the gate
    for _ in range(30):  # until the network draws objects where the gate keeps pixels (a fresh net may not yet)
        if (alpha[keep & inner] > 0).any():
            break
        step, alpha = drawn(step)
    assert (alpha[keep & inner] > 0).any(), "the network's objects are drawn where the gate keeps them"
    assert (alpha[dropped] == 0).all(), "every pixel the gate drops is drawn as background (transparent)"


def test_a_second_tab_takes_over_and_a_silent_page_stops_its_session(celery_worker, project, owner, start_page):
    image = add_image(project, size=64)
    first = start_page(owner, image, parent=None)
    first.wait(lambda s: s["overlay_url"], what="the first tab's overlay")
    second = start_page(owner, image, parent=None)
    row = LiveSession.objects.get(pk=first.sid)
    assert (row.status, row.stop_reason) == ("cancelled", "taken_over")
    st = second.wait(lambda s: s["overlay_url"], what="the second tab's overlay")
    assert st["state"] == "running"
    # the page goes silent: the session stops within LABSEG_LIVE_HEARTBEAT_TIMEOUT (6 s in the tests' worker)
    silent_from = time.time()
    st = second.wait(lambda s: s["state"] != "running", timeout=30, beat=False, what="the heartbeat timeout")
    assert (st["state"], st["stop_reason"]) == ("cancelled", "browser_gone")
    assert time.time() - silent_from < 6 + 5


def test_a_session_whose_worker_was_killed_is_recovered_by_another(
        celery_worker, start_celery_worker, project, annotator, start_page, monkeypatch):
    """The jobs rules: a dead worker's session is re-queued once (it goes on from its checkpoint)."""
    from apps.live import services, tasks

    doomed = start_celery_worker(queues="live-doomed")
    send = tasks.run_live.apply_async
    monkeypatch.setattr(tasks.run_live, "delay", lambda pk: send((pk,), queue="live-doomed",
                                                                 routing_key="live-doomed"))
    image = add_image(project, size=64)
    page = start_page(annotator, image, parent=None)
    st = page.wait(lambda s: s["checkpoint_step"] > 0, what="the doomed worker's checkpoint")
    assert LiveSession.objects.get(pk=page.sid).worker.startswith(doomed.name.split("@")[0])
    doomed.kill()
    monkeypatch.undo()  # the re-queued message goes to the live queue (the session worker)
    time.sleep(1.5)
    out = services.jobs.recover_stale(services.LIVE, timeout_s=1)
    assert out["requeued"] == [page.sid]
    st = page.wait(lambda s: s["state"] == "running" and s["overlay_step"] > st["checkpoint_step"],
                   what="the recovered session's overlay")
    row = LiveSession.objects.get(pk=page.sid)
    assert row.attempts == 2 and not row.worker.startswith(doomed.name.split("@")[0])
    assert row.checkpoint_provenance.get("warm_start") in ("session", None) or row.checkpoint_step
    page.client.delete(page.base)
