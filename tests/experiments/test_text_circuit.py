"""`experiments/text_circuit.py --quick`: the whole text pipeline runs (language model, an
SAE per layer, a circuit with edges on held-out prompts) and writes its tables."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "text_circuit.py"


@pytest.mark.slow
def test_quick_run_finds_a_circuit_with_edges(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("text_circuit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.main(["--quick", "--out", str(tmp_path)])
    table = pd.read_csv(tmp_path / "faithfulness.csv")
    assert list(table["nodes per site"]) == [1, 4]
    assert (table["edges"] > 0).all() and (table["nodes"] > 0).all()
    saes = pd.read_csv(tmp_path / "saes.csv")
    assert list(saes["hook"]) == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    model = json.loads((tmp_path / "model.json").read_text())
    assert model["bits_per_byte"] > 0 and model["n_prompts"] == 6
    nodes = pd.read_csv(tmp_path / "nodes.csv")
    assert set(nodes["hook"]) <= set(saes["hook"])
