"""Assemble the Dash app: shell layout, local assets, pages and their callbacks.

Kept apart from ``featlab/app/__init__.py`` so importing the package never imports dash.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from featlab.app.context import CONFIG_KEY, AppContext

ASSETS = Path(__file__).parent / "assets"
NAV = (
    ("Home", "/"),
    ("Prompt", "/prompt"),
    ("Circuits", "/circuit"),
    ("Attribution", "/attribution"),
    ("Complexity", "/complexity"),
    ("Compare", "/compare"),
)


def build_app(store_path: Path, model: Any = None, saes: dict[str, Any] | None = None):
    """A `dash.Dash` over the (already validated) store directory `store_path`."""
    import dash
    from dash import dcc, html

    from featlab.app import guard, pages

    app = dash.Dash(
        "featlab.app",
        use_pages=True,
        # Pages are registered explicitly by featlab.app.pages.register_all, not discovered
        # from a folder: discovery re-executes modules, which would duplicate callbacks.
        pages_folder="",
        assets_folder=str(ASSETS),
        serve_locally=True,
        external_stylesheets=[],
        external_scripts=[],
        title="featlab",
        update_title=None,
        # Page components appear only once their page is routed to.
        suppress_callback_exceptions=True,
    )
    ctx = AppContext(store_path, model, dict(saes or {}))
    _ = ctx.store  # open now: a path that is not a store fails here, not on the first page
    app.server.config[CONFIG_KEY] = ctx
    pages.register_all(app)
    guard.install(app)
    app.layout = html.Div(
        [
            html.Nav(
                [html.Span("featlab", className="brand")]
                + [dcc.Link(name, href=href, className="nav-link") for name, href in NAV]
                + [html.Span(str(store_path), className="store-path", title="store")],
                className="navbar",
            ),
            html.Main(dash.page_container, className="page"),
        ]
    )
    # Werkzeug logs every request at INFO; callers running it in tests don't want that.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return app
