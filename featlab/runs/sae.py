"""An SAE training run: a saved model's hook -> activations -> trained SAE -> metrics.

Behind `featlab train-sae` and the demo's SAE stage. The run folder holds::

    run.json        the settings, their fingerprint and the status (`featlab.runs.folder`)
    checkpoints/    the trainer's checkpoint (an interrupted run resumes from here)
    sae/            the finished SAE, an SAELens directory (`featlab.sae.save_sae`)
    metrics.json    held-out metrics (FVU, L0, dead fraction, CE-loss recovered, ...)
    act_cache/      the activation cache, only with cache=True

Tokens come from a token file, from text (``--dataset``: tokenized by the model's tokenizer
and packed into ``--context-size`` windows, `featlab.datasets.text`), or else from the task
the model records (fresh sequences, with a held-out seed for evaluation); a model without a
recorded task needs one of the first two. CE-loss recovered scores an MQAR model at its query
positions (the task's labels) and text at every next token (``ce_positions`` in the metrics).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featlab.errors import UserError
from featlab.runs.options import check_options, coerce_fields, option, result_settings
from featlab.runs.text_input import (
    context_size_field,
    dataset_field,
    prepend_bos_field,
    text_column_field,
)
from featlab.sae.config import DEFAULT_OPTIMIZER, OPTIMIZERS

COMMAND = "train-sae"
SAE_DIR, CHECKPOINTS, METRICS = "sae", "checkpoints", "metrics.json"


@dataclass(frozen=True)
class SAERunConfig:
    """Train an SAE on one hook of a saved model; print held-out FVU, L0 and CE-loss
    recovered (resumes an interrupted run; refuses other settings in OUT unless
    --overwrite)."""

    model: Path = option(help="Model: a featlab or Hugging Face folder, hf:<hub id> or "
                         "tl:<TransformerLens name>.")
    hook: str = option(help="Hook name, e.g. blocks.0.hook_resid_post.")
    kind: str = option("topk", "relu, topk, batchtopk (mutual_choice), feature_choice, "
                       "matching_pursuit, gated.")
    width: int | None = option(None, "SAE latents d_sae (default 8 x d_in).", gt=0)
    k: int = option(8, "Active latents per token (Matching Pursuit: steps).", gt=0)
    tokens: int = option(200_000, "Training activations (tokens) to draw.", gt=0)
    tokens_file: Path | None = option(None, "Token ids [n_seq, pos] (.pt/.npy/.safetensors); "
                                      "default: fresh sequences of the model's task.")
    dataset: str | None = dataset_field()
    text_column: str = text_column_field()
    context_size: int = context_size_field()
    prepend_bos: bool = prepend_bos_field()
    batch_size: int = option(1024, "SAE training batch (activation rows).", gt=0)
    optimizer: str = option(DEFAULT_OPTIMIZER, "adam (warm-up, linear decay), signum "
                            "(schedule-free sign descent, as sparsify) or adam_sf "
                            "(schedule-free AdamW).", choices=OPTIMIZERS)
    lr: float | None = option(None, "Learning rate (default: the optimizer's, e.g. Adam "
                              "4e-3 / sqrt(max(width, 1024) / 2^14)).", gt=0)
    seed: int = option(0, "Seed for data order, init and training.", ge=0)
    n_eval_seqs: int = option(128, "Held-out sequences for the metrics.", gt=0)
    model_batch_size: int = option(64, "Sequences per model forward pass.", gt=0,
                                   result=False)
    cache: bool = option(False, "Write/reuse an activation cache in OUT/act_cache.",
                         result=False)
    out: Path = option(Path("runs/sae"), "The run folder: sae/, checkpoints/, metrics.json.",
                       result=False)
    overwrite: bool = option(False, "Replace a run with other settings in OUT.", result=False)
    checkpoint_every: int = option(500, "Checkpoint every N steps.", gt=0, result=False)
    checkpoint_seconds: float = option(60.0, "...and at least every S seconds.", gt=0,
                                       result=False)
    progress: bool = option(True, "Show a progress bar.", result=False)

    def __post_init__(self) -> None:
        coerce_fields(self)

    def check(self) -> dict[str, Any]:
        """Checks that need no torch; returns the model folder's parsed config."""
        from featlab.runs import checks

        check_options(self)
        checks.check_kind(self.kind)
        from featlab.sae.registry import uses_k

        if self.width is not None and uses_k(self.kind) and self.k > self.width:
            raise UserError(f"{{opt:k}} {self.k} is more than {{opt:width}} {self.width}")
        if self.tokens < self.batch_size:
            raise UserError(f"{{opt:tokens}} {self.tokens} is less than one batch "
                            f"({{opt:batch_size}} {self.batch_size})")
        info = checks.model_info(self.model)
        checks.check_hook(info, self.hook)
        if self.dataset is not None and self.tokens_file is not None:
            raise UserError("pass {opt:dataset} or {opt:tokens_file}, not both")
        checks.check_tokens_file(self.tokens_file, "tokens_file")
        checks.check_dataset(self.dataset, "dataset")
        if (self.tokens_file is None and self.dataset is None
                and not isinstance(info.get("task"), dict)):
            raise UserError(f"the model in {self.model} records no task to draw tokens from; "
                            "pass {opt:dataset} or {opt:tokens_file}")
        return info


