"""Errors raised when a path is not a featlab store or holds a part it cannot read."""

from __future__ import annotations

from featlab.errors import UserError


class StoreError(UserError):
    """Base class of store errors: each names the path and the fix, so the CLI and the app
    show it as a message, not a traceback."""


class NotAStoreError(StoreError, FileNotFoundError):
    """The path is missing or has no featlab manifest."""


class StoreFormatError(StoreError, ValueError):
    """A manifest or Parquet part is corrupt, foreign or of an unsupported version."""
