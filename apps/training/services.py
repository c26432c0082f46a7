"""Write operations of the training app: one function per use case, transactions here.

A run is a ``labseg.jobs`` job of kind ``RUNS``: claim, heartbeat, progress, finish-if-ours, fail, cancel
and the recovery of stale or lost runs are ``labseg.jobs.service``'s; this module adds what is a run's own::

    start_run (API)        -> queued        (enqueued on commit; at most one queued/running run per project)
    claim_run (worker)     -> running       (jobs.claim: ONE conditional UPDATE queued->running)
    ProgressReporter       -> step/loss/ETA + heartbeat every ~1.5 s (jobs.beat); stops on cancel or loss
    finish_run (worker)    -> succeeded     (ModelVersion + MetricScores + activation, one transaction,
                                             only while the run is still the worker's)
    fail_run / cancel_run  -> failed / cancelled

Nothing here imports torch: ``labseg.ml.train`` is imported lazily where a config must be validated.
"""
from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from apps.annotate.models import Image, LabelClass, Project
from labseg.jobs import service as jobs

from .models import ACTIVE_RUN_STATUSES, MetricScore, ModelVersion, ScoreMethod, TrainingRun
from .selectors import TRAINING_VALIDATION
from .signals import version_trained

log = logging.getLogger(__name__)

#: A run is attempted at most this often: the first time, and once more after its worker died.
MAX_RUN_ATTEMPTS = 2
#: Progress rows are written at most this often (seconds); the heartbeat rides along.
PROGRESS_INTERVAL_S = 1.5
#: Loss curves longer than this are downsampled (every k-th point, last one kept) before storing.
MAX_CURVE_POINTS = 400


class ActiveRunExists(Exception):
    """A project already has a queued or running run (the API answers 409 with it)."""

    def __init__(self, run: TrainingRun):
        super().__init__(f"Training run {run.pk} is already {run.status} for this project.")
        self.run = run


class TrainingError(Exception):
    """A failure the user can act on; the message is shown as is in the browser."""


# --- configuration ----------------------------------------------------------------------------
def validate_config(overrides: Any) -> dict:
    """Check ``TrainConfig`` overrides; ValidationError (400) with the ML core's message otherwise."""
    if overrides in (None, ""):
        return {}
    if not isinstance(overrides, dict):
        raise ValidationError({"config": "config must be a JSON object of TrainConfig overrides."})
    from labseg.ml.train import validate_config_overrides  # lazy: keeps torch out of Django's import

    try:
        cleaned = validate_config_overrides(overrides)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValidationError({"config": str(exc).strip("'\"")}) from exc
    return dict(cleaned) if isinstance(cleaned, dict) else dict(overrides)


