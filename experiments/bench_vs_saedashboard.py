"""featlab's feature analysis vs SAEDashboard 0.8.0, on the same model, SAE and tokens, on CPU.

One process, one random-weight TransformerLens `HookedTransformer` (2 layers, d_model 64,
d_vocab 512, n_ctx 64), one random-init featlab TopK SAE at ``blocks.1.hook_resid_post``
(unit-norm decoder rows), exported with `featlab.sae.save_sae` and loaded back by SAELens
(`sae_lens.SAE.load_from_disk`) for SAEDashboard, and the same random tokens (default 1024
sequences x 64 = 65,536 tokens). Each library is timed once over every latent after an untimed
tiny warm-up (8 sequences, 8 latents):

- featlab: `featlab.store.analyze` at its defaults (batches of 32 sequences, 20 top examples,
  4 quantile bands, correlations on), which also writes the Parquet store;
- SAEDashboard: `SaeVisRunner(SaeVisConfig(hook_point, features=all)).run(sae, model, tokens)`
  as its README does, at its defaults (`minibatch_size_features=256`: one forward pass over
  all tokens per 256 latents; `minibatch_size_tokens=64` sequences; float32; the default
  feature-centric layout). It returns the data in memory; no HTML is written.

Agreement, per latent, of what both compute the same way (counts out of all latents):

- max activation: featlab's ``features.max_act`` vs SAEDashboard's ``feature_stats.max``
  (both over every token), within 1e-4 relative;
- density: featlab's fraction of tokens with z > 0 vs SAEDashboard's ``frac_nonzero``
  (|z| > 1e-6, over every token); they agree when the implied counts of firing tokens match
  (a TopK code in (0, 1e-6] would count for featlab only);
- top / bottom logit tokens: featlab's ``logits`` table (top/bottom 10 of W_dec[f] @ W_U, the
  final norm ignored) vs SAEDashboard's logits table (10 rows of the same product, its
  ``feature_resid_dir @ W_U`` being W_dec for a residual-stream hook); the ordered token lists
  must be equal;
- top activating example (sequence, position): featlab keeps one example per sequence at its
  peak, searched over every position; SAEDashboard's TOP group is the top 20 *tokens* (a
  sequence can recur), and with its default ``SequencesConfig.buffer=(5, 5)`` it searches only
  positions 6 .. seq_len - 6 (it wants context on both sides). Only the first entry is
  compared. For the timed default run the comparison is made on the latents whose featlab
  peak lies in that window (where the argmax over the window is the global argmax); an
  untimed second SAEDashboard run with ``buffer=None`` (whole sequences) compares every
  latent. A latent dead in both (max 0) counts as agreeing. Where the two picks differ, the
  code is recomputed at both (`count_ties`): equal values mean a tie broken differently (in a
  random model position 0 of two sequences that start with the same token has the same
  residual stream, so the same code), which the table reports next to the count.

Not compared (defined differently): SAEDashboard's quantile groups are equal-width activation
intervals sampled uniformly at random, featlab's bands are equal-count quantiles of a seeded
reservoir of sequences; its correlation tables are neuron / feature Pearson coefficients over
the latents of one feature batch, featlab's neighbours are decoder cosines and activation
correlations over all latents; its histograms use its own bins.

SAELens 6.54's `TopKSAE.fold_W_dec_norm` refuses to run when ``rescale_acts_by_decoder_norm``
is False (it could change the top-k), and `SaeVisRunner.run` calls it unconditionally. The
featlab export writes False (featlab codes are not rescaled). With unit-norm decoder rows the
two settings give the same codes (the rescale multiplies by ones), so after checking the
norms the loaded SAELens object's ``cfg.rescale_acts_by_decoder_norm`` is set to True; the
fold then divides by ones. No installed package is edited.

At 16k latents SAEDashboard's full run does not fit in this machine's 24 GiB (it keeps every
latent's data in memory and was killed at 65k tokens): ``--dashboard-latents N`` times it on
the first N latents of the same SAE (N a multiple of its 256-latent batches; each batch is one
model pass plus the same per-latent work) and scales that time by ``latents / N`` for the
ratio; the table keeps both, and agreement is counted on those N.

Needs sae_dashboard: run in the venv `make bench-peers` builds.

    .venv-peers/bin/python experiments/bench_vs_saedashboard.py [--quick] [--latents 512]
        [--n-seq 1024] [--seq-len 64] [--k 8] [--dashboard-latents N]
        [--out results/bench_vs_saedashboard]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peers import require  # noqa: E402
from _probe_common import parse_args, print_tables, write_outputs  # noqa: E402

NAME = "bench_vs_saedashboard"
HOOK = "blocks.1.hook_resid_post"
SID = "sae"
SIZES: dict[str, dict[str, Any]] = {
    "full": dict(latents=512, n_seq=1024, seq_len=64, k=8, d_model=64, d_vocab=512),
    "quick": dict(latents=32, n_seq=16, seq_len=16, k=4, d_model=16, d_vocab=64),
}  # fmt: skip
QUANTITIES = ("top_example", "max_act", "density", "top_logits", "bottom_logits")


def _flags(p: Any) -> None:
    p.add_argument("--latents", type=int, default=None, help="SAE width (default 512)")
    p.add_argument("--n-seq", type=int, default=None, help="sequences (default 1024)")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default 64)")
    p.add_argument("--k", type=int, default=None, help="TopK k (default 8)")
    p.add_argument("--dashboard-latents", type=int, default=None,
                   help="SAEDashboard analyses only the first N latents (its time for all "
                        "is extrapolated); for widths whose full run does not fit in memory")
    p.add_argument("--no-full-window", action="store_true",
                   help="skip the untimed SAEDashboard run with buffer=None")  # fmt: skip


def build(size: dict, seed: int) -> tuple[Any, Any, torch.Tensor]:
    """(HookedTransformer, featlab TopK SAE, tokens [n_seq, seq_len])."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from featlab.sae import build_sae, make_config

    d = size["d_model"]
    cfg = HookedTransformerConfig(n_layers=2, d_model=d, n_ctx=max(64, size["seq_len"]),
                                  d_head=d // 4, n_heads=4, d_vocab=size["d_vocab"],
                                  act_fn="gelu", d_mlp=4 * d, seed=seed, device="cpu")  # fmt: skip
    model = HookedTransformer(cfg).eval()
    sae = build_sae(make_config("topk", d, size["latents"], size["k"], hook_name=HOOK,
                                seed=seed)).eval()  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, size["d_vocab"], (size["n_seq"], size["seq_len"]), generator=g)
    return model, sae, tokens


