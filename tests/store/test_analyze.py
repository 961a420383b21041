"""`analyze` fills the store with numbers equal to a brute-force pass, resumes without
duplicate rows, and is deterministic under a seed; on HookedTransformer and HookedHybrid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from featlab.store import analyze, open_store

from .store_helpers import make_sae

HOOK0, HOOK1 = "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"


def _saes():
    return {"a": make_sae(16, 64, 4, HOOK0, seed=0), "b": make_sae(16, 48, 3, HOOK1, seed=1)}


def _run(model, tokens, path, **kw):
    kw = {"batch_size": 5, "n_examples": 3, "quantile_bands": 2, "context_window": 2,
          "progress": False, **kw}
    return analyze(model, _saes(), tokens, path, **kw)


def _all_z(model, sae, tokens):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=[sae.cfg.hook_name])
        x = cache[sae.cfg.hook_name]
        return sae.encode(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:2], -1)


def _dump(path) -> dict[str, pd.DataFrame]:
    """Every analyze-written table, without timestamps, in a canonical order."""
    out = {}
    for table in ("saes", "features", "examples", "neighbours", "logits", "vocab",
                  "explanations"):
        files = sorted((path / table).glob("*.parquet"))
        df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        df = df.drop(columns=[c for c in ("created_at", "updated_at") if c in df.columns])
        key = [c for c in ("sae_id", "feature", "kind", "band", "side", "rank", "token_id")
               if c in df.columns]
        out[table] = df.sort_values(key).reset_index(drop=True)
    return out


def test_round_trip_matches_brute_force(tiny_model, tiny_tokens, tmp_path) -> None:
    _run(tiny_model, tiny_tokens, tmp_path / "s")
    store = open_store(tmp_path / "s")
    sae = _saes()["a"]
    z = _all_z(tiny_model, sae, tiny_tokens)  # [seq, pos, d_sae]
    zf = z.reshape(-1, z.shape[-1])
    feats, total = store.features("a", limit=1000)
    assert total == 64 == len(feats) == store.n_features("a")
    np.testing.assert_allclose(feats["density"], (zf > 0).double().mean(0).numpy(), atol=1e-12)
    np.testing.assert_allclose(feats["max_act"], zf.max(0).values.numpy(), rtol=1e-6)
    count = (zf > 0).sum(0)
    mean = torch.where(count > 0, zf.sum(0) / count.clamp_min(1), 0.0)
    np.testing.assert_allclose(feats["mean_act"], mean.numpy(), rtol=1e-5, atol=1e-7)
    assert (feats["dead"].to_numpy() == (count == 0).numpy()).all()

    live = int(torch.nonzero(count > 0)[0])
    card = store.feature_card("a", live)
    assert card is not None and card.histogram["count"].sum() == int(count[live])
    top = card.examples[card.examples["band"] == "top"]
    per_seq = z[:, :, live].max(1).values
    expected = per_seq[per_seq > 0].sort(descending=True).values[:3]
    np.testing.assert_allclose(top["peak"], expected.numpy(), rtol=1e-6)
    for _, ex in card.examples.iterrows():  # every stored window equals the activations
        seq = int(ex["seq"])
        acts = np.asarray(ex["acts"])
        window = z[seq, :, live].numpy()
        start = [i for i in range(len(window) - len(acts) + 1)
                 if np.allclose(window[i:i + len(acts)], acts, atol=1e-6)]
        assert start, f"window of seq {seq} not found in its activations"
        assert acts[int(ex["pos"])] == pytest.approx(ex["peak"], rel=1e-6)
        assert list(ex["tokens"]) == [str(t) for t in ex["token_ids"]]
    bands = card.examples[card.examples["band"] != "top"]
    assert set(bands["band"]) <= {"q0", "q1"}
    if {"q0", "q1"} <= set(bands["band"]):  # bands ordered by activation
        assert bands[bands.band == "q1"]["peak"].min() >= bands[bands.band == "q0"]["peak"].max()
    # decoder-cosine neighbours are the true nearest decoder rows
    wn = sae.W_dec.detach() / sae.W_dec.detach().norm(dim=1, keepdim=True)
    sims = wn @ wn.T
    sims.fill_diagonal_(-2)
    dec = card.neighbours[card.neighbours["kind"] == "decoder_cosine"]
    assert int(dec["other_feature"].iloc[0]) == int(sims[live].argmax())
    assert set(card.neighbours["kind"]) == {"decoder_cosine", "act_correlation", "cross_sae"}
    # logit effects: W_dec @ W_U
    eff = (sae.W_dec.detach() @ tiny_model.W_U.detach())[live]
    assert int(card.logits_top["token_id"].iloc[0]) == int(eff.argmax())
    assert int(card.logits_bottom["token_id"].iloc[0]) == int(eff.argmin())
    assert card.explanation and card.explanation_source == "auto"
    saes = store.saes()
    assert list(saes["sae_id"]) == ["a", "b"]
    assert saes.loc[0, "l0"] == pytest.approx(float((zf > 0).sum(1).double().mean()))


def test_resume_after_interrupt_has_no_duplicates(tiny_model, tiny_tokens, tmp_path) -> None:
    _run(tiny_model, tiny_tokens, tmp_path / "clean", seed=3)
    calls = {"n": 0}

    def boom(module, args):
        calls["n"] += 1
        if calls["n"] == 5:  # call 1 checks the SAE widths, calls 2.. are batches 0..
            raise KeyboardInterrupt("simulated crash in batch 3")

    handle = tiny_model.embed.register_forward_pre_hook(boom)
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(tiny_model, tiny_tokens, tmp_path / "resumed", seed=3, checkpoint_every=1)
    finally:
        handle.remove()
    (state,) = (tmp_path / "resumed" / ".analyze").glob("state-*.pt")
    assert not list((tmp_path / "resumed").glob("*/*.tmp"))
    assert torch.load(state, weights_only=False)["next_batch"] == 3

    _run(tiny_model, tiny_tokens, tmp_path / "resumed", seed=3, checkpoint_every=1)
    _run(tiny_model, tiny_tokens, tmp_path / "resumed", seed=3)  # a repeat adds no rows
    assert not state.exists()
    clean, resumed = _dump(tmp_path / "clean"), _dump(tmp_path / "resumed")
    for table in clean:
        pd.testing.assert_frame_equal(clean[table], resumed[table], check_exact=False,
                                      rtol=1e-6, obj=table)
    ex = resumed["examples"]
    assert not ex.duplicated(["sae_id", "feature", "band", "rank"]).any()


def test_same_seed_same_tables(tiny_model, tiny_tokens, tmp_path) -> None:
    _run(tiny_model, tiny_tokens, tmp_path / "1", seed=5)
    _run(tiny_model, tiny_tokens, tmp_path / "2", seed=5)
    one, two = _dump(tmp_path / "1"), _dump(tmp_path / "2")
    for table in one:
        pd.testing.assert_frame_equal(one[table], two[table], obj=table)


def test_hybrid_model_path(tmp_path) -> None:
    hybrid = pytest.importorskip("featlab.models.hybrid")
    from featlab.models.config import HybridConfig

    model = hybrid.HookedHybrid(HybridConfig(layers=("gdn", "attn"), d_model=16, n_heads=2,
                                             d_vocab=20, n_ctx=16)).eval()
    tokens = torch.randint(0, 20, (8, 12), generator=torch.Generator().manual_seed(0))
    sae = make_sae(16, 32, 4, "blocks.0.hook_mixer_out")
    analyze(model, {"gdn": sae}, tokens, tmp_path / "h", batch_size=4, n_examples=2,
            progress=False)
    feats, total = open_store(tmp_path / "h").features("gdn", limit=100)
    z = _all_z(model, sae, tokens).reshape(-1, 32)
    assert total == 32
    np.testing.assert_allclose(feats["density"], (z > 0).double().mean(0).numpy())


def test_bad_inputs_give_clear_errors(tiny_model, tiny_tokens, tmp_path) -> None:
    bad = make_sae(16, 8, 2, "blocks.0.hook_nonexistent")
    with pytest.raises(ValueError, match="hook_nonexistent.*valid"):
        analyze(tiny_model, [bad], tiny_tokens, tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match=r"\[n_seq, seq_len\]"):
        analyze(tiny_model, [make_sae(16, 8, 2, HOOK0)], tiny_tokens.float(), tmp_path / "y",
                progress=False)
