"""``labseg_backup`` / ``labseg_restore``: a backup restored into an emptied database gives back every row of
every model (annotation versions and their history included) and every media file byte for byte; unsafe,
corrupt, truncated or mismatching archives are refused before anything is written; a backup taken while
annotations and thumbnails are being saved is consistent."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError

from labseg import backup
from tests.helpers import nuclei, tiff_bytes

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings.MEDIA_ROOT


# --- helpers ---------------------------------------------------------------------------------
def _tiff(seed: int, channels: int = 1) -> bytes:
    image = nuclei((48, 64), channels=channels, seed=seed, n=4, radius=(5.0, 8.0))
    return tiff_bytes(image, metadata={"axes": "CYX"})


def _b64_mask(mask: np.ndarray) -> str:
    from apps.annotate.masks import encode_png

    return base64.b64encode(encode_png(mask)).decode()


def _masks(k: int, shape=(48, 64)):
    classes = np.zeros(shape, np.uint8)
    classes[: 4 + k, :10] = 1
    classes[20:30, 5 + k: 15 + k] = 2
    instances = np.zeros(shape, np.uint16)
    instances[20:30, 5 + k: 15 + k] = 1 + k
    return _b64_mask(classes), _b64_mask(instances)


def save_version(user, image, k: int):
    from apps.annotate import services
    from apps.annotate.models import Annotation

    current = Annotation.objects.filter(image=image).values_list("version", flat=True).first() or 0
    c, i = _masks(k)
    return services.save_annotation(user=user, image_id=image.pk, version=current, classes_png=c,
                                    instances_png=i, strokes=[{"tool": "brush", "class": 2, "radius": 3,
                                                               "points": [[k, k], [k + 5, k + 1]]}])


def all_rows() -> dict:
    """Every row of every model, serialised field by field (content types and permissions by natural key)."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    out = {}
    for model in backup.backup_models():
        m2m = [f.name for f in model._meta.many_to_many]
        rows = []
        for row in backup.iter_rows(model):
            for name in m2m:
                row["fields"][name] = sorted(row["fields"][name])
            rows.append(json.loads(backup.dumps_row(row)))  # the JSON form: datetimes as strings
        out[model._meta.label_lower] = rows
    out["contenttypes"] = sorted(ContentType.objects.values_list("app_label", "model"))
    out["permissions"] = sorted(Permission.objects.values_list("content_type__app_label", "codename"))
    return out


def media_files(root: Path) -> dict[str, bytes]:
    """Every file under MEDIA_ROOT (derived ones too) by storage name."""
    root = Path(root)
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def derived(name: str) -> bool:
    return name.split("/")[0] in ("cache", "tmp") or name.endswith(".cache.npy")


def run_backup(path: Path, **kwargs) -> dict:
    out = io.StringIO()
    call_command("labseg_backup", str(path), stdout=out, stderr=io.StringIO(), **kwargs)
    return read_manifest(path)


def run_restore(path: Path, **kwargs) -> str:
    out = io.StringIO()
    call_command("labseg_restore", str(path), stdout=out, stderr=io.StringIO(), **kwargs)
    return out.getvalue()


def read_manifest(path: Path) -> dict:
    with tarfile.open(path) as tar:
        return json.loads(tar.extractfile(backup.MANIFEST).read())


