"""Backup and restore of a LabSeg installation: every database row plus the media files.

``manage.py labseg_backup OUT`` writes one tar file (``.tar``; ``.tar.gz`` / ``.tgz`` when OUT ends so):

    db/<app_label>.<model>.jsonl   every row of every model, one JSON object per line (Django's
                                   "python" serializer form, datetimes with microseconds)
    media/<storage name>           the files under MEDIA_ROOT (originals, thumbnails, checkpoints,
                                   prediction maps, ...), byte for byte
    manifest.json                  LAST member: format + version, created time, database vendor,
                                   applied migrations per app, row count + sha256 per model file,
                                   size + sha256 of every media file

The manifest is written last because it holds the sha256 of everything before it; a truncated
archive therefore lacks it (or has it cut) and is refused.

Consistency while the app runs: the whole database is read in ONE transaction (PostgreSQL:
``REPEATABLE READ READ ONLY``, so every table is read from the same snapshot; SQLite: one read
transaction, which also is a snapshot), the rows are written to a staging folder, the transaction
ends, and then the media files *referenced by that snapshot* are copied. LabSeg writes a media file
once under a new unique name and commits the row that points at it only afterwards; it never
rewrites a file in place. A replaced file (a re-rendered thumbnail) or a deleted image has its old
file deleted after the commit; the backup hard-links ("pins") the files its snapshot references right
at its start, and the app's deletes wait while it does (``FILES_LOCK``), so those never take a file
of the snapshot. A file can still vanish before it is pinned when something else deletes it (a
process that does not share the lock, such as an app server on another host): then the whole backup
is taken again from a fresh snapshot (``attempts``); if a referenced file is still missing on the
last attempt it is listed in the manifest (``missing_media``) and reported. Derived
files are skipped: ``MEDIA_ROOT/cache/``, ``MEDIA_ROOT/tmp/``, ``*.cache.npy`` (decoded-array caches
rebuilt on demand) and ``*.tmp`` / ``*.partial`` files, unless a row references them.

Rows are serialised database-agnostically (primary keys kept; content types and permissions, which
``migrate`` creates with ids of its own, are referenced by natural key), so a backup taken on SQLite
restores into PostgreSQL and back.

Restore refuses a non-empty database (``force`` flushes it first, in the same transaction as the
load), checks the manifest (format version, migrations equal to the target database's, which must be
migrated to this code), validates every member name (no absolute names, no ``..``, nothing but regular
files, each under a size cap, all together within the free disk space) before writing anything,
extracts into ``MEDIA_ROOT/tmp/`` verifying every sha256, loads all rows in one transaction, checks
row counts and foreign keys, resets the sequences, and moves the files into place (``os.replace``,
atomic per file) before that transaction commits.
"""
from __future__ import annotations

import datetime
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import ExitStack, contextmanager
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core import serializers
from django.core.management.color import no_style
from django.core.management.sql import emit_post_migrate_signal, sql_flush
from django.core.serializers.json import DjangoJSONEncoder
from django.core.serializers.python import Serializer as PythonSerializer
from django.db import DEFAULT_DB_ALIAS, connections, models, router, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

FORMAT = "labseg-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DB_PREFIX = "db/"
MEDIA_PREFIX = "media/"
#: Top-level MEDIA_ROOT folders holding derived data only (weight-map cache, temporary files).
SKIPPED_DIRS = ("cache", "tmp")
#: Deleting files that committed rows no longer reference (a replaced thumbnail, a deleted image's files;
#: ``deleting_files``) waits while a backup reads which files its snapshot references and pins them (an
#: ``flock`` on this file under MEDIA_ROOT, shared by deleters, exclusive for the backup), so no file the
#: snapshot references can vanish before it is pinned. It lives in a skipped folder: never backed up.
FILES_LOCK = "cache/.files.lock"
#: Unreferenced files with these endings are derived or half-written and not backed up.
SKIPPED_SUFFIXES = (".cache.npy", ".tmp", ".partial")
#: Models not backed up: ``migrate`` (post_migrate) creates them; rows refer to them by natural key.
REGENERATED = (ContentType, Permission)
#: Default cap on one archive member (restore refuses bigger ones).
DEFAULT_MAX_MEMBER_BYTES = 16 * 1024**3
MAX_MANIFEST_BYTES = 256 * 1024**2
BATCH = 500
CHUNK = 1024 * 1024


class BackupError(Exception):
    """Any refused or failed backup/restore; the message says what and why (commands show it)."""


