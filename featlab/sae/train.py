"""Train one SAE (`train_sae`) or several on one activation stream (`train_saes`).

Each SAE has its own optimizer (`featlab.sae.optim`: Adam by default, with linear warm-up and
a linear decay to 0 over the last ``decay_frac`` of the steps, or schedule-free Signum / AdamW)
and its own learning rate (default: the optimizer's, scaled by 1 / sqrt(d_sae)). After every
backward the decoder gradient's component along each row is removed and, after every step,
the rows are renormalised. Checkpoints hold the SAEs (with their statistics buffers), the
optimizer states and the step; the learning rate and the data order are functions of the
step, so a resumed run ends bit-identical to an uninterrupted one on CPU.
Inside `featlab._interrupt.stop_on_signals` a SIGINT / SIGTERM stops training at the next
step after a checkpoint (`featlab.errors.Interrupted`); a run whose batch FVU stays far
above 1 stops with `featlab.errors.TrainingDiverged` (`featlab.sae.divergence`).

Under torch.distributed (``torchrun``) each rank trains on its own shard; gradients are
averaged and the per-batch latent statistics summed over ranks, DDP-style. For TopK and
Matching Pursuit (per-token selections) W ranks equal one process on the concatenated batch up
to float noise. BatchTopK and Feature Choice select within each rank's shard, so their codes
are those of the smaller per-rank batch (thresholds are averaged over ranks).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from featlab._atomic import atomic_path
from featlab._interrupt import stop_requested
from featlab.errors import CheckpointError, Interrupted, TrainingDiverged
from featlab.sae.base import SparseAutoencoder
from featlab.sae.config import TrainConfig, default_dead_tokens
from featlab.sae.divergence import DivergenceGuard, default_patience
from featlab.sae.optim import DEFAULT_OPTIMIZER, default_lr, finish, make_optimizer, schedule_free
from featlab.sae.registry import SAE_KINDS, build_sae, canonical_kind, make_config
from featlab.sae.stream import BatchStream

CHECKPOINT_NAME = "checkpoint.pt"
_SPEC_KEYS = ("kind", "d_sae", "k", "lr", "optimizer", "seed", "dtype")
_TRAIN_KEYS = (
    "tokens", "batch_size", "lr", "optimizer", "seed", "checkpoint_dir", "checkpoint_every",
    "checkpoint_seconds", "resume", "progress", "device", "hook_name", "model_name", "dtype",
    "warmup_steps", "decay_frac", "b_dec_init", "max_fvu", "callback",
)  # fmt: skip


def lr_scale(step: int, n_steps: int, warmup: int, decay_frac: float) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based)."""
    scale = min(1.0, (step + 1) / max(warmup, 1))
    decay_start = int(n_steps * (1.0 - decay_frac))
    if step >= decay_start and n_steps > decay_start:
        scale *= (n_steps - step) / (n_steps - decay_start)
    return scale


