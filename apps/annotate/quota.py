"""The media quota: ``LABSEG_MEDIA_QUOTA_BYTES`` over every file under ``MEDIA_ROOT`` (originals, their
decoded-array caches, thumbnails, prediction maps, checkpoints, weight-map caches); 0 means no quota.

An upload is checked before anything of it is written, against what it will add: the original plus, for a
large image that cannot be memory-mapped, its ``.npy`` cache (``channels x height x width x itemsize``, known
from the header). The usage is measured once per batch (one walk of the media folder) and then kept up to
date with what the batch stores, so a batch of many files costs one walk. Two batches uploaded at the same
moment each see the usage from before the other: together they can pass the quota by at most one batch.
"""
from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings


def media_usage_bytes(root: str | os.PathLike | None = None) -> int:
    """Bytes in the regular files under ``root`` (default ``MEDIA_ROOT``); links are not followed."""
    total = 0
    stack = [os.fspath(root if root is not None else settings.MEDIA_ROOT)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:  # removed while we walked (a temporary file renamed, a deleted image)
                        continue
        except OSError:  # no media folder yet, or a folder removed while we walked
            continue
    return total


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"  # pragma: no cover


class MediaQuota:
    """The quota seen by one batch upload: ``refusal(n)`` says why ``n`` more bytes do not fit (or None);
    ``add(n)`` counts bytes the batch stored."""

    def __init__(self, limit: int | None = None, root: str | os.PathLike | None = None):
        self.limit = int(settings.LABSEG_MEDIA_QUOTA_BYTES if limit is None else limit)
        self.root = Path(root if root is not None else settings.MEDIA_ROOT)
        self._used: int | None = None

    @property
    def used(self) -> int:
        if self._used is None:
            self._used = media_usage_bytes(self.root)
        return self._used

    def refusal(self, need: int, what: str) -> str | None:
        if self.limit <= 0 or self.used + need <= self.limit:
            return None
        free = max(0, self.limit - self.used)
        return (f"storing this file needs {human_bytes(need)} ({what}), but the media storage holds "
                f"{human_bytes(self.used)} of its {human_bytes(self.limit)} quota ({human_bytes(free)} free; "
                f"LABSEG_MEDIA_QUOTA_BYTES = {self.limit}). Delete images or projects, or ask the administrator "
                f"to raise the quota.")

    def add(self, nbytes: int) -> None:
        if self._used is not None:
            self._used += int(nbytes)