# --- serialisation ---------------------------------------------------------------------------
class _Encoder(DjangoJSONEncoder):
    """DjangoJSONEncoder cuts datetimes to milliseconds; a backup keeps microseconds."""

    def default(self, o):
        if isinstance(o, (datetime.datetime, datetime.time)):
            return o.isoformat()
        return super().default(o)


class RowSerializer(PythonSerializer):
    """Django's python serializer with natural keys only for the rows ``migrate`` regenerates
    (content types, permissions): every other foreign key stays a primary key, which the backup keeps,
    so no query per row is needed to look a natural key up."""

    def handle_fk_field(self, obj, field):
        self.use_natural_foreign_keys = issubclass(field.remote_field.model, REGENERATED)
        super().handle_fk_field(obj, field)

    def handle_m2m_field(self, obj, field):
        self.use_natural_foreign_keys = issubclass(field.remote_field.model, REGENERATED)
        super().handle_m2m_field(obj, field)


def serialize_rows(objs: Iterable[models.Model]) -> list[dict]:
    return RowSerializer().serialize(objs, use_natural_foreign_keys=False, use_natural_primary_keys=False)


def dumps_row(row: dict) -> str:
    return json.dumps(row, cls=_Encoder, separators=(",", ":"), sort_keys=True)


def backup_models(using: str = DEFAULT_DB_ALIAS) -> list[type[models.Model]]:
    """Every concrete model whose rows a backup holds, in a fixed order (by label)."""
    out = []
    for model in apps.get_models():  # auto-created m2m tables travel with their models' m2m fields
        opts = model._meta
        if opts.proxy or not opts.managed or issubclass(model, REGENERATED):
            continue
        if not router.allow_migrate_model(using, model):
            continue
        out.append(model)
    return sorted(out, key=lambda m: m._meta.label_lower)


def file_fields(model: type[models.Model]) -> list[str]:
    return [f.name for f in model._meta.concrete_fields if isinstance(f, models.FileField)]


def iter_rows(model: type[models.Model], using: str = DEFAULT_DB_ALIAS) -> Iterable[dict]:
    """The model's rows, serialised, ordered by primary key."""
    qs = model._base_manager.using(using).order_by("pk")
    batch: list[models.Model] = []
    for obj in qs.iterator(chunk_size=2000):
        batch.append(obj)
        if len(batch) >= BATCH:
            yield from serialize_rows(batch)
            batch = []
    if batch:
        yield from serialize_rows(batch)


# --- helpers ---------------------------------------------------------------------------------
class _HashingReader:
    def __init__(self, fh):
        self.fh, self.hash, self.count = fh, hashlib.sha256(), 0

    def read(self, n=-1):
        data = self.fh.read(n)
        self.hash.update(data)
        self.count += len(data)
        return data


def _unsafe_reason(name: str) -> str | None:
    """Why ``name`` (a '/'-separated relative path) may not be written under a root, or None."""
    if not name:
        return "an empty name"
    if "\x00" in name or "\\" in name:
        return "a NUL or backslash in the name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "an absolute name"
    parts = name.split("/")
    if any(p in ("..",) for p in parts):
        return "a '..' component (it would escape the target folder)"
    if any(p in ("", ".") for p in parts):
        return "an empty or '.' component"
    return None


def migration_state(connection) -> dict[str, list[str]]:
    """Applied migrations per app, as recorded in the database."""
    out: dict[str, list[str]] = defaultdict(list)
    for app_label, name in MigrationRecorder(connection).applied_migrations():
        out[app_label].append(name)
    return {app: sorted(names) for app, names in sorted(out.items())}


@contextmanager
def snapshot(using: str = DEFAULT_DB_ALIAS):
    """One read transaction that sees one consistent state of the whole database."""
    conn = connections[using]
    if conn.in_atomic_block:
        raise BackupError("a backup reads the database in a transaction of its own; "
                          "it cannot run inside another transaction")
    conn.ensure_connection()
    with transaction.atomic(using=using):
        if conn.vendor == "postgresql":
            # The first statement of the transaction: every later query sees the same snapshot.
            with conn.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        elif conn.vendor == "mysql":
            raise BackupError("labseg_backup supports PostgreSQL and SQLite")
        # SQLite: atomic() began the transaction; its first read takes the snapshot, kept to the end.
        yield conn


# --- backup ----------------------------------------------------------------------------------
@contextmanager
def _files_lock(exclusive: bool):
    path = Path(settings.MEDIA_ROOT) / FILES_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:  # closing it releases the lock
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


