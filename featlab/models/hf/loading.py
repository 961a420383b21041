"""Hugging Face and TransformerLens models in and out of featlab: folders, hub names, objects.

A Hugging Face model folder (`save_pretrained`: ``config.json`` with a ``model_type``, the
weights, maybe a tokenizer) loads as a `HookedHFModel`; featlab's own metadata for it (hook
names, the task) sits beside HF's files in ``featlab_model.json``, which HF ignores.
``hf:<hub id>`` and ``tl:<TransformerLens name>`` name models to download; both need the
network, and fail with a message that says so when it is not there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from featlab._atomic import atomic_write_text

FEATLAB_META = "featlab_model.json"
NAME_PREFIXES = ("hf:", "tl:")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")


def is_hf_config(meta: Any) -> bool:
    """A parsed ``config.json`` that is Hugging Face's, not featlab's."""
    return isinstance(meta, dict) and "format_version" not in meta and (
        "model_type" in meta or "architectures" in meta)


def hf_folder_info(directory: Path, config: dict[str, Any]) -> dict[str, Any]:
    """What `read_model_info` reports for an HF folder (no torch): its config, and the hook
    names and task featlab recorded when it saved the folder (None otherwise)."""
    meta: dict[str, Any] = {}
    file = directory / FEATLAB_META
    if file.is_file():
        try:
            meta = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{file} is corrupt ({err}); save the model again or delete the "
                             "file (it only holds featlab's notes)") from None
    if not any(any(directory.glob(p)) for p in WEIGHT_PATTERNS):
        raise FileNotFoundError(f"{directory} has an HF config.json but no weights "
                                "(*.safetensors / *.bin); was save_pretrained interrupted?")
    return {"format": "hf", "model_class": "HookedHFModel", "config": config,
            "model_type": config.get("model_type"), "hooks": meta.get("hooks"),
            "task": meta.get("task")}


def _tokenizer(source: str | Path) -> Any:
    """The tokenizer saved with a model, or None when there is none."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_hf(source: str | Path, device: str = "cpu", **hooks: Any) -> Any:
    """A `HookedHFModel` from an HF folder or hub id (fp32, eval mode)."""
    import torch
    from transformers import AutoModelForCausalLM

    from featlab.models.hf.hooked import HookedHFModel

    try:
        # eager attention: the reference path (save_pretrained does not keep the choice, and
        # sdpa differs from it by ~1e-7), and the one that materialises attention patterns
        model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32,
                                                     attn_implementation="eager")
    except OSError as err:
        where = "the folder" if Path(source).is_dir() else "the hub (no network here?)"
        raise FileNotFoundError(f"cannot load {source!r} from {where}: {err}") from None
    return HookedHFModel(model.to(device), tokenizer=_tokenizer(source), **hooks)


def save_hf(model: Any, directory: Path, task: dict[str, Any] | None) -> Path:
    """`save_pretrained` (weights, config, tokenizer) plus featlab's notes."""
    model.hf.save_pretrained(str(directory))
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(directory))
    notes = {"model_class": "HookedHFModel", "hooks": list(model.hook_dict)}
    if task is not None:
        notes["task"] = task
    atomic_write_text(directory / FEATLAB_META, json.dumps(notes, indent=2) + "\n")
    return directory


def load_by_name(source: str, device: str = "cpu", **hooks: Any) -> Any:
    """``tl:<name>``: ``HookedTransformer.from_pretrained``; ``hf:<id>``: the hub model."""
    prefix, name = source[:3], source[3:]
    if not name:
        raise ValueError(f"{source!r} names no model; write e.g. hf:gpt2 or tl:gpt2-small")
    if prefix == "hf:":
        return load_hf(name, device, **hooks)
    from transformer_lens import HookedTransformer
    from transformer_lens.loading_from_pretrained import OFFICIAL_MODEL_NAMES

    if name not in OFFICIAL_MODEL_NAMES:
        import difflib

        close = difflib.get_close_matches(name, OFFICIAL_MODEL_NAMES, n=3)
        raise ValueError(f"{name!r} is not a TransformerLens model name"
                         + (f"; did you mean {', '.join(close)}?" if close else ""))
    try:
        return HookedTransformer.from_pretrained(name, device=device).eval()
    except OSError as err:
        raise FileNotFoundError(f"cannot download the TransformerLens model {name!r} (no "
                                f"network here?): {err}") from None


def as_hooked(model: Any, **hooks: Any) -> Any:
    """`model` if it already has hooks (featlab, TransformerLens, a bridge); an HF causal LM
    wrapped in a `HookedHFModel` (the one already wrapping it, if any; `hooks`: its
    mixer_hooks / use_state_hook); else a TypeError saying what is accepted."""
    if hasattr(model, "hook_dict") and hasattr(model, "run_with_cache"):
        return model
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "model_type"):
        from featlab.models.hf.hooked import HookedHFModel, wrapper_of

        return wrapper_of(model) or HookedHFModel(model, **hooks)
    raise TypeError(f"{type(model).__name__} is neither a hooked model (featlab, "
                    "TransformerLens) nor a Hugging Face causal LM; pass one of those, or a "
                    "folder or hub name")
