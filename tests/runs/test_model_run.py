"""`featlab train-model` / `train_mqar_model`: train, load a finished run, refuse other
settings, and record the task in the model folder."""

from __future__ import annotations

from featlab.models import load_task
from featlab.runs.folder import read_run

ARGS = ["train-model", "--layers", "conv,attn", "--d-model", "16", "--seq-len", "16",
        "--vocab-size", "16", "--num-kv-pairs", "2", "--steps", "3", "--batch-size", "4",
        "--n-train", "32", "--n-test", "16", "--no-progress"]


def test_trains_then_loads_the_finished_run(featlab, tmp_path) -> None:
    first = featlab(*ARGS, "--out", tmp_path)
    assert first.code == 0, first.err
    assert "conv+attn" in first.out and "accuracy" in first.out
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    assert read_run(tmp_path)["status"] == "done"
    assert load_task(tmp_path) == {"name": "mqar", "vocab_size": 16, "seq_len": 16,
                                   "num_kv_pairs": 2, "power_a": 0.01,
                                   "random_non_queries": True, "repeat_context": False,
                                   "filler": "values"}
    stamp = (tmp_path / "model.safetensors").stat().st_mtime_ns
    second = featlab(*ARGS, "--out", tmp_path)
    assert second.code == 0 and "a finished run, loaded" in second.out
    assert (tmp_path / "model.safetensors").stat().st_mtime_ns == stamp
    rows = [[ln for ln in r.out.splitlines() if ln.startswith("conv+attn")]
            for r in (first, second)]
    assert len(rows[0]) == 3 and rows[0] == rows[1]


def test_other_settings_refused_then_overwritten(featlab, tmp_path) -> None:
    assert featlab(*ARGS, "--out", tmp_path).code == 0
    stamp = (tmp_path / "model.safetensors").stat().st_mtime_ns
    refused = featlab(*ARGS, "--out", tmp_path, "--lr", "0.01")
    assert refused.code == 2 and "Traceback" not in refused.err
    assert "lr: 0.003 -> 0.01" in refused.err and "--overwrite" in refused.err
    assert (tmp_path / "model.safetensors").stat().st_mtime_ns == stamp
    replaced = featlab(*ARGS, "--out", tmp_path, "--lr", "0.01", "--overwrite")
    assert replaced.code == 0, replaced.err
    assert read_run(tmp_path)["settings"]["lr"] == 0.01


def test_unknown_mixer_is_a_one_line_error(featlab, tmp_path) -> None:
    res = featlab("train-model", "--layers", "gdn,atn", "--out", tmp_path)
    assert res.code == 2 and "'atn'" in res.err and "attn" in res.err
    assert res.err.count("\n") == 1 and not any(tmp_path.iterdir())
