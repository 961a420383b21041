"""featlab: a workbench for finding and studying the features that neural networks learn.

Importing the top-level package is cheap on purpose: subpackages (and their heavy
dependencies such as dash, sae_lens or triton) load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBPACKAGES = (
    "app",
    "circuits",
    "complexity",
    "datasets",
    "kernels",
    "models",
    "probes",
    "runs",
    "sae",
    "store",
)


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"featlab.{name}")
    raise AttributeError(f"module 'featlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBPACKAGES])
