"""Lazy re-exports for package `__init__` files (PEP 562).

A package lists which module each public name lives in; the module is imported on first
attribute access. This keeps `import featlab.models` or `import featlab.sae` free of torch,
so light code (the CLI's argument checks, config parsing) can import a subpackage's small
modules without paying for the heavy ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for `package`: `exports` maps a public name to the module
    that defines it. A loaded value is cached in `namespace` (the package's globals)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