def deleting_files():
    """Hold this (shared; deleters do not wait for each other) while deleting media files after the
    commit that stopped referencing them: it waits while a backup pins its snapshot's files."""
    return _files_lock(exclusive=False)


def _dump_model(model, using: str, out_dir: Path, refs: set[str]) -> dict:
    """Write one model's rows as ``<label>.jsonl`` into ``out_dir``; add referenced file names to refs."""
    label = model._meta.label_lower
    fnames = file_fields(model)
    path = out_dir / f"{label}.jsonl"
    h, count = hashlib.sha256(), 0
    with open(path, "wb") as fh:
        for row in iter_rows(model, using):
            for f in fnames:
                if row["fields"].get(f):
                    refs.add(row["fields"][f])
            line = (dumps_row(row) + "\n").encode()
            h.update(line)
            fh.write(line)
            count += 1
    return {"model": label, "file": f"{DB_PREFIX}{label}.jsonl", "count": count,
            "size": path.stat().st_size, "sha256": h.hexdigest()}


def _referenced_names(using: str) -> set[str]:
    """The storage names in every FileField of every row (read in the snapshot, before the dump)."""
    names: set[str] = set()
    for model in backup_models(using):
        fields = file_fields(model)
        if fields:
            for row in model._base_manager.using(using).order_by().values_list(*fields).iterator(chunk_size=5000):
                names.update(n for n in row if n)
    return names


def _pin_files(names: Iterable[str], media_root: Path, pin_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """Hard-link each referenced file into ``pin_dir`` (MEDIA_ROOT/tmp/..., the same filesystem) right
    at the start of the snapshot, so a file the app deletes while the backup runs stays readable.
    Returns {name: where to read it} and the names already gone. Where links are not possible
    (another filesystem, no permission) the files are read in place later."""
    where: dict[str, Path] = {}
    gone: list[str] = []
    can_link = True
    for name in sorted(names):
        src = _media_path(media_root, name)
        if src is None:
            gone.append(name)
            continue
        if can_link:
            dst = pin_dir / name
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, dst)
                where[name] = dst
                continue
            except FileNotFoundError:
                if not src.exists():
                    gone.append(name)
                    continue
                can_link = False
            except OSError:
                can_link = False
        where[name] = src
    return where, gone


def _dump_database(
        using: str, out_dir: Path, media_root: Path, pin_dir: Path) -> tuple[dict, dict[str, Path], list[str]]:
    """In one snapshot: pin the referenced files, then write every model's rows into ``out_dir``."""
    refs: set[str] = set()
    with ExitStack() as pinning:
        pinning.enter_context(_files_lock(exclusive=True))  # before the snapshot: no delete in between
        with snapshot(using) as conn:
            names = _referenced_names(using)  # the first read: it fixes the snapshot
            where, gone = _pin_files(names, media_root, pin_dir)
            pinning.close()  # pinned: deletes may go on while the rows are read
            migrations = migration_state(conn)
            tables = [_dump_model(m, using, out_dir, refs) for m in backup_models(using)]
            snapshot_at = timezone.now()
    if refs != names:  # impossible within one snapshot: a database that does not isolate the read
        raise BackupError("the rows changed while they were read: the database did not give one snapshot")
    return ({"db_vendor": conn.vendor, "migrations": migrations, "models": tables,
             "snapshot_at": snapshot_at.isoformat()}, where, gone)


def _media_path(media_root: Path, name: str) -> Path | None:
    if _unsafe_reason(name):
        return None
    return media_root / name


