"""Read and write SAEs as SAELens directories.

A directory holds ``cfg.json`` (SAELens 6 fields plus a ``featlab`` entry with the full
`SAEConfig`), ``sae_weights.safetensors`` (exactly the tensors SAELens's class for that
architecture loads, strictly) and ``sparsity.safetensors`` (``sparsity``: log10 feature density
over training). featlab's training statistics go to ``featlab_state.safetensors``, which
SAELens ignores. What the fields and weights mean, the kind <-> architecture table and the
folds applied to SAELens's own directories are in `featlab.sae.saelens`.

Writes go to a temporary sibling directory renamed into place; an existing directory is only
replaced when it already is an SAE directory.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from featlab.sae.base import SparseAutoencoder
from featlab.sae.config import SAEConfig
from featlab.sae.registry import build_sae
from featlab.sae.saelens import SAELENS_FORMAT_VERSION, cfg_dict, from_saelens, weight_names

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SPARSITY_FILE = "sparsity.safetensors"
STATE_FILE = "featlab_state.safetensors"
__all__ = ["SAELENS_FORMAT_VERSION", "describe_sae", "load_sae", "save_sae"]


def _weights(sae: SparseAutoencoder) -> dict[str, torch.Tensor]:
    return {n: getattr(sae, n).detach().cpu().contiguous().clone() for n in weight_names(sae)}


def _is_sae_dir(path: Path) -> bool:
    return (path / CFG_FILE).is_file()


def save_sae(sae: SparseAutoencoder, path: str | Path) -> Path:
    """Write ``sae`` as a SAELens directory at ``path`` (atomically) and return the path.

    An existing ``path`` is replaced only if it is an SAE directory (has cfg.json) or empty;
    anything else raises FileExistsError and is left untouched.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise FileExistsError(f"{path} exists and is a file; choose a directory path")
        if any(path.iterdir()) and not _is_sae_dir(path):
            raise FileExistsError(
                f"{path} exists and is not an SAE directory (no {CFG_FILE}); refusing to "
                "overwrite it; choose another path"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        (tmp / CFG_FILE).write_text(json.dumps(cfg_dict(sae), indent=2))
        save_file(_weights(sae), str(tmp / WEIGHTS_FILE))
        density = sae.feature_density().to(torch.float32)
        save_file({"sparsity": torch.log10(density + 1e-10)}, str(tmp / SPARSITY_FILE))
        weights = _weights(sae)
        state = {
            n: b.detach().cpu().contiguous().clone()
            for n, b in sae.named_buffers()
            if n not in weights
        }
        save_file(state, str(tmp / STATE_FILE))
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
    return path


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    if not path.is_dir():
        raise FileNotFoundError(f"no SAE directory at {path}")
    missing = [f for f in (CFG_FILE, WEIGHTS_FILE) if not (path / f).is_file()]
    if missing:
        raise ValueError(
            f"{path} is not a complete SAE directory: missing {', '.join(missing)} (a SAELens "
            f"directory needs {CFG_FILE} and {WEIGHTS_FILE}); re-save the SAE"
        )
    try:
        cfg = json.loads((path / CFG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path / CFG_FILE} is corrupt (not valid JSON: {err})") from None
    if not isinstance(cfg, dict) or "d_in" not in cfg or "d_sae" not in cfg:
        raise ValueError(f"{path / CFG_FILE} lacks d_in / d_sae; it is not an SAE config")
    try:
        weights = load_file(str(path / WEIGHTS_FILE))
    except Exception as err:  # noqa: BLE001 - safetensors raises several error types
        raise ValueError(f"{path / WEIGHTS_FILE} is corrupt or truncated ({err})") from None
    return cfg, weights


def load_sae(path: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Load a featlab or SAELens SAE directory (see the module docstring) in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    raw, weights = _read(path)
    extra: dict[str, torch.Tensor] = {}
    if "featlab" in raw:
        cfg = SAEConfig.from_dict(raw["featlab"])
        if (path / STATE_FILE).is_file():
            try:
                extra = load_file(str(path / STATE_FILE))
            except Exception as err:  # noqa: BLE001
                raise ValueError(f"{path / STATE_FILE} is corrupt ({err})") from None
    else:
        cfg, weights, extra = from_saelens(raw, weights)
    sae = build_sae(cfg)
    want = _weights(sae)
    missing = sorted(set(want) - set(weights))
    if missing:
        raise ValueError(f"{path / WEIGHTS_FILE} lacks tensor(s) {missing} for kind {cfg.kind!r}")
    with torch.no_grad():
        for name, ref in want.items():
            got = weights[name]
            if tuple(got.shape) != tuple(ref.shape):
                raise ValueError(
                    f"{path / WEIGHTS_FILE}: tensor {name} has shape {tuple(got.shape)} but "
                    f"cfg.json implies {tuple(ref.shape)}; the directory is inconsistent"
                )
            getattr(sae, name).copy_(got)
        buffers = dict(sae.named_buffers())
        for name, val in extra.items():
            if name in buffers and buffers[name].shape == val.shape:
                buffers[name].copy_(val)
    return sae.to(device).eval()


def describe_sae(path: str | Path) -> dict[str, Any]:
    """Summary of an SAE directory: kind, shapes, hook, SAELens architecture, and the training
    feature density (dead / dense fractions) when ``sparsity.safetensors`` is present."""
    from safetensors.torch import load_file

    path = Path(path)
    sae = load_sae(path)
    cfg = json.loads((path / CFG_FILE).read_text())
    out: dict[str, Any] = {
        "path": str(path),
        "kind": sae.kind,
        "saelens_architecture": cfg.get("architecture"),
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "k": sae.cfg.k,
        "hook_name": sae.cfg.hook_name,
        "model_name": sae.cfg.model_name,
        "context_size": sae.cfg.context_size,
        "dataset_path": sae.cfg.dataset_path,
        "prepend_bos": sae.cfg.prepend_bos,
        "tokenizer_name": sae.cfg.tokenizer_name,
        "hparams": dict(sae.cfg.hparams),
    }
    if (path / SPARSITY_FILE).is_file():
        log_density = load_file(str(path / SPARSITY_FILE))["sparsity"]
        out["dead_frac"] = float((log_density <= -9.9).float().mean())
        out["dense_frac"] = float((log_density > -1.0).float().mean())
        out["median_log10_density"] = float(log_density.median())
    return out
