"""Throwaway PostgreSQL and Redis servers that the chaos tests may stop, kill and restart.

The machine's shared PostgreSQL (5432) and Redis (6379) are never touched: each instance here gets a free
port, its own directory and its own socket directory. PostgreSQL refuses to run as root, so under root
``initdb``/``pg_ctl`` run as the ``postgres`` user (``runuser``) in a directory it owns. Redis runs
daemonized with a pid file (no persistence: a restart loses every message, as a Redis restarted without
persistence does), so whichever process restarted it last, the owner of the directory can stop it.
Both are described by a small JSON-able dict (``describe()`` / ``from_env()``) so that the scenario run,
a separate pytest process, can drive the instances its parent started.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, up: bool, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                is_up = True
        except OSError:
            is_up = False
        if is_up == up:
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} still {'down' if up else 'up'} after {timeout}s")


def postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb, pg_ctl and postgres."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                   if Path(p).parent.name.isdigit() else 0)
    for path in reversed(found):
        if all((Path(path) / b).exists() for b in ("initdb", "pg_ctl", "postgres")):
            return Path(path)
    return None


def missing_tools() -> str | None:
    """Why these servers cannot be started here (None when they can)."""
    if postgres_bin() is None:
        return "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
    if shutil.which("redis-server") is None:
        return "no redis-server on PATH"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser (PostgreSQL refuses to run as root)"
    return None


class PrivatePostgres:
    """``initdb`` into ``root/pgdata`` (trust auth, user postgres), served on ``port`` (TCP, 127.0.0.1)."""

    def __init__(self, root: str | Path, port: int | None = None, bindir: str | Path | None = None):
        self.root = Path(root)
        self.data, self.sockets, self.log = self.root / "pgdata", self.root / "sock", self.root / "postgres.log"
        self.port = port or free_port()
        self.bindir = Path(bindir) if bindir else postgres_bin()

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/labseg"

    def describe(self) -> dict:
        return {"root": str(self.root), "port": self.port, "bindir": str(self.bindir)}

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)

    def init(self) -> PrivatePostgres:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            for path in (self.root, self.sockets):
                shutil.chown(path, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        return self

    def start(self) -> None:
        # fsync off: a killed server still recovers from its WAL (only a machine crash could lose data)
        opts = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off -c max_connections=50")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "-t", "60", "start")
        wait_port(self.port, up=True)

    def stop(self, mode: str = "fast") -> None:
        """``mode``: fast (clean shutdown) or immediate (as a crash: no checkpoint, WAL recovery on start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)
        wait_port(self.port, up=False)

    def is_running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0


class PrivateRedis:
    """``redis-server`` on ``port``, daemonized, no RDB/AOF: every restart starts empty."""

    def __init__(self, root: str | Path, port: int | None = None):
        self.root = Path(root)
        self.port = port or free_port()
        self.pidfile, self.log = self.root / "redis.pid", self.root / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def describe(self) -> dict:
        return {"root": str(self.root), "port": self.port}

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--daemonize", "yes", "--pidfile", str(self.pidfile),
                        "--dir", str(self.root), "--logfile", str(self.log)], check=True, timeout=30)
        wait_port(self.port, up=True)

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Shut it down (SIGTERM: a clean shutdown, without saving; SIGKILL: a crash). Everything is lost."""
        pid = self.pid()
        if pid is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            deadline = time.time() + 20
            while time.time() < deadline and _alive(pid):
                time.sleep(0.05)
        wait_port(self.port, up=False)
        self.pidfile.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own child, not yet reaped) is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def from_env() -> tuple[PrivatePostgres, PrivateRedis]:
    """The instances the parent test described in CHAOS_PG_* / CHAOS_REDIS_* variables."""
    pg = PrivatePostgres(os.environ["CHAOS_PG_ROOT"], int(os.environ["CHAOS_PG_PORT"]), os.environ["CHAOS_PG_BIN"])
    redis = PrivateRedis(os.environ["CHAOS_REDIS_ROOT"], int(os.environ["CHAOS_REDIS_PORT"]))
    return pg, redis


def to_env(pg: PrivatePostgres, redis: PrivateRedis) -> dict[str, str]:
    return {"CHAOS_PG_ROOT": str(pg.root), "CHAOS_PG_PORT": str(pg.port), "CHAOS_PG_BIN": str(pg.bindir),
            "CHAOS_REDIS_ROOT": str(redis.root), "CHAOS_REDIS_PORT": str(redis.port)}
