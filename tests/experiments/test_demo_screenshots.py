"""`experiments/demo_screenshots.py` on a quick demo: both pages load and are photographed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

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
    spec = importlib.util.spec_from_file_location("demo_screenshots", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    table = module.main(["--demo", str(tmp_path / "demo"), "--out", str(tmp_path / "shots")])
    assert list(table["shot"]) == ["feature.png", "circuit.png"]
    for name in table["shot"]:
        data = (tmp_path / "shots" / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 20_000  # a rendered page, not a blank
    assert (tmp_path / "shots" / "shots.md").is_file()
