"""The feature browser: a multi-page Dash app over a featlab store.

Importing this package is cheap: dash (and plotly) load inside :func:`create_app`.

Example::

    from featlab.app import create_app, serve
    app = create_app("runs/demo/store", root="runs")   # a dash.Dash; app.server is Flask
    serve("runs/demo/store", root="runs", port=8050)   # waitress, blocking
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from featlab.app.server import DEFAULT_THREADS

if TYPE_CHECKING:  # pragma: no cover
    import dash

__all__ = ["StoreOutsideRootError", "check_store_path", "create_app", "serve"]


class StoreOutsideRootError(ValueError):
    """The store path resolves outside the directory the app is allowed to serve from."""


def check_store_path(store_path: str | Path, root: str | Path | None = None) -> Path:
    """Resolve `store_path` and refuse it unless it exists and lies under `root`.

    Symlinks and `..` are resolved first, so `root/../elsewhere` is refused too. With
    `root=None` any existing path is accepted.
    """
    path = Path(store_path).expanduser().resolve()
    if root is not None:
        root_path = Path(root).expanduser().resolve()
        if not path.is_relative_to(root_path):
            raise StoreOutsideRootError(
                f"store path {path} is outside the configured root {root_path}; "
                "move the store under the root or start the app with a root that contains it"
            )
    if not path.exists():
        raise FileNotFoundError(
            f"no store at {path}; build one with `featlab analyze` (or featlab.store's writer) "
            "and pass its directory"
        )
    return path


def create_app(
    store_path: str | Path,
    *,
    root: str | Path | None = None,
    model: Any = None,
    saes: dict[str, Any] | None = None,
) -> dash.Dash:
    """Build the Dash app over the store at `store_path` (refused if outside `root`).

    model / saes (sae_id -> SAE) feed the prompt view: each a folder (any source
    `featlab.models.load_model` takes, for the model) or an object already in memory (a
    HookedHybrid, HookedTransformer or HF model; an SAE); without them it uses the paths the
    store recorded. Pages live in :mod:`featlab.app.pages` (one module per
    page, each registered with ``dash.register_page``); every callback reads one feature or
    one page of rows from the store. All assets are served from the package (no CDN).
    """
    path = check_store_path(store_path, root)
    from featlab.app._build import build_app

    return build_app(
        path,
        model,
        dict(saes or {}),
    )


def serve(
    store_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8050,
    root: str | Path | None = None,
    *,
    model: Any = None,
    saes: dict[str, Any] | None = None,
    threads: int = DEFAULT_THREADS,
) -> None:
    """Create the app and serve it with waitress (a production WSGI server) from `threads`
    worker threads, blocking until Ctrl+C. Binds to localhost unless told otherwise; any
    other host prints a warning to stderr naming what is exposed and how to keep it local.
    """
    from featlab.app.server import check_threads, serve_blocking

    check_threads(threads)
    app = create_app(store_path, root=root, model=model, saes=saes)
    serve_blocking(app, store_path, host, port, threads)
