"""Training loop for hooked models: AdamW, linear warm-up + cosine decay, tqdm, checkpoints.

A checkpoint (``train_state.pt``, written atomically every `checkpoint_every` steps or
`checkpoint_seconds` seconds, whichever comes first) holds the model, optimizer, scheduler,
the batch sampler's generator, torch's RNG state, the step and the loss history, so a run
interrupted at any point and restarted with the same arguments ends bit-identical (on CPU) to
one that never stopped. Inside `featlab._interrupt.stop_on_signals` a SIGINT / SIGTERM stops
the loop at the next step boundary, after a checkpoint (`featlab.errors.Interrupted`).

Data is either ``(inputs, labels)`` (labels ``[n, pos]`` aligned with the inputs, ``-100``
where nothing is scored, as `featlab.datasets.mqar` makes) or a token tensor ``[n, pos]``
trained on next-token prediction.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from featlab._atomic import atomic_write_bytes
from featlab._interrupt import stop_requested
from featlab.errors import CheckpointError, Interrupted, TrainingDiverged
from featlab.models.config import HybridConfig
from featlab.models.hybrid import HookedHybrid, lm_cross_entropy
from featlab.models.io import save_model

STATE_NAME = "train_state.pt"
IGNORE_INDEX = -100

Data = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass
class TrainResult:
    """What `train_model` returns: the trained model (in eval mode), its loss history and the
    number of steps taken (fewer than asked when a callback stopped training early)."""

    model: nn.Module
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    resumed_from: int = 0

    @property
    def final_loss(self) -> float:
        tail = self.losses[-20:]
        return float(sum(tail) / len(tail)) if tail else float("nan")


def _split(data: Data) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(data, torch.utils.data.TensorDataset):
        data = tuple(data.tensors)  # type: ignore[assignment]
    if isinstance(data, torch.Tensor):
        return data, None
    if isinstance(data, tuple | list) and len(data) == 2:
        inputs, labels = data
        if inputs.shape != labels.shape:
            raise ValueError(
                f"inputs {tuple(inputs.shape)} and labels {tuple(labels.shape)} must have the "
                "same shape [n, pos] (label t scores the logits at position t)"
            )
        return inputs, labels
    raise TypeError("data must be a token tensor [n, pos] or a pair (inputs, labels)")


def batch_loss(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Mean cross-entropy on labelled positions (or next-token loss without labels)."""
    logits = model(inputs)
    if labels is None:
        return lm_cross_entropy(logits, inputs)
    return F.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten().to(logits.device), ignore_index=IGNORE_INDEX
    )


