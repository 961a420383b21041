"""experiments/bench_app_server.py --quick: both servers answer every request over HTTP and
the table and figure are written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_app_server_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "bench_app_server.py"), "--quick",
         "--features", "128", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("bench_app_server.csv", "bench_app_server.md", "bench_app_server.html"):
        assert (out / name).is_file(), name
    df = pd.read_csv(out / "bench_app_server.csv")
    assert list(df["server"]) == ["flask-dev (threaded=True)", "waitress"]
    assert (df["requests"] == 20 * 3).all() and (df["errors"] == 0).all()
    assert (df["p50_ms"] > 0).all() and (df["p95_ms"] >= df["p50_ms"]).all()
    assert (df["max_ms"] >= df["p95_ms"]).all() and (df["throughput_rps"] > 0).all()
    assert "waitress" in proc.stdout  # the table is printed