def to_saelens(sae: Any, path: Path) -> Any:
    """The featlab SAE through its SAELens directory, ready for `SaeVisRunner.run`."""
    from sae_lens import SAE

    from featlab.sae import save_sae

    save_sae(sae, path)
    lens = SAE.load_from_disk(str(path), device="cpu")
    norms = lens.W_dec.detach().norm(dim=-1)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-5):
        raise ValueError("decoder rows are not unit-norm; the rescale workaround would change "
                         "SAEDashboard's codes")  # fmt: skip
    if hasattr(lens.cfg, "rescale_acts_by_decoder_norm"):
        lens.cfg.rescale_acts_by_decoder_norm = True  # see the module docstring
    return lens


def run_featlab(model: Any, sae: Any, tokens: torch.Tensor, store: Path, seed: int) -> float:
    from featlab.store import analyze

    t0 = time.perf_counter()
    analyze(model, {SID: sae}, tokens, store, seed=seed, progress=False, overwrite=True)
    return time.perf_counter() - t0


def run_saedashboard(
    model: Any, lens: Any, tokens: torch.Tensor, features: list[int], full_window: bool = False
) -> tuple[float, Any]:
    from sae_dashboard.layout import SaeVisLayoutConfig
    from sae_dashboard.sae_vis_data import SaeVisConfig
    from sae_dashboard.sae_vis_runner import SaeVisRunner

    extra = {}
    if full_window:
        layout = SaeVisLayoutConfig.default_feature_centric_layout()
        layout.seq_cfg.buffer = None
        extra["feature_centric_layout"] = layout
    cfg = SaeVisConfig(hook_point=HOOK, features=features, device="cpu", dtype="float32",
                       **extra)  # fmt: skip
    with warnings.catch_warnings():  # eindex's per-call torch indexing deprecation warnings
        warnings.simplefilter("ignore", UserWarning)
        t0 = time.perf_counter()
        data = SaeVisRunner(cfg).run(encoder=lens, model=model, tokens=tokens)
        return time.perf_counter() - t0, data


