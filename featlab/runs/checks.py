"""Checks of what a run is pointed at, cheap enough to run before torch is imported.

A model folder is checked through its ``config.json`` (which records the hook names), an
SAE folder through its ``cfg.json``, a token file by its name; the errors name the option
the path came from. `user_errors` turns the library's own errors about a file the user
named (missing, corrupt, of the wrong shape) into a `UserError` with the same wording.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from featlab.errors import UserError
from featlab.runs.folder import read_run

SAE_CFG = "cfg.json"


@contextmanager
def user_errors(option: str | None = None) -> Iterator[None]:
    """Within the block, errors about a user's file or value become a `UserError` (prefixed
    by ``{opt:option}`` when given). Bugs (other exception types) pass through."""
    from featlab.store.errors import StoreError

    try:
        yield
    except UserError:
        raise
    except (OSError, ValueError, KeyError, StoreError) as err:
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        raise UserError(f"{{opt:{option}}}: {text}" if option else text) from err


@contextmanager
def checkpoint_errors() -> Iterator[None]:
    """A trainer's `CheckpointError` (worded for the library) as the run layer's fix."""
    from featlab.errors import CheckpointError

    try:
        yield
    except CheckpointError as err:
        raise UserError(f"{err.problem}; pass {{opt:overwrite=True}} to start the run again "
                        "from scratch") from err


def model_info(source: Path | str, option: str = "model") -> dict[str, Any]:
    """A model folder's parsed config (`featlab.models.io.read_model_info`); {} for a model
    named ``hf:<id>`` / ``tl:<name>`` (nothing to read before it is downloaded)."""
    from featlab.models.hf.loading import NAME_PREFIXES
    from featlab.models.io import read_model_info

    if str(source).startswith(NAME_PREFIXES):
        return {}
    with user_errors(option):
        return read_model_info(source)


def model_identity(source: Path | str) -> str:
    """What names a model by content: a finished train-model run's fingerprint, else a hash
    of the folder's weight files, else (a hub / TransformerLens name) the name itself."""
    import hashlib

    from featlab.models.hf.loading import NAME_PREFIXES, WEIGHT_PATTERNS

    if str(source).startswith(NAME_PREFIXES):
        return str(source)
    run = read_run(source)
    if run is not None and run.get("status") == "done":
        return str(run.get("fingerprint"))
    files = sorted(f for pattern in (*WEIGHT_PATTERNS, "model.safetensors")
                   for f in Path(source).glob(pattern))
    h = hashlib.sha256()
    for path in dict.fromkeys(files):
        h.update(path.name.encode())
        h.update(file_fingerprint(path).encode())
    return h.hexdigest()[:16]


def file_fingerprint(path: Path) -> str:
    """sha256 (first 16 hex digits) of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def check_dataset(source: str | None, option: str) -> None:
    """A local --dataset must exist (hub names are checked when read)."""
    if source is None or source.startswith("hf:"):
        return
    if not Path(source).expanduser().exists():
        raise UserError(f"{{opt:{option}}}: no dataset at {source}; give a .txt, .jsonl or "
                        ".parquet file, a folder, or hf:<name>")


def dataset_identity(source: str) -> str:
    """What a --dataset holds: a file's content hash; a folder's hash of its files' names,
    sizes and contents; a hub name as written."""
    import hashlib

    if source.startswith("hf:"):
        return source
    path = Path(source).expanduser()
    if path.is_file():
        return file_fingerprint(path)
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{file.relative_to(path)}\0{file_fingerprint(file)}\0".encode())
    return h.hexdigest()[:16]


def check_hook(info: dict[str, Any], hook: str, option: str = "hook") -> None:
    """Refuse a hook the saved model does not have (when its config lists its hooks)."""
    hooks = info.get("hooks")
    if not hooks or hook in hooks:
        return
    close = difflib.get_close_matches(hook, hooks, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    residual = [h for h in hooks if h.endswith("hook_resid_post")]
    raise UserError(f"{{opt:{option}}} {hook!r} is not a hook of this model{hint} "
                    f"(residual stream: {', '.join(residual)}; all {len(hooks)} hooks are "
                    "listed in the model folder's config.json)")


def sae_folder(path: Path, option: str = "sae") -> tuple[Path, dict[str, Any], str]:
    """(SAELens directory, its cfg.json, default store id) for a `train-sae` run folder or
    an SAELens directory. The default id is the run folder's name."""
    path = Path(path)
    run = read_run(path)
    if run is not None and run.get("command") == "train-sae":
        if run.get("status") != "done":
            raise UserError(f"{{opt:{option}}} {path} holds an unfinished train-sae run; "
                            "finish it (run the same train-sae command again) first")
        sae_dir, name = path / "sae", path.resolve().name
    else:
        sae_dir = path
        parent = read_run(path.parent)
        name = (path.parent.resolve().name if parent and parent.get("command") == "train-sae"
                else path.resolve().name)
    cfg_file = sae_dir / SAE_CFG
    if not cfg_file.is_file():
        what = "does not exist" if not path.exists() else f"has no {SAE_CFG}"
        raise UserError(f"{{opt:{option}}} {path} {what}: give a train-sae run folder or an "
                        "SAELens directory (cfg.json + sae_weights.safetensors)")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{{opt:{option}}} {cfg_file} is corrupt ({err}); train or save the "
                        "SAE again") from None
    if not isinstance(cfg, dict):
        raise UserError(f"{{opt:{option}}} {cfg_file} is not an SAE config")
    return sae_dir, cfg, name


def check_tokens_file(path: Path | None, option: str) -> None:
    if path is None:
        return
    from featlab.datasets.tokens import check_tokens_path

    with user_errors(option):
        check_tokens_path(path)


def check_kind(kind: str, option: str = "kind") -> None:
    from featlab.sae.registry import check_kind as registered

    with user_errors(option):
        registered(kind)


def check_token_range(tokens: Any, d_vocab: int, option: str) -> None:
    """Refuse token ids outside the model's vocabulary (an embedding lookup would crash)."""
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= d_vocab:
        raise UserError(f"{{opt:{option}}} holds token ids {lo}..{hi}, but the model's "
                        f"vocabulary has ids 0..{d_vocab - 1}; were they made for another "
                        "model?")


def check_store_folder(path: Path, option: str = "store") -> None:
    """Refuse a store path that is a file or a non-empty folder that is not a store."""
    path = Path(path)
    if not path.exists():
        return
    from featlab.store.writer import read_manifest

    if path.is_dir() and not any(path.iterdir()):
        return
    with user_errors(option):
        read_manifest(path)