def lr_lambda(step: int, *, warmup: int, steps: int, min_ratio: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to `min_ratio` at `steps`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    # Decay matrices only; gains and biases stay free, as is standard for transformers.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    free = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": free, "weight_decay": 0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), foreach=False)


def train_model(
    model_or_cfg: nn.Module | HybridConfig,
    data: Data,
    *,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    warmup: int = 100,
    min_lr_ratio: float = 0.1,
    grad_clip: float | None = 1.0,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 200,
    checkpoint_seconds: float | None = None,
    resume: bool = True,
    progress: bool = True,
    callback: Callable[[int, float], bool | None] | None = None,
) -> TrainResult:
    """Train `model_or_cfg` (a model, or a `HybridConfig` to build one) on `data`.

    Args:
        data: ``(inputs, labels)`` LongTensors ``[n, pos]`` or tokens ``[n, pos]``.
        steps: optimizer steps in all (the schedule's length; keep it fixed across a resume).
        checkpoint_dir: where ``train_state.pt`` goes every `checkpoint_every` steps (and
            every `checkpoint_seconds`, when given) and the final model (`save_model`) at the
            end; with `resume`, an existing state there is loaded and training continues from
            its step.
        callback: called as ``callback(step, loss)`` after each step (and its checkpoint);
            returning True stops training there (early stopping; `TrainResult.steps` says
            where). The schedule still spans `steps`.
    """
    model = HookedHybrid(model_or_cfg) if isinstance(model_or_cfg, HybridConfig) else model_or_cfg
    inputs, labels = _split(data)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = _optimizer(model, lr, weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: lr_lambda(s, warmup=warmup, steps=steps, min_ratio=min_lr_ratio),
    )
    losses: list[float] = []
    start = 0
    ckpt = Path(checkpoint_dir) / STATE_NAME if checkpoint_dir is not None else None
    if ckpt is not None and resume and ckpt.is_file():
        start, losses = _load_state(ckpt, model, opt, sched, gen, steps)

    if progress:
        from tqdm.auto import tqdm
    else:  # no bar at all: tqdm.auto warns in a notebook without ipywidgets even when disabled
        from tqdm import tqdm

    model.train()
    t0 = last_save = time.perf_counter()
    bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress)
    for step in bar:
        idx = torch.randint(0, inputs.shape[0], (batch_size,), generator=gen)
        x = inputs[idx].to(device)
        y = None if labels is None else labels[idx].to(device)
        loss = batch_loss(model, x, y)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the training loss became {loss.item()} at step {step}; lower {{opt:lr}} "
                f"(now {lr:g}) or check the data"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        done = step + 1
        now = time.perf_counter()
        due = done % checkpoint_every == 0 or done == steps or (
            checkpoint_seconds is not None and now - last_save >= checkpoint_seconds)
        if ckpt is not None and due:
            _save_state(ckpt, model, opt, sched, gen, done, steps, losses)
            last_save = now
        signal_name = stop_requested()
        if signal_name is not None and done < steps:
            bar.close()
            if ckpt is not None and not due:
                _save_state(ckpt, model, opt, sched, gen, done, steps, losses)
            raise Interrupted("training", done, steps, ckpt, signal_name)
        if callback is not None and callback(done, losses[-1]):
            steps_run = done
            if ckpt is not None:
                _save_state(ckpt, model, opt, sched, gen, done, steps, losses)
            break
    else:
        steps_run = steps
    bar.close()
    model.eval()
    if checkpoint_dir is not None:
        save_model(model, checkpoint_dir)
    return TrainResult(
        model=model,
        losses=losses,
        steps=steps_run,
        seconds=time.perf_counter() - t0,
        resumed_from=start,
    )


def _save_state(
    path: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    gen: torch.Generator,
    step: int,
    steps: int,
    losses: list[float],
) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "step": step,
        "steps": steps,
        "losses": losses,
        "config": getattr(getattr(model, "cfg", None), "to_dict", dict)(),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_state(
    path: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    gen: torch.Generator,
    steps: int,
) -> tuple[int, list[float]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which and how to recover
        raise CheckpointError(f"cannot read checkpoint {path} ({err})", path,
                              "delete it to start over") from err
    cfg = getattr(getattr(model, "cfg", None), "to_dict", dict)()
    if state["config"] != cfg:
        raise CheckpointError(f"checkpoint {path} was written for another model config", path,
                              "use another checkpoint_dir or pass resume=False")
    if state["steps"] != steps:
        raise CheckpointError(
            f"checkpoint {path} belongs to a {state['steps']}-step run but steps={steps} (the "
            "schedule would differ)", path, "pass the same steps or resume=False")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), list(state["losses"])


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 256
) -> float:
    """Fraction of labelled positions (label != -100) where the argmax logit is the label."""
    was_training = model.training
    model.eval()
    correct = total = 0
    device = next(model.parameters()).device
    for i in range(0, inputs.shape[0], batch_size):
        x = inputs[i : i + batch_size].to(device)
        y = labels[i : i + batch_size].to(device)
        mask = y != IGNORE_INDEX
        pred = model(x).argmax(-1)
        correct += int((pred[mask] == y[mask]).sum())
        total += int(mask.sum())
    model.train(was_training)
    if total == 0:
        raise ValueError("labels have no scored position (all are -100)")
    return correct / total


__all__ = ["TrainResult", "batch_loss", "evaluate_accuracy", "lr_lambda", "train_model"]
