"""The prompt view's live model is shared by the server's threads: concurrent prompts must
each get exactly the answer they get alone (`LiveFeatures` runs one prompt at a time)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from .test_guard import prompt

pytestmark = pytest.mark.slow
SAE = "L0-topk"
# Different lengths: hooks of one run firing inside another show up as shape errors or
# other numbers.
PROMPTS = [" ".join(str((7 * i + j) % 32) for j in range(3 + i % 6)) for i in range(16)]


@pytest.fixture(scope="module")
def live_app(real_store):
    from featlab.app import create_app

    return create_app(real_store.store, root=real_store.root, model=real_store.model,
                      saes=real_store.saes)


def _ask(app, text: str) -> dict:
    resp = app.server.test_client().post("/_dash-update-component", json=prompt(SAE, text))
    assert resp.status_code == 200, resp.get_data()[:300]
    return json.loads(resp.get_data())["response"]


def test_concurrent_prompts_equal_the_single_threaded_answers(live_app) -> None:
    alone = {t: _ask(live_app, t) for t in PROMPTS}
    for answer in alone.values():
        assert "prompt-results" in json.dumps(answer)  # the model ran: a table of features
        assert "error-box" not in json.dumps(answer)
    start = threading.Barrier(8)

    def ask(text: str) -> dict:
        try:
            start.wait(timeout=30)  # the first eight leave together
        except threading.BrokenBarrierError:
            pass
        return _ask(live_app, text)

    for _ in range(2):
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(ask, PROMPTS))
        start.reset()
        for text, answer in zip(PROMPTS, answers, strict=True):
            assert answer == alone[text], text
