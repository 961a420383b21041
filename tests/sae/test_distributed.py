"""Two gloo processes on CPU give the weights of one process on the concatenated batches.

Adam, not the default Signum: a sign step turns the float noise of a different reduction
order into a full step wherever a gradient is near zero, so only an optimizer that is smooth
in its gradient can agree with one process "up to float noise"."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from featlab.sae import train_sae

KW = dict(d_sae=32, k=3, tokens=16 * 64, batch_size=64, progress=False, seed=2, dead_tokens=256,
          optimizer="adam")  # fmt: skip


def _data() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(40, 10, generator=g)
    on = (torch.rand(2048, 40, generator=g) < 0.08).float()
    return (on * torch.rand(2048, 40, generator=g)) @ feats


KINDS = ("topk", "matching_pursuit")


def _kw(kind: str) -> dict:
    kw = dict(KW)
    if kind == "matching_pursuit":
        kw.pop("dead_tokens")
    return kw


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)  # fmt: skip
    try:
        states = {kind: train_sae(_data(), kind=kind, **_kw(kind)).state_dict() for kind in KINDS}
        if rank == 0:
            torch.save(states, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tmp_path):
    # one spawn for both kinds: starting the processes is the slow part
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    assert os.path.exists(out)
    ddp_states = torch.load(out)
    for kind in KINDS:
        single = train_sae(_data(), kind=kind, **_kw(kind)).state_dict()
        ddp = ddp_states[kind]
        for name, ref in single.items():
            if ref.is_floating_point():
                torch.testing.assert_close(ddp[name], ref, atol=2e-5, rtol=1e-4, msg=name)
            else:
                assert torch.equal(ddp[name], ref), f"{kind}: {name}"


HF_HOOK = "blocks.1.hook_resid_post"


def _hf_tokens() -> torch.Tensor:
    return torch.randint(3, 256, (64, 16), generator=torch.Generator().manual_seed(0))


def _hf_worker(rank: int, world: int, init_file: str, folder: str, out: str) -> None:
    """torchrun's job, by hand: every rank opens the same HF folder; rank 0 writes the
    activation cache, every rank trains on its own shards of it."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)  # fmt: skip
    try:
        from featlab.models import load_model
        from featlab.sae.activations import ActivationSource

        model = load_model(f"{folder}/hf")
        src = ActivationSource(model, HF_HOOK, _hf_tokens(), cache_dir=f"{folder}/cache")
        sae = train_sae(src, kind="topk", d_sae=32, k=4, tokens=64 * 12, batch_size=64,
                        progress=False, seed=1)
        states = [None] * world
        dist.all_gather_object(states, {k: v.clone() for k, v in sae.state_dict().items()})
        if rank == 0:
            torch.save(states, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_cache_and_train_from_an_hf_model(tmp_path):
    from transformers import AutoModelForCausalLM

    from featlab.models.hf.tiny import tiny_config

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny_config("qwen3_next")).save_pretrained(tmp_path / "hf")
    out = str(tmp_path / "states.pt")
    mp.spawn(_hf_worker, args=(2, str(tmp_path / "init"), str(tmp_path), out), nprocs=2,
             join=True)
    assert (tmp_path / "cache" / "manifest.json").is_file()  # written once, by rank 0
    first, second = torch.load(out)
    for name, value in first.items():  # data-parallel: both ranks end with the same SAE
        assert torch.equal(value, second[name]), name
    from featlab.models import load_model
    from featlab.sae import build_sae, evaluate
    from featlab.sae.activations import ActivationSource

    model = load_model(str(tmp_path / "hf"))
    fresh = torch.randint(3, 256, (8, 16), generator=torch.Generator().manual_seed(9))
    held_out = ActivationSource(model, HF_HOOK, fresh).collect()
    sae = build_sae(_config_like(first))
    sae.load_state_dict(first)
    assert evaluate(sae, held_out).fvu < 0.9  # it learned: predicting the mean gives 1


def _config_like(state: dict) -> object:
    from featlab.sae import make_config

    d_sae, d_in = state["W_dec"].shape
    return make_config("topk", int(d_in), int(d_sae), 4, hook_name=HF_HOOK)
