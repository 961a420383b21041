"""`experiments/bad_inputs.py --quick`: every bad command line ends in one message, exit 2,
no traceback and no file changed; and the checks run before torch is imported."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "bad_inputs.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("bad_inputs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_every_quick_case_is_refused_cleanly(tmp_path: Path) -> None:
    table = _load_script().main(["--quick", "--out", str(tmp_path)])
    assert len(table) >= 25
    bad = table[(table["exit"] != table["expected_exit"]) | table["traceback"]
                | ~table["message_ok"] | (table["files_changed"] > 0)]
    assert bad.empty, bad[["case", "exit", "traceback", "files_changed", "message"]].to_string()
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert int(summary["work files lost"].iloc[0]) == 0
    assert (tmp_path / "bad_inputs.md").is_file() and (tmp_path / "bad_inputs.html").is_file()


@pytest.mark.parametrize("args", [
    ["train-sae", "--model", "{m}", "--hook", "blocks.0.hook_resid_pst"],
    ["train-sae", "--model", "{m}", "--hook", "blocks.0.hook_resid_post", "--kind", "topkk"],
    ["train-model", "--layers", "gdn,atn"],
    ["analyze", "--model", "{m}", "--sae", "{m}"],
])
def test_typos_are_reported_before_torch_loads(args: list[str], tmp_path: Path) -> None:
    from tests.runs.conftest import save_tiny_model

    model = save_tiny_model(tmp_path / "m")
    argv = [a.replace("{m}", str(model)) for a in args] + ["--out" if args[0] != "analyze"
                                                            else "--store", str(tmp_path / "o")]
    code = ("import sys; from featlab.cli import run; status = run(sys.argv[1:]); "
            "print(status, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert out.stdout.split() == ["2", "False"], out.stdout + out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1
