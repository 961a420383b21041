"""scored_positions: [batch, pos, d] caches + [batch, pos] labels -> [n, d] rows + [n] targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featlab.complexity import feature_complexity
from featlab.probes import probe_layers, scored_positions


def _cache(b: int = 3, p: int = 5):
    # Each activation encodes where it came from, so the row order can be checked exactly.
    bb, pp = torch.meshgrid(torch.arange(b), torch.arange(p), indexing="ij")
    where = torch.stack([bb, pp], -1).float()  # [b, p, 2]
    return {"h0": where, "h1": torch.cat([where, 10 * where], -1)}


def test_keeps_the_scored_rows_in_order_with_their_labels() -> None:
    cache = _cache()
    labels = torch.full((3, 5), -100)
    labels[0, 4], labels[1, 0], labels[2, 2], labels[2, 3] = 7, 8, 9, 6
    acts, y = scored_positions(cache, labels)
    assert list(acts) == ["h0", "h1"]
    np.testing.assert_array_equal(acts["h0"], [[0, 4], [1, 0], [2, 2], [2, 3]])
    assert acts["h1"].shape == (4, 4) and acts["h0"].dtype == np.float64
    np.testing.assert_array_equal(acts["h1"][:, 2:], 10 * acts["h0"])
    np.testing.assert_array_equal(y, [7, 8, 9, 6])

    only, _ = scored_positions(cache, labels, layers=["h1"])
    assert list(only) == ["h1"]
    # a bool mask says where; target says what
    mask = labels != -100
    tok = torch.arange(15).reshape(3, 5)
    acts2, y2 = scored_positions(cache, mask, target=tok)
    np.testing.assert_array_equal(acts2["h0"], acts["h0"])
    np.testing.assert_array_equal(y2, [4, 5, 12, 13])
    # numpy inputs and trailing dims ([b, p, heads, d_head] is flattened)
    acts3, _ = scored_positions({"z": np.ones((3, 5, 2, 4))}, labels.numpy())
    assert acts3["z"].shape == (4, 8)


def test_errors_name_both_shapes_and_the_fix() -> None:
    cache, labels = _cache(), torch.zeros(3, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"'h0' have shape \(3, 5, 2\) but labels have \(3, 4\)"):
        scored_positions(cache, labels[:, :4])
    with pytest.raises(ValueError, match=r"\(2, 5, 2\) but labels have \(3, 5\)"):
        scored_positions({"h0": torch.zeros(2, 5, 2)}, labels)
    with pytest.raises(ValueError, match=r"labels must be \[batch, pos\], got shape \(15,\)"):
        scored_positions(cache, labels.flatten())
    with pytest.raises(ValueError, match=r"no position is scored.*\(3, 5\).*!= -100"):
        scored_positions(cache, torch.full((3, 5), -100))
    with pytest.raises(ValueError, match="no position is scored"):
        scored_positions(cache, torch.zeros(3, 5, dtype=torch.bool), target=labels)
    with pytest.raises(ValueError, match="bool mask.*pass target="):
        scored_positions(cache, labels == 0)
    with pytest.raises(ValueError, match=r"target has shape \(3, 4\) but labels has \(3, 5\)"):
        scored_positions(cache, labels, target=labels[:, :4])
    with pytest.raises(KeyError, match="valid names: \\['h0', 'h1'\\]"):
        scored_positions(cache, labels, layers=["h0", "blocks.9.hook_resid_post"])


def test_feeds_probes_and_complexity_on_a_hybrid_model() -> None:
    from featlab.datasets import MQARConfig, make_mqar
    from featlab.models import HookedHybrid, HybridConfig

    cfg = HybridConfig(layers=("gdn", "attn"), d_model=16, n_heads=2, d_vocab=16, n_ctx=16)
    model = HookedHybrid(cfg).eval()
    data = make_mqar(MQARConfig(vocab_size=16, seq_len=16, num_kv_pairs=2), 64, seed=0)
    hooks = ["hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    with torch.no_grad():
        _, cache = model.run_with_cache(data.inputs)
    # the full cache holds [batch, heads, pos, pos] patterns: without layers= it is refused
    with pytest.raises(ValueError, match="pass layers="):
        scored_positions(cache, data.labels)
    acts, y = scored_positions(cache, data.labels, layers=hooks)
    n = int((data.labels != -100).sum())
    assert [a.shape for a in acts.values()] == [(n, 16)] * 3 and y.shape == (n,)
    # the embedding of the query token is exactly the cache row at that position
    b, p = torch.nonzero(data.labels != -100)[5]
    np.testing.assert_allclose(acts["hook_embed"][5], cache["hook_embed"][b, p].double())
    df = probe_layers(acts, y, kind="logistic")
    assert list(df.layer) == hooks and df.test_score.between(0, 1).all()
    # the query token is in the embedding: K of "which token sits here" is ~0
    tok = data.inputs.float()
    acts_t, t = scored_positions(cache, data.labels, layers=hooks, target=tok)
    assert feature_complexity({"e": acts_t["hook_embed"]}, t) < 0.05


def test_probe_scores_plot_from_probe_layers() -> None:
    from featlab.complexity.plots import plot_probe_layers

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    layers = {"emb": rng.standard_normal((300, 3)), "l1": np.c_[y, rng.standard_normal(300)]}
    df = probe_layers(layers, y)
    fig = plot_probe_layers(df)
    assert [t.name for t in fig.data] == ["test", "train"]
    np.testing.assert_allclose(fig.data[0].y, df.test_score)
    assert list(fig.layout.xaxis.ticktext) == ["emb", "l1"]
    assert fig.data[0].y[1] == 1.0 and fig.data[0].y[0] < 0.7
    with pytest.raises(KeyError, match="test_score"):
        plot_probe_layers(df.drop(columns="test_score"))
