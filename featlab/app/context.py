"""Per-app state reachable from page layouts and callbacks.

Dash's page registry is process-global, so pages must not hold a store in a module global:
each app keeps an :class:`AppContext` in its Flask config and pages fetch it with
:func:`get_context` while a request is being served.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_KEY = "FEATLAB_APP_CONTEXT"


class CachedStore:
    """A store whose small, rarely changing answers (`saes()`, `n_features()`) are cached:
    every page checks its SAE id and feature range, and re-querying them per request would
    double the feature page's query count. An answer is kept for `ttl` seconds and only
    while the store's parts are unchanged (`FeatureStore.generation`, a few `os.stat`
    calls), so re-running `analyze` into a served store shows at once. Everything else
    passes through."""

    def __init__(self, store: Any, ttl: float = 10.0) -> None:
        self._store = store
        self._ttl = ttl
        self._cache: dict[tuple[str, Any], tuple[float, int, Any]] = {}
        self._lock = threading.Lock()

    def _cached(self, key: tuple[str, Any], tables: tuple[str, ...], compute: Any) -> Any:
        now = time.monotonic()
        generation = self._store.generation(*tables)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self._ttl and hit[1] == generation:
            return hit[2]
        value = compute()
        with self._lock:
            self._cache[key] = (now, generation, value)
        return value

    def saes(self) -> Any:
        return self._cached(("saes", None), ("saes",), self._store.saes).copy()

    def n_features(self, sae_id: str) -> int:
        return self._cached(("n_features", sae_id), ("saes", "features"),
                            lambda: self._store.n_features(sae_id))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass
class AppContext:
    """What one running app knows: its store path, the opened store and the live model."""

    store_path: Path
    model: Any = None  # a folder / source for load_model, or a model object
    saes: dict[str, Any] = field(default_factory=dict)  # sae_id -> folder or SAE object
    _store: Any = None
    _live: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def store(self) -> Any:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from featlab.store import open_store

                    # FeatureStore serialises its own queries (one DuckDB connection + lock),
                    # so the server's threads can share it.
                    self._store = CachedStore(open_store(self.store_path))
        return self._store

    @property
    def live(self) -> Any:
        """The prompt view's model + SAE runner, created on first use and kept."""
        if self._live is None:
            with self._lock:
                if self._live is None:
                    from featlab.app.live import LiveFeatures

                    self._live = LiveFeatures(self.store, self.model, self.saes)
        return self._live


def get_context() -> AppContext:
    """The context of the app serving the current request."""
    import flask

    try:
        return flask.current_app.config[CONFIG_KEY]
    except (RuntimeError, KeyError) as err:
        raise RuntimeError(
            "featlab app pages need a running app: build it with featlab.app.create_app"
        ) from err
