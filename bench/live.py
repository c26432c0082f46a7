"""``python -m bench.live [--threads N] [--device cpu|cuda] [--drafts K]``: live-training latency (issue 13).

Time from a draft reaching the server to an overlay that reflects it: the worker loop of
``apps/live/runner.py`` (look at the row, swap in a newer draft, train for LABSEG_LIVE_OVERLAY_MS, predict
the visible 512x512 region plus the network's context margin, render the RGBA overlay) driven in-process
with the live session's default network (``TrainConfig`` defaults, as LABSEG_LIVE_CONFIG unset), once from
scratch and once warm-started from a version. Drafts arrive at random moments (uniform within 1..4 s after
the previous overlay reflected the last one); the latency of one draft is the time from its arrival until
an overlay whose training steps all came after that arrival is written. The database and HTTP round trips
of the real service (a few ms per write) are not included. Prints median / p95, the overlay refresh
period and the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np


def _draft(instances: np.ndarray, rng: np.random.Generator, strokes: int) -> np.ndarray:
    from labseg.ml.synthetic import scribbles

    return scribbles(instances, strokes, seed=int(rng.integers(1 << 30)), length=24).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: free cores minus one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--drafts", type=int, default=12, help="drafts per scenario")
    parser.add_argument("--overlay-ms", type=int, default=1000, help="LABSEG_LIVE_OVERLAY_MS")
    parser.add_argument("--region", type=int, default=512)
    args = parser.parse_args(argv)

    import torch

    from labseg.ml.device import configure_threads
    from labseg.ml.io import normalize
    from labseg.ml.synthetic import classes_from_instances, make_nuclei
    from labseg.ml.tiling import reflect_index
    from labseg.ml.train import LiveTrainer, TrainConfig

    threads = configure_threads(args.threads)
    size = args.region
    raw, instances = make_nuclei((size, size), seed=3)
    saved_raw, saved_inst = make_nuclei((256, 256), seed=4)
    saved_cls = classes_from_instances(saved_inst)
    config = TrainConfig(device=args.device)
    pixels = normalize(raw, config.norm_low, config.norm_high)
    period = args.overlay_ms / 1000.0
    colours = {1: "#0000ff", 2: "#ff0000"}

    def crop(margin: int) -> np.ndarray:
        r = np.arange(-margin, size + margin)
        idx = reflect_index(r, size)
        return pixels[:, idx[:, None], idx[None, :]]

    # the overlay renderer of the service (Django-free function of apps/live/runner.py is imported lazily)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labseg.settings")
    import django

    django.setup()
    from apps.live.runner import render_overlay

    def scenario(label: str, init) -> dict:
        rng = np.random.default_rng(7)
        trainer = LiveTrainer(config, in_channels=1, num_classes=2, init=init)
        trainer.set_data([saved_raw], [saved_cls], [saved_inst])
        latencies, periods, last_overlay = [], [], None
        due = time.monotonic() + rng.uniform(1, 4)
        pending = None  # arrival time of a draft the loop has not swapped in yet
        waiting = None  # (arrival, step after which training reflects it)
        done = 0
        while done < args.drafts:
            now = time.monotonic()
            if pending is None and waiting is None and now >= due:
                pending = due  # it reached the server at `due`; the loop sees it at its next look at the row
            if pending is not None:
                trainer.set_draft(raw, _draft(instances, rng, 10 + done), None)
                waiting, pending = (pending, trainer.steps), None
            start, n = time.monotonic(), 0
            while not n or time.monotonic() - start < period:
                trainer.train(1)
                n += 1
            margin = trainer.model.margin
            probs = trainer.predict(crop(margin))[:, margin:margin + size, margin:margin + size]
            render_overlay(probs, colours)
            end = time.monotonic()
            if last_overlay is not None:
                periods.append(end - last_overlay)
            last_overlay = end
            if waiting is not None and trainer.steps > waiting[1]:
                latencies.append(end - waiting[0])
                waiting, done = None, done + 1
                due = end + rng.uniform(1, 4)
            elif waiting is None and pending is None and time.monotonic() >= due:
                pending = due
        lat = sorted(latencies)
        p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
        return {"label": label, "median": statistics.median(lat), "p95": p95, "n": len(lat),
                "period": statistics.median(periods), "steps": trainer.steps}

    import tempfile

    rows = [scenario("from scratch", None)]
    with tempfile.TemporaryDirectory() as tmp:  # a "version": the same network trained a little first
        pre = LiveTrainer(config, in_channels=1, num_classes=2)
        pre.set_data([saved_raw], [saved_cls], [saved_inst])
        pre.train(30)
        path = os.path.join(tmp, "version.pt")
        pre.checkpoint(path)
        rows.append(scenario("from a version", path))
    print(f"Live training latency (issue 13): draft -> overlay reflecting it, {size}x{size} region, "
          f"{args.device}, torch threads {threads} (torch {torch.__version__}), base_channels "
          f"{config.base_channels}, depth {config.depth}, overlay every {args.overlay_ms} ms of training")
    print(f"{'start':<16} {'drafts':>6} {'median s':>9} {'p95 s':>7} {'refresh s':>10} {'steps':>6}  target")
    for r in rows:
        ok = r["median"] < (2 if args.device.startswith("cuda") else 10) and (args.device != "cpu" or r["p95"] < 20)
        print(f"{r['label']:<16} {r['n']:>6} {r['median']:>9.2f} {r['p95']:>7.2f} {r['period']:>10.2f} "
              f"{r['steps']:>6}  {'ok' if ok else 'MISSED'}")
    print(f"loadavg {tuple(round(v, 2) for v in os.getloadavg())}, cores {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
