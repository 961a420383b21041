"""Size caps: a prompt over the cap is refused with a message and kept out of the URL; an
explanation over the cap is refused (by the page and by the store); an unchanged
explanation adds no Parquet part."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest

from featlab.app.routing import find_ids, page_layout

from .test_guard import prompt, save

SAE = "L0-topk"


@pytest.fixture
def fresh_client(tmp_path):
    """An app over a store of its own: these tests write explanations."""
    from featlab.app import create_app
    from featlab.app.synthetic import SyntheticStoreConfig, build_synthetic_store

    root = build_synthetic_store(tmp_path / "store", SyntheticStoreConfig(n_features=16))
    return create_app(root).server.test_client(), root


def _answer(client, body: dict) -> dict:
    resp = client.post("/_dash-update-component", json=body)
    assert resp.status_code == 200, resp.get_data()[:300]
    return json.loads(resp.get_data())["response"]


def test_a_prompt_over_the_cap_is_refused_and_kept_out_of_the_url(client) -> None:
    from featlab.app.pages.prompt import MAX_CHARS

    out = _answer(client, prompt(SAE, "1 " * 50_000))  # 100,000 characters
    assert f"the limit is {MAX_CHARS:,}" in json.dumps(out["prompt-output"])
    url = out["prompt-url"]["data"]
    assert len(url) < 100 and parse_qs(url[1:]) == {"sae": [SAE]}  # no text
    ok = _answer(client, prompt(SAE, "1 2 3"))  # within the cap: the text is in the URL
    assert parse_qs(ok["prompt-url"]["data"][1:])["text"] == ["1 2 3"]


def test_the_prompt_box_has_a_max_length_and_a_long_link_opens_empty(client) -> None:
    from featlab.app.pages.prompt import MAX_CHARS

    def box(tree):
        stack = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if node.get("props", {}).get("id") == "prompt-text":
                    return node["props"]
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)

    assert box(page_layout(client, "/prompt"))["maxLength"] == MAX_CHARS
    tree = page_layout(client, "/prompt?text=" + "a" * (MAX_CHARS + 1))
    assert box(tree)["value"] == "" and "prompt-link-message" in find_ids(tree)
    assert "the limit is" in json.dumps(tree)
    assert box(page_layout(client, "/prompt?text=3%204"))["value"] == "3 4"


def test_explanations_are_capped_and_unchanged_saves_write_nothing(fresh_client) -> None:
    from featlab.store.reader import MAX_EXPLANATION_CHARS

    client, root = fresh_client
    parts = lambda: len(list((root / "explanations").glob("*.parquet")))  # noqa: E731
    n0 = parts()
    key = {"sae_id": SAE, "feature": 2}
    status = _answer(client, save(key, "x" * 200_000))["explanation-status"]["children"]
    assert status.startswith("Not saved") and f"{MAX_EXPLANATION_CHARS:,}" in status
    assert parts() == n0
    assert _answer(client, save(key, "fires on t3"))["explanation-status"]["children"] == "Saved."
    assert parts() == n0 + 1
    again = _answer(client, save(key, "  fires on t3 "))["explanation-status"]["children"]
    assert again == "Nothing to save: the explanation is unchanged." and parts() == n0 + 1
    tree = page_layout(client, f"/sae/{SAE}/feature/2")
    text = json.dumps(tree)
    assert "fires on t3" in text and f'"maxLength": {MAX_EXPLANATION_CHARS}' in text