def archive_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def write_tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
        for name, target in (links or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            tar.addfile(ti)
    return path


def flush_everything(media_root: Path):
    call_command("flush", interactive=False, verbosity=0)
    shutil.rmtree(media_root, ignore_errors=True)


# --- a lab's worth of data -------------------------------------------------------------------
@pytest.fixture
def lab(make_user, settings):
    """Users (one staff, a group with a permission, a token, a session, an admin log entry), two projects,
    images with real files, annotations with several saved versions (history rows, one restored), a
    re-rendered thumbnail, a training run, two model versions with checkpoint files (lineage, one active)
    and metric scores, a prediction with map files, an unreferenced file and derived caches."""
    from django.contrib.admin.models import ADDITION, LogEntry
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType
    from django.contrib.sessions.backends.db import SessionStore
    from rest_framework.authtoken.models import Token

    from apps.annotate import services
    from apps.annotate.models import Image, Role, Split
    from apps.inference.models import Prediction, PredictionStatus
    from apps.training import services as training
    from apps.training.models import ModelVersion, RunStatus, ScoreMethod, TrainingRun

    admin = make_user("pi_admin", is_staff=True, is_superuser=True, first_name="Pía", email="pi@lab.example")
    anna = make_user("anna")
    make_user("ben", is_active=False)  # added to p2 by name below
    group = Group.objects.create(name="technicians")
    group.permissions.add(Permission.objects.get(codename="view_image"))
    anna.groups.add(group)
    anna.user_permissions.add(Permission.objects.get(codename="change_annotation"))
    Token.objects.create(user=anna)
    s = SessionStore()
    s["_auth_user_id"] = str(anna.pk)
    s.create()
    LogEntry.objects.create(user=admin, content_type=ContentType.objects.get_for_model(Image), object_id="1",
                            object_repr="x", action_flag=ADDITION, change_message="[]")

    p1 = services.create_project(user=admin, name="Nuclei", channels=["DAPI"], classes=[{"name": "nucleus"}])
    p2 = services.create_project(user=admin, name="Two channels", channels=["DAPI", "GFP"],
                                 classes=[{"name": "cell"}, {"name": "debris", "color": "#123456"}])
    services.add_member(user=admin, project_id=p1.pk, username="anna", role=Role.ANNOTATOR)
    services.add_member(user=admin, project_id=p2.pk, username="ben", role=Role.VIEWER)
    status, res = services.upload_images(user=anna, project_id=p1.pk, files=[
        SimpleUploadedFile(f"cells {i}.tif", _tiff(i)) for i in range(3)])
    assert status == 201, res
    status, res2 = services.upload_images(user=admin, project_id=p2.pk, files=[
        SimpleUploadedFile("two.tif", _tiff(7, channels=2))])
    assert status == 201, res2
    images = list(Image.objects.filter(project=p1).order_by("pk"))
    services.update_image(user=anna, image_id=images[2].pk, split=Split.VALIDATION, display_range=[[10, 900]])
    for k in range(4):  # versions 1..4 of image 0 (history rows 1..3)
        save_version(anna, images[0], k)
    for k in range(2):
        save_version(admin, images[1], 10 + k)
    services.restore_revision(user=anna, image_id=images[0].pk, version=2)  # version 5 = version 2's masks

    run = TrainingRun.objects.create(project=p1, config={"epochs": 3, "lr": 1e-3}, status=RunStatus.SUCCEEDED,
                                     step=30, total_steps=30, progress=1.0, loss_curve=[[0, 1.25], [30, 0.125]],
                                     created_by=anna, worker="w1@host")
    v1 = ModelVersion(project=p1, number=1, run=run, architecture={"in_channels": 1, "num_classes": 3},
                      provenance={"images": {str(images[0].pk): 4}}, created_by=anna)
    v1.checkpoint.save("v1.pt", ContentFile(os.urandom(40_000) + b"\x00" * 1000), save=False)
    v1.save()
    v2 = ModelVersion(project=p1, number=2, parent=v1, name="fine-tuned", architecture=v1.architecture)
    v2.checkpoint.save("v2.pt", ContentFile(os.urandom(12_345)), save=False)
    v2.save()
    training.activate_version(v2)
    training.record_metric_scores(v1, images[2], Split.VALIDATION, {"pixel_error": 0.0123456789012345,
                                                                   "f1@0.5": {"value": 0.75, "tp": 3, "fp": 1}},
                                  source=training.TRAINING_VALIDATION)
    training.record_metric_scores(v1, None, Split.VALIDATION, {"pixel_error": 0.02}, method=ScoreMethod.FOREST)
    training.record_metric_scores(v2, images[2], Split.VALIDATION, {"rand_error": 1 / 3})
    pred = Prediction(image=images[1], model_version=v2, status=PredictionStatus.SUCCEEDED, progress=1.0,
                      counts={"1": 100, "2": 20}, mean_uncertainty=0.125, created_by=anna)
    for field in ("classes_file", "instances_file", "probability_file", "uncertainty_file"):
        getattr(pred, field).save(f"{field}.png", ContentFile(os.urandom(2000)), save=False)
    pred.save()

    root = Path(settings.MEDIA_ROOT)
    (root / "exports").mkdir(parents=True)
    (root / "exports" / "notes.txt").write_text("a file no row references\n")
    (root / "cache" / "weights").mkdir(parents=True)
    (root / "cache" / "weights" / "ann1-v1-abc.npy").write_bytes(b"derived")
    (root / "tmp").mkdir()
    (root / "tmp" / "upload.part").write_bytes(b"half")
    (root / (images[0].file.name + ".cache.npy")).write_bytes(b"decoded cache")
    return {"admin": admin, "anna": anna, "projects": [p1, p2], "images": images, "versions": [v1, v2]}


# --- round trips -----------------------------------------------------------------------------
def test_backup_restores_every_row_and_file_into_an_emptied_database(lab, tmp_path, _media):
    from apps.annotate import services
    from apps.annotate.models import Annotation, AnnotationRevision, Image
    from apps.training.models import MetricScore, ModelVersion

    expected_rows = all_rows()
    expected_media = media_files(_media)
    ann = {a.image_id: (a.version, bytes(a.classes_png), bytes(a.instances_png), a.strokes, a.updated_at)
           for a in Annotation.objects.all()}
    revs = {(r.image_id, r.version): (bytes(r.classes_png), bytes(r.instances_png), r.strokes, r.updated_at)
            for r in AnnotationRevision.objects.all()}
    assert ann[lab["images"][0].pk][0] == 5 and len(revs) == 4 + 1
    checkpoints = {v.pk: Path(v.checkpoint.path).read_bytes() for v in ModelVersion.objects.all()}
    scores = sorted(MetricScore.objects.values_list("model_version_id", "image_id", "name", "value", "method"),
                    key=repr)

    out = tmp_path / "lab.tar"
    manifest = run_backup(out)
    assert manifest["format"] == "labseg-backup" and manifest["format_version"] == 1
    assert manifest["db_vendor"] == "postgresql" and manifest["missing_media"] == []
    assert {"annotate", "training", "inference", "auth"} <= set(manifest["migrations"])
    counts = {t["model"]: t["count"] for t in manifest["models"]}
    assert counts["annotate.annotationrevision"] == 5 and counts["training.metricscore"] == 4
    assert counts["auth.user"] == 3 and counts["sessions.session"] == 1
    names = {f["name"] for f in manifest["media"]}
    assert {n for n in expected_media if not derived(n)} == names  # derived caches skipped, the rest kept
    assert "exports/notes.txt" in names
    members = archive_members(out)
    for f in manifest["media"]:
        assert hashlib.sha256(members["media/" + f["name"]]).hexdigest() == f["sha256"]

    flush_everything(_media)
    assert not Image.objects.exists() and not _media.exists()

    assert "restored" in run_restore(out)
    assert all_rows() == expected_rows
    restored = media_files(_media)
    assert restored == {n: b for n, b in expected_media.items() if not derived(n)}
    # the annotation versions, current and history, field by field
    assert {a.image_id: (a.version, bytes(a.classes_png), bytes(a.instances_png), a.strokes, a.updated_at)
            for a in Annotation.objects.all()} == ann
    assert {(r.image_id, r.version): (bytes(r.classes_png), bytes(r.instances_png), r.strokes, r.updated_at)
            for r in AnnotationRevision.objects.all()} == revs
    assert {v.pk: Path(v.checkpoint.path).read_bytes() for v in ModelVersion.objects.all()} == checkpoints
    assert sorted(MetricScore.objects.values_list("model_version_id", "image_id", "name", "value", "method"),
                  key=repr) == scores
    assert not (_media / "tmp").exists()  # the staging folder is gone

    # sequences follow the restored ids: new rows get fresh primary keys, the app works on
    p = services.create_project(user=lab["admin"], name="After restore")
    assert p.pk > max(x.pk for x in lab["projects"])
    save_version(lab["anna"], Image.objects.get(pk=lab["images"][0].pk), 99)
    assert Annotation.objects.get(image_id=lab["images"][0].pk).version == 6


def test_a_gzip_backup_restores_too(lab, tmp_path, _media):
    expected_rows, expected_media = all_rows(), media_files(_media)
    out = tmp_path / "lab.tar.gz"
    run_backup(out)
    with open(out, "rb") as fh:
        assert fh.read(2) == b"\x1f\x8b"
    flush_everything(_media)
    run_restore(out)
    assert all_rows() == expected_rows
    assert media_files(_media) == {n: b for n, b in expected_media.items() if not derived(n)}


def test_postgresql_to_sqlite_and_back(lab, tmp_path, _media):
    """Database-agnostic: a PostgreSQL backup restores into SQLite, whose backup restores into PostgreSQL
    with every row equal (datetimes to the microsecond, floats, binary masks, JSON, m2m by natural key)."""
    expected_rows, expected_media = all_rows(), media_files(_media)
    pg_tar, lite_tar = tmp_path / "pg.tar", tmp_path / "lite.tar"
    run_backup(pg_tar)
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'lite.sqlite3'}",
               MEDIA_ROOT=str(tmp_path / "lite-media"), LABSEG_VAR_DIR=str(tmp_path / "lite-var"))
    for args in (["migrate", "-v0"], ["labseg_restore", str(pg_tar)], ["labseg_backup", str(lite_tar)]):
        proc = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_manifest(lite_tar)["db_vendor"] == "sqlite"
    run_restore(lite_tar, force=True)  # the PostgreSQL test database still holds the data: --force
    assert all_rows() == expected_rows
    assert media_files(_media) == expected_media  # the same names rewritten with the same bytes


