"""Fingerprints: short hashes of everything that changes a result.

A run folder, an analyze checkpoint and an activation cache each record the fingerprint of
what produced them; the same fingerprint means the work can be resumed or reused, another
one means it belongs to a different run (`featlab.runs.folder`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def settings_fingerprint(settings: Any) -> str:
    """sha256 (first 16 hex digits) of JSON-serialisable settings, key order ignored."""
    blob = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def tensor_fingerprint(t: Any) -> str:
    """sha256 (first 16 hex digits) of a tensor's dtype, shape and bytes."""
    import torch

    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    flat = t.detach().cpu().contiguous().reshape(-1)
    h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def model_fingerprint(model: Any) -> str:
    """Hash of a model's class and every parameter and buffer: equal iff same weights."""
    h = hashlib.sha256(type(model).__name__.encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor_fingerprint(t).encode())
    return h.hexdigest()[:16]
