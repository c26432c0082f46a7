"""Accepting a prediction into the annotation (409 rule), model exports round-trip, masks.zip."""
import io
import json
import zipfile

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from apps.annotate.masks import annotation_arrays, encode_png
from apps.annotate.models import Annotation

pytestmark = pytest.mark.django_db


def body_bytes(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def stored_classes(pred) -> np.ndarray:
    return np.asarray(PILImage.open(pred.classes_file.path))


def test_accept_copies_the_prediction_into_a_new_annotation_version(project, make_image, make_version, run_inline,
                                                                    annotator, client_for):
    im, _, _ = make_image(project, shape=(48, 40))
    pred = run_inline(make_version(project), im)
    r = client_for(annotator).post(f"/api/v1/predictions/{pred.pk}/accept/", {"version": 0}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["version"] == 1
    classes, instances = annotation_arrays(Annotation.objects.get(image=im))
    assert np.array_equal(classes, stored_classes(pred))
    assert np.array_equal(instances, tifffile.imread(pred.instances_file.path))
    assert r.json()["labelled_pixels"] == 48 * 40


def test_accept_with_a_stale_version_answers_409_and_changes_nothing(project, make_image, make_version, run_inline,
                                                                     annotator, client_for):
    im, _, _ = make_image(project, shape=(48, 40))
    mine = np.zeros((48, 40), np.uint8)
    mine[5:10, 5:10] = 2
    Annotation.objects.create(image=im, classes_png=encode_png(mine), version=3, labelled_pixels=25)
    pred = run_inline(make_version(project), im)
    r = client_for(annotator).post(f"/api/v1/predictions/{pred.pk}/accept/", {"version": 2}, format="json")
    assert r.status_code == 409 and r.json()["code"] == "stale_version" and r.json()["current_version"] == 3
    ann = Annotation.objects.get(image=im)
    assert ann.version == 3 and np.array_equal(annotation_arrays(ann)[0], mine)


def test_accept_can_keep_the_users_labels(project, make_image, make_version, run_inline, annotator, client_for):
    im, _, _ = make_image(project, shape=(48, 40))
    mine = np.zeros((48, 40), np.uint8)
    mine[0:6, 0:40] = 1
    mine[20:24, 10:14] = 2
    Annotation.objects.create(image=im, classes_png=encode_png(mine), version=1, labelled_pixels=int((mine > 0).sum()))
    pred = run_inline(make_version(project), im)
    r = client_for(annotator).post(f"/api/v1/predictions/{pred.pk}/accept/", {"version": 1, "keep_labels": True},
                                   format="json")
    assert r.status_code == 200 and r.json()["version"] == 2
    classes, _ = annotation_arrays(Annotation.objects.get(image=im))
    labelled = mine > 0
    assert np.array_equal(classes[labelled], mine[labelled])
    assert np.array_equal(classes[~labelled], stored_classes(pred)[~labelled])


@pytest.mark.parametrize("body", [{}, {"version": "two"}])
def test_accept_needs_the_annotation_version(body, project, make_image, make_version, run_inline, annotator,
                                             client_for):
    im, _, _ = make_image(project)
    pred = run_inline(make_version(project), im)
    r = client_for(annotator).post(f"/api/v1/predictions/{pred.pk}/accept/", body, format="json")
    assert r.status_code == 400 and "version" in r.json()["detail"]
    assert not Annotation.objects.filter(image=im, version__gt=0).exists()


def reference_logits(version, x: np.ndarray) -> np.ndarray:
    import torch

    from labseg.ml.train import load_checkpoint

    model, _ = load_checkpoint(version.checkpoint.path)
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def export_by_worker(client, version, fmt: str):
    """Ask for the export (202 with the queued job; asking again returns the same job), run the worker's part
    in this process, then ask again: 200 with the file."""
    from apps.inference.services import claim_export, run_export

    url = f"/api/v1/model-versions/{version.pk}/export/{fmt}"
    first = client.get(url)
    assert first.status_code == 202 and first.json()["status"] == "queued" and first.json()["download"] is None
    job = first.json()["id"]
    assert client.get(url).json()["id"] == job  # asking again while it waits: the same job, no second one
    assert client.get(f"/api/v1/exports/{job}/file").json()["code"] == "not_ready"
    assert claim_export(job, "inline:1")
    run_export(job, "inline:1")
    detail = client.get(f"/api/v1/exports/{job}/").json()
    assert detail["status"] == "succeeded" and detail["download"] == f"/api/v1/exports/{job}/file"
    assert body_bytes(client.get(detail["download"])) == body_bytes(client.get(url))  # the same file
    return client.get(url)


def test_torchscript_export_matches_pytorch(project, make_version, viewer, client_for):
    import torch

    version = make_version(project, seed=4)
    r = export_by_worker(client_for(viewer), version, "torchscript")
    assert r.status_code == 200 and "attachment" in r["Content-Disposition"]
    extra = {"labseg.json": ""}
    scripted = torch.jit.load(io.BytesIO(body_bytes(r)), _extra_files=extra)
    meta = json.loads(extra["labseg.json"])
    assert meta["margin"] == 20 and meta["architecture"]["base_channels"] == 4
    assert [c["name"] for c in meta["classes"]] == ["background", "nucleus"]
    assert meta["normalization"]["method"] == "percentile"
    rng = np.random.default_rng(0)
    for side in (meta["tile"]["input"], 92, 124):  # the traced size and two other valid sizes
        x = rng.normal(size=(1, 1, side, side + 16)).astype(np.float32)
        with torch.no_grad():
            got = scripted(torch.from_numpy(x)).numpy()
        want = reference_logits(version, x)
        assert got.shape == want.shape == (1, 2, side - 40, side + 16 - 40)
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_onnx_export_matches_pytorch(project, make_version, viewer, client_for):
    import onnxruntime as ort

    version = make_version(project, seed=5)
    r = export_by_worker(client_for(viewer), version, "onnx")
    assert r.status_code == 200
    session = ort.InferenceSession(body_bytes(r), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["labseg.json"])
    assert meta["output"]["kind"] == "logits" and meta["channel_to_class_index"] == [1, 2]
    rng = np.random.default_rng(1)
    for side in (92, 140):
        x = rng.normal(size=(1, 1, side, side)).astype(np.float32)
        (got,) = session.run(None, {"input": x})
        np.testing.assert_allclose(got, reference_logits(version, x), atol=1e-4)


def test_unknown_export_format_is_400(project, make_version, viewer, client_for):
    version = make_version(project)
    r = client_for(viewer).get(f"/api/v1/model-versions/{version.pk}/export/keras")
    assert r.status_code == 400 and "torchscript" in r.json()["detail"]


def test_masks_zip_holds_prediction_and_annotation_label_images(project, make_image, make_version, run_inline,
                                                                viewer, client_for):
    version = make_version(project)
    version.is_active = True
    version.save()
    im, _, inst = make_image(project, shape=(40, 44), seed=1)
    bare, _, _ = make_image(project, shape=(40, 44), seed=2)
    classes = np.where(inst > 0, 2, 1).astype(np.uint8)
    Annotation.objects.create(image=im, classes_png=encode_png(classes),
                              instances_png=encode_png(inst.astype(np.uint16)), version=2, labelled_pixels=classes.size)
    pred = run_inline(version, im)
    r = client_for(viewer).get(f"/api/v1/projects/{project.pk}/export/masks.zip")
    assert r.status_code == 200 and r["Content-Type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(body_bytes(r)))
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["model_version"] == version.number
    entries = {e["id"]: e for e in manifest["images"]}
    assert entries[bare.pk]["files"] == [] and entries[im.pk]["annotation_version"] == 2
    names = entries[im.pk]["files"]
    pc = tifffile.imread(io.BytesIO(zf.read([n for n in names if n.startswith("predictions/") and "classes" in n][0])))
    pi = tifffile.imread(io.BytesIO(zf.read(
        next(n for n in names if n.startswith("predictions/") and "instances" in n))))
    ac = tifffile.imread(io.BytesIO(zf.read([n for n in names if n.startswith("annotations/") and "classes" in n][0])))
    ai = tifffile.imread(io.BytesIO(zf.read(
        next(n for n in names if n.startswith("annotations/") and "instances" in n))))
    assert np.array_equal(pc, stored_classes(pred)) and pc.dtype == np.uint8
    assert np.array_equal(pi, tifffile.imread(pred.instances_file.path))
    assert np.array_equal(ac, classes) and np.array_equal(ai, inst) and ai.dtype == np.uint16


def test_masks_zip_of_a_version_of_another_project_is_400(project, owner, make_version, viewer, client_for):
    from apps.annotate.models import Membership, Project, Role

    other = Project.objects.create(name="Other", owner=owner)
    Membership.objects.create(project=other, user=viewer, role=Role.VIEWER)
    foreign = make_version(other)
    r = client_for(viewer).get(f"/api/v1/projects/{project.pk}/export/masks.zip?version={foreign.pk}")
    assert r.status_code == 400