def _add_file(tar: tarfile.TarFile, arcname: str, path: Path) -> dict | None:
    """Add ``path`` as ``arcname``; its size and sha256 as read, or None when it does not exist."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return None
    with fh:
        st = os.fstat(fh.fileno())
        ti = tarfile.TarInfo(arcname)
        ti.size, ti.mtime, ti.mode = st.st_size, int(st.st_mtime), 0o644
        reader = _HashingReader(fh)
        tar.addfile(ti, reader)
    return {"size": reader.count, "sha256": reader.hash.hexdigest()}


def _other_media(media_root: Path, skip: set[str]) -> list[str]:
    """Storage names of the files under MEDIA_ROOT not referenced by a row, except derived ones."""
    out = []
    if not media_root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(media_root):
        rel_dir = Path(dirpath).relative_to(media_root).as_posix()
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
            rel_dir = ""
        dirnames.sort()
        for fn in sorted(filenames):
            name = f"{rel_dir}/{fn}" if rel_dir else fn
            full = Path(dirpath) / fn
            if name in skip or fn.endswith(SKIPPED_SUFFIXES) or full.is_symlink() or _unsafe_reason(name):
                continue
            out.append(name)
    return out


def create_backup(out: str | os.PathLike, *, using: str = DEFAULT_DB_ALIAS, attempts: int = 3,
                  log: Callable[[str], None] = lambda s: None) -> dict:
    """Write the backup to ``out`` (atomically: a temporary name, renamed when complete); the manifest."""
    out = Path(out).absolute()
    media_root = Path(settings.MEDIA_ROOT).absolute()
    mode = "w:gz" if out.name.endswith((".gz", ".tgz")) else "w"
    if not out.parent.is_dir():
        raise BackupError(f"the folder of {out} does not exist")
    partial = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    skip_own = set()
    for p in (out, partial):
        try:
            skip_own.add(p.relative_to(media_root).as_posix())
        except ValueError:
            pass
    pin_root = media_root / "tmp"
    try:
        for attempt in range(1, attempts + 1):
            pin_dir = pin_root / f"backup-{uuid.uuid4().hex}"
            try:
                with tempfile.TemporaryDirectory(prefix=".labseg-backup-", dir=out.parent) as staging:
                    db, where, missing = _dump_database(using, Path(staging), media_root, pin_dir)
                    log(f"database read ({sum(t['count'] for t in db['models'])} rows in "
                        f"{len(db['models'])} models, {len(where) + len(missing)} referenced files)")
                    media = []
                    with tarfile.open(partial, mode, **({"compresslevel": 6} if mode == "w:gz" else {})) as tar:
                        for t in db["models"]:
                            _add_file(tar, t["file"], Path(staging) / Path(t["file"]).name)
                        for name in sorted(where):
                            info = _add_file(tar, MEDIA_PREFIX + name, where[name])
                            if info is None:
                                missing.append(name)
                                continue
                            media.append({"name": name, "referenced": True, **info})
                        if missing and attempt < attempts:
                            log(f"{len(missing)} referenced file(s) vanished after the snapshot "
                                f"(e.g. {sorted(missing)[0]}): taking the backup again")
                            continue
                        for name in _other_media(media_root, set(where) | set(missing) | skip_own):
                            info = _add_file(tar, MEDIA_PREFIX + name, media_root / name)
                            if info is not None:  # a file deleted meanwhile was not needed
                                media.append({"name": name, "referenced": False, **info})
                        manifest = {
                            "format": FORMAT, "format_version": FORMAT_VERSION,
                            "created_at": timezone.now().isoformat(), "attempts": attempt,
                            **db, "media": media, "missing_media": sorted(missing),
                        }
                        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
                        ti = tarfile.TarInfo(MANIFEST)
                        ti.size, ti.mtime, ti.mode = len(data), int(time.time()), 0o644
                        tar.addfile(ti, io.BytesIO(data))
                    break
            finally:
                shutil.rmtree(pin_dir, ignore_errors=True)
                try:
                    pin_root.rmdir()  # when nothing else is in MEDIA_ROOT/tmp
                except OSError:
                    pass
        with open(partial, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return manifest


# --- restore ---------------------------------------------------------------------------------
def database_is_empty(using: str = DEFAULT_DB_ALIAS) -> tuple[bool, list[str]]:
    """Whether no backed-up model has a row (content types and permissions don't count)."""
    nonempty = [m._meta.label_lower for m in backup_models(using) if m._base_manager.using(using).exists()]
    return not nonempty, nonempty


def _open_archive(path: Path) -> tuple[tarfile.TarFile, list[tarfile.TarInfo]]:
    try:
        tar = tarfile.open(path, "r:*")
    except FileNotFoundError as exc:
        raise BackupError(f"{path} does not exist") from exc
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BackupError(f"{path} is not a readable tar archive ({exc})") from exc
    try:
        members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        tar.close()
        raise BackupError(f"{path} is corrupt or truncated ({exc})") from exc
    return tar, members


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    try:
        fh = tar.extractfile(member)
        data = fh.read() if fh else b""
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BackupError(f"the archive is corrupt or truncated at {member.name} ({exc})") from exc
    if len(data) != member.size:
        raise BackupError(f"the archive is truncated at {member.name}")
    return data


def _check_members(members: list[tarfile.TarInfo], max_member_bytes: int) -> dict[str, tarfile.TarInfo]:
    """Every member safe (name, type, size) before anything is written; regular files by name."""
    files: dict[str, tarfile.TarInfo] = {}
    for m in members:
        name = m.name
        reason = _unsafe_reason(name)
        if reason:
            raise BackupError(f"refused: archive member {name!r} has {reason}")
        if m.isdir():
            continue
        if not m.isreg():
            raise BackupError(f"refused: archive member {name!r} is not a regular file "
                              "(links and devices are never part of a backup)")
        if not (name == MANIFEST or name.startswith((DB_PREFIX, MEDIA_PREFIX))):
            raise BackupError(f"refused: unexpected archive member {name!r}")
        if name.startswith(MEDIA_PREFIX) and name[len(MEDIA_PREFIX):].split("/")[0] in SKIPPED_DIRS:
            raise BackupError(f"refused: archive member {name!r} is in a folder restore does not write")
        cap = MAX_MANIFEST_BYTES if name == MANIFEST else max_member_bytes
        if m.size > cap:
            raise BackupError(f"refused: archive member {name!r} has {m.size} bytes, more than the "
                              f"cap of {cap} (--max-member-bytes)")
        if name in files:
            raise BackupError(f"refused: archive member {name!r} appears twice")
        files[name] = m
    if MANIFEST not in files:
        raise BackupError(f"the archive has no {MANIFEST}: it is truncated or not a LabSeg backup")
    return files


def _check_manifest(manifest: dict, files: dict[str, tarfile.TarInfo]) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError("not a LabSeg backup (manifest format is not 'labseg-backup')")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"unsupported backup format version {manifest.get('format_version')!r} "
                          f"(this code reads version {FORMAT_VERSION})")
    try:
        expected = {t["file"]: t for t in manifest["models"]}
        expected.update({MEDIA_PREFIX + f["name"]: f for f in manifest["media"]})
        for t in manifest["models"]:
            if t["file"] != f"{DB_PREFIX}{t['model']}.jsonl":
                raise BackupError(f"manifest names {t['file']!r} for model {t['model']!r}")
        for e in expected.values():
            int(e["size"]), str(e["sha256"])
        manifest["migrations"].items()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BackupError(f"the manifest is incomplete or malformed ({exc!r})") from exc
    have = set(files) - {MANIFEST}
    if have != set(expected):
        lacking, extra = sorted(set(expected) - have), sorted(have - set(expected))
        raise BackupError("the archive does not match its manifest"
                          + (f"; missing: {', '.join(lacking[:5])}" if lacking else "")
                          + (f"; not in the manifest: {', '.join(extra[:5])}" if extra else ""))
    for name, e in expected.items():
        if files[name].size != int(e["size"]):
            raise BackupError(f"{name} has {files[name].size} bytes, the manifest says {e['size']}")