def train_sae(
    acts: Any,
    kind: str = "topk",
    d_sae: int = 1024,
    k: int | None = 32,
    tokens: int = 1_000_000,
    batch_size: int = 1024,
    lr: float | None = None,
    optimizer: str = DEFAULT_OPTIMIZER,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool = True,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> SparseAutoencoder:
    """Train one SAE of ``kind`` on ``acts`` and return it (in eval mode).

    acts: a tensor ``[n, d_in]`` (or ``[n, pos, d_in]``), an iterator of ``[batch, d_in]``
    tensors, or an activation source (``.batches(batch_size, seed)``, ``.d_in``,
    ``.hook_name``). k: active latents per token (mean for BatchTopK / Feature Choice, pursuit
    steps for Matching Pursuit; ignored by "relu"). optimizer: "adam", "signum" or "adam_sf"
    (`featlab.sae.optim`); lr: None for the optimizer's default at this width.
    checkpoint_every: steps between atomic checkpoints in ``checkpoint_dir`` (resumed from
    when ``resume``). Other keywords: the trainer's (hook_name, model_name, dtype,
    warmup_steps, decay_frac, b_dec_init, checkpoint_seconds, max_fvu, callback; see
    `train_saes`) and the kind's hyperparameters (e.g. ``aux_coef``, ``dead_tokens`` for
    TopK; a ``dead_tokens`` left at None becomes `featlab.sae.config.default_dead_tokens` of
    this run and is stored in the SAE's config);
    an unknown keyword raises a TypeError listing the valid ones.
    """
    trainer_kw = {key: kwargs.pop(key) for key in list(kwargs) if key in _TRAIN_KEYS}
    spec = {"kind": kind, "d_sae": d_sae, "k": k, "lr": lr, "optimizer": optimizer, **kwargs}
    return train_saes(
        acts, [spec], tokens=tokens, batch_size=batch_size, seed=seed,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume,
        progress=progress, device=device, **trainer_kw,
    )[0]  # fmt: skip


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _build(
    spec: dict[str, Any], d_in: int, seed: int, dtype: str, hook: Any, model: Any, window: int
) -> Any:
    spec = dict(spec)
    kind = spec.pop("kind", "topk")
    if kind not in SAE_KINDS:
        raise ValueError(f"unknown SAE kind {kind!r}; valid kinds: {', '.join(SAE_KINDS)}")
    lr = spec.pop("lr", None)
    optimizer = spec.pop("optimizer", DEFAULT_OPTIMIZER)
    d_sae = spec.pop("d_sae", 1024)
    k = spec.pop("k", 32)
    if canonical_kind(kind) == "relu":
        k = None  # a ReLU SAE has no k; train_sae's default must not trip the k <= d_sae check
    try:
        cfg = make_config(
            kind, d_in, d_sae, k, hook_name=hook, model_name=model,
            dtype=spec.pop("dtype", dtype), seed=spec.pop("seed", seed), **spec,
        )  # fmt: skip
    except TypeError as err:
        raise TypeError(f"{err}; trainer keywords: {', '.join(_SPEC_KEYS + _TRAIN_KEYS)}") from None
    if "dead_tokens" in cfg.hparams and cfg.hparams["dead_tokens"] is None:
        # resolved once, here, so the SAE's config (saved with it) says which window it used
        cfg = dataclasses.replace(cfg, hparams={**cfg.hparams, "dead_tokens": window})
    return cfg, optimizer, (lr if lr is not None else default_lr(d_sae, optimizer))


def train_saes(
    acts: Any,
    specs: list[dict[str, Any]],
    *,
    tokens: int = 1_000_000,
    batch_size: int = 1024,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool = True,
    device: str | torch.device | None = None,
    hook_name: str | None = None,
    model_name: str | None = None,
    dtype: str = "float32",
    warmup_steps: int | None = None,
    decay_frac: float = 0.2,
    b_dec_init: str = "geometric_median",
    checkpoint_seconds: float | None = None,
    max_fvu: float | None = 10.0,
    callback: Callable[[int, list[SparseAutoencoder], list[dict[str, float]]], None] | None = None,
) -> list[SparseAutoencoder]:
    """Train one SAE per spec on a single pass over ``acts``: every batch is drawn once and fed
    to each SAE. A spec is a dict with "kind", "d_sae", "k", optional "lr", "optimizer", "seed",
    "dtype" and the kind's hyperparameters. ``callback(step, saes, logs)`` runs after each step
    (logs: one dict per SAE with loss, mse, aux, l0, lr, fvu; plus dead_frac on logging steps:
    latents silent for the SAE's dead window, or the run's default one for kinds without AuxK).

    checkpoint_seconds: also checkpoint when this long has passed since the last one.
    max_fvu: stop with `TrainingDiverged` when an SAE's batch FVU stays above this after the
    warm-up (None: never). decay_frac applies to "adam" only: the schedule-free optimizers
    warm up and then hold the lr. The SAEs returned hold the weights the optimizer evaluates
    at (the schedule-free average); ``callback`` sees the training point."""
    if not specs:
        raise ValueError("train_saes needs at least one spec")
    rank, world = _dist()
    tcfg = TrainConfig(
        tokens=tokens, batch_size=batch_size, seed=seed, warmup_steps=warmup_steps,
        decay_frac=decay_frac, b_dec_init=b_dec_init, checkpoint_every=checkpoint_every,
    )  # fmt: skip
    stream = BatchStream(acts, batch_size, seed, rank, world)
    hook = hook_name if hook_name is not None else stream.hook_name
    dev = torch.device(device) if device is not None else torch.device("cpu")
    window = default_dead_tokens(tokens, batch_size)
    built = [_build(s, stream.d_in, seed, dtype, hook, model_name, window) for s in specs]
    saes = [build_sae(cfg).to(dev) for cfg, _, _ in built]
    names = [name for _, name, _ in built]
    lrs = [lr for _, _, lr in built]
    opts = [
        make_optimizer(name, sae.parameters(), lr, betas=tcfg.betas, eps=tcfg.eps)
        for sae, name, lr in zip(saes, names, lrs, strict=True)
    ]
    decays = [0.0 if schedule_free(name) else tcfg.decay_frac for name in names]
    n_steps = tcfg.n_steps
    warmup = tcfg.warmup_steps if tcfg.warmup_steps is not None else max(1, n_steps // 100)
    train_meta = {key: v for key, v in tcfg.to_dict().items() if key != "checkpoint_every"}
    meta = {"train": train_meta, "saes": [cfg.to_dict() for cfg, _, _ in built],
            "optimizers": names, "lrs": lrs}  # fmt: skip
    ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    start = 0
    if ckpt is not None and resume and ckpt.exists():
        start = _load_checkpoint(ckpt, meta, saes, opts)
    if world > 1:
        _broadcast_params(saes)

    guards = [DivergenceGuard(max_fvu, default_patience(n_steps), after_step=warmup)
              for _ in saes]
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, initial=start, desc="train_sae", unit="step")
    batches = stream.batches(start)
    last_save = time.perf_counter()
    for step in range(start, n_steps):
        try:
            x = next(batches).to(dev, saes[0].W_dec.dtype)
        except StopIteration:
            raise ValueError(
                f"the activation stream ended after {step} steps but tokens={tokens} needs "
                f"{n_steps} steps of {batch_size}; pass fewer tokens or more activations"
            ) from None
        if step == 0:
            sample = _gather_rows(x) if world > 1 else x
            for sae in saes:
                sae.init_from_sample(sample, tcfg.b_dec_init)
        log_now = bar is not None and (step % 10 == 0 or step == n_steps - 1)
        logs = [
            _step(sae, opt, x, lr * lr_scale(step, n_steps, warmup, decay), step, world,
                  log_now or callback is not None, window, hook)
            for sae, opt, lr, decay in zip(saes, opts, lrs, decays, strict=True)
        ]  # fmt: skip
        fvus = [lg["fvu"] for lg in logs] if world == 1 else _max_over_ranks(logs)
        for sae, guard, fvu, lr in zip(saes, guards, fvus, lrs, strict=True):
            guard.check(step, fvu, sae.kind, lr)
        if bar is not None:
            bar.update(1)
            if log_now:
                lg = logs[0]
                bar.set_postfix(
                    loss=f"{lg['loss']:.4g}", l0=f"{lg['l0']:.1f}", fvu=f"{lg['fvu']:.3f}",
                    dead=f"{lg['dead_frac']:.2f}",
                )  # fmt: skip
        if callback is not None:
            callback(step, saes, logs)
        done = step + 1
        now = time.perf_counter()
        due = bool(tcfg.checkpoint_every) and done % tcfg.checkpoint_every == 0
        due = due or (checkpoint_seconds is not None and now - last_save >= checkpoint_seconds)
        if ckpt is not None and due:
            _save_checkpoint(ckpt, meta, saes, opts, done, rank)
            last_save = now
        signal_name = stop_requested()
        if signal_name is not None and done < n_steps:
            if bar is not None:
                bar.close()
            if ckpt is not None and not due:
                _save_checkpoint(ckpt, meta, saes, opts, done, rank)
            raise Interrupted("SAE training", done, n_steps, ckpt, signal_name)
    if bar is not None:
        bar.close()
    if ckpt is not None and start < n_steps:
        _save_checkpoint(ckpt, meta, saes, opts, n_steps, rank)
    for sae, opt in zip(saes, opts, strict=True):
        finish(opt)
        sae.normalize_decoder()  # an average of unit rows is shorter than one
        sae.eval()
    return saes


def _step(
    sae: SparseAutoencoder,
    opt: torch.optim.Optimizer,
    x: Tensor,
    lr: float,
    step: int,
    world: int,
    with_metrics: bool,
    window: int | None = None,
    hook: str | None = None,
) -> dict[str, float]:
    sae.train()
    out = sae.training_loss(x)
    if not bool(torch.isfinite(out.loss)):
        # A NaN or inf in x always reaches the loss (its squared error against x), so the
        # batch is checked only here rather than on every step
        if not bool(torch.isfinite(x).all()):
            raise ValueError(
                f"non-finite activations (NaN or inf) in the batch of step {step} from hook "
                f"{hook!r}; check the model run or the activation cache feeding the SAE"
            )
        raise TrainingDiverged(
            f"the {sae.kind} SAE's loss became {float(out.loss)} at step {step}; lower "
            f"{{opt:lr}} (now {lr:.3g}) or check the activations' scale"
        )
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    counts, extra, n_tok = out.counts, out.extra, x.shape[0]
    if world > 1:
        counts, extra, n_tok = _all_reduce(sae, counts, extra, n_tok, world)
    sae.remove_parallel_grad()
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()
    sae.normalize_decoder()
    sae.update_stats(counts, n_tok, extra)
    log = {
        "loss": float(out.loss.detach()),
        "mse": float(out.mse.detach()),
        "aux": float(out.aux.detach()),
        "l0": out.l0,
        "lr": lr,
    }
    with torch.no_grad():  # every step: the divergence guard reads it
        var = (x - x.mean(0)).pow(2).sum()
        # out.mse is the squared error summed over d_in, averaged over the batch's rows
        log["fvu"] = log["mse"] * x.shape[0] / max(float(var), 1e-12)
    if with_metrics:
        with torch.no_grad():
            # kinds without AuxK have no dead_tokens of their own: the run's default window
            own = getattr(sae.hp, "dead_tokens", None) or window or sae.dead_window()
            seen = min(int(own), int(sae.tokens_seen))
            log["dead_frac"] = float((sae.tokens_since_fired >= seen).float().mean())
    return log


def _all_reduce(
    sae: SparseAutoencoder, counts: Tensor, extra: dict[str, Tensor], n_tok: int, world: int
) -> tuple[Tensor, dict[str, Tensor], int]:
    import torch.distributed as dist

    grads = [p.grad for p in sae.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    off = 0
    for g in grads:
        g.copy_(flat[off : off + g.numel()].view_as(g))
        off += g.numel()
    counts = counts.clone()
    dist.all_reduce(counts)
    extra = {key: val.clone() for key, val in extra.items()}
    for val in extra.values():
        dist.all_reduce(val)
        val /= world
    return counts, extra, n_tok * world


def _max_over_ranks(logs: list[dict[str, float]]) -> list[float]:
    """Every rank must stop together, so the guard judges the worst rank's FVU."""
    import torch.distributed as dist

    t = torch.tensor([lg["fvu"] for lg in logs], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def _gather_rows(x: Tensor) -> Tensor:
    import torch.distributed as dist

    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def _broadcast_params(saes: list[SparseAutoencoder]) -> None:
    import torch.distributed as dist

    for sae in saes:
        for t in list(sae.parameters()) + list(sae.buffers()):
            dist.broadcast(t.data, src=0)


def _save_checkpoint(
    path: Path,
    meta: dict[str, Any],
    saes: list[SparseAutoencoder],
    opts: list[torch.optim.Optimizer],
    step: int,
    rank: int,
) -> None:
    if rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "meta": meta,
            "step": step,
            "saes": [sae.state_dict() for sae in saes],
            "opts": [opt.state_dict() for opt in opts],
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _load_checkpoint(
    path: Path,
    meta: dict[str, Any],
    saes: list[SparseAutoencoder],
    opts: list[torch.optim.Optimizer],
) -> int:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(f"cannot read the checkpoint {path} ({err})", path,
                              "delete it or pass resume=False") from None
    if state.get("meta") != meta:
        raise CheckpointError(
            f"the checkpoint {path} was written by a run with different settings "
            f"(saved: {state.get('meta')}, now: {meta})", path,
            "use another checkpoint_dir or pass resume=False")
    for sae, sd, opt, osd in zip(saes, state["saes"], opts, state["opts"], strict=True):
        sae.load_state_dict(sd)
        opt.load_state_dict(osd)
    return int(state["step"])
