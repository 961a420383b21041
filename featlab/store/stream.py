"""Streaming per-feature statistics of one SAE, updated batch by batch in bounded memory.

Memory is independent of the number of tokens: counts, sums and a log-activation histogram
per feature; a top-`n_examples` heap of max-activating sequences; a uniform reservoir of
`n_examples * quantile_bands` activating sequences (bottom-k of random keys, which is a
uniform sample without replacement) from which quantile bands are cut at the end; and,
optionally, the `[d_sae, d_sae]` co-activation Gram matrix for activation correlations.
Every tensor lives in `state_dict()` so a run can be checkpointed and resumed exactly.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from featlab.kernels.gram import accumulate_gram

_NEG = float("-inf")


class Entries(NamedTuple):
    """The positive activations of a batch's code, sorted by token: token ``rows``, latent
    ``cols`` (int64) and float32 ``vals``, each ``[nnz]``."""

    rows: torch.Tensor
    cols: torch.Tensor
    vals: torch.Tensor


def dense_entries(z: torch.Tensor) -> Entries:
    """`Entries` of a dense code ``z [..., d_sae]`` (tokens flattened in order)."""
    zf = z.reshape(-1, z.shape[-1]).float()
    rows, cols = (zf > 0).nonzero(as_tuple=True)
    return Entries(rows, cols, zf[rows, cols])


class FeatureStream:
    """Accumulates the statistics of `d_sae` latents over batches of `[batch, pos]` tokens,
    each given as the `Entries` of its code."""

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        n_examples: int,
        quantile_bands: int,
        window: int,
        hist_range: tuple[float, float] = (-6.0, 2.0),
        n_hist_bins: int = 48,
        correlations: bool = True,
    ) -> None:
        self.d_in, self.d_sae = d_in, d_sae
        self.n_examples, self.quantile_bands, self.window = n_examples, quantile_bands, window
        self.hist_lo, self.hist_hi = hist_range
        self.n_hist_bins = n_hist_bins
        self.correlations = correlations
        f, r = d_sae, n_examples * quantile_bands
        self.t: dict[str, torch.Tensor] = {
            "n_tokens": torch.zeros((), dtype=torch.int64),
            "count": torch.zeros(f, dtype=torch.int64),
            "sum": torch.zeros(f, dtype=torch.float64),
            "sum_sq": torch.zeros(f, dtype=torch.float64),
            "max": torch.zeros(f, dtype=torch.float32),
            "hist": torch.zeros(f, n_hist_bins, dtype=torch.int64),
            # reconstruction metrics
            "sq_err": torch.zeros((), dtype=torch.float64),
            "x_sum": torch.zeros(d_in, dtype=torch.float64),
            "x_sq": torch.zeros((), dtype=torch.float64),
            "l0_sum": torch.zeros((), dtype=torch.float64),
            # top examples: peak value, sequence, peak position, window start, window acts
            "top_val": torch.full((f, n_examples), _NEG),
            "top_seq": torch.full((f, n_examples), -1, dtype=torch.int64),
            "top_pos": torch.zeros((f, n_examples), dtype=torch.int64),
            "top_start": torch.zeros((f, n_examples), dtype=torch.int64),
            "top_acts": torch.zeros((f, n_examples, window)),
            # uniform reservoir of activating sequences (key = random priority)
            "res_key": torch.full((f, r), _NEG),
            "res_val": torch.zeros((f, r)),
            "res_seq": torch.full((f, r), -1, dtype=torch.int64),
            "res_pos": torch.zeros((f, r), dtype=torch.int64),
            "res_start": torch.zeros((f, r), dtype=torch.int64),
            "res_acts": torch.zeros((f, r, window)),
        }
        if correlations:
            self.t["gram"] = torch.zeros(f, f, dtype=torch.float32)

    # -- checkpointing --------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.t)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.t) - set(state)
        if missing:
            raise ValueError(f"checkpoint lacks {sorted(missing)}; delete it and start over")
        for key, value in state.items():
            if key in self.t and value.shape != self.t[key].shape:
                raise ValueError(
                    f"checkpoint tensor {key!r} has shape {tuple(value.shape)}, expected "
                    f"{tuple(self.t[key].shape)}; delete the checkpoint and start over"
                )
        self.t = {k: state[k] for k in self.t}

    # -- one batch --------------------------------------------------------------------------
    @torch.no_grad()
    def update(
        self,
        x: torch.Tensor,
        code: Entries,
        x_hat: torch.Tensor,
        seq_offset: int,
        generator: torch.Generator,
    ) -> None:
        """x, x_hat: `[batch, pos, d_in]`; code: the batch's positive activations (`Entries`
        over its `batch * pos` tokens; `dense_entries` turns a dense code into them).

        `seq_offset` is the dataset index of the batch's first sequence. Nothing of size
        `[tokens, d_sae]` is built: the work is over the entries, plus `[batch, d_sae]` per
        sequence peaks.
        """
        t = self.t
        b, p = x.shape[0], x.shape[1]
        n, f = b * p, self.d_sae
        rows, cols, vals = code
        t["n_tokens"] += n
        t["count"] += torch.bincount(cols, minlength=f)
        t["sum"].index_add_(0, cols, vals.double())
        t["sum_sq"].index_add_(0, cols, vals.double() ** 2)
        t["max"].scatter_reduce_(0, cols, vals, reduce="amax")
        t["l0_sum"] += rows.numel()
        xf = x.reshape(n, -1).double()
        t["sq_err"] += ((xf - x_hat.reshape(n, -1).double()) ** 2).sum()
        t["x_sum"] += xf.sum(0)
        t["x_sq"] += (xf**2).sum()

        width = (self.hist_hi - self.hist_lo) / self.n_hist_bins
        bins = ((torch.log10(vals) - self.hist_lo) / width).floor().clamp(0, self.n_hist_bins - 1)
        flat = cols * self.n_hist_bins + bins.long()
        t["hist"].view(-1).index_add_(0, flat, torch.ones_like(flat))

        if self.correlations:
            accumulate_gram(t["gram"], rows, cols, vals, n)

        # Per sequence: peak value and (first) position of every feature, and its window.
        seq, pos = rows // p, rows % p
        cell = seq * f + cols  # (sequence, feature) of each entry
        peak = torch.zeros(b * f).scatter_reduce_(0, cell, vals, reduce="amax")
        at_peak = vals == peak[cell]
        peak_pos = torch.full((b * f,), p, dtype=torch.int64)
        peak_pos.scatter_reduce_(0, cell[at_peak], pos[at_peak], reduce="amin")
        peak, peak_pos = peak.view(b, f).T, peak_pos.view(b, f).T  # [d_sae, batch]
        live = peak > 0
        peak_pos = torch.where(live, peak_pos, 0)
        w = min(self.window, p)
        start = (peak_pos - self.window // 2).clamp(0, p - w)
        top_keys = torch.where(live, peak, _NEG)
        res_keys = torch.where(live, torch.rand(f, b, generator=generator), _NEG)
        # Only features with a candidate that beats their current last entry change; after
        # the first batches that is a small share of them.
        to_top = (top_keys.max(1).values > t["top_val"][:, -1]).nonzero()[:, 0]
        to_res = (res_keys.max(1).values > t["res_key"][:, -1]).nonzero()[:, 0]
        feats = torch.unique(torch.cat([to_top, to_res]))
        if feats.numel() == 0:
            return
        slot = torch.full((f,), -1, dtype=torch.int64)
        slot[feats] = torch.arange(feats.numel())
        # the window of each changing feature in each sequence, scattered from the entries
        acts = torch.zeros(feats.numel(), b, self.window)
        e_slot = slot[cols]
        offset = pos - start[cols, seq]
        keep = (e_slot >= 0) & (offset >= 0) & (offset < w)
        acts.view(-1)[((e_slot * b + seq) * self.window + offset)[keep]] = vals[keep]
        seqs = torch.arange(seq_offset, seq_offset + b).expand(feats.numel(), b)
        cand = {"val": peak[feats], "seq": seqs, "pos": peak_pos[feats],
                "start": start[feats], "acts": acts}  # fmt: skip
        for prefix, keys, chosen in (("top", top_keys, to_top), ("res", res_keys, to_res)):
            at = slot[chosen]
            self._merge(prefix, chosen, keys[chosen], {k: v[at] for k, v in cand.items()})

    def _merge(
        self, prefix: str, feats: torch.Tensor, keys: torch.Tensor, cand: dict[str, torch.Tensor]
    ) -> None:
        """Keep the largest keys of (current entries, this batch's candidates) of `feats`."""
        if feats.numel() == 0:
            return
        t = self.t
        key_name = "top_val" if prefix == "top" else "res_key"
        cap = t[key_name].shape[1]
        all_keys = torch.cat([t[key_name][feats], keys], dim=1)
        top = torch.topk(all_keys, cap, dim=1, sorted=True).indices  # [len(feats), cap]
        t[key_name][feats] = torch.gather(all_keys, 1, top)
        fields = ["seq", "pos", "start"] + (["val"] if prefix == "res" else [])
        for name in fields:
            cur = t[f"{prefix}_{name}"]
            merged = torch.cat([cur[feats], cand[name].to(cur.dtype)], 1)
            cur[feats] = torch.gather(merged, 1, top)
        merged = torch.cat([t[f"{prefix}_acts"][feats], cand["acts"]], dim=1)
        t[f"{prefix}_acts"][feats] = torch.gather(
            merged, 1, top.unsqueeze(-1).expand(-1, -1, self.window)
        )

    # -- results ----------------------------------------------------------------------------
    def hist_edges(self) -> list[float]:
        """log10 bin edges of `hist` (the first and last bins also hold the out-of-range)."""
        width = (self.hist_hi - self.hist_lo) / self.n_hist_bins
        return [self.hist_lo + i * width for i in range(self.n_hist_bins + 1)]

    def summary(self) -> dict[str, Any]:
        t = self.t
        n = max(int(t["n_tokens"]), 1)
        mean = t["x_sum"] / n
        total_var = float(t["x_sq"]) - n * float((mean**2).sum())
        return {
            "n_tokens": int(t["n_tokens"]),
            "l0": float(t["l0_sum"]) / n,
            "fvu": float(t["sq_err"]) / total_var if total_var > 0 else math.nan,
            "dead_frac": float((t["count"] == 0).double().mean()),
        }

    def correlation_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Pearson correlation of latents `rows` with every latent, `[len(rows), d_sae]`
        (non-finite where a latent never varied)."""
        t = self.t
        n = max(int(t["n_tokens"]), 1)
        mu = t["sum"] / n
        sd = (t["sum_sq"] / n - mu**2).clamp_min(0).sqrt()
        mu, sd = mu.float(), sd.float()
        # float32 in place: a [1024, d_sae] chunk per call (ranking needs no more precision)
        corr = t["gram"][rows].div_(n).sub_(mu[rows, None] * mu[None, :])
        return corr.div_(sd[rows, None]).div_(sd[None, :])  # inf/NaN where sd = 0
