"""Load any model featlab can hook, and save featlab's own: the one entry point.

`load_model(source)` takes a featlab model folder, a Hugging Face folder (`save_pretrained`),
``"hf:<hub id>"`` or ``"tl:<TransformerLens name>"`` (both need the network; the prefix keeps
a mistyped folder from turning into a download), or an in-memory featlab / TransformerLens /
Hugging Face model, and returns a hooked model that satisfies `featlab.models.protocol`;
nothing downstream knows where it came from.

featlab's own folders hold ``model.safetensors`` + ``config.json``: ``{"format_version": 1,
"model_class": "HookedHybrid" | "HookedTransformer", "config": {...}, "hooks": [...],
"task": {...}}``. The hook names let the CLI check a ``--hook`` before torch is imported
(`read_model_info`), and the task (e.g. the MQAR settings the model was trained on) lets
`featlab train-sae` draw fresh data of the same task. Both files are written to temporary
names and renamed, weights first, so a folder whose ``config.json`` exists holds complete
weights. A model's ``tokenizer`` attribute, when set, is saved beside them in ``tokenizer/``
(`save_pretrained`) and loaded back onto the model. HF models are saved with
`save_pretrained` plus featlab's notes
(`featlab.models.hf.loading`). This module imports torch only inside its functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featlab._atomic import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TOKENIZER_DIR = "tokenizer"
_MODEL_CLASSES = ("HookedHybrid", "HookedTransformer")


def _model_classes() -> dict[str, tuple[Any, Any]]:
    """Class name -> (model class, config-from-dict function)."""
    from featlab.models.config import HybridConfig
    from featlab.models.hybrid import HookedHybrid

    return {"HookedHybrid": (HookedHybrid, HybridConfig.from_dict),
            "HookedTransformer": _hooked_transformer()}


def _hooked_transformer() -> tuple[Any, Any]:
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    def config(d: dict[str, Any]) -> Any:
        d = dict(d)
        if isinstance(d.get("dtype"), str):  # JSON holds "torch.float32"
            d["dtype"] = getattr(torch, d["dtype"].removeprefix("torch."))
        return HookedTransformerConfig.from_dict(d)

    return HookedTransformer, config


def save_model(model: nn.Module, directory: str | Path, *,
               task: dict[str, Any] | None = None) -> Path:
    """Write `model` to `directory` (created if missing) so `load_model` rebuilds it.

    A HookedHybrid or HookedTransformer is saved in featlab's format; a `HookedHFModel`
    with `save_pretrained` (plus featlab's notes). task: what the model was trained on, as
    JSON (e.g. ``{"name": "mqar", ...}``), read back by `load_task`."""
    directory = Path(directory)
    name = type(model).__name__
    if name == "HookedHFModel":
        from featlab.models.hf.loading import save_hf

        return save_hf(model, directory, task)
    if name not in _MODEL_CLASSES:
        raise TypeError(
            f"save_model saves {sorted(_MODEL_CLASSES)} and HF models wrapped by load_model, "
            f"got {name}; wrap an HF model with featlab.models.load_model(model) first"
        )
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {
        "format_version": FORMAT_VERSION,
        "model_class": name,
        "config": model.cfg.to_dict(),  # type: ignore[attr-defined]
        "hooks": list(getattr(model, "hook_dict", {})),
    }
    if task is not None:
        meta["task"] = task
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
    atomic_write_bytes(directory / WEIGHTS_NAME, save(state, metadata={"format": "pt"}))
    atomic_write_bytes(directory / CONFIG_NAME,
                       json.dumps(meta, indent=2, default=str).encode())
    return directory


def read_model_info(directory: str | Path) -> dict[str, Any]:
    """What a model folder holds (model_class, config, hooks, task), checked but without
    building anything (no torch): raises FileNotFoundError / ValueError naming the problem.
    An HF folder gives ``format: "hf"`` and the hooks featlab recorded when it saved it."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise FileNotFoundError(f"no model folder at {directory}; train one with `featlab "
                                "train-model` (or save one with featlab.models.save_model); "
                                "for a hub model write hf:<id>, for TransformerLens tl:<name>")
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} has no {CONFIG_NAME}; it is not a saved model (or saving was "
            "interrupted): save it again (featlab.models.save_model)"
        )
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the folder's config is corrupt: "
                         "save the model again") from None
    from featlab.models.hf.loading import hf_folder_info, is_hf_config

    if is_hf_config(meta):
        return hf_folder_info(directory, meta)
    try:
        version, name = meta["format_version"], meta["model_class"]
        meta["config"]  # noqa: B018 - presence check
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a featlab model config (missing {err}); save the "
                         "model with featlab.models.save_model") from None
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {version}, newer than this featlab reads "
            f"({FORMAT_VERSION}); upgrade featlab"
        )
    if name not in _MODEL_CLASSES:
        raise ValueError(f"{path} names model_class {name!r}; known: {sorted(_MODEL_CLASSES)}")
    return meta


def load_config(directory: str | Path) -> tuple[str, Any]:
    """A featlab folder's (model class name, config object)."""
    meta = read_model_info(directory)
    name = meta["model_class"]
    if meta.get("format") == "hf":
        raise ValueError(f"{directory} is a Hugging Face folder; its config is HF's "
                         "(transformers.AutoConfig.from_pretrained)")
    return name, _model_classes()[name][1](meta["config"])


def load_task(directory: str | Path) -> dict[str, Any] | None:
    """The task recorded by `save_model(..., task=...)`, or None."""
    task = read_model_info(directory).get("task")
    return task if isinstance(task, dict) else None


def load_model(source: Any, device: str | torch.device = "cpu", *,
               use_state_hook: bool = False) -> nn.Module:
    """A hooked model from any source (see the module docstring), in eval mode.

    use_state_hook: for HF models, materialise the per-token states of the mixers featlab
    hooks inside (``blocks.{l}.mixer.hook_state``; memory pos * heads * d_k * d_v a layer).
    A featlab HookedHybrid sets this in its config instead."""
    from featlab.models.hf import loading

    hooks = {"use_state_hook": use_state_hook}
    if not isinstance(source, str | Path):
        return loading.as_hooked(source, **hooks)
    if isinstance(source, str) and source.startswith(loading.NAME_PREFIXES):
        return loading.load_by_name(source, str(device), **hooks)
    directory = Path(source).expanduser()
    if read_model_info(directory).get("format") == "hf":
        return loading.load_hf(directory, str(device), **hooks)
    return _load_featlab(directory, device)


def _load_featlab(directory: Path, device: str | torch.device) -> nn.Module:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    name, cfg = load_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{directory} has {CONFIG_NAME} but no {WEIGHTS_NAME}")
    try:
        state = load_file(weights, device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{weights} is corrupt ({err}); save the model again") from err
    model = _model_classes()[name][0](cfg).to(device)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not match {name}({cfg}): missing {missing}, unexpected {unexpected}"
        )
    if (directory / TOKENIZER_DIR).is_dir():
        from transformers import AutoTokenizer

        model.tokenizer = AutoTokenizer.from_pretrained(str(directory / TOKENIZER_DIR))
    return model.eval()


__all__ = ["load_config", "load_model", "load_task", "read_model_info", "save_model"]