@dataclass
class SAERun:
    """What `train_sae_run` returns. status: "new", "resume" or "done" (loaded)."""

    sae: Any  # featlab.sae.SparseAutoencoder
    metrics: dict[str, Any]
    out: Path
    token_source: str
    status: str


def _identity(config: SAERunConfig) -> dict[str, Any]:
    """The result-changing settings, with the model and token file named by what they hold
    (a model retrained in the same folder is another run; the same model reached by another
    path, or a moved folder, is the same run)."""
    from featlab.runs.checks import file_fingerprint, model_identity

    settings = result_settings(config)
    settings["model"] = model_identity(config.model)
    if config.tokens_file is not None:
        settings["tokens_file"] = file_fingerprint(Path(config.tokens_file))
    if config.dataset is not None:
        from featlab.runs.checks import dataset_identity

        settings["dataset"] = dataset_identity(config.dataset)
    return settings


def _hold_out(rows: Any, config: SAERunConfig, option: str, what: str) -> tuple[Any, Any]:
    """(train rows, the last n_eval_seqs rows held out for the metrics)."""
    if len(rows) <= config.n_eval_seqs:
        raise UserError(f"{{opt:{option}}} {getattr(config, option)} gives {len(rows)} {what}; "
                        f"it needs more than {{opt:n_eval_seqs}} {config.n_eval_seqs} (held "
                        "out for the metrics)")
    return rows[: -config.n_eval_seqs], rows[-config.n_eval_seqs:]


def _tokens(config: SAERunConfig, task: dict[str, Any] | None, n_ctx: int,
            model: Any) -> tuple[Any, Any, Any, str]:
    """(train tokens, held-out tokens, their labels or None for next-token loss, where they
    came from)."""
    from featlab.runs.checks import user_errors

    if config.dataset is not None:
        from featlab.runs.text_input import dataset_windows, windows_for_tokens

        n_train = windows_for_tokens(config.tokens, config.context_size)
        windows = dataset_windows(config, model, n_train + config.n_eval_seqs, config.seed)
        return (*_hold_out(windows, config, "dataset", f"windows of {config.context_size} "
                           "tokens"), None,
                f"text {config.dataset} ({len(windows)} windows of {config.context_size})")

    if config.tokens_file is not None:
        from featlab.datasets.tokens import load_tokens

        with user_errors("tokens_file"):
            all_toks = load_tokens(config.tokens_file)
        return (*_hold_out(all_toks, config, "tokens_file", "sequences"), None,
                f"tokens file {config.tokens_file}")
    from featlab.runs.tasks import task_sequences, task_tokens

    assert task is not None  # checked by SAERunConfig.check
    n_seq = math.ceil(config.tokens / int(task.get("context_size", n_ctx)))
    tokenizer = getattr(model, "tokenizer", None)
    with user_errors("model"):
        train = task_tokens(task, n_seq, config.seed, tokenizer, part="train")
        held, labels = task_sequences(task, config.n_eval_seqs, config.seed + 10_007,
                                      tokenizer, part="held_out")
    where = (f"the model's text {task['dataset']} (held-out documents for the metrics)"
             if task["name"] == "text" else f"fresh {task['name']} sequences (the model's task)")
    return train, held, labels, where


