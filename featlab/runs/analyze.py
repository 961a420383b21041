"""An analyze run: a saved model and SAE folders over tokens, into a feature store.

Behind `featlab analyze` and the demo's analyze stage. Each SAE gets a store id, chosen by
the user or taken from its run folder's name; `featlab.store.analyze` refuses to replace an
id that holds another analysis unless `overwrite` (see `featlab.store.ids`), resumes an
interrupted pass from the store's checkpoint, and does nothing when the same analysis is
already stored. The model and SAE folders are recorded (relative to the store) so the app's
prompt view finds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featlab.errors import UserError
from featlab.runs.options import check_options, coerce_fields, option
from featlab.runs.text_input import (
    context_size_field,
    dataset_field,
    prepend_bos_field,
    text_column_field,
)


@dataclass(frozen=True)
class AnalyzeRunConfig:
    """Run a model and its SAE(s) over token sequences and fill a feature store
    (resumable; a stored id is never replaced without --overwrite)."""

    model: Path = option(help="Model: a featlab or Hugging Face folder, hf:<hub id> or "
                         "tl:<TransformerLens name>.")
    sae: tuple[Path, ...] = option(help="A train-sae run folder or an SAELens directory; "
                                   "repeatable.")
    id: tuple[str, ...] = option((), "Store id of each --sae, in order (default: its run "
                                 "folder's name); repeatable.", repeat=True)
    tokens: Path | None = option(None, "Token ids [n_seq, pos] (.pt/.npy/.safetensors); "
                                 "default: fresh sequences of the model's task.")
    dataset: str | None = dataset_field()
    text_column: str = text_column_field()
    context_size: int = context_size_field()
    prepend_bos: bool = prepend_bos_field()
    n_seq: int | None = option(None, "Use the first N sequences (model's task or --dataset: "
                               "draw N, default 1024).", gt=0)
    store: Path = option(Path("results/store"), "Feature store folder to fill.")
    batch_size: int = option(32, "Sequences per batch.", gt=0)
    n_examples: int = option(20, "Top examples (and samples per band) per feature.", gt=0)
    quantile_bands: int = option(4, "Activation quantile bands sampled per feature.", gt=0)
    context_window: int = option(8, "Tokens kept each side of an example's peak.", ge=0)
    seed: int = option(0, "Seed of the band sampling (and of drawn task sequences).", ge=0)
    overwrite: bool = option(False, "Replace stored ids (and a checkpoint) from another "
                             "analysis.", result=False)
    checkpoint_every: int = option(100, "Checkpoint every N batches.", gt=0, result=False)
    checkpoint_seconds: float = option(60.0, "...and at least every S seconds.", gt=0,
                                       result=False)
    progress: bool = option(True, "Show a progress bar.", result=False)

    def __post_init__(self) -> None:
        coerce_fields(self)

    def check(self) -> tuple[dict[str, Any], dict[str, Path]]:
        """Checks that need no torch; returns (the model's parsed config, id -> SAE dir)."""
        from featlab.runs import checks

        check_options(self)
        info = checks.model_info(self.model)
        if self.id and len(self.id) != len(self.sae):
            raise UserError(f"{len(self.id)} {{opt:id}} for {len(self.sae)} {{opt:sae}}: give "
                            "one id per SAE, in the same order, or none")
        dirs: dict[str, Path] = {}
        for i, path in enumerate(self.sae):
            sae_dir, cfg, name = checks.sae_folder(path)
            sid = self.id[i] if self.id else name
            if not sid.strip():
                raise UserError("{opt:id} must not be empty")
            if sid in dirs:
                raise UserError(f"two SAEs would get the store id {sid!r}; name them with "
                                "{opt:id} (one per {opt:sae})")
            hook = cfg.get("hook_name")
            if hook:
                checks.check_hook(info, hook, option="sae")
            dirs[sid] = sae_dir
        if self.dataset is not None and self.tokens is not None:
            raise UserError("pass {opt:dataset} or {opt:tokens}, not both")
        checks.check_tokens_file(self.tokens, "tokens")
        checks.check_dataset(self.dataset, "dataset")
        checks.check_store_folder(self.store)
        if (self.tokens is None and self.dataset is None
                and not isinstance(info.get("task"), dict)):
            raise UserError(f"the model in {self.model} records no task to draw sequences "
                            "from; pass {opt:dataset} or {opt:tokens}")
        return info, dirs


def analyze_run(config: AnalyzeRunConfig) -> Any:
    """Fill `config.store`; returns the `saes` rows of the analysed ids (a DataFrame)."""
    from featlab._interrupt import stop_on_signals
    from featlab.runs.checks import user_errors
    from featlab.runs.tasks import task_tokens, task_vocab

    info, dirs = config.check()
    from featlab.models.io import load_model
    from featlab.sae import load_sae
    from featlab.store import analyze

    with user_errors("model"):
        model = load_model(str(config.model))
    saes = {}
    for sid, path in dirs.items():
        with user_errors("sae"):
            saes[sid] = load_sae(path)
    task = info.get("task")
    if config.tokens is not None:
        from featlab.datasets.tokens import load_tokens

        with user_errors("tokens"):
            tokens = load_tokens(config.tokens, config.n_seq)
    elif config.dataset is not None:
        from featlab.runs.text_input import dataset_windows

        tokens = dataset_windows(config, model, config.n_seq or 1024, config.seed + 13)
    else:
        # a language model's held-out documents: features are read on text it never saw
        with user_errors("model"):
            tokens = task_tokens(task, config.n_seq or 1024, config.seed + 13,
                                 getattr(model, "tokenizer", None), part="held_out")
    with stop_on_signals():
        return analyze(
            model, saes, tokens, config.store, batch_size=config.batch_size,
            n_examples=config.n_examples, quantile_bands=config.quantile_bands,
            context_window=config.context_window, seed=config.seed,
            overwrite=config.overwrite, progress=config.progress,
            vocab=task_vocab(task), model_name=_model_name(config.model),
            checkpoint_every=config.checkpoint_every,
            checkpoint_seconds=config.checkpoint_seconds,
            model_path=config.model, sae_paths=dirs,
        )  # fmt: skip


def _model_name(source: Path) -> str:
    text = str(source)
    return text if text.startswith(("hf:", "tl:")) else Path(source).resolve().name


__all__ = ["AnalyzeRunConfig", "analyze_run"]
