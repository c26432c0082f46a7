"""`python -m bench --quick` runs end to end and prints every benchmark row (a smoke test, not timed)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_quick_prints_all_ratio_rows():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--threads", "1"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for row in ("border_weights 256^2", "border_weights 1024^2", "elastic_deform", "U-Net base 8 fwd",
                "channels_last", "predict_tiled", "loadavg", "Live training latency"):
        assert row in out, out
    assert "max |diff|" in out and "GFLOP/s" in out and "MP/s" in out
