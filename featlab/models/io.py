"""Save and load hooked models: ``model.safetensors`` + ``config.json`` in one directory.

``config.json`` holds ``{"format_version": 1, "model_class": "HookedHybrid", "config": {...},
"hooks": [...], "task": {...}}``: the hook names let the CLI check a ``--hook`` before torch
is imported (`read_model_info`), and the task (e.g. the MQAR settings the model was trained
on) lets `featlab train-sae` draw fresh data of the same task. Both files are written to
temporary names and renamed, weights first, so a directory whose ``config.json`` exists
always holds complete weights. This module imports torch only inside its functions.
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


_MODEL_CLASSES = ("HookedHybrid",)


def _model_classes() -> dict[str, tuple[type[nn.Module], Any]]:
    """Class name -> (model class, config-from-dict function)."""
    from featlab.models.config import HybridConfig
    from featlab.models.hybrid import HookedHybrid

    return {"HookedHybrid": (HookedHybrid, HybridConfig.from_dict)}


def save_model(model: nn.Module, directory: str | Path, *,
               task: dict[str, Any] | None = None) -> Path:
    """Write `model`'s weights and config to `directory` (created if missing); returns it.

    task: what the model was trained on, as JSON (e.g. ``{"name": "mqar", ...}``), kept in
    ``config.json`` for `load_task`."""
    from safetensors.torch import save

    directory = Path(directory)
    name = type(model).__name__
    if name not in _model_classes():
        raise TypeError(
            f"save_model supports {sorted(_model_classes())}, got {name}; save other models "
            "with their own library (e.g. torch.save(model.state_dict(), ...))"
        )
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {
        "format_version": FORMAT_VERSION,
        "model_class": name,
        "config": model.cfg.to_dict(),  # type: ignore[attr-defined]
        "hooks": list(getattr(model, "hook_dict", {})),
    }
    if task is not None:
        meta["task"] = task
    atomic_write_bytes(directory / WEIGHTS_NAME, save(state, metadata={"format": "pt"}))
    atomic_write_bytes(directory / CONFIG_NAME, json.dumps(meta, indent=2).encode())
    return directory


def read_model_info(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a saved model (model_class, config, hooks, task), checked
    but without building anything (no torch): raises FileNotFoundError / ValueError naming
    the problem."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise FileNotFoundError(f"no model folder at {directory}; train one with `featlab "
                                "train-model` (or save one with featlab.models.save_model)")
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
    if isinstance(meta, dict) and "format_version" not in meta and (
            "model_type" in meta or "architectures" in meta):
        raise ValueError(
            f"{directory} is a Hugging Face model folder (model_type "
            f"{meta.get('model_type')!r}), not a featlab model; featlab opens only models "
            "saved by featlab.models.save_model so far")
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
    """Read ``config.json``: (model class name, config object)."""
    meta = read_model_info(directory)
    name = meta["model_class"]
    return name, _model_classes()[name][1](meta["config"])


def load_task(directory: str | Path) -> dict[str, Any] | None:
    """The task recorded by `save_model(..., task=...)`, or None."""
    task = read_model_info(directory).get("task")
    return task if isinstance(task, dict) else None


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved in `directory`; logits equal those of the saved model."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
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
    return model.eval()


__all__ = ["load_config", "load_model", "load_task", "read_model_info", "save_model"]
