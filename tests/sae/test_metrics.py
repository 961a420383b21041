"""evaluate and SAEMetrics, CE-loss recovered on a tiny HookedTransformer, MMCS, Hungarian."""

from __future__ import annotations

import json
import math

import pytest
import torch

from featlab.sae import build_sae, ce_loss_recovered, evaluate, hungarian_cosine, make_config, mmcs


def _identity_relu_sae(d: int, hook: str | None = None):
    """A ReLU SAE that reconstructs exactly: z = [relu(x), relu(-x)], x_hat = z @ [I; -I]."""
    sae = build_sae(make_config("relu", d, 2 * d, hook_name=hook))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_fvu_l0_dead_and_density():
    torch.manual_seed(0)
    x = torch.randn(500, 6)
    m = evaluate(_identity_relu_sae(6), x)
    assert m.fvu < 1e-10
    # each coordinate is positive or negative: exactly d of the 2d latents fire per token
    assert m.l0 == pytest.approx(6.0) and m.l0_std == pytest.approx(0.0)
    assert m.dead_frac == 0.0 and m.n_rows == 500 and m.d_sae == 12
    assert m.feature_density.shape == (12,)
    torch.testing.assert_close(m.feature_density[:6] + m.feature_density[6:],
                               torch.ones(6, dtype=torch.float64))  # fmt: skip
    assert sum(m.density_hist[0]) == 12 and sum(m.l0_hist[0]) == 500

    # a TopK SAE whose reconstruction is b_dec = mean(x) and a zero code: FVU = 1, all dead
    sae = build_sae(make_config("topk", 6, 8, 2))
    with torch.no_grad():
        sae.b_dec.copy_(x.mean(0))
        sae.b_enc.fill_(-1e3)
    m = evaluate(sae, x)
    assert m.fvu == pytest.approx(1.0, rel=1e-5)
    assert m.l0 == 0.0 and m.dead_frac == 1.0 and m.dense_frac == 0.0


def test_evaluate_with_true_features():
    torch.manual_seed(1)
    feats = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    sae = build_sae(make_config("topk", 8, 7, 2))
    with torch.no_grad():
        sae.W_dec[:5] = feats[[2, 0, 4, 1, 3]]
    x = torch.randn(64, 8)
    m = evaluate(sae, x, true_features=feats)
    assert m.mmcs == pytest.approx(1.0) and m.hungarian_cosine == pytest.approx(1.0)
    assert m.ce_loss_recovered is None and "ce_sae" not in m.to_dict()
    # Hungarian forbids re-using one latent; MMCS does not
    dup = feats[[0, 0, 0]]
    assert mmcs(dup, feats) < 1.0
    assert hungarian_cosine(dup, feats[:1]) == pytest.approx(1.0)
    w = torch.randn(9, 8)
    assert hungarian_cosine(w, feats) <= mmcs(w, feats) + 1e-9
    with pytest.raises(ValueError, match="share their last dimension"):
        mmcs(w, torch.randn(3, 4))


def _tiny_model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=12, d_head=4, n_heads=4,
                                  d_vocab=23, act_fn="relu", seed=0)  # fmt: skip
    return HookedTransformer(cfg)


