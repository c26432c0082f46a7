"""Benchmark of the prediction task: end to end against ``predict_tiled`` alone (the overhead ratio).

"End to end" is the body of the ``inference.predict`` task (``apps.inference.runner.compute_outputs``):
read the TIFF from disk, normalise, overlap-tile prediction with 8-fold test-time augmentation, arg-max,
instances (post-processing), and the four encoded maps (PNG/TIFF). Not included: the broker round-trip
and the few row/file writes (milliseconds). The reference is ``predict_tiled_with_uncertainty`` on the
same normalised array with the same model and tiles. Both are timed alternately, median of each.

On CUDA it also reports the time for one 512x512 image with the paper's network (base 64, depth 4,
no TTA; float32 and bfloat16 autocast), against the paper's "under a second" on a 2015 GPU.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labseg.settings")
    import django

    django.setup()


def _median_pair(a, b, repeats: int) -> tuple[float, float]:
    a()
    b()  # warm-up (allocations, thread pools, cuDNN autotuning)
    ta, tb = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def bench_task(base: int, size: int, repeats: int, device: str) -> dict:
    """Megapixels/s of the task body against predict_tiled (TTA) alone, same model, same image."""
    import tifffile
    import torch

    _setup_django()
    from apps.inference.runner import LoadedModel, compute_outputs, read_normalized
    from labseg.ml.synthetic import make_nuclei
    from labseg.ml.tiling import predict_tiled_with_uncertainty
    from labseg.ml.unet import UNet

    model = UNet(in_channels=1, num_classes=2, base_channels=base, depth=3).eval().to(device)
    loaded = LoadedModel(model=model, in_channels=1, num_classes=2,
                         normalization={"method": "percentile", "low": 1.0, "high": 99.8})
    pixels, _ = make_nuclei((size, size), seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.tif"
        tifffile.imwrite(path, pixels)
        normalised = read_normalized(str(path), loaded)
        dev = torch.device(device)
        task, alone = _median_pair(
            lambda: compute_outputs(loaded, str(path), scratch_dir=Path(tmp), device=dev),
            lambda: predict_tiled_with_uncertainty(model, normalised, device=dev),
            repeats,
        )
    mp = size * size / 1e6
    return dict(name=f"prediction task {size}^2 base {base} TTA ({device})", ours=mp / task, ref=mp / alone,
                unit="MP/s", note=f"task {task:.2f} s vs predict_tiled {alone:.2f} s: overhead x{task / alone:.2f}")


def bench_paper_512(device: str, repeats: int = 20) -> list[dict]:
    """Seconds for one 512x512 image with the paper's U-Net (float32 and bf16 autocast); run on CUDA."""
    import torch

    from labseg.ml.tiling import predict_tiled
    from labseg.ml.unet import UNet

    model = UNet().eval().to(device).to(memory_format=torch.channels_last)
    image = np.random.default_rng(0).random((1, 512, 512), dtype=np.float32)
    rows = []
    for label, dtype in (("float32", None), ("bf16 autocast", torch.bfloat16)):
        def run(dtype=dtype) -> None:  # called only within this iteration; bound for clarity (B023)
            with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
                predict_tiled(model, image, device=device, tile_output=512)
            if torch.cuda.is_available():
                torch.cuda.synchronize()

        run()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        where = torch.cuda.get_device_name(0) if device.startswith("cuda") else device
        rows.append(dict(name=f"paper U-Net 512^2 on {where} ({label})", ours=t,
                         ref=None, unit="s", note=f"{t * 1e3:.1f} ms per image (paper: < 1 s in 2015)"))
    return rows


def inference_rows(quick: bool, device: str) -> list[dict]:
    """The rows ``python -m bench`` prints for the inference app."""
    rows = [bench_task(8 if quick else 16, 256 if quick else 1024, 1 if quick else 3, device)]
    if device == "cuda":
        rows += bench_paper_512(device, 5 if quick else 20)
    return rows


if __name__ == "__main__":  # python -m bench.inference [--quick]
    import sys

    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    from bench.__main__ import print_table

    print_table(inference_rows("--quick" in sys.argv, dev), {})