def code_version() -> str:
    """``git describe`` of the checkout when available, else the package version constant."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"], cwd=settings.BASE_DIR,
            capture_output=True, text=True, timeout=5,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("LABSEG_VERSION", "unknown")


# --- the job kind ------------------------------------------------------------------------------
RUNS = jobs.register(jobs.JobKind(
    name="training", model=TrainingRun, task="apps.training.tasks.run_training", noun="training run",
    queue_noun="training", again="start the run again", max_attempts=MAX_RUN_ATTEMPTS, status_line=True,
    crash_advice="Try a smaller tile size or batch size, or ask your administrator to check the GPU worker.",
))
RunStopped = jobs.JobStopped  # reason "cancelled", or "lost" (jobs.JobLost): the run was taken from us


# --- starting, claiming, cancelling -----------------------------------------------------------
def _enqueue(run_id: int, failed: list[int] | None = None) -> None:
    """Send the task once the run row is committed (a broker error fails the run: ``jobs.enqueue``)."""
    jobs.enqueue(RUNS, run_id, failed)


def active_run(project_id: int) -> TrainingRun | None:
    return TrainingRun.objects.filter(project_id=project_id, status__in=ACTIVE_RUN_STATUSES).order_by("-id").first()


def start_run(project: Project, user, *, parent_version_id: int | None = None, config: Any = None,
              from_scratch: bool = False) -> TrainingRun:
    """Queue a training run; ``ActiveRunExists`` when one is queued/running; the worker starts on commit.

    The parent (fine-tune from) defaults to the project's active version; pass another version of the
    project to branch from it, or ``from_scratch`` for fresh weights. A project's first run (no
    version yet) starts from scratch.
    """
    overrides = validate_config(config)
    if from_scratch and parent_version_id is not None:
        raise ValidationError({"from_scratch": "Give either a parent_version or from_scratch, not both."})
    if from_scratch:
        parent = None
    elif parent_version_id is not None:
        parent = ModelVersion.objects.filter(pk=parent_version_id, project=project).first()
        if parent is None:
            raise ValidationError({"parent_version": f"Model version {parent_version_id} is not in this project."})
    else:
        parent = ModelVersion.objects.filter(project=project, is_active=True).first()
    existing = active_run(project.pk)
    if existing is not None:
        raise ActiveRunExists(existing)
    failed: list[int] = []
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                project=project, parent_version=parent, config=overrides, created_by=user,
                message="Waiting for a GPU worker", enqueued_at=timezone.now(),
            )
            _enqueue(run.pk, failed)
    except IntegrityError as exc:  # a concurrent request won the partial unique constraint
        existing = active_run(project.pk)
        if existing is None:
            raise
        raise ActiveRunExists(existing) from exc
    if failed:  # the commit above ran the enqueue hook (no caller's transaction was open) and it failed
        from labseg.api import ServiceUnavailable

        raise ServiceUnavailable(
            "The training queue could not be reached, so the run was not started (it is marked failed). "
            "Ask your administrator to check the broker (Redis), then try again.",
            code="queue_unavailable", extra={"run_id": run.pk})
    return run


def claim_run(run_id: int, worker: str) -> bool:
    """Take a queued run for this worker with ONE conditional UPDATE; False if anyone else had it."""
    return jobs.claim(RUNS, run_id, worker, message="Loading images and labels")


def heartbeat(run_id: int, worker: str, message: str | None = None) -> None:
    """Heartbeat (+ optional status line); RunStopped when the run was cancelled or is no longer ours."""
    jobs.beat(RUNS, run_id, worker, **({} if message is None else RUNS.line(message)))


def downsample_curve(points: list[list[float]], limit: int = MAX_CURVE_POINTS) -> list[list[float]]:
    """Every k-th point so that at most ``limit`` remain, always keeping the last one."""
    if len(points) <= limit:
        return list(points)
    k = -(-len(points) // (limit - 1))
    return points[::k][: limit - 1] + [points[-1]]


class ProgressReporter:
    """The ``progress`` callback handed to ``fit``: writes progress + heartbeat, stops on cancel.

    Called as ``reporter(step, loss, steps=total, **anything)`` (extra keywords are ignored). Writes at
    most every ``interval`` seconds (and always on the last step); raises ``RunStopped`` when the run
    was cancelled or recovered, which ends ``fit`` within one step.
    """

    def __init__(self, run_id: int, worker: str, total_steps: int, max_seconds: float | None = None,
                 interval: float = PROGRESS_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self.run_id, self.worker, self.total = run_id, worker, int(total_steps or 0)
        self.max_seconds = max_seconds or None
        self.interval, self.clock = interval, clock
        self.started = clock()
        self.last_write = -1e18
        self.curve: list[list[float]] = []
        self.step = 0

    def eta(self, step: int, elapsed: float) -> float | None:
        """Seconds left: by steps done so far, capped by the time budget when there is one."""
        left = None
        if step > 0 and self.total:
            left = elapsed / step * max(self.total - step, 0)
        if self.max_seconds:
            budget_left = max(self.max_seconds - elapsed, 0.0)
            left = budget_left if left is None else min(left, budget_left)
        return left

    def __call__(self, step: int, loss: float | None = None, *args: Any, total: int | None = None,
                 steps: int | None = None, **_: Any):
        if total or steps:
            self.total = int(total or steps)
        self.step = int(step)
        if loss is not None:
            self.curve.append([int(step), round(float(loss), 6)])
        now = self.clock()
        if now - self.last_write < self.interval and step < self.total:
            return None
        self.flush()
        return None

    def flush(self, message: str | None = None) -> None:
        now = self.clock()
        self.last_write = now
        elapsed = now - self.started
        total = max(self.total, self.step)
        fields = {
            "step": self.step, "total_steps": total, "progress": (self.step / total) if total else 0.0,
            "loss_curve": downsample_curve(self.curve), "elapsed_seconds": round(elapsed, 2),
            "eta_seconds": self.eta(self.step, elapsed),
            "message": message or f"Training: step {self.step} of {total}",
        }
        jobs.beat(RUNS, self.run_id, self.worker, **fields)


def cancel_run(run: TrainingRun) -> TrainingRun:
    """Cancel: a queued run ends at once; a running one gets the flag and stops within seconds.

    A finished run is returned unchanged (``run.is_active`` False tells the caller).
    """
    jobs.cancel(RUNS, run.pk)
    run.refresh_from_db()
    return run


def end_run(run_id: int, status: str, *, worker: str, message: str = "") -> bool:
    """Move the worker's running run to a final status (cancelled at a cancel), only while it is ours."""
    return jobs.finish_if_ours(RUNS, run_id, worker, status, message=message[:500] or status, eta_seconds=None)


