"""``make bench`` / ``python -m bench [--quick] [--device cpu|cuda]``: LabSeg's ML core, side by side.

Every row is a RATIO of two things measured in the same run, alternating (A, B, A, B, ...) and taking
the median of each, so a busy machine slows both sides alike:

1. ``border_weights`` (per-instance EDT in grown boxes) against the naive definition (one full-image
   EDT per instance, stacked and sorted); at 2048^2 the naive cost is extrapolated from a sample of
   instances (and the stack/sort it would also need is left out, so the ratio is a lower bound).
2. ``elastic_deform`` (torch, grid_sample) against scipy: the same kind of field (3x3 Gaussian nodes
   upsampled by cubic zoom) applied with ``map_coordinates`` to image channels, labels and weights.
3. U-Net forward GFLOP/s at 572^2 (FLOPs counted analytically per conv layer from the actual output
   shapes) against a large float32 matmul's GFLOP/s: the fraction of the machine's matmul rate reached.
4. ``predict_tiled`` throughput in megapixels per second.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of ``a`` and ``b``, run alternately ``repeats`` times each (after one warm-up)."""
    a()
    b()
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(timed(a))
        tb.append(timed(b))
    return statistics.median(ta), statistics.median(tb)


# --- 1. border weights -------------------------------------------------------------------------
def naive_border(instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    ids = [i for i in np.unique(instances) if i != 0]
    dist = np.sort(np.stack([ndi.distance_transform_edt(instances != i) for i in ids]), axis=0)
    s = dist[0] + dist[1]
    return np.where(instances == 0, w0 * np.exp(-(s**2) / (2 * sigma**2)), 0.0)


def bench_border(size: int, n: int, repeats: int, sample: int | None) -> dict:
    from labseg.ml.synthetic import make_nuclei
    from labseg.ml.weights import border_weights

    _, inst = make_nuclei((size, size), n=n, touching=0.8, seed=1)
    ids = np.unique(inst)[1:]
    if sample is None:
        ours, ref = side_by_side(lambda: border_weights(inst), lambda: naive_border(inst), repeats)
        err = float(np.abs(border_weights(inst) - naive_border(inst)).max())
        note = f"max |diff| {err:.1e}"
    else:
        picked = ids[np.linspace(0, len(ids) - 1, sample).astype(int)]

        def naive_sample() -> None:
            for i in picked:
                ndi.distance_transform_edt(inst != i)

        ours, t_sample = side_by_side(lambda: border_weights(inst), naive_sample, repeats)
        ref = t_sample * len(ids) / sample
        note = f"naive extrapolated from {sample} of {len(ids)} EDTs (no stack/sort: lower bound)"
    return dict(name=f"border_weights {size}^2, {len(ids)} cells", ours=ours, ref=ref, note=note)


# --- 2. elastic deformation --------------------------------------------------------------------
def scipy_elastic(image: np.ndarray, labels: np.ndarray, weights: np.ndarray, sigma: float, grid: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same deformation with scipy: nodes ~ N(0, sigma), cubic upsampling, map_coordinates."""
    b, c, h, w = image.shape
    out_i, out_l, out_w = np.empty_like(image), np.empty_like(labels), np.empty_like(weights)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for k in range(b):
        nodes = rng.normal(0, sigma, (2, grid, grid))
        field = [ndi.zoom(nodes[j], (h / grid, w / grid), order=3, mode="nearest", grid_mode=False)
                 for j in range(2)]
        coords = np.stack([ys + field[0][:h, :w], xs + field[1][:h, :w]])
        for ch in range(c):
            out_i[k, ch] = ndi.map_coordinates(image[k, ch], coords, order=1, mode="mirror")
        out_l[k] = ndi.map_coordinates(labels[k], coords, order=0, mode="mirror")
        out_w[k] = ndi.map_coordinates(weights[k], coords, order=1, mode="mirror")
    return out_i, out_l, out_w


def bench_elastic(size: int, batch: int, repeats: int, device: str) -> dict:
    import torch

    from labseg.ml.augment import elastic_deform

    rng = np.random.default_rng(0)
    img = rng.random((batch, 1, size, size), dtype=np.float32)
    lab = rng.integers(0, 3, (batch, size, size))
    wt = rng.random((batch, size, size), dtype=np.float32)
    ti, tl, tw = (torch.from_numpy(a).to(device) for a in (img, lab, wt))
    gen = torch.Generator().manual_seed(0)

    def ours() -> None:
        elastic_deform(ti, tl, tw, grid=3, sigma=10.0, generator=gen)
        if device == "cuda":
            torch.cuda.synchronize()

    t_ours, t_ref = side_by_side(ours, lambda: scipy_elastic(img, lab, wt, 10.0, 3, rng), repeats)
    return dict(name=f"elastic_deform {batch}x{size}^2 ({device})", ours=t_ours, ref=t_ref,
                note="image + labels + weights; scipy map_coordinates order 1/0")


# --- 3. U-Net GFLOP/s vs matmul --------------------------------------------------------------------
def conv_flops(model, x) -> int:
    """2 * k*k * C_in * C_out * H_out * W_out per conv (and per up-conv: 2*C_in*C_out*H_out*W_out)."""
    import torch
    from torch import nn

    total = 0

    def hook(module, _inp, out) -> None:
        nonlocal total
        hw = out.shape[0] * out.shape[-2] * out.shape[-1]
        if isinstance(module, nn.ConvTranspose2d):  # each output pixel gets one tap per input channel
            taps = (module.kernel_size[0] // module.stride[0]) * (module.kernel_size[1] // module.stride[1])
        else:
            taps = module.kernel_size[0] * module.kernel_size[1]
        total += 2 * taps * module.in_channels * module.out_channels * hw

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    return total


def bench_unet(base: int, size: int, repeats: int, matmul_n: int, device: str) -> list[dict]:
    import torch

    from labseg.ml.unet import UNet

    model = UNet(in_channels=1, num_classes=2, base_channels=base).eval().to(device)
    x = torch.randn(1, 1, size, size, device=device)
    flops = conv_flops(model, x)
    a = torch.randn(matmul_n, matmul_n, device=device)
    bm = torch.randn(matmul_n, matmul_n, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def matmul() -> None:
        with torch.inference_mode():
            torch.mm(a, bm)
        sync()

    rows = []
    for layout in ("contiguous", "channels_last"):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        m = model.to(memory_format=fmt)
        xi = x.contiguous(memory_format=fmt)

        def forward(m=m, xi=xi) -> None:
            with torch.inference_mode():
                m(xi)
            sync()

        t_net, t_mm = side_by_side(forward, matmul, repeats)
        net_rate = flops / t_net / 1e9
        mm_rate = 2 * matmul_n**3 / t_mm / 1e9
        rows.append(dict(
            name=f"U-Net base {base} fwd {size}^2 ({layout}, {device})", ours=net_rate, ref=mm_rate,
            unit="GFLOP/s", note=f"{flops / 1e9:.1f} GFLOP in {t_net * 1e3:.0f} ms; matmul {matmul_n}^2",
        ))
    return rows


# --- 4. predict_tiled ----------------------------------------------------------------------------------
def bench_tiled(base: int, size: int, repeats: int, device: str) -> dict:
    import torch

    from labseg.ml.tiling import predict_tiled
    from labseg.ml.unet import UNet

    model = UNet(in_channels=1, num_classes=2, base_channels=base).eval().to(device)
    image = np.random.default_rng(0).random((1, size, size), dtype=np.float32)
    times = [timed(lambda: predict_tiled(model, image, device=device)) for _ in range(repeats + 1)][1:]
    t = statistics.median(times)
    del torch
    return dict(name=f"predict_tiled base {base}, {size}^2 ({device})", ours=size * size / t / 1e6, ref=None,
                unit="MP/s", note=f"{t:.2f} s per image, default tile")


# --- report ------------------------------------------------------------------------------------------------
def machine_info(threads: int) -> str:
    import torch

    lines = [
        f"python {platform.python_version()}  numpy {np.__version__}  torch {torch.__version__}",
        f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, "
        f"loadavg {tuple(round(v, 2) for v in os.getloadavg())}, torch threads {threads}",
    ]
    if torch.cuda.is_available():
        lines.append(f"gpu: {torch.cuda.get_device_name(0)}")
    return "\n".join(lines)


def free_cores() -> int:
    """Cores not busy with other work (1-minute load average), at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, round(cores - os.getloadavg()[0])))