def _data_record(config: SAERunConfig, info: dict[str, Any], model: Any) -> dict[str, Any]:
    """What the SAE's cfg.json says it was trained on: dataset_path, prepend_bos and, for
    text, the tokenizer."""
    if config.tokens_file is not None:  # ids as given: featlab adds no BOS
        return {"dataset_path": str(config.tokens_file), "prepend_bos": False}
    task = info.get("task") or {}
    if config.dataset is None and task.get("name") != "text":
        return {"dataset_path": f"featlab:{task['name']}", "prepend_bos": False}
    from featlab.datasets.text import tokenizer_identity

    text = {"tokenizer_name": tokenizer_identity(model.tokenizer)}
    if config.dataset is not None:
        return {"dataset_path": config.dataset, "prepend_bos": config.prepend_bos, **text}
    return {"dataset_path": task["dataset"], "prepend_bos": bool(task["prepend_bos"]), **text}


def train_sae_run(config: SAERunConfig) -> SAERun:
    """Train (or load, or resume) the SAE `config` describes; see the module docstring."""
    from featlab._interrupt import stop_on_signals
    from featlab.runs.checks import checkpoint_errors
    from featlab.runs.checks import user_errors
    from featlab.runs.folder import RunFolder

    info = config.check()
    out = Path(config.out)
    folder = RunFolder(out, COMMAND, _identity(config))
    status = folder.check(overwrite=config.overwrite)
    if status == "done":
        from featlab.sae import load_sae

        with user_errors("out"):
            sae = load_sae(out / SAE_DIR)
            metrics = json.loads((out / METRICS).read_text())
        return SAERun(sae, metrics, out, folder.summary().get("token_source", ""), status)

    from featlab.models.io import load_model
    from featlab.sae import evaluate, save_sae, train_sae
    from featlab.sae.activations import ActivationSource

    with user_errors("model"):
        model = load_model(str(config.model))
    with user_errors("hook"):
        from featlab.models.protocol import check_hook_name

        check_hook_name(model, config.hook)
    train_toks, eval_toks, eval_labels, where = _tokens(config, info.get("task"),
                                                        int(model.cfg.n_ctx), model)
    if config.tokens_file is not None:
        from featlab.runs.checks import check_token_range

        check_token_range(train_toks, int(model.cfg.d_vocab), "tokens_file")
    folder.claim(overwrite=config.overwrite)  # the inputs are good: the run may begin
    with user_errors("tokens_file"):
        src = ActivationSource(model, config.hook, train_toks, batch_size=config.model_batch_size,
                               seed=config.seed,
                               cache_dir=out / "act_cache" if config.cache else None)
    d_sae = config.width if config.width is not None else 8 * src.d_in
    with stop_on_signals(), checkpoint_errors():
        sae = train_sae(
            src, kind=config.kind, d_sae=d_sae, k=config.k, tokens=config.tokens,
            batch_size=config.batch_size, lr=config.lr, optimizer=config.optimizer,
            seed=config.seed, checkpoint_dir=out / CHECKPOINTS, checkpoint_every=config.checkpoint_every,
            checkpoint_seconds=config.checkpoint_seconds, progress=config.progress,
            hook_name=config.hook, model_name=str(config.model),
            context_size=int(train_toks.shape[-1]), **_data_record(config, info, model),
        )  # fmt: skip
    eval_src = ActivationSource(model, config.hook, eval_toks, batch_size=config.model_batch_size)
    metrics = evaluate(sae, eval_src.collect(), model=model, tokens=eval_toks,
                       labels=eval_labels).to_dict()
    metrics["ce_positions"] = "next token" if eval_labels is None else "task labels"
    if not metrics["fvu"] <= 1.0:
        print(f"featlab train-sae: warning: held-out FVU {metrics['fvu']:.3g} is above 1: the "
              "SAE reconstructs worse than the activations' mean (try a lower learning rate)",
              file=sys.stderr)
    save_sae(sae, out / SAE_DIR)
    from featlab._atomic import atomic_write_text

    atomic_write_text(out / METRICS, json.dumps(metrics, indent=2) + "\n")
    folder.finish(token_source=where, d_sae=d_sae, n_train_seqs=len(train_toks),
                  n_eval_seqs=len(eval_toks), fvu=metrics["fvu"], l0=metrics["l0"])
    return SAERun(sae, metrics, out, where, status)


__all__ = ["SAERun", "SAERunConfig", "train_sae_run"]