def test_ce_loss_recovered_on_a_hooked_transformer():
    model = _tiny_model()
    tokens = torch.randint(0, 23, (3, 12), generator=torch.Generator().manual_seed(0))
    hook = "blocks.0.hook_resid_post"
    exact = ce_loss_recovered(model, _identity_relu_sae(16, hook), tokens)
    assert exact["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert exact["kl_sae"] == pytest.approx(0.0, abs=1e-5)
    assert exact["kl_zero"] > 0
    with torch.no_grad():
        clean_loss = float(model(tokens, return_type="loss"))
    assert exact["ce_clean"] == pytest.approx(clean_loss, rel=1e-5)
    # an SAE that reconstructs nothing recovers nothing
    none = build_sae(make_config("topk", 16, 8, 1, hook_name=hook))
    with torch.no_grad():
        none.b_enc.fill_(-1e3)
    zero = ce_loss_recovered(model, none, tokens)
    assert zero["ce_loss_recovered"] == pytest.approx(0.0, abs=1e-4)
    m = evaluate(none, torch.randn(10, 16), model=model, tokens=tokens)
    assert m.ce_sae == pytest.approx(zero["ce_sae"])
    assert m.kl_zero == pytest.approx(zero["kl_zero"]) and m.mmcs is None
    with pytest.raises(ValueError, match="valid hooks: .*blocks.0.hook_resid_post"):
        ce_loss_recovered(model, none, tokens, hook_name="blocks.9.hook_resid_post")


def test_metrics_print_as_a_table_and_serialise_to_scalars():
    torch.manual_seed(2)
    x = torch.randn(300, 6)
    feats = torch.nn.functional.normalize(torch.randn(4, 6), dim=-1)
    m = evaluate(_identity_relu_sae(6), x, true_features=feats)
    text = str(m)
    assert text == repr(m)
    lines = text.splitlines()
    assert lines[0] == "SAEMetrics on 300 rows, d_sae 12"
    # one line per scalar, its value as printed, and no array anywhere in the printout
    by_name = {ln.split()[0]: ln.split()[1] for ln in lines[1:]}
    assert set(by_name) == set(m.to_dict()) - {"n_rows"}
    assert float(by_name["l0"]) == pytest.approx(m.l0, rel=1e-3)
    assert float(by_name["mmcs"]) == pytest.approx(m.mmcs, rel=1e-3)
    assert "tensor" not in text and "[" not in text and len(lines) <= 20

    d = m.to_dict()
    assert json.loads(json.dumps(d)) == d  # JSON-ready: plain numbers only
    assert all(isinstance(v, (int, float)) for v in d.values())
    assert {"fvu", "mse", "l0", "l0_std", "l0_q05", "l0_q50", "l0_q95", "dead_frac",
            "dense_frac", "mmcs", "hungarian_cosine"} <= set(d)  # fmt: skip
    assert "feature_density" not in d and "ce_loss_recovered" not in d
    assert d["l0_q50"] == m.l0_quantiles[0.5] == pytest.approx(6.0)
    s = m.to_series()
    assert s.dtype == float and list(s.index) == list(d)
    assert s["fvu"] == pytest.approx(m.fvu)

    # attribute access only; the result is frozen
    with pytest.raises(TypeError):
        m["fvu"]  # noqa: B018
    with pytest.raises(AttributeError):
        m.fvu = 0.0  # type: ignore[misc]


def test_undefined_ce_recovered_is_null_in_json():
    from dataclasses import replace

    m = replace(evaluate(_identity_relu_sae(4), torch.randn(50, 4)), ce_loss_recovered=math.nan)
    assert m.to_dict()["ce_loss_recovered"] is None
    assert math.isnan(m.to_series()["ce_loss_recovered"])
    assert "nan" in str(m)


def _sign_model(c: float):
    """Vocab 2, d 2: token 0 embeds as (c, -c), token 1 as (-c, c); the logits are the
    activation at `hook_embed` itself, so every CE below is a closed form."""
    from transformer_lens import HookedRootModule
    from transformer_lens.hook_points import HookPoint

    class Sign(HookedRootModule):
        def __init__(self) -> None:
            super().__init__()
            self.hook_embed = HookPoint()
            self.setup()

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            emb = torch.tensor([[c, -c], [-c, c]])
            return self.hook_embed(emb[tokens])

    return Sign()


def test_ce_loss_recovered_at_labelled_positions_differs_from_all_positions():
    # x_hat = relu(x): (c, -c) -> (c, 0). c = ln 3, so the softmax losses are logs of
    # rationals: clean right answer ln(1 + e^-2c) = ln(10/9), clean wrong ln 10; spliced
    # right ln(4/3), wrong ln 4; zero ablation ln 2 everywhere.
    c = math.log(3.0)
    model = _sign_model(c)
    sae = build_sae(make_config("relu", 2, 2, hook_name="hook_embed"))
    with torch.no_grad():
        for w in (sae.W_enc, sae.W_dec):
            w.copy_(torch.eye(2))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    tokens = torch.tensor([[0, 0, 1, 1]])
    # MQAR-style labels: only position 2 is scored, against target 1 (the model is right)
    labels = torch.tensor([[-100, -100, 1, -100]])
    q = ce_loss_recovered(model, sae, tokens, labels=labels)
    assert q["ce_clean"] == pytest.approx(math.log(10 / 9), rel=1e-5)
    assert q["ce_sae"] == pytest.approx(math.log(4 / 3), rel=1e-5)
    assert q["ce_zero"] == pytest.approx(math.log(2), rel=1e-5)
    assert q["ce_loss_recovered"] == pytest.approx(math.log(1.5) / math.log(1.8), rel=1e-5)

    # next token at every position: targets 0, 1, 1 for inputs 0, 0, 1; position 1 is a
    # "filler" the model gets wrong, which makes the clean run worse than zero ablation
    a = ce_loss_recovered(model, sae, tokens)
    clean = (2 * math.log(10 / 9) + math.log(10)) / 3
    spliced = (2 * math.log(4 / 3) + math.log(4)) / 3
    assert a["ce_clean"] == pytest.approx(clean, rel=1e-5)
    assert a["ce_sae"] == pytest.approx(spliced, rel=1e-5)
    expected = (math.log(2) - spliced) / (math.log(2) - clean)
    assert a["ce_loss_recovered"] == pytest.approx(expected, rel=1e-5)
    assert expected < 0 < q["ce_loss_recovered"]
    # KL at the scored position: clean (1/10, 9/10) against spliced (1/4, 3/4)
    kl = 0.1 * math.log(0.1 / 0.25) + 0.9 * math.log(0.9 / 0.75)
    assert q["kl_sae"] == pytest.approx(kl, rel=1e-5)

    m = evaluate(sae, torch.randn(8, 2), model=model, tokens=tokens, labels=labels)
    assert m.ce_loss_recovered == pytest.approx(q["ce_loss_recovered"])
    with pytest.raises(ValueError, match="must match tokens of shape"):
        ce_loss_recovered(model, sae, tokens, labels=labels[:, :3])
    with pytest.raises(ValueError, match="labels score no position"):
        ce_loss_recovered(model, sae, tokens, labels=torch.full_like(tokens, -100))
