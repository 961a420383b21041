"""Token-id files: `[n_seq, pos]` integer ids in a `.pt`, `.npy` or `.safetensors` file.

The one reader behind `featlab train-sae --tokens-file` and `featlab analyze --tokens`. A
`.pt` file may hold the tensor or a dict with "tokens", "inputs" or "input_ids"; a
`.safetensors` file needs a "tokens" tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SUFFIXES = (".pt", ".pth", ".npy", ".safetensors")
_KEYS = ("tokens", "inputs", "input_ids")


def check_tokens_path(path: str | Path) -> Path:
    """`path` if it names an existing file with a known suffix (cheap: reads nothing)."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"token file {path}: unknown suffix {path.suffix!r}; use one of "
                         f"{', '.join(SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"no token file at {path}")
    return path


def load_tokens(path: str | Path, n_seq: int | None = None) -> Any:
    """The ids in `path` as a LongTensor `[n_seq, pos]` (the first `n_seq` rows if given)."""
    import torch

    path = check_tokens_path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            import numpy as np

            data: Any = torch.from_numpy(np.load(path, allow_pickle=False))
        elif suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader's failure means an unreadable file
        raise ValueError(f"cannot read the token file {path} ({type(err).__name__}: {err})") \
            from None
    if isinstance(data, dict):
        key = next((k for k in _KEYS if k in data), None)
        if key is None:
            raise ValueError(f"{path} holds keys {sorted(data)}; expected one of {list(_KEYS)}")
        data = data[key]
    if not isinstance(data, torch.Tensor) or data.ndim != 2 or data.dtype.is_floating_point:
        raise ValueError(
            f"{path} must hold integer token ids of shape [n_seq, pos], got "
            f"{tuple(getattr(data, 'shape', ()))} {getattr(data, 'dtype', type(data).__name__)}")
    if len(data) == 0:
        raise ValueError(f"{path} holds no sequences")
    return data[:n_seq].long() if n_seq is not None else data.long()