def fail_run(run_id: int, error: str, worker: str | None = None) -> bool:
    return jobs.fail(RUNS, run_id, error, worker=worker, eta_seconds=None)


def recover_stale_runs(timeout_s: float | None = None) -> dict[str, list[int]]:
    """Runs whose worker died: re-queued once, then failed (``labseg.jobs.service.recover_stale``)."""
    return jobs.recover_stale(RUNS, timeout_s)


def recover_lost_runs(timeout_s: float | None = None, *, at_worker_start: bool = False) -> dict[str, list[int]]:
    """Queued runs whose message no worker received: re-sent once, then failed (``jobs.recover_lost``)."""
    return jobs.recover_lost(RUNS, timeout_s, at_worker_start=at_worker_start)


def recover_runs(*, at_worker_start: bool = False) -> dict[str, dict[str, list[int]]]:
    """Both recoveries of training runs (the beat task ``jobs.recover`` runs them for every kind)."""
    return jobs.recover(RUNS, at_worker_start=at_worker_start)


# --- model versions ---------------------------------------------------------------------------
def _next_number(project_id: int) -> int:
    """Next version number; call inside a transaction holding the project row lock."""
    return (ModelVersion.objects.filter(project_id=project_id).aggregate(m=Max("number"))["m"] or 0) + 1


def activate_version(version: ModelVersion) -> ModelVersion:
    """Make this the project's one active version (the one predictions and new runs use)."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=version.project_id).first()
        ModelVersion.objects.filter(project_id=version.project_id, is_active=True).exclude(pk=version.pk).update(
            is_active=False
        )
        ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
    version.refresh_from_db()
    return version




def record_metric_scores(version: ModelVersion, image: Image | None, split: str, scores: dict,
                         source: str = "", method: str = ScoreMethod.UNET) -> list[MetricScore]:
    """Store ``{name: value}`` (or ``{name: {"value": v, "details": {...}}}``) for (version, image).

    One row per (version, image, name), updated in place when scored again. ``image=None`` holds the
    aggregate over ``split``. Non-finite values are skipped (JSON and charts cannot show them).
    ``source`` (kept in ``details["source"]``) says who scored: ``TRAINING_VALIDATION`` for the run's
    own validation, which later scorers must not overwrite (see ``selectors.has_training_scores``). ``method``:
    ``unet`` for the version's own network, else the baseline the run fitted beside it.
    """
    rows = []
    for name, raw in scores.items():
        details: dict = {}
        if isinstance(raw, dict):
            details = {k: v for k, v in raw.items() if k != "value"}
            raw = raw.get("value")
        if source:
            details["source"] = source
        if raw is None:
            continue
        value = float(raw)
        if value != value or value in (float("inf"), float("-inf")):
            continue
        row, _ = MetricScore.objects.update_or_create(
            model_version=version, image=image, name=str(name)[:64], method=method,
            defaults={"value": value, "split": split or "", "details": _jsonable(details)},
        )
        rows.append(row)
    return rows


def _jsonable(value: Any) -> Any:
    """numpy scalars / tuples -> plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


