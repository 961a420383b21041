"""`featlab train-sae` / `train_sae_run` on a tiny saved hybrid."""

from __future__ import annotations

import json

import pytest
import torch

from featlab.errors import RunConflict, TrainingDiverged, UserError
from featlab.runs import SAERunConfig, train_sae_run

HOOK = "blocks.0.hook_resid_post"


def test_cli_run_then_cached(featlab, tiny_model, tmp_path) -> None:
    out = tmp_path / "sae"
    args = ["train-sae", "--model", tiny_model, "--hook", HOOK, "--width", "32", "--k", "4",
            "--tokens", "4096", "--batch-size", "256", "--out", out, "--seed", "1",
            "--no-progress"]
    res = featlab(*args)
    assert res.code == 0, res.err
    assert "ce_loss_recovered" in res.out and "model's task" in res.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["fvu"] < 1.0 and metrics["l0"] == pytest.approx(4.0)
    from featlab.sae import load_sae

    sae = load_sae(out / "sae")
    assert sae.W_dec.shape == (32, 16) and sae.cfg.hook_name == HOOK
    again = featlab(*args)
    assert again.code == 0 and "a finished run, loaded" in again.out
    assert again.out.splitlines()[0] == res.out.splitlines()[0]
    other = featlab(*args[:-1], "--k", "3")
    assert other.code == 2 and "k: 4 -> 3" in other.err


def test_tokens_file_and_cache(tiny_model, tmp_path) -> None:
    toks = torch.randint(0, 16, (80, 16), generator=torch.Generator().manual_seed(0))
    torch.save(toks, tmp_path / "toks.pt")
    run = train_sae_run(SAERunConfig(
        model=tiny_model, hook="blocks.1.hook_resid_post", kind="matching_pursuit", width=32,
        k=3, tokens=2048, batch_size=128, tokens_file=tmp_path / "toks.pt", n_eval_seqs=16,
        cache=True, out=tmp_path / "o", progress=False))
    assert (tmp_path / "o" / "act_cache" / "manifest.json").is_file()
    assert run.token_source.startswith("tokens file")
    assert 0 <= run.metrics["fvu"] < 1.0 and run.metrics["l0"] <= 3
    assert run.metrics["ce_positions"] == "next token"  # a tokens file has no labels
    torch.save(toks[:, :8] + 16, tmp_path / "bad.pt")  # ids beyond the vocabulary
    with pytest.raises(UserError, match="token ids 16..31"):
        train_sae_run(SAERunConfig(model=tiny_model, hook=HOOK, tokens=512, batch_size=64,
                                   tokens_file=tmp_path / "bad.pt", n_eval_seqs=4,
                                   out=tmp_path / "b", progress=False))


def test_mqar_ce_is_scored_at_the_query_positions(tiny_model, tmp_path) -> None:
    """CE-loss recovered of an MQAR model is its recall at the labelled query positions: the
    run's figures equal `ce_loss_recovered` on the held-out sequences with their labels, and
    differ from the every-position loss dominated by unpredictable filler."""
    from featlab.models.io import load_model
    from featlab.runs.tasks import task_sequences
    from featlab.sae.metrics import ce_loss_recovered

    run = train_sae_run(SAERunConfig(model=tiny_model, hook=HOOK, width=32, k=4, tokens=2048,
                                     batch_size=256, n_eval_seqs=32, seed=3,
                                     out=tmp_path / "q", progress=False))
    assert run.metrics["ce_positions"] == "task labels"
    model = load_model(str(tiny_model))
    task = json.loads((tiny_model / "config.json").read_text())["task"]
    held, labels = task_sequences(task, 32, 3 + 10_007)
    assert (labels != -100).sum() < labels.numel() / 4  # queries are a few positions
    at_queries = ce_loss_recovered(model, run.sae, held, labels=labels)
    everywhere = ce_loss_recovered(model, run.sae, held)
    for key in ("ce_clean", "ce_sae", "ce_zero"):
        assert run.metrics[key] == pytest.approx(at_queries[key], rel=1e-5)
    assert abs(everywhere["ce_clean"] - at_queries["ce_clean"]) > 1e-3


def test_retrained_model_is_another_run(tiny_model, tmp_path) -> None:
    from .conftest import save_tiny_model

    model = save_tiny_model(tmp_path / "m", seed=1)
    cfg = dict(model=model, hook=HOOK, width=32, k=4, tokens=1024, batch_size=256,
               out=tmp_path / "s", progress=False)
    train_sae_run(SAERunConfig(**cfg))
    import shutil

    shutil.copytree(model, tmp_path / "moved")  # the same weights by another path
    assert train_sae_run(SAERunConfig(**{**cfg, "model": tmp_path / "moved"})).status == "done"
    save_tiny_model(tmp_path / "m", seed=2)  # new weights, same folder
    with pytest.raises(RunConflict, match="model: "):
        train_sae_run(SAERunConfig(**cfg))


def test_divergence_stops_and_saves_nothing_finished(featlab, tiny_model, tmp_path) -> None:
    with pytest.raises(TrainingDiverged, match="lower lr"):
        train_sae_run(SAERunConfig(model=tiny_model, hook=HOOK, width=32, k=4, tokens=40_960,
                                   batch_size=256, lr=1e4, out=tmp_path / "d", progress=False))
    assert not (tmp_path / "d" / "sae").exists()
    res = featlab("train-sae", "--model", tiny_model, "--hook", HOOK, "--width", "32", "--k",
                  "4", "--tokens", "40960", "--batch-size", "256", "--lr", "1e4", "--out",
                  tmp_path / "d", "--no-progress")
    assert res.code == 1 and "diverged" in res.err and "--lr" in res.err
    assert "Traceback" not in res.err


def test_model_without_task_needs_a_tokens_file(featlab, tmp_path) -> None:
    from .conftest import save_tiny_model

    model = save_tiny_model(tmp_path / "m", task=False)
    res = featlab("train-sae", "--model", model, "--hook", HOOK, "--out", tmp_path / "s")
    assert res.code == 2 and "--tokens-file" in res.err


def test_optimizer_flag_trains_with_it_and_names_the_choices(featlab, tiny_model,
                                                             tmp_path) -> None:
    args = ["train-sae", "--model", tiny_model, "--hook", HOOK, "--width", "32", "--k", "4",
            "--tokens", "2048", "--batch-size", "256", "--no-progress"]
    res = featlab(*args, "--optimizer", "signum", "--out", tmp_path / "s")
    assert res.code == 0, res.err
    assert json.loads((tmp_path / "s" / "run.json").read_text())["settings"]["optimizer"] == "signum"
    bad = featlab(*args, "--optimizer", "sgd", "--out", tmp_path / "b")
    assert bad.code == 2 and "--optimizer" in bad.err and "adam_sf" in bad.err
    assert "Traceback" not in bad.err and not (tmp_path / "b" / "sae").exists()
