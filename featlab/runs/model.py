"""The MQAR model recipe: train a `HookedHybrid` on associative recall in a run folder.

Behind `featlab train-model` and the demo's first stage. The folder holds ``run.json``
(`featlab.runs.folder`), ``train_state.pt`` (checkpoints) and, once finished, the model
(``config.json`` with the MQAR task recorded, ``model.safetensors``). The same settings
again load the finished model or resume an interrupted run; other settings are refused
unless `overwrite`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featlab.errors import UserError
from featlab.runs.options import check_options, coerce_fields, option, result_settings

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

COMMAND = "train-model"


@dataclass(frozen=True)
class MQARModelConfig:
    """Train a HookedHybrid on MQAR in OUT (resumes an interrupted run; refuses other
    settings in OUT unless --overwrite); print its held-out accuracy."""

    layers: tuple[str, ...] = option(("gdn", "attn"), "Comma-separated mixers, e.g. conv,attn.")
    d_model: int = option(64, "Residual width.", gt=0)
    n_heads: int = option(2, "Heads per mixer.", gt=0)
    vocab_size: int = option(64, "MQAR vocabulary (keys: lower half).", gt=0)
    seq_len: int = option(64, "MQAR sequence length.", gt=0)
    num_kv_pairs: int = option(4, "Key-value pairs per MQAR sequence.", gt=0)
    n_train: int = option(20_000, "Training sequences.", gt=0)
    steps: int = option(1_200, "Optimizer steps.", gt=0)
    batch_size: int = option(64, "Sequences per step.", gt=0)
    lr: float = option(3e-3, "Peak AdamW learning rate.", gt=0, le=10)
    seed: int = option(0, "Seed for data, init and training.", ge=0)
    n_test: int = option(1_000, "Held-out sequences per accuracy row.", gt=0, result=False)
    out: Path = option(Path("runs/model"), "The run folder (model, checkpoint, run.json).",
                       result=False)
    overwrite: bool = option(False, "Replace a run with other settings in OUT.", result=False)
    checkpoint_every: int = option(200, "Checkpoint every N steps.", gt=0, result=False)
    checkpoint_seconds: float = option(60.0, "...and at least every S seconds.", gt=0,
                                       result=False)
    progress: bool = option(True, "Show a progress bar.", result=False)

    def __post_init__(self) -> None:
        coerce_fields(self)

    def check(self) -> None:
        """Every check that needs no torch: bounds, mixer names, the task's shape."""
        check_options(self)
        try:
            self.hybrid_config()
            self.mqar_config()
        except ValueError as err:
            raise UserError(str(err)) from None

    def hybrid_config(self) -> Any:
        from featlab.models.config import HybridConfig

        return HybridConfig(layers=self.layers, d_model=self.d_model, n_heads=self.n_heads,
                            d_vocab=self.vocab_size, n_ctx=self.seq_len, seed=self.seed)

    def mqar_config(self) -> Any:
        from featlab.datasets.mqar import MQARConfig

        return MQARConfig(vocab_size=self.vocab_size, seq_len=self.seq_len,
                          num_kv_pairs=self.num_kv_pairs)


@dataclass(frozen=True)
class MQARRun:
    """A model trained on MQAR: where it lives and how it did. `status` is "new",
    "resume" (finished an interrupted run) or "done" (loaded a finished run)."""

    model: Any  # HookedHybrid
    table: pd.DataFrame
    out: Path
    status: str

    @property
    def cached(self) -> bool:
        return self.status == "done"


def accuracy_rows(model: Any, mqar: Any, n_test: int, seed: int) -> list[dict[str, Any]]:
    """Held-out accuracy on the training task and on easier / repeated variants of it."""
    from featlab.datasets import make_mqar
    from featlab.models import evaluate_accuracy

    fewer = max(1, mqar.num_kv_pairs // 2)
    variants = {
        f"test ({mqar.num_kv_pairs} kv pairs)": mqar,
        f"fewer kv pairs ({fewer})": mqar.__class__(**{**asdict(mqar), "num_kv_pairs": fewer}),
        "repeated context": mqar.__class__(**{**asdict(mqar), "repeat_context": True}),
    }
    rows = []
    for name, task in variants.items():
        data = make_mqar(task, n_test, seed=seed + 1)
        rows.append({"eval set": name, "accuracy": evaluate_accuracy(model, *data.as_tuple())})
    return rows


def train_mqar_model(config: MQARModelConfig | None = None) -> MQARRun:
    """Train (or load, or resume) the model `config` describes; see the module docstring.

    >>> run = train_mqar_model(MQARModelConfig(layers=("conv", "attn"), steps=300,
    ...                                        out="runs/conv_attn"))
    >>> run.table        # held-out accuracy rows
    """
    from featlab._interrupt import stop_on_signals
    from featlab.runs.checks import checkpoint_errors
    from featlab.runs.folder import RunFolder
    from featlab.runs.tasks import mqar_task

    config = config or MQARModelConfig()
    config.check()
    folder = RunFolder(config.out, COMMAND, result_settings(config))
    status = folder.check(overwrite=config.overwrite)
    mqar = config.mqar_config()

    import pandas as pd

    from featlab.models import load_model, save_model, train_model

    if status == "done":
        model = load_model(config.out)
        summary = folder.summary()
        seconds = float(summary.get("train_seconds", float("nan")))
        if summary.get("n_test") == config.n_test:
            table = pd.DataFrame(summary["accuracy"])
        else:  # another evaluation size: measure again (the model is the same)
            table = pd.DataFrame(accuracy_rows(model, mqar, config.n_test, config.seed))
    else:
        from featlab.datasets import make_mqar

        train = make_mqar(mqar, config.n_train, seed=config.seed)
        folder.claim(overwrite=config.overwrite)
        t0 = time.perf_counter()
        with stop_on_signals(), checkpoint_errors():
            result = train_model(
                config.hybrid_config(), train.as_tuple(), steps=config.steps,
                batch_size=config.batch_size, lr=config.lr,
                warmup=min(100, config.steps // 10 + 1), seed=config.seed,
                checkpoint_dir=config.out, checkpoint_every=config.checkpoint_every,
                checkpoint_seconds=config.checkpoint_seconds, progress=config.progress,
            )  # fmt: skip
        seconds = time.perf_counter() - t0
        model = result.model
        save_model(model, config.out, task=mqar_task(mqar))
        table = pd.DataFrame(accuracy_rows(model, mqar, config.n_test, config.seed))
        folder.finish(accuracy=table.to_dict("records"), n_test=config.n_test,
                      train_seconds=seconds, resumed_from=result.resumed_from)
    table.insert(0, "model", "+".join(config.layers))
    table["params"] = sum(p.numel() for p in model.parameters())
    table["train seconds"] = round(seconds, 1)
    return MQARRun(model=model.eval(), table=table, out=Path(config.out), status=status)


__all__ = ["MQARModelConfig", "MQARRun", "accuracy_rows", "train_mqar_model"]
