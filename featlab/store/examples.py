"""Rows of the `examples` and `explanations` tables from a finished `FeatureStream`."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from featlab.store.stream import FeatureStream
from featlab.store.writer import now_iso


def example_table(sid: str, st: FeatureStream, tokens: torch.Tensor) -> pa.Table:
    """Top examples and quantile-band samples as one Arrow table (built column-wise)."""
    t = st.t
    f, n_ex = t["top_val"].shape
    parts = []
    # top band: already sorted by activation, descending
    valid = torch.isfinite(t["top_val"])
    parts.append(dict(
        valid=valid, band=np.full((f, n_ex), "top", dtype=object),
        rank=torch.arange(n_ex).expand(f, n_ex), val=t["top_val"], seq=t["top_seq"],
        pos=t["top_pos"], start=t["top_start"], acts=t["top_acts"],
    ))
    # quantile bands: sort the uniform sample by peak; equal-count bands by rank
    rvalid = torch.isfinite(t["res_key"])
    vals = torch.where(rvalid, t["res_val"], float("-inf"))
    order = torch.argsort(vals, dim=1, descending=True, stable=True)
    n_valid = rvalid.sum(1, keepdim=True).clamp_min(1)
    i = torch.arange(order.shape[1]).expand_as(order)
    q = st.quantile_bands
    band = q - 1 - (i * q) // n_valid  # 0 = weakest band
    first = ((q - 1 - band) * n_valid + q - 1) // q  # first sorted index of each band
    pick = lambda name: torch.gather(t[name], 1, order)  # noqa: E731
    parts.append(dict(
        valid=torch.gather(rvalid, 1, order),
        band=np.char.add("q", band.numpy().astype(str)).astype(object), rank=i - first,
        val=pick("res_val"), seq=pick("res_seq"), pos=pick("res_pos"), start=pick("res_start"),
        acts=torch.gather(t["res_acts"], 1, order.unsqueeze(-1).expand_as(t["res_acts"])),
    ))
    cols: dict[str, list] = {k: [] for k in
                             ("feature", "band", "rank", "seq", "pos", "start", "peak", "acts")}
    for p in parts:
        m = p["valid"]
        feat = torch.arange(f).unsqueeze(1).expand_as(m)
        cols["feature"].append(feat[m].numpy())
        cols["band"].append(p["band"][m.numpy()])
        for k, src in (("rank", "rank"), ("seq", "seq"), ("pos", "pos"), ("start", "start"),
                       ("peak", "val")):
            cols[k].append(p[src][m].numpy())
        cols["acts"].append(p["acts"][m].numpy())
    feature = np.concatenate(cols["feature"])
    order_rows = np.argsort(feature, kind="stable")  # sorted by feature for row-group pruning
    get = lambda k: np.concatenate(cols[k])[order_rows]  # noqa: E731
    seq, pos, start = get("seq"), get("pos"), get("start")
    acts = get("acts")
    w = acts.shape[1] if acts.ndim == 2 else st.window
    seq_len = tokens.shape[1]
    width = min(w, seq_len)
    win = torch.as_tensor(start)[:, None] + torch.arange(width)
    tok = tokens[torch.as_tensor(seq)[:, None], win].numpy()
    acts = acts[:, :width].astype(np.float32)
    peak_tok = tokens[torch.as_tensor(seq), torch.as_tensor(pos)].numpy()
    n = len(seq)
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * width)
    return pa.table({
        "sae_id": pa.array([sid] * n, type=pa.string()), "feature": feature[order_rows],
        "band": pa.array(get("band").tolist(), type=pa.string()), "rank": get("rank"),
        "seq": seq, "pos": pos, "start": start, "peak": get("peak").astype(np.float64),
        "peak_token": peak_tok,
        "token_ids": pa.ListArray.from_arrays(offsets, pa.array(tok.reshape(-1))),
        "acts": pa.ListArray.from_arrays(offsets, pa.array(acts.reshape(-1))),
    })


def top_peak_tokens(examples: pa.Table, d_sae: int) -> list[list[tuple[int, int]]]:
    """Per feature, (token_id, count) of the peak tokens of its top examples, most common first."""
    feat = examples.column("feature").to_numpy()
    band = np.asarray(examples.column("band").to_pylist(), dtype=object)
    peak = examples.column("peak_token").to_numpy()
    m = band == "top"
    out: list[list[tuple[int, int]]] = [[] for _ in range(d_sae)]
    by_feat: dict[int, Counter] = {}
    for f_, tk in zip(feat[m].tolist(), peak[m].tolist(), strict=True):
        by_feat.setdefault(f_, Counter())[tk] += 1
    for f_, counter in by_feat.items():
        out[f_] = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return out


def top_peak_bigrams(examples: pa.Table, d_sae: int) -> list[list[tuple[tuple[int, int], int]]]:
    """Per feature, ((token before the peak, peak token), count) over its top examples, most
    common first; examples whose peak opens the window have no bigram."""
    feat = examples.column("feature").to_numpy()
    band = np.asarray(examples.column("band").to_pylist(), dtype=object)
    offset = examples.column("pos").to_numpy() - examples.column("start").to_numpy()
    ids = examples.column("token_ids").to_pylist()
    out: list[list[tuple[tuple[int, int], int]]] = [[] for _ in range(d_sae)]
    by_feat: dict[int, Counter] = {}
    for row in np.flatnonzero(band == "top").tolist():
        at = int(offset[row])
        if 0 < at < len(ids[row]):
            pair = (int(ids[row][at - 1]), int(ids[row][at]))
            by_feat.setdefault(int(feat[row]), Counter())[pair] += 1
    for f_, counter in by_feat.items():
        out[f_] = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return out


def auto_explanations(
    sid: str, peak_tokens: list[list[tuple[int, int]]], strings: list[str],
    bigrams: list[list[tuple[tuple[int, int], int]]] | None = None,
) -> pd.DataFrame:
    """Cheap labels, stored with source "auto": the most frequent tokens at the peak of the
    top examples; when one recurs, the most frequent (previous token, peak token) pair; and
    when the token before the peak recurs more often than that pair, in at least 30% of the
    examples (a feature of a context rather than of a token), that token: e.g.
    ``peaks on ' (' (7/10), '[' (2/10); most often ' f' ' (' (4/10)`` or
    ``peaks on 'type' (3/10), ...; after '-' (8/10)``."""
    def name(t: int) -> str:
        return repr(strings[t]) if t < len(strings) else f"#{t}"

    rows = []
    stamp = now_iso()
    for f_, counts in enumerate(peak_tokens):
        if not counts:
            continue
        total = sum(c for _, c in counts)
        text = "peaks on " + ", ".join(f"{name(t)} ({c}/{total})" for t, c in counts[:3])
        pairs = bigrams[f_] if bigrams is not None else []
        if pairs and pairs[0][1] > 1:
            (before, peak), c = pairs[0]
            text += f"; most often {name(before)} {name(peak)} ({c}/{total})"
        previous: Counter = Counter()
        for (before, _), c in pairs:
            previous[before] += c
        if previous:
            before, c = min(previous.items(), key=lambda kv: (-kv[1], kv[0]))
            if c > 1 and c > pairs[0][1] and 10 * c >= 3 * total:  # in 30% of them at least
                text += f"; after {name(before)} ({c}/{total})"
        rows.append((sid, f_, text, "auto", stamp))
    return pd.DataFrame(rows, columns=["sae_id", "feature", "text", "source", "updated_at"])