def test_force_replaces_a_changed_database(lab, tmp_path, _media):
    from apps.annotate import services

    expected_rows = all_rows()
    out = tmp_path / "lab.tar"
    run_backup(out)
    save_version(lab["anna"], lab["images"][0], 50)
    services.delete_image(user=lab["admin"], image_id=lab["images"][1].pk)
    services.create_project(user=lab["anna"], name="new since the backup")
    assert all_rows() != expected_rows
    run_restore(out, force=True)
    assert all_rows() == expected_rows
    for f in read_manifest(out)["media"]:  # the deleted image's files are back
        assert hashlib.sha256((_media / f["name"]).read_bytes()).hexdigest() == f["sha256"]


# --- refusals --------------------------------------------------------------------------------
def test_restore_into_a_non_empty_database_is_refused_and_changes_nothing(lab, tmp_path, _media):
    out = tmp_path / "lab.tar"
    run_backup(out)
    save_version(lab["anna"], lab["images"][0], 60)  # the database now differs from the backup
    rows, files = all_rows(), media_files(_media)
    with pytest.raises(CommandError, match="not empty.*--force"):
        run_restore(out)
    assert all_rows() == rows
    assert media_files(_media) == files


@pytest.fixture
def empty_after_backup(lab, tmp_path, _media):
    out = tmp_path / "lab.tar"
    run_backup(out)
    flush_everything(_media)
    return out


