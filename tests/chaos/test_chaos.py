"""No code path leaves a training run or a prediction queued or running forever.

For training and prediction alike, a scenario kills or stalls (SIGSTOP) and restarts each piece while a
job runs: the worker's pool child alone, the whole worker, Redis (shut down, restarted empty) and
PostgreSQL (stopped as in a crash, restarted). Every job must end succeeded, re-queued then succeeded,
or failed with a message, and no annotation save may be lost. The scenarios are in ``scenarios.py``.

They need servers they may kill, never the shared ones the rest of the suite uses: this test starts a
throwaway PostgreSQL cluster (``initdb``) and Redis on free ports, then runs the scenarios as a separate
pytest process whose DATABASE_URL and CELERY_BROKER_URL point at them (pytest-django creates the test
database there; workers inherit the same variables). Timeouts are shortened to seconds; the beat's
recovery functions are called directly. ``CHAOS_PYTEST_ARGS`` (e.g. ``-k "prediction and redis"``) narrows
the run while working on it. Needs PostgreSQL server binaries (/usr/lib/postgresql/*/bin) and redis-server.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from .services import PrivatePostgres, PrivateRedis, missing_tools, to_env

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.chaos, pytest.mark.worker, pytest.mark.slow]


def table(lines: list[dict]) -> str:
    out = [f"{'scenario':32} {'s':>5}  outcomes", "-" * 100]
    for line in lines:
        name = f"{line['kind']} / {line['fault']}"
        outcomes = "; ".join(f"{job}: {what}" for job, what in line["outcomes"].items())
        out.append(f"{name:32} {line['seconds']:>5}  {outcomes}")
        for event in line["events"]:
            out.append(f"{'':40}{event}")
    return "\n".join(out)


def kill_leftovers(token: str) -> list[int]:
    """SIGKILL what the scenario run started and left behind (workers, if it was killed itself): every process
    whose environment carries this run's unique token, i.e. only descendants of the run."""
    killed = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if token.encode() in (proc / "environ").read_bytes().split(b"\0") and int(proc.name) != os.getpid():
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
        except (OSError, ValueError):
            pass
    return killed


def test_every_job_ends_when_workers_redis_or_postgres_are_killed_stalled_or_restarted():
    why = missing_tools()
    if why:
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="labseg-chaos-"))
    root.chmod(0o755)  # the postgres user must reach its cluster directory below
    pg, redis = PrivatePostgres(root / "pg"), PrivateRedis(root / "redis")
    report = root / "report.jsonl"
    token = f"CHAOS_RUN={uuid.uuid4().hex}"
    try:
        pg.init()
        pg.start()
        redis.start()
        # Timeouts of seconds instead of minutes, yet above the longest silence of a healthy job (a fresh pool
        # child imports torch after its claim: 2-4 s on a loaded 2-core machine), or healthy jobs get recovered.
        env = {**os.environ, **to_env(pg, redis),
               "DATABASE_URL": pg.url, "CELERY_BROKER_URL": redis.url,
               "LABSEG_VAR_DIR": str(root / "var"), "MEDIA_ROOT": str(root / "media"),
               "LABSEG_HEARTBEAT_TIMEOUT": "6", "LABSEG_QUEUED_TIMEOUT": "6", "LABSEG_AUTO_PREDICT": "0",
               "LABSEG_DEVICE": "cpu", "LABSEG_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1",
               "CHAOS_REPORT": str(report), "PYTHONUNBUFFERED": "1", "CHAOS_RUN": token.split("=")[1]}
        env.pop("PYTEST_ADDOPTS", None)
        cmd = [sys.executable, "-m", "pytest", "tests/chaos/scenarios.py", "-q",
               *shlex.split(os.environ.get("CHAOS_PYTEST_ARGS", ""))]
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        lines = [json.loads(x) for x in report.read_text().splitlines()] if report.exists() else []
        print(table(lines))
        assert done.returncode == 0, f"{table(lines)}\n\n{done.stdout[-12000:]}\n{done.stderr[-3000:]}"
        assert lines, done.stdout[-3000:]
    finally:
        redis.stop()
        pg.stop("immediate")
        kill_leftovers(token)
        shutil.rmtree(root, ignore_errors=True)
