"""`experiments/demo_screenshots.py` on a quick demo: both pages load and are photographed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "demo_screenshots.py"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.browser
def test_feature_and_circuit_pages_are_photographed(tmp_path: Path) -> None:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("/usr/bin/chromium is absent; install it with `make browser`")
    from featlab.runs import DemoConfig, run_demo

    run_demo(DemoConfig(out=tmp_path / "demo", quick=True, serve=False, progress=False))
    # In its own process: Playwright's sync API refuses to start where another test's browser
    # session already runs an event loop.
    subprocess.run([sys.executable, str(SCRIPT), "--demo", str(tmp_path / "demo"), "--out",
                    str(tmp_path / "shots")], check=True, timeout=600)
    table = pd.read_csv(tmp_path / "shots" / "shots.csv")
    assert list(table["shot"]) == ["feature.png", "circuit.png"]
    for name in table["shot"]:
        data = (tmp_path / "shots" / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 20_000  # a rendered page, not a blank
    assert (tmp_path / "shots" / "shots.md").is_file()
