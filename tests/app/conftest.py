"""Fixtures for the app tests: a small store from a real `analyze` run (plus synthetic circuit,
attribution, complexity and shortcut tables), the app served by waitress on a free
localhost port, and headless Chromium pages that record console errors and every request."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@dataclass
class RealStore:
    root: Path  # the directory the app may serve from
    store: Path
    model: Path
    saes: dict[str, Path]


def build_real_store(root: Path, sae_seeds: tuple[int, int] = (0, 1), token_seed: int = 0,
                     overwrite: bool = False) -> RealStore:
    """A tiny untrained hybrid + two SAEs on its residual stream, analysed into
    `root/store` (again, with other SAE weights or tokens, when `overwrite`)."""
    import torch

    from featlab.app.synthetic import write_demo_tables
    from featlab.models.config import HybridConfig
    from featlab.models.hybrid import HookedHybrid
    from featlab.models.io import save_model
    from featlab.sae import build_sae, make_config, save_sae
    from featlab.store import analyze

    torch.manual_seed(0)
    model = HookedHybrid(HybridConfig(layers=("gdn", "attn"), d_model=32, n_heads=2,
                                      d_vocab=32, n_ctx=32, seed=0)).eval()
    save_model(model, root / "model")
    saes, paths = {}, {}
    for layer, kind in ((0, "topk"), (1, "batchtopk")):
        cfg = make_config(kind, 32, 64, 4, hook_name=f"blocks.{layer}.hook_resid_post",
                          seed=sae_seeds[layer])
        sae = build_sae(cfg).eval()
        sae_id = f"L{layer}-{kind}"
        paths[sae_id] = save_sae(sae, root / f"sae_{sae_id}")
        saes[sae_id] = sae
    tokens = torch.randint(0, 32, (64, 16), generator=torch.Generator().manual_seed(token_seed))
    store = root / "store"
    analyze(model, saes, tokens, store, batch_size=16, n_examples=5, quantile_bands=2,
            context_window=4, progress=False, model_name="tiny-hybrid", seed=0,
            overwrite=overwrite)
    if not overwrite:
        write_demo_tables(store, list(saes), n_features=64)
    return RealStore(root=root, store=store, model=root / "model", saes=paths)


@pytest.fixture(scope="session")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> RealStore:
    """A tiny untrained hybrid + two SAEs on its residual stream, analysed into a store."""
    return build_real_store(tmp_path_factory.mktemp("app_root"))


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic store (every table filled) for server-side tests: no torch needed."""
    from featlab.app.synthetic import build_synthetic_store

    return build_synthetic_store(tmp_path_factory.mktemp("synthetic") / "store")


@pytest.fixture(scope="session")
def client(synthetic_store: Path) -> object:
    """A Flask test client of the app over the synthetic store."""
    from featlab.app import create_app

    return create_app(synthetic_store, root=synthetic_store.parent).server.test_client()


@dataclass
class LiveServer:
    url: str
    app: object


@pytest.fixture(scope="session")
def live_server(real_store: RealStore) -> Iterator[LiveServer]:
    """The app on 127.0.0.1 and a free port, served by waitress from a background thread:
    the same production server `featlab.app.serve` uses."""
    from featlab.app import create_app
    from featlab.app.server import ServerThread

    app = create_app(real_store.store, root=real_store.root, model=real_store.model,
                     saes=real_store.saes)
    with ServerThread(app, "127.0.0.1", 0) as server:
        yield LiveServer(url=server.url, app=app)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent; install it with `make browser` "
                    "(apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Watched:
    """A page plus what it logged: console errors, page errors and non-local requests."""

    page: object
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def browser_context(browser: object) -> Iterator[object]:
    """One context for the session so plotly.js (3.5 MB) is fetched once, from the cache
    afterwards. Requests are recorded with an event listener rather than `route()`, which
    would disable the HTTP cache."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(browser_context: object, live_server: LiveServer) -> Iterator[Watched]:
    pg = browser_context.new_page()
    pg.set_default_timeout(20_000)
    watched = Watched(page=pg)

    def on_request(request: object) -> None:
        url = request.url
        watched.requests.append(url)
        host = urlparse(url).hostname
        if not url.startswith(("data:", "blob:")) and host not in ("127.0.0.1", "localhost"):
            watched.external.append(url)

    pg.on("request", on_request)
    pg.on("console", lambda m: watched.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: watched.errors.append(f"pageerror: {e}"))
    yield watched
    pg.close()
