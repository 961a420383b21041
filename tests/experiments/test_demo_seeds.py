"""`experiments/demo_seeds.py --quick`: a row per seed in every table, the sweep figure, and
a rerun that loads the finished demo."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "demo_seeds.py"


@pytest.mark.slow
def test_quick_seeds_tabulate_model_saes_and_circuit(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("demo_seeds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    tables = module.main(["--quick", "--seeds", "3", "--out", str(tmp_path)])
    assert list(tables["model"]["seed"]) == [3]
    assert list(tables["circuit"]["seed"]) == [3]
    assert (tables["circuit"]["edges"] > 0).all()
    assert sorted(set(tables["saes"]["sae_id"])) == ["resid0", "resid1"]
    assert set(tables["sweep"]["seed"]) == {3}
    for name in ("model", "saes", "circuit", "sweep"):
        assert (tmp_path / f"{name}.csv").is_file() and (tmp_path / f"{name}.md").is_file()
    assert (tmp_path / "faithfulness.html").is_file()
    # a second call loads the finished demos instead of training again
    again = module.main(["--quick", "--seeds", "3", "--out", str(tmp_path)])
    assert again["circuit"]["seconds (this run)"].iloc[0] < tables["circuit"][
        "seconds (this run)"].iloc[0]