def _check_migrations(manifest: dict, using: str) -> None:
    conn = connections[using]
    executor = MigrationExecutor(conn)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        raise BackupError(f"the database is not migrated to this code ({len(plan)} migration(s) to apply): "
                          "run `manage.py migrate` first, then restore")
    here = migration_state(conn)
    theirs = {app: sorted(names) for app, names in manifest["migrations"].items()}
    diffs = []
    for app in sorted(set(here) | set(theirs)):
        a, b = set(theirs.get(app, [])), set(here.get(app, []))
        if a != b:
            diffs.append(f"{app}: backup has {sorted(a - b) or 'nothing more'}, "
                         f"this code has {sorted(b - a) or 'nothing more'}")
    if diffs:
        raise BackupError("the backup was made with other migrations than this code's; restore it with the "
                          "code version it was made with (then upgrade and migrate). " + "; ".join(diffs))


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, sha256: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    h, n = hashlib.sha256(), 0
    try:
        src = tar.extractfile(member)
        with open(dest, "wb") as out:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                h.update(chunk)
                n += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise BackupError(f"the archive is corrupt or truncated at {member.name} ({exc})") from exc
    except OSError as exc:
        raise BackupError(f"could not extract {member.name}: {exc}") from exc
    if n != member.size or h.hexdigest() != sha256:
        raise BackupError(f"{member.name} does not match its sha256 in the manifest: the archive is corrupt")