def featlab_table(store: Path, d_sae: int) -> pd.DataFrame:
    """Per latent below `d_sae`: max_act, density, top_seq, top_pos, top_logits, bottom_logits."""
    feats = pd.read_parquet(store / "features" / f"{SID}.parquet").set_index("feature")
    ex = pd.read_parquet(store / "examples" / f"{SID}.parquet")
    top = ex[(ex["band"] == "top") & (ex["rank"] == 0)].set_index("feature")
    logits = pd.read_parquet(store / "logits" / f"{SID}.parquet").sort_values("rank")
    rows = []
    for f in range(d_sae):
        side = logits[logits["feature"] == f]
        rows.append(dict(
            feature=f, max_act=float(feats.loc[f, "max_act"]),
            density=float(feats.loc[f, "density"]),
            top_seq=int(top.loc[f, "seq"]) if f in top.index else -1,
            top_pos=int(top.loc[f, "pos"]) if f in top.index else -1,
            top_logits=tuple(side[side["side"] == "top"]["token_id"].tolist()),
            bottom_logits=tuple(side[side["side"] == "bottom"]["token_id"].tolist()),
        ))  # fmt: skip
    return pd.DataFrame(rows)


def dashboard_table(data: Any, features: list[int]) -> pd.DataFrame:
    """The same columns from SAEDashboard's `SaeVisData` (its stats follow `features`)."""
    stats = data.feature_stats
    rows = []
    for i, f in enumerate(features):
        fd = data.feature_data_dict[f]
        top_group = fd.sequence_data.seq_group_data[0].seq_data
        first = top_group[0] if top_group else None
        lt = fd.logits_table_data
        rows.append(dict(
            feature=f, max_act=float(stats.max[i]), density=float(stats.frac_nonzero[i]),
            top_seq=first.original_index if first else -1,
            top_pos=first.qualifying_token_index if first else -1,
            top_logits=tuple(lt.top_token_ids), bottom_logits=tuple(lt.bottom_token_ids),
        ))  # fmt: skip
    return pd.DataFrame(rows)