@dataclass
class ImageScores:
    """Validation scores of one image, stored as MetricScore rows of the new version."""

    image_id: int | None
    split: str
    scores: dict
    method: str = ScoreMethod.UNET


def finish_run(
    run_id: int, worker: str, *, checkpoint_path: str | Path, architecture: dict, config: dict,
    provenance: dict, scores: list[ImageScores] = (),
) -> ModelVersion | None:
    """Create the run's ModelVersion (+ metric scores) and mark the run succeeded, in one transaction.

    Activation rule: the new version becomes active when the project had no active version, or when
    it was fine-tuned from the active one (the lab's normal loop: correct, retrain, use the result).
    A run branched from an older, non-active version does not replace the active model: the lab
    compares the scores and activates it by hand. Returns None when the run is no longer ours. Once
    committed, ``signals.version_trained`` announces the version (the inference app predicts with it).
    """
    with transaction.atomic():
        run = jobs.lock_if_ours(RUNS, run_id, worker)
        if run is None:
            return None
        Project.objects.select_for_update().filter(pk=run.project_id).first()
        active = ModelVersion.objects.filter(project_id=run.project_id, is_active=True).first()
        activate = active is None or (run.parent_version_id is not None and run.parent_version_id == active.pk)
        version = ModelVersion(
            project_id=run.project_id, number=_next_number(run.project_id), run=run, parent=run.parent_version,
            architecture=_jsonable(architecture), config=_jsonable(config), provenance=_jsonable(provenance),
            created_by=run.created_by,
        )
        with open(checkpoint_path, "rb") as fh:
            version.checkpoint.save(f"v{version.number}.pt", File(fh), save=False)
        version.save()
        images = {i.pk: i for i in Image.objects.filter(pk__in=[s.image_id for s in scores if s.image_id])}
        for s in scores:
            record_metric_scores(version, images.get(s.image_id) if s.image_id else None, s.split, s.scores,
                                 source=TRAINING_VALIDATION, method=s.method)
        if activate:  # in the same transaction: nobody sees a succeeded run whose version is not active yet
            activate_version(version)
        jobs.finish_if_ours(RUNS, run.pk, worker, eta_seconds=0.0, message=f"Finished: model version {version.number}")
        transaction.on_commit(lambda: _announce(version))
    return version


def create_version(project: Project, user, *, checkpoint_path: str | Path, parent: ModelVersion | None,
                   architecture: dict, config: dict, provenance: dict, name: str = "") -> ModelVersion:
    """A ModelVersion from a checkpoint file that no training run made (a kept live session), activated by
    ``finish_run``'s rule (no active version yet, or fine-tuned from the active one) and announced with
    ``version_trained`` on commit like a run's version (the inference app predicts, and so scores, with it)."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        active = ModelVersion.objects.filter(project_id=project.pk, is_active=True).first()
        activate = active is None or (parent is not None and parent.pk == active.pk)
        version = ModelVersion(
            project_id=project.pk, number=_next_number(project.pk), name=name[:200], parent=parent,
            architecture=_jsonable(architecture), config=_jsonable(config), provenance=_jsonable(provenance),
            created_by=user)
        with open(checkpoint_path, "rb") as fh:
            version.checkpoint.save(f"v{version.number}.pt", File(fh), save=False)
        version.save()
        if activate:
            activate_version(version)
        transaction.on_commit(lambda: _announce(version))
    return version


def _announce(version: ModelVersion) -> None:
    """``version_trained`` to whoever listens (auto-predict); a receiver's error is logged, never raised."""
    for receiver, result in version_trained.send_robust(sender=ModelVersion, version=version):
        if isinstance(result, Exception):
            log.error("a receiver of version_trained (%s) failed for version %s: %r", receiver, version.pk, result)