def print_table(rows: list[dict], targets: dict[str, float]) -> None:
    print(f"\n{'benchmark':<52} {'ours':>12} {'reference':>12} {'ratio':>9} {'target':>8}  note")
    print("-" * 130)
    for r in rows:
        unit = r.get("unit", "s")
        if r["ref"] is None:
            print(f"{r['name']:<52} {r['ours']:>9.2f} {unit:<2} {'':>12} {'':>9} {'':>8}  {r['note']}")
            continue
        if unit == "s":  # times: speed-up = reference / ours
            ratio, shown = r["ref"] / r["ours"], f"{r['ref'] / r['ours']:.1f}x"
        else:  # rates: fraction of the reference rate
            ratio, shown = r["ours"] / r["ref"], f"{100 * r['ours'] / r['ref']:.0f} %"
        target = next((t for key, t in targets.items() if r["name"].startswith(key)), None)
        tshow = "" if target is None else (f">={target:g}x" if unit == "s" else f">={100 * target:.0f} %")
        flag = "" if target is None else ("  ok" if ratio >= target else "  BELOW")
        print(f"{r['name']:<52} {r['ours']:>9.4g} {unit:<2} {r['ref']:>9.4g} {unit:<2} {shown:>9} {tshow:>8}"
              f"  {r['note']}{flag}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run in seconds")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: free cores)")
    parser.add_argument("--no-live", action="store_true", help="skip the live-training latency (bench.live)")
    args = parser.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = args.threads or free_cores()
    torch.set_num_threads(threads)
    print("LabSeg ML benchmark" + (" (--quick)" if args.quick else ""))
    print(machine_info(threads))
    q = args.quick
    rows: list[dict] = []
    rows.append(bench_border(256 if q else 512, 30 if q else 125, 1 if q else 3, None))
    rows.append(bench_border(1024 if q else 2048, 250 if q else 1000, 1 if q else 3, 5 if q else 20))
    rows.append(bench_elastic(256 if q else 572, 1 if q else 4, 1 if q else 9, "cpu"))
    if device == "cuda":
        rows.append(bench_elastic(572, 16, 10, "cuda"))
    unet_base = 8 if q else (64 if device == "cuda" or not q else 16)
    rows += bench_unet(unet_base, 572 if not q else 188, 1 if q else 3, 512 if q else 4096, device)
    rows.append(bench_tiled(8 if q else (64 if device == "cuda" else 16), 256 if q else 1024,
                            1 if q else 2, device))
    from bench.inference import inference_rows  # the inference app's end-to-end task

    rows += inference_rows(q, device)
    # the targets are for the full sizes; --quick is a smoke run whose small sizes say little
    targets = {} if q else {"border_weights 512": 50, "border_weights 2048": 200, "elastic_deform": 10,
                            "U-Net": 0.55}
    print_table(rows, targets)
    print(f"\nloadavg at end {tuple(round(v, 2) for v in os.getloadavg())}")
    if not args.no_live:  # issue 13: from a stroke reaching the server to an overlay that shows it
        from bench import live

        print("\nLive training: draft -> overlay latency (python -m bench.live)")
        live.main(["--drafts", "2" if q else "8", "--device", device]
                  + (["--region", "128", "--overlay-ms", "300"] if q else [])
                  + (["--threads", str(args.threads)] if args.threads else []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