def agreement(
    ours: pd.DataFrame,
    theirs: pd.DataFrame,
    n_tokens: int,
    rtol: float = 1e-4,
    window: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Per latent, whether the two tables agree on each of `QUANTITIES`.

    Both frames have one row per latent (column ``feature``) with max_act, density, top_seq,
    top_pos, top_logits, bottom_logits. Max activations agree within `rtol` relative; densities
    when ``round(density * n_tokens)`` (the count of firing tokens) is equal; logit token lists
    when equal in order; top examples when (seq, pos) is equal, or when both are dead (max 0).
    `window` = (lo, hi): the other side searched positions lo .. hi - 1 only, so the top example
    is compared only where our peak lies there (NA elsewhere, not counted).
    """
    m = ours.merge(theirs, on="feature", suffixes=("_a", "_b"), validate="one_to_one")
    a, b = m["max_act_a"], m["max_act_b"]
    out = pd.DataFrame({"feature": m["feature"]})
    out["max_act"] = (a - b).abs() <= rtol * pd.concat([a.abs(), b.abs()], axis=1).max(axis=1)
    out["density"] = (m["density_a"] * n_tokens).round() == (m["density_b"] * n_tokens).round()
    for side in ("top_logits", "bottom_logits"):
        out[side] = [
            tuple(x) == tuple(y) for x, y in zip(m[f"{side}_a"], m[f"{side}_b"], strict=True)
        ]
    dead = (a <= 0) & (b <= 0)
    same = (m["top_seq_a"] == m["top_seq_b"]) & (m["top_pos_a"] == m["top_pos_b"])
    top = (same | dead).astype(object)
    if window is not None:
        inside = (m["top_pos_a"] >= window[0]) & (m["top_pos_a"] < window[1])
        top[~(inside | dead)] = pd.NA
    out["top_example"] = top
    return out


def count_agreement(per_feature: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """quantity -> (latents agreeing, latents compared); NA entries are not compared."""
    counts = {}
    for q in QUANTITIES:
        col = per_feature[q].dropna()
        counts[q] = (int(col.astype(bool).sum()), int(len(col)))
    return counts


@torch.no_grad()
def count_ties(
    model: Any,
    sae: Any,
    tokens: torch.Tensor,
    ours: pd.DataFrame,
    theirs: pd.DataFrame,
    per: pd.DataFrame,
    rtol: float = 1e-5,
) -> int:
    """Latents whose two top examples differ but whose code is equal (within `rtol`) at both
    picks: a tie broken differently (e.g. position 0 of two sequences with the same first
    token, whose residual stream is identical), not a disagreement on the maximum."""
    ties = 0
    for f in per.loc[per["top_example"] == False, "feature"]:  # noqa: E712
        z = []
        for t in (ours, theirs):
            row = t.loc[t["feature"] == f].iloc[0]
            _, cache = model.run_with_cache(tokens[int(row.top_seq)][None],
                                            names_filter=[HOOK], stop_at_layer=2)  # fmt: skip
            z.append(float(sae.encode(cache[HOOK][0, int(row.top_pos)][None])[0, f]))
        ties += abs(z[0] - z[1]) <= rtol * max(abs(z[0]), abs(z[1]))
    return int(ties)


def dashboard_window(seq_len: int) -> tuple[int, int]:
    """Positions SAEDashboard's default ``buffer=(5, 5)`` lets its top examples peak at."""
    from sae_dashboard.layout import SaeVisLayoutConfig

    buf = SaeVisLayoutConfig.default_feature_centric_layout().seq_cfg.buffer
    return (buf[0] + 1, seq_len - buf[1]) if buf is not None else (0, seq_len)


def figure(times: pd.DataFrame) -> Any:
    import plotly.express as px

    return px.bar(times, x="library", y="seconds", color="library", text_auto=".2f",
                  title=f"feature analysis of {times['latents'].iloc[0]} latents over "
                        f"{times['tokens'].iloc[0]} tokens (CPU)")  # fmt: skip


def bench(
    size: dict, seed: int, full_window: bool, dashboard_latents: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    model, sae, tokens = build(size, seed)
    d_sae, n_tokens = size["latents"], tokens.numel()
    features = list(range(min(d_sae, dashboard_latents or d_sae)))  # SAEDashboard's share
    tmp = Path(tempfile.mkdtemp(prefix="bench_vs_saedashboard_"))
    try:
        # untimed warm-up: first-call allocation and lazy imports of both libraries
        run_featlab(model, sae, tokens[:8], tmp / "warm_store", seed)
        run_saedashboard(model, to_saelens(sae, tmp / "warm_sae"), tokens[:8], features[:8])
        t_featlab = run_featlab(model, sae, tokens, tmp / "store", seed)
        t_dash, data = run_saedashboard(model, to_saelens(sae, tmp / "sae"), tokens, features)
        ours = featlab_table(tmp / "store", len(features))
        window = dashboard_window(size["seq_len"])
        per = agreement(ours, dashboard_table(data, features), n_tokens, window=window)
        counts = count_agreement(per)
        full, ties = None, 0
        if full_window:
            _, data_full = run_saedashboard(model, to_saelens(sae, tmp / "sae_full"), tokens,
                                            features, full_window=True)  # fmt: skip
            theirs_full = dashboard_table(data_full, features)
            per_full = agreement(ours, theirs_full, n_tokens)
            full = count_agreement(per_full)["top_example"]
            ties = count_ties(model, sae, tokens, ours, theirs_full, per_full)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    common = dict(latents=d_sae, tokens=n_tokens)
    # SAEDashboard's work is one model pass and the same per-latent work for each batch of
    # minibatch_size_features latents, so its time for all latents scales from a subset
    times = pd.DataFrame([
        dict(library="featlab analyze", seconds=t_featlab, latents_run=d_sae,
             seconds_measured=t_featlab, **common),
        dict(library="SAEDashboard", seconds=t_dash * d_sae / len(features),
             latents_run=len(features), seconds_measured=t_dash, **common),
    ])  # fmt: skip
    times["tokens_per_s"] = n_tokens / times["seconds"]
    times["seconds_vs_featlab"] = times["seconds"] / t_featlab
    notes = {
        "top_example": f"SAEDashboard default buffer: peaks at positions {window[0]}.."
        f"{window[1] - 1} only; latents whose featlab peak is there",
        "max_act": "rtol 1e-4, over every token",
        "density": "same count of firing tokens (z > 0 vs |z| > 1e-6)",
        "top_logits": "ordered top-10 token ids of W_dec @ W_U",
        "bottom_logits": "ordered bottom-10 token ids of W_dec @ W_U",
    }
    rows = [
        dict(quantity=q, agree=counts[q][0], compared=counts[q][1], of=len(features),
             note=notes[q])
        for q in QUANTITIES
    ]
    if full is not None:
        rows.insert(1, dict(quantity="top_example (buffer=None run)", agree=full[0],
                            compared=full[1], of=len(features),
                            note=f"untimed SAEDashboard run over whole sequences; {ties} of "
                                 f"the {full[1] - full[0]} differing picks are ties (equal z at "
                                 "both)"))  # fmt: skip
    return times, pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__, argv, extra=_flags)
    torch.set_num_threads(args.threads)
    require("sae_dashboard")
    size = dict(SIZES["quick" if args.quick else "full"])
    for key, val in (("latents", args.latents), ("n_seq", args.n_seq),
                     ("seq_len", args.seq_len), ("k", args.k)):  # fmt: skip
        if val:
            size[key] = val
    times, agree = bench(size, args.seed, full_window=not args.no_full_window,
                         dashboard_latents=args.dashboard_latents)  # fmt: skip
    write_outputs(NAME, times, figure(times), args.out,
                  extra_tables={f"{NAME}_agreement": agree})  # fmt: skip
    from importlib.metadata import version

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU; "
          f"sae-dashboard {version('sae-dashboard')}, sae-lens {version('sae-lens')}, "
          f"transformer-lens {version('transformer-lens')}; {size['latents']} latents (k "
          f"{size['k']}), {size['n_seq']} x {size['seq_len']} tokens")  # fmt: skip
    ratio = times["seconds"].iloc[1] / times["seconds"].iloc[0]
    scaled = times["latents_run"].iloc[1] < size["latents"]
    print(f"SAEDashboard / featlab seconds: {ratio:.2f}" + (
        f" (SAEDashboard timed on {times['latents_run'].iloc[1]} latents, scaled to "
        f"{size['latents']})" if scaled else ""))
    print_tables(times, agree)
    return times


if __name__ == "__main__":
    main()
