"""The trainer: inputs, resume, several SAEs on one stream, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from featlab.sae import default_lr, train_sae, train_saes
from featlab.sae.train import lr_scale

KINDS = ["relu", "topk", "batchtopk", "feature_choice", "matching_pursuit"]


def _data(n: int = 2048, d: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(48, d, generator=g)
    on = (torch.rand(n, 48, generator=g) < 0.06).float()
    return (on * torch.rand(n, 48, generator=g)) @ feats


def _same(a, b) -> None:
    for (na, ta), (nb, tb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert na == nb
        assert torch.equal(ta, tb), f"{na} differs"


@pytest.mark.parametrize("kind", KINDS)
def test_resume_after_interruption_is_bit_identical(kind, tmp_path):
    data = _data()
    kw = dict(kind=kind, d_sae=40, k=3, tokens=12 * 128, batch_size=128, progress=False, seed=3)
    if kind in ("topk", "batchtopk"):
        kw["dead_tokens"] = 256  # so AuxK is active and its state must resume too
    full = train_sae(data, **kw)

    class Crash(Exception):
        pass

    def crash(step, saes, logs):
        if step == 6:
            raise Crash

    with pytest.raises(Crash):
        train_sae(data, checkpoint_dir=tmp_path, checkpoint_every=4, callback=crash, **kw)
    assert (tmp_path / "checkpoint.pt").exists()
    steps_run = []
    resumed = train_sae(data, checkpoint_dir=tmp_path, checkpoint_every=4,
                        callback=lambda s, *_: steps_run.append(s), **kw)  # fmt: skip
    assert steps_run[0] == 4, "resume starts from the last checkpoint"
    _same(full, resumed)


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    data = _data()
    train_sae(data, d_sae=16, k=2, tokens=512, batch_size=128, progress=False,
              checkpoint_dir=tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match="different settings"):
        train_sae(data, d_sae=24, k=2, tokens=512, batch_size=128, progress=False,
                  checkpoint_dir=tmp_path)  # fmt: skip


def test_train_saes_equals_separate_runs_and_draws_each_batch_once():
    data = _data()
    specs = [
        {"kind": "topk", "d_sae": 32, "k": 2},
        {"kind": "matching_pursuit", "d_sae": 24, "k": 3},
        {"kind": "batchtopk", "d_sae": 32, "k": 2, "lr": 1e-3},
    ]
    drawn = []

    def stream():
        for i in range(0, 1024, 64):
            drawn.append(i)
            yield data[i : i + 64]

    together = train_saes(stream(), specs, tokens=1024, batch_size=128, progress=False)
    assert len(drawn) == 16, "every batch is drawn once for all SAEs"
    for spec, sae in zip(specs, together, strict=True):
        alone = train_sae(iter([data[:1024]]), tokens=1024, batch_size=128, progress=False,
                          **spec)  # fmt: skip
        _same(sae, alone)


def test_accepts_tensor_3d_iterator_and_source():
    data = _data(1024)

    class Source:
        d_in = 12
        hook_name = "blocks.0.hook_resid_post"

        def batches(self, batch_size, seed):
            g = torch.Generator().manual_seed(seed)
            while True:
                yield data[torch.randint(0, 1024, (batch_size,), generator=g)]

    kw = dict(d_sae=16, k=2, tokens=512, batch_size=64, progress=False)
    a = train_sae(data.reshape(64, 16, 12), **kw)
    b = train_sae(iter(data.split(100)), **kw)
    c = train_sae(Source(), **kw)
    assert c.cfg.hook_name == "blocks.0.hook_resid_post"
    assert a.d_in == b.d_in == c.d_in == 12
    assert not a.training
    relu = train_sae(data, kind="relu", d_sae=8, tokens=256, batch_size=64, progress=False)
    assert relu.cfg.k is None, "k (default 32 > d_sae) is ignored by the ReLU kind"


def test_default_lr_and_schedule():
    assert math.isclose(default_lr(2**14), 4e-3)
    assert math.isclose(default_lr(2**12), 8e-3)
    assert math.isclose(default_lr(2**10), 1.6e-2)
    assert default_lr(32) == default_lr(2**10)  # no larger below 1024 latents
    assert math.isclose(default_lr(2**14, "signum"), 5e-3)  # sparsify's
    sae = train_sae(_data(), d_sae=64, k=2, tokens=256, batch_size=128, progress=False)
    assert sae.d_sae == 64
    scales = [lr_scale(s, 100, 10, 0.2) for s in range(100)]
    assert scales[0] == pytest.approx(0.1) and scales[50] == 1.0
    assert scales[99] < scales[85] < 1.0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("row,step", [(5, 0), (300, 2)])  # step 0 also initialises b_dec
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_activations_name_step_and_hook(kind, row, step, bad):
    # the trainer finds them through the loss they make non-finite, for every kind
    data = _data()
    data[row, 3] = bad

    class Src:
        d_in = 12
        hook_name = "blocks.1.hook_resid_post"

        def batches(self, batch_size, seed):
            yield from data.split(batch_size)

    with pytest.raises(ValueError, match=rf"step {step} from hook 'blocks.1.hook_resid_post'"):
        train_sae(Src(), kind=kind, d_sae=16, k=2, tokens=1024, batch_size=128,
                  progress=False)  # fmt: skip


def test_bad_arguments_have_clear_errors():
    data = _data()
    kw = dict(tokens=256, batch_size=128, progress=False)
    with pytest.raises(ValueError, match="unknown SAE kind 'jumprelu'; valid kinds: relu, topk"):
        train_sae(data, kind="jumprelu", **kw)
    with pytest.raises(ValueError, match="k=64 is larger than the SAE width d_sae=32"):
        train_sae(data, d_sae=32, k=64, **kw)
    with pytest.raises(TypeError, match=r"unknown hyperparameter\(s\) \['aux_coeff'\].*aux_coef"):
        train_sae(data, aux_coeff=0.1, **kw)
    with pytest.raises(TypeError, match="l1_coef"):
        train_sae(data, kind="relu", aux_coef=0.1, **kw)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_sae(data[:100], **kw)
    with pytest.raises(ValueError, match="stream ended after 2 steps"):
        train_sae(iter([data[:256]]), d_sae=16, k=2, tokens=1024, batch_size=128, progress=False)
    from featlab.sae import build_sae, make_config

    sae = build_sae(make_config("topk", 12, 16, 2))
    with pytest.raises(ValueError, match=r"shape \(4, 10\).*d_in=12"):
        sae.encode(torch.randn(4, 10))


def test_dead_window_resolves_from_the_run_length():
    from featlab.sae.config import DEAD_TOKENS_CAP, default_dead_tokens

    data = _data()
    kw = dict(d_sae=16, k=2, batch_size=128, progress=False)
    sae = train_sae(data, tokens=2048, **kw)
    assert sae.hp.dead_tokens == sae.cfg.hparams["dead_tokens"] == 204  # saved with the SAE
    assert train_sae(data, tokens=512, **kw).hp.dead_tokens == 128, "at least one batch"
    assert train_sae(data, tokens=2048, dead_tokens=300, **kw).hp.dead_tokens == 300
    assert default_dead_tokens(10**9) == DEAD_TOKENS_CAP == 10_000_000
    assert default_dead_tokens(None) == DEAD_TOKENS_CAP
    several = train_saes(data, [dict(kind="topk", d_sae=16, k=2),
                                dict(kind="feature_choice", d_sae=16, k=2)],
                         tokens=2048, batch_size=128, progress=False)  # fmt: skip
    assert several[0].hp.dead_tokens == 204
    assert "dead_tokens" not in several[1].cfg.hparams