def project_channel_count(project: Project) -> int | None:
    """The channel count of the project's images (None when it has no images yet)."""
    counts = set(Image.objects.filter(project=project).values_list("channels", flat=True))
    if len(counts) == 1:
        return counts.pop()
    if not counts:
        return len(project.channels) or None
    return max(counts)


def project_num_classes(project: Project) -> int:
    """Outputs a model of this project needs: one per class index 1..max (background included)."""
    return max(LabelClass.objects.filter(project=project).values_list("index", flat=True), default=1)


def upload_checkpoint(project: Project, user, uploaded, *, name: str = "") -> ModelVersion:
    """Add an uploaded checkpoint as a new version after checking it loads and fits the project."""
    from labseg.ml.train import load_checkpoint  # lazy: torch only when someone uploads

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.pt"
        with open(path, "wb") as out:
            for chunk in uploaded.chunks():
                out.write(chunk)
        try:
            loaded = load_checkpoint(str(path))
        except Exception as exc:  # any unreadable file: a clear 400, never a 500
            raise ValidationError(
                {"checkpoint": f"This file is not a LabSeg checkpoint that can be loaded ({exc})."}) from exc
        arch = checkpoint_architecture(loaded)
        want_c = project_channel_count(project)
        have_c = arch.get("in_channels")
        if want_c is not None and have_c is not None and int(have_c) != int(want_c):
            raise ValidationError({"checkpoint": (
                f"This model expects {have_c}-channel images, but the images of this project have {want_c} "
                f"channel{'s' if want_c != 1 else ''}. Upload a model trained on {want_c}-channel images.")})
        want_k = project_num_classes(project)
        have_k = arch.get("num_classes")
        if have_k is not None and int(have_k) != want_k:
            raise ValidationError({"checkpoint": (
                f"This model predicts {have_k} classes, but this project has {want_k} "
                "(background included). Add or remove label classes, or upload a matching model.")})
        with transaction.atomic():
            Project.objects.select_for_update().filter(pk=project.pk).first()
            version = ModelVersion(
                project=project, number=_next_number(project.pk), name=name[:200], architecture=arch,
                config=_jsonable(checkpoint_config(loaded)), created_by=user,
                provenance={"uploaded": True, "filename": getattr(uploaded, "name", ""),
                            "uploaded_by": getattr(user, "username", None), "code_version": code_version()},
            )
            with open(path, "rb") as fh:
                version.checkpoint.save(Path(getattr(uploaded, "name", "model.pt")).name or "model.pt",
                                        File(fh), save=False)
            version.save()
            first = not ModelVersion.objects.filter(project=project, is_active=True).exists()
    if first:
        activate_version(version)
    return version


def _checkpoint_dict(loaded: Any) -> dict:
    """The metadata dict of whatever ``load_checkpoint`` returned ((model, meta), meta dict, or object)."""
    if isinstance(loaded, tuple):
        for part in loaded:
            if isinstance(part, dict):
                return part
        loaded = loaded[0]
    if isinstance(loaded, dict):
        return loaded
    return getattr(loaded, "__dict__", {}) or {}


def checkpoint_architecture(loaded: Any) -> dict:
    """UNet kwargs (in_channels, num_classes, base_channels, depth, ...) of a loaded checkpoint."""
    meta = _checkpoint_dict(loaded)
    arch = dict(meta.get("model_config") or meta.get("architecture") or {})
    model = loaded[0] if isinstance(loaded, tuple) else None
    for key in ("in_channels", "num_classes", "base_channels", "depth"):
        if key not in arch:
            if key in meta:
                arch[key] = meta[key]
            elif model is not None and hasattr(model, key):
                arch[key] = getattr(model, key)
    return _jsonable(arch)


def checkpoint_config(loaded: Any) -> dict:
    meta = _checkpoint_dict(loaded)
    cfg = meta.get("train_config") or meta.get("config") or {}
    if hasattr(cfg, "__dataclass_fields__"):
        from dataclasses import asdict

        cfg = asdict(cfg)
    return cfg if isinstance(cfg, dict) else {}