def assert_untouched(media_root: Path, tmp_path: Path):
    from apps.annotate.models import Image, Project

    assert not Project.objects.exists() and not Image.objects.exists()
    assert media_files(media_root) == {}
    assert not list(tmp_path.rglob("evil*"))


@pytest.mark.parametrize("name", ["../evil", "media/../../evil", "media/../evil", "/tmp/evil-abs",
                                  "media/projects/../../../evil", "media/./evil", "media\\..\\evil"])
def test_tar_slip_names_are_refused(empty_after_backup, tmp_path, _media, name):
    members = archive_members(empty_after_backup)
    members[name] = b"pwned"
    bad = write_tar(tmp_path / "slip.tar", {name: b"pwned", **members})
    with pytest.raises(CommandError, match="refused"):
        run_restore(bad)
    assert_untouched(_media, tmp_path)


def test_links_in_the_archive_are_refused(empty_after_backup, tmp_path, _media):
    members = archive_members(empty_after_backup)
    bad = write_tar(tmp_path / "link.tar", members, links={"media/evil-link": "/etc/passwd"})
    with pytest.raises(CommandError, match="not a regular file"):
        run_restore(bad)
    assert_untouched(_media, tmp_path)


def test_truncated_and_corrupt_archives_are_refused(empty_after_backup, tmp_path, _media):
    data = empty_after_backup.read_bytes()
    with tarfile.open(empty_after_backup) as tar:
        m = tar.getmember(backup.MANIFEST)
        in_manifest = m.offset_data + m.size // 2
    for cut in (len(data) // 2, in_manifest, m.offset_data - 1, 300):
        truncated = tmp_path / f"cut{cut}.tar"
        truncated.write_bytes(data[:cut])
        with pytest.raises(CommandError, match="truncated|corrupt|not a readable"):
            run_restore(truncated)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(os.urandom(5000))
    with pytest.raises(CommandError, match="not a readable tar|corrupt|truncated"):
        run_restore(garbage)
    # one flipped byte inside a media file: the sha256 check refuses it, nothing is written
    members = archive_members(empty_after_backup)
    name = next(n for n in members if n.endswith("v1.pt"))
    members[name] = bytes([members[name][0] ^ 0xFF]) + members[name][1:]
    with pytest.raises(CommandError, match="sha256"):
        run_restore(write_tar(tmp_path / "flipped.tar", members))
    assert_untouched(_media, tmp_path)


def _with_manifest(path: Path, tmp_path: Path, change) -> Path:
    members = archive_members(path)
    manifest = json.loads(members.pop(backup.MANIFEST))
    change(manifest)
    members[backup.MANIFEST] = json.dumps(manifest).encode()
    return write_tar(tmp_path / "changed.tar", members)


def test_wrong_format_version_is_refused(empty_after_backup, tmp_path, _media):
    bad = _with_manifest(empty_after_backup, tmp_path, lambda m: m.update(format_version=99))
    with pytest.raises(CommandError, match="unsupported backup format version 99"):
        run_restore(bad)
    bad = _with_manifest(empty_after_backup, tmp_path, lambda m: m.update(format="something-else"))
    with pytest.raises(CommandError, match="not a LabSeg backup"):
        run_restore(bad)
    assert_untouched(_media, tmp_path)


def test_other_migrations_are_refused(empty_after_backup, tmp_path, _media):
    bad = _with_manifest(empty_after_backup, tmp_path,
                         lambda m: m["migrations"]["annotate"].append("9999_from_the_future"))
    with pytest.raises(CommandError, match="other migrations.*9999_from_the_future"):
        run_restore(bad)
    assert_untouched(_media, tmp_path)


def test_members_over_the_size_cap_are_refused(empty_after_backup, tmp_path, _media):
    with pytest.raises(CommandError, match="more than the cap"):
        run_restore(empty_after_backup, max_member_bytes=10_000)
    assert_untouched(_media, tmp_path)


def test_a_member_the_manifest_does_not_list_is_refused(empty_after_backup, tmp_path, _media):
    members = archive_members(empty_after_backup)
    members["media/projects/1/images/extra.tif"] = b"smuggled"
    with pytest.raises(CommandError, match="does not match its manifest"):
        run_restore(write_tar(tmp_path / "extra.tar", members))
    assert_untouched(_media, tmp_path)


# --- consistency while the app runs ----------------------------------------------------------
def _check_consistent(path: Path):
    """Every file a row of the archive references is in it with the manifest's sha256, and every
    annotation's history is exactly versions 1..current-1 (rows of one moment)."""
    manifest = read_manifest(path)
    members = archive_members(path)
    assert manifest["missing_media"] == []
    sha = {f["name"]: f["sha256"] for f in manifest["media"]}
    for t in manifest["models"]:
        model = next(m for m in backup.backup_models() if m._meta.label_lower == t["model"])
        rows = [json.loads(line) for line in members[t["file"]].splitlines()]
        assert len(rows) == t["count"]
        assert hashlib.sha256(members[t["file"]]).hexdigest() == t["sha256"]
        for row in rows:
            for f in backup.file_fields(model):
                name = row["fields"][f]
                if name:
                    assert name in sha, f"{t['model']} {row['pk']} references {name}, not in the archive"
                    assert hashlib.sha256(members["media/" + name]).hexdigest() == sha[name]
    versions = {r["fields"]["image"]: r["fields"]["version"]
                for r in map(json.loads, members["db/annotate.annotation.jsonl"].splitlines())}
    history: dict[int, set] = {}
    for r in map(json.loads, members["db/annotate.annotationrevision.jsonl"].splitlines()):
        history.setdefault(r["fields"]["image"], set()).add(r["fields"]["version"])
    for image, v in versions.items():
        assert history.get(image, set()) == set(range(1, v)), (image, v, history.get(image))
    return manifest


def test_backup_while_annotations_and_thumbnails_are_saved_is_consistent(lab, tmp_path, monkeypatch):
    """A writer thread saves annotation versions and re-renders thumbnails (new file, old one deleted
    after the commit) while backups run; the dump pauses between tables so that writes land between
    reading annotations and reading their history: only one snapshot keeps them consistent."""
    from django.db import connection

    from apps.annotate import services
    from apps.annotate.models import AnnotationRevision

    images, anna = lab["images"], lab["anna"]
    stop, errors, saves = threading.Event(), [], [0]

    def writer():
        try:
            k = 0
            while not stop.is_set():
                save_version(anna, images[k % 2], 100 + k)
                services.update_image(user=anna, image_id=images[2].pk, display_range=[[k % 50, 1000 + k]])
                saves[0] += 1
                k += 1
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    real_dump = backup._dump_model

    def slow_dump(model, *args, **kwargs):
        info = real_dump(model, *args, **kwargs)
        if model._meta.label_lower in ("annotate.annotation", "annotate.image"):
            time.sleep(0.4)  # writers commit meanwhile
        return info

    monkeypatch.setattr(backup, "_dump_model", slow_dump)
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        for i in range(3):
            before = saves[0]
            run_backup(tmp_path / f"live{i}.tar", attempts=5)
            # the app's deletes wait while the snapshot's files are pinned: never a second attempt
            assert _check_consistent(tmp_path / f"live{i}.tar")["attempts"] == 1
            assert saves[0] > before, "the writer made no save during the backup"
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors
    assert AnnotationRevision.objects.count() > 5


def test_a_file_deleted_before_it_is_pinned_makes_the_backup_take_a_new_snapshot(lab, tmp_path, monkeypatch, _media):
    """Referenced files are hard-linked at the start of the snapshot; one deleted in between by a process
    that does not share the files lock (an app server on another host: flock does not reach it; here the
    lock is taken away) makes the backup start again."""
    import contextlib

    from django.db import connection

    from apps.annotate import services

    monkeypatch.setattr(backup, "deleting_files", contextlib.nullcontext)
    image = lab["images"][2]
    real = backup._referenced_names
    calls = []

    def rerender():
        try:
            services.update_image(user=lab["anna"], image_id=image.pk, display_range=[[1, 2000 + len(calls)]])
        finally:
            connection.close()

    def names_then_rerender(*args, **kwargs):
        names = real(*args, **kwargs)
        if not calls:  # another connection commits a new thumbnail and deletes the old file
            t = threading.Thread(target=rerender)
            t.start()
            t.join(60)
        calls.append(1)
        return names

    monkeypatch.setattr(backup, "_referenced_names", names_then_rerender)
    run_backup(tmp_path / "a.tar")
    manifest = _check_consistent(tmp_path / "a.tar")
    assert manifest["attempts"] == 2
    image.refresh_from_db()
    assert image.thumbnail.name in {f["name"] for f in manifest["media"]}
    assert not list((_media / "tmp").glob("backup-*"))

    calls.clear()  # a single attempt: the vanished file is named in the manifest and on stderr
    err = io.StringIO()
    call_command("labseg_backup", str(tmp_path / "b.tar"), attempts=1, stdout=io.StringIO(), stderr=err)
    missing = read_manifest(tmp_path / "b.tar")["missing_media"]
    assert len(missing) == 1 and "thumbnails" in missing[0]
    assert "missing" in err.getvalue()


def test_the_apps_deletes_wait_while_a_backup_pins_its_files(lab, tmp_path, monkeypatch, _media):
    """A thumbnail re-rendered (committed) right after the backup's snapshot began: deleting its old file
    waits for the files lock until the snapshot's files are pinned, so one attempt suffices and nothing is
    missing; the delete happens once the pins are made."""
    from django.db import connection

    from apps.annotate import services

    image = lab["images"][2]
    image.refresh_from_db()
    old_thumb = image.thumbnail.name
    real = backup._referenced_names
    threads, seen = [], {}

    def rerender():
        try:
            services.update_image(user=lab["anna"], image_id=image.pk, display_range=[[1, 3000]])
        finally:
            connection.close()

    def names_then_rerender(*args, **kwargs):
        names = real(*args, **kwargs)  # the snapshot is fixed: it references the old thumbnail
        if not threads:
            t = threading.Thread(target=rerender)
            threads.append(t)
            t.start()
            t.join(1.0)  # the row is committed; the old file's delete waits for the lock
            seen["waiting"] = t.is_alive()
            seen["old file there"] = (_media / old_thumb).exists()
        return names

    monkeypatch.setattr(backup, "_referenced_names", names_then_rerender)
    run_backup(tmp_path / "a.tar")
    threads[0].join(60)
    assert seen == {"waiting": True, "old file there": True}
    manifest = _check_consistent(tmp_path / "a.tar")
    assert manifest["attempts"] == 1 and manifest["missing_media"] == []
    assert old_thumb in {f["name"] for f in manifest["media"]}  # the snapshot's thumbnail, backed up
    image.refresh_from_db()
    assert image.thumbnail.name != old_thumb and (_media / image.thumbnail.name).exists()
    assert not (_media / old_thumb).exists()  # deleted once the pins were made


def test_pinned_files_survive_their_deletion_during_the_backup(lab, tmp_path, monkeypatch):
    """A file deleted after it was pinned (while the rows are dumped) is still backed up from the snapshot."""
    from django.db import connection

    from apps.annotate import services

    image = lab["images"][2]
    image.refresh_from_db()
    old_thumb = image.thumbnail.name
    real = backup._dump_model

    def dump_and_rerender(model, *args, **kwargs):
        if model._meta.label_lower == "annotate.image":
            def rerender():
                try:
                    services.update_image(user=lab["anna"], image_id=image.pk, display_range=[[3, 3000]])
                finally:
                    connection.close()
            t = threading.Thread(target=rerender)
            t.start()
            t.join(60)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(backup, "_dump_model", dump_and_rerender)
    run_backup(tmp_path / "a.tar")
    manifest = _check_consistent(tmp_path / "a.tar")
    assert manifest["attempts"] == 1
    image.refresh_from_db()
    assert image.thumbnail.name != old_thumb and not image.thumbnail.storage.exists(old_thumb)
    referenced = {f["name"]: f["referenced"] for f in manifest["media"]}
    assert referenced[old_thumb] is True  # the snapshot's file, deleted meanwhile, is in the archive
    assert referenced.get(image.thumbnail.name) in (None, False)  # the new one is no row's file there


def test_backup_refuses_to_run_inside_a_transaction(lab, tmp_path):
    from django.db import transaction

    with transaction.atomic(), pytest.raises(CommandError, match="transaction of its own"):
        run_backup(tmp_path / "x.tar")
    assert not list(tmp_path.glob("*x.tar*"))
