"""Device choice and CPU thread sizing for torch work (training and inference workers, CLI).

``pick_device("auto")`` gives CUDA when available, else the CPU. ``configure_threads`` sizes torch's
intra-op pool to the cores this process may use (``os.sched_getaffinity``), leaving one free for the web
app and the broker on small machines unless told otherwise. ``is_oom`` recognises out-of-memory errors
so callers can fall back to smaller tiles or the CPU.
"""
from __future__ import annotations

import os

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def pick_device(preference: str | torch.device | None = "auto") -> torch.device:
    """Resolve ``"auto" | "cpu" | "cuda" | "cuda:N"`` (or a torch.device) to a usable torch.device.

    Raises ValueError for unknown names or when CUDA is asked for but not available.
    """
    if isinstance(preference, torch.device):
        return preference
    name = (preference or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {preference!r} requested but CUDA is not available on this machine")
        return torch.device(name)
    raise ValueError(f"unknown device {preference!r}; expected one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def configure_threads(num_threads: int | None = None, *, reserve: int = 1) -> int:
    """Set torch's intra-op threads: ``num_threads`` if given (> 0), else free cores minus ``reserve``.

    Returns the number set (at least 1).
    """
    n = int(num_threads) if num_threads and num_threads > 0 else max(1, available_cores() - reserve)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def is_oom(error: BaseException) -> bool:
    """True for a CUDA (or CPU allocator) out-of-memory error."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def free_cuda_cache() -> None:
    """Release cached CUDA blocks after an OOM so a retry can use them."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