def _load_model(path: Path, using: str) -> int:
    count = 0

    def batches():
        batch = []
        with open(path, "rb") as fh:
            for line in fh:
                if line.strip():
                    batch.append(json.loads(line))
                if len(batch) >= BATCH:
                    yield batch
                    batch = []
        if batch:
            yield batch

    for batch in batches():
        for obj in serializers.deserialize("python", batch, using=using, ignorenonexistent=False):
            obj.save(using=using, force_insert=True)
            count += 1
    return count


def restore_backup(src: str | os.PathLike, *, using: str = DEFAULT_DB_ALIAS, force: bool = False,
                   max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
                   log: Callable[[str], None] = lambda s: None) -> dict:
    """Restore the backup at ``src`` into the database ``using`` and MEDIA_ROOT; the manifest."""
    src = Path(src)
    media_root = Path(settings.MEDIA_ROOT).absolute()
    conn = connections[using]
    tar, members = _open_archive(src)
    with tar:
        files = _check_members(members, max_member_bytes)
        try:
            manifest = json.loads(_read_member(tar, files[MANIFEST]))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BackupError(f"the manifest is not valid JSON: the archive is corrupt or truncated ({exc})") from exc
        _check_manifest(manifest, files)
        labels = {m._meta.label_lower: m for m in backup_models(using)}
        unknown = [t["model"] for t in manifest["models"] if t["model"] not in labels]
        if unknown:
            raise BackupError(f"the backup holds models this code does not have: {', '.join(unknown)}")
        _check_migrations(manifest, using)
        empty, nonempty = database_is_empty(using)
        if not empty and not force:
            raise BackupError("the database is not empty (rows in " + ", ".join(nonempty[:6])
                              + (", ..." if len(nonempty) > 6 else "") + "): restore into a fresh, migrated "
                              "database, or pass --force to delete everything in it first")
        need = sum(files[n].size for n in files)
        media_root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(media_root).free
        if need > free:
            raise BackupError(f"the backup needs {need} bytes under MEDIA_ROOT, only {free} are free")
        root_real = Path(os.path.realpath(media_root))
        targets: dict[str, Path] = {}
        for f in manifest["media"]:
            target = media_root / f["name"]
            if not Path(os.path.realpath(target)).is_relative_to(root_real):
                raise BackupError(f"refused: {f['name']!r} would be written outside MEDIA_ROOT (a symlink?)")
            targets[f["name"]] = target

        staging = media_root / "tmp" / f"restore-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            for t in manifest["models"]:
                _extract(tar, files[t["file"]], staging / t["file"], t["sha256"])
            for f in manifest["media"]:
                _extract(tar, files[MEDIA_PREFIX + f["name"]], staging / "media" / f["name"], f["sha256"])
            log(f"archive verified: {len(manifest['models'])} model files, {len(manifest['media'])} media files")
            with transaction.atomic(using=using):
                if force:
                    conn.ops.execute_sql_flush(sql_flush(no_style(), conn, reset_sequences=True,
                                                         allow_cascade=False))
                # content types and permissions (flushed, or absent in a fresh database) for the natural keys
                emit_post_migrate_signal(verbosity=0, interactive=False, db=using)
                empty, nonempty = database_is_empty(using)
                if not empty:
                    raise BackupError("the database got rows while restoring (" + ", ".join(nonempty[:6])
                                      + "): stop the app during a restore")
                loaded = []
                for t in manifest["models"]:
                    model = labels[t["model"]]
                    n = _load_model(staging / t["file"], using)
                    if n != int(t["count"]):
                        raise BackupError(f"{t['model']}: loaded {n} rows, the manifest says {t['count']}")
                    loaded.append(model)
                with conn.cursor() as cur:
                    for sql in conn.ops.sequence_reset_sql(no_style(), loaded):
                        cur.execute(sql)
                try:
                    conn.check_constraints(table_names=[m._meta.db_table for m in loaded])
                except Exception as exc:
                    raise BackupError(f"the restored rows break a constraint: {exc}") from exc
                for name, target in targets.items():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staging / "media" / name, target)
        except BackupError:
            raise
        except Exception as exc:  # an integrity error, a field that does not parse, ...
            raise BackupError(f"restore failed, the database is unchanged: {type(exc).__name__}: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            try:
                staging.parent.rmdir()  # MEDIA_ROOT/tmp, when nothing else is in it
            except OSError:
                pass
    if manifest.get("missing_media"):
        log(f"warning: {len(manifest['missing_media'])} file(s) referenced by the backed-up rows were missing "
            f"when it was taken, e.g. {manifest['missing_media'][0]}")
    return manifest
