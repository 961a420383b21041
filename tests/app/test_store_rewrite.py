"""Re-running `analyze` into a store the app is serving: every page keeps answering, and
with the new numbers once the run is done (the reader's cached Parquet footers were of the
replaced files; see `featlab.store.index`)."""

from __future__ import annotations

import json
import threading

import pandas as pd
import pytest

from featlab.app.routing import page_layout, render_url

from .conftest import build_real_store

pytestmark = pytest.mark.slow
N_FEATURES = 64


def _stats(tree) -> dict[str, str]:
    """The feature page's statistics panel as {label: shown value}."""
    stack, out = [tree], {}
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            props = node.get("props", {})
            if node.get("type") == "Dl" and props.get("className") == "stats":
                items = props["children"]
                for dt, dd in zip(items[::2], items[1::2], strict=True):
                    out[dt["props"]["children"]] = dd["props"]["children"]
                return out
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def _stored_density(store_path, sae_id: str) -> dict[int, float]:
    feats = pd.read_parquet(store_path / "features")
    feats = feats[feats["sae_id"] == sae_id]
    return dict(zip(feats["feature"].astype(int), feats["density"].astype(float), strict=True))


def _check_all_pages(client, store_path, sae_id: str) -> None:
    from featlab.app.components import fmt

    want = _stored_density(store_path, sae_id)
    assert len(want) == N_FEATURES
    for f in range(N_FEATURES):
        tree = page_layout(client, f"/sae/{sae_id}/feature/{f}")  # raises unless HTTP 200
        assert "Could not build this page" not in json.dumps(tree), f
        assert _stats(tree)["density"] == fmt(want[f]), f


def test_pages_show_new_numbers_after_an_analyze_rerun(tmp_path) -> None:
    from featlab.app import create_app

    first = build_real_store(tmp_path)
    client = create_app(first.store, root=tmp_path).server.test_client()
    sae_id = "L0-topk"
    before = _stored_density(first.store, sae_id)
    _check_all_pages(client, first.store, sae_id)  # footers now cached
    build_real_store(tmp_path, sae_seeds=(5, 6), token_seed=3, overwrite=True)
    after = _stored_density(first.store, sae_id)
    assert sum(before[f] != pytest.approx(after[f]) for f in before) > 10  # other numbers
    _check_all_pages(client, first.store, sae_id)
    status, body = render_url(client, f"/sae/{sae_id}")
    assert status == 200 and b"feature-table" in body


def test_pages_answer_while_analyze_reruns_in_a_thread(tmp_path) -> None:
    from featlab.app import create_app

    first = build_real_store(tmp_path)
    client = create_app(first.store, root=tmp_path).server.test_client()
    errors: list[BaseException] = []
    done = threading.Event()

    def rerun() -> None:
        try:
            for seeds in ((7, 8), (9, 10)):
                build_real_store(tmp_path, sae_seeds=seeds, token_seed=seeds[0],
                                 overwrite=True)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=rerun)
    thread.start()
    statuses: list[int] = []
    broken: list[str] = []
    urls = [f"/sae/L0-topk/feature/{f}" for f in range(0, N_FEATURES, 7)] + ["/sae/L0-topk", "/"]
    while not done.is_set() or len(statuses) < 30:
        url = urls[len(statuses) % len(urls)]
        status, body = render_url(client, url)
        statuses.append(status)
        if b"Could not build this page" in body or b"Traceback" in body:
            broken.append(url)
    thread.join()
    assert not errors, errors
    assert set(statuses) == {200} and not broken, (set(statuses), broken[:5])
    _check_all_pages(client, first.store, "L0-topk")
