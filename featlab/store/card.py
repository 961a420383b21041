"""One feature's card, read from the row groups that hold it (see `featlab.store.index`).

Five reads (features, examples, logits, neighbours, explanations), each decoding only the
row groups whose `sae_id`/`feature` statistics admit the feature, and only the columns the
card shows. Token ids become strings through the vocabulary the reader loaded once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from featlab.store.index import PartIndex
from featlab.store.schema import columns, schema
from featlab.store.sql import histogram_frame, plain

EXAMPLE_COLUMNS = ["band", "rank", "token_ids", "acts", "peak", "pos", "start", "seq"]
EXPLANATION_SOURCES = ("user", "auto")
# One explanation is a sentence or a paragraph; the cap keeps a pasted document (or a
# crafted request) from becoming a stored part on every save.
MAX_EXPLANATION_CHARS = 2000


@dataclass
class FeatureCard:
    """Everything the app shows for one feature.

    histogram: bin_left, bin_right, count (activation values, log-spaced bins).
    examples: band ("top", then "q{Q-1}" .. "q0" strongest to weakest), rank, tokens
    (list[str]), acts (list[float]), peak, pos (peak position in the window), seq.
    logits_top / logits_bottom: rank, token_id, token, value.
    neighbours: kind, rank, other_sae, other_feature, value.
    """

    sae_id: str
    feature: int
    stats: dict[str, Any]
    histogram: pd.DataFrame
    examples: pd.DataFrame
    logits_top: pd.DataFrame
    logits_bottom: pd.DataFrame
    neighbours: pd.DataFrame
    explanation: str | None = None
    explanation_source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Vocab:
    """token id -> string, falling back to the id as text (as the SQL join did)."""

    def __init__(self, ids: np.ndarray, tokens: list[str | None]) -> None:
        size = int(ids.max()) + 1 if len(ids) else 0
        self._lut = np.full(size, None, dtype=object)
        self._lut[ids] = tokens

    def strings(self, ids: Any) -> list[str]:
        lut, n = self._lut, len(self._lut)
        out = []
        for i in np.asarray(ids, dtype=np.int64).tolist():
            s = lut[i] if 0 <= i < n else None
            out.append(str(i) if s is None else s)
        return out


def load_vocab(paths: list[Path]) -> Vocab:
    """The vocabulary from its parts, read once (tens of thousands of short strings)."""
    ids: list[int] = []
    toks: list[str | None] = []
    for path in paths:
        try:
            t = pq.read_table(path, columns=["token_id", "token"])
        except FileNotFoundError:  # removed since the scan (analyze is rewriting it)
            continue
        ids += t["token_id"].to_pylist()
        toks += t["token"].to_pylist()
    return Vocab(np.asarray(ids, dtype=np.int64), toks)


def load_hist_edges(paths: list[Path]) -> dict[str, Any]:
    """sae_id -> hist_edges from the `saes` parts (one small row per SAE)."""
    out: dict[str, Any] = {}
    for path in paths:
        try:
            t = pq.read_table(path, columns=["sae_id", "hist_edges"])
        except FileNotFoundError:  # removed since the scan: that SAE is gone
            continue
        out.update(zip(t["sae_id"].to_pylist(), t["hist_edges"].to_pylist(), strict=True))
    return out


def _band_key(band: pd.Series) -> np.ndarray:
    # "top" first, then q{Q-1} .. q0 (strongest band to weakest), as the SQL ordered them.
    return np.array([1_000_000 if b == "top" else int(str(b)[1:]) for b in band])


def read_card(index: PartIndex, sae_id: str, feature: int, hist_edges: Any,
              vocab: Vocab) -> FeatureCard | None:
    """The card of `feature` of `sae_id`, or None if the SAE has no such feature."""
    feat_cols = columns("features")
    stats = index.rows("features", sae_id, feature, feat_cols, schema("features")).to_pandas()
    if stats.empty:
        return None
    row = stats.iloc[0].to_dict()
    histogram = histogram_frame(row.pop("hist"), hist_edges)

    ex = index.rows("examples", sae_id, feature, EXAMPLE_COLUMNS, schema("examples")).to_pandas()
    if len(ex):
        ex = ex.assign(_b=-_band_key(ex["band"])).sort_values(["_b", "rank"], kind="stable")
        ex = ex.drop(columns="_b").reset_index(drop=True)
    tokens = [np.array(vocab.strings(ids), dtype=object) for ids in ex["token_ids"]]
    examples = pd.DataFrame({
        "band": ex["band"], "rank": ex["rank"], "tokens": pd.Series(tokens, dtype=object),
        "acts": ex["acts"], "peak": ex["peak"], "pos": ex["pos"] - ex["start"], "seq": ex["seq"],
        "token_ids": ex["token_ids"],
    })

    lg = index.rows("logits", sae_id, feature, ["side", "rank", "token_id", "value"],
                    schema("logits")).to_pandas().sort_values(["side", "rank"], kind="stable")
    lg.insert(3, "token", pd.array(vocab.strings(lg["token_id"]), dtype="str"))

    def side(name: str) -> pd.DataFrame:
        return lg[lg["side"] == name].drop(columns="side").reset_index(drop=True)

    neighbours = index.rows(
        "neighbours", sae_id, feature, ["kind", "rank", "other_sae", "other_feature", "value"],
        schema("neighbours"),
    ).to_pandas().sort_values(["kind", "rank"], kind="stable").reset_index(drop=True)

    text, source = latest_explanation(index, sae_id, feature)
    return FeatureCard(
        sae_id=sae_id, feature=feature, stats=plain(row), histogram=histogram,
        examples=examples, logits_top=side("top"), logits_bottom=side("bottom"),
        neighbours=neighbours, explanation=text, explanation_source=source,
    )


def check_explanation(text: Any, source: str) -> None:
    """Refuse an explanation `set_explanation` must not store (ValueError naming why)."""
    if source not in EXPLANATION_SOURCES:
        raise ValueError(f"source must be one of {EXPLANATION_SOURCES}, got {source!r}")
    if not isinstance(text, str):
        raise ValueError(f"an explanation is text, got {type(text).__name__}")
    if len(text) > MAX_EXPLANATION_CHARS:
        raise ValueError(f"the explanation has {len(text)} characters; the limit is "
                         f"{MAX_EXPLANATION_CHARS}: shorten it")


def latest_explanation(index: PartIndex, sae_id: str, feature: int) -> tuple[Any, Any]:
    """(text, source) of the explanation shown: a user's beats an automatic one, then the
    latest; ties broken by text (the same rule as `sql.LATEST_EXPLANATION`)."""
    rows = index.rows("explanations", sae_id, feature, ["text", "source", "updated_at"],
                      schema("explanations")).to_pylist()
    if not rows:
        return None, None
    best = max(rows, key=lambda r: (r["source"] == "user", r["updated_at"] or "",
                                    r["text"] or ""))
    return best["text"], best["source"]
