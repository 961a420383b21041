"""`analyze`: run a model and its SAE(s) over a token dataset and fill a feature store.

One pass over the data, batch by batch, updates a `FeatureStream` per SAE (bounded memory);
the state is checkpointed every `checkpoint_every` batches (or `checkpoint_seconds`) so an
interrupted run resumes where it stopped; inside `featlab._interrupt.stop_on_signals` a
SIGINT / SIGTERM checkpoints and raises `featlab.errors.Interrupted`. At the end every table
is written as one part per SAE with a deterministic name.

Store ids are never replaced silently. Each SAE's row records the fingerprint of what made
it (settings, tokens, model and SAE weights): analysing the same again is a no-op that
returns the stored rows, and analysing something else under a stored id (or resuming a
checkpoint made with other settings) raises `featlab.errors.RunConflict` unless
`overwrite=True`, which replaces analyze's own parts of that id in place (user-written
explanations are kept).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from featlab._atomic import atomic_path
from featlab._fingerprint import settings_fingerprint
from featlab._interrupt import stop_requested
from featlab.errors import Interrupted, RunConflict, UserError
from featlab.sae.sparse import coo_entries
from featlab.store import dictionary as dic
from featlab.store.examples import (
    auto_explanations,
    example_table,
    top_peak_bigrams,
    top_peak_tokens,
)
from featlab.store.ids import claim_ids, fingerprints, read_state, run_key
from featlab.store.schema import STATE_DIR
from featlab.store.stream import Entries, FeatureStream, dense_entries
from featlab.store.update import analysis_parts, remove_unreplaced
from featlab.store.writer import init_store, now_iso, write_part


@dataclass(frozen=True)
class AnalyzeConfig:
    """Settings of one `analyze` run (saved in the checkpoint to refuse a mismatched resume)."""

    batch_size: int = 32
    n_examples: int = 20
    quantile_bands: int = 4
    context_window: int = 8  # tokens each side of the peak
    n_neighbours: int = 10
    n_logits: int = 10
    n_hist_bins: int = 48
    correlations: bool = True
    seed: int = 0


def analyze(
    model: Any,
    saes: Any,
    tokens: torch.Tensor,
    store_path: str | Path,
    *,
    batch_size: int = 32,
    n_examples: int = 20,
    quantile_bands: int = 4,
    context_window: int = 8,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    vocab: Sequence[str] | None = None,
    model_name: str | None = None,
    n_neighbours: int = 10,
    n_logits: int = 10,
    correlations: bool = True,
    checkpoint_every: int = 100,
    checkpoint_seconds: float | None = None,
    model_path: str | Path | None = None,
    sae_paths: Mapping[str, str | Path] | None = None,
) -> pd.DataFrame:
    """Fill the store at `store_path` with every table computable from `model` + `saes`.

    model: a hooked model (HookedHybrid or HookedTransformer). saes: one SAE, a list, or a
    dict sae_id -> SAE; each needs `encode`, `decode`, `W_dec [d_sae, d_in]` and
    `cfg.hook_name`. tokens: `[n_seq, seq_len]` token ids. vocab: token strings (default: the
    model's tokenizer, else the ids as text). model_path / sae_paths (sae_id -> directory):
    where the saved model and SAEs live, recorded in each SAE's `config` JSON as
    `model_path` / `sae_path` (relative to the store when they share a parent) so the app's
    prompt view can load them without flags. checkpoint_every (batches; 0: never) /
    checkpoint_seconds: how often the pass is checkpointed. overwrite: replace stored ids and
    checkpoints that came from other settings (see the module docstring). Returns the `saes`
    table rows written (or stored, when the same analysis was already done).
    """
    cfg = AnalyzeConfig(
        batch_size=batch_size, n_examples=n_examples, quantile_bands=quantile_bands,
        context_window=context_window, n_neighbours=n_neighbours, n_logits=n_logits,
        correlations=correlations, seed=seed,
    )
    _check_config(cfg)
    tokens = _check_tokens(tokens, getattr(getattr(model, "cfg", None), "d_vocab", None))
    named = _name_saes(saes)
    hooks = {sid: _hook_of(model, sid, sae) for sid, sae in named.items()}
    layers = [_layer(h) for h in hooks.values()]
    stop = None if any(lay is None for lay in layers) else max(layers) + 1
    names = sorted(set(hooks.values()))
    _check_widths(model, named, hooks, tokens[:1], names, stop)  # before any file is written
    root = init_store(store_path)
    streams = {
        sid: FeatureStream(
            int(sae.W_dec.shape[1]), int(sae.W_dec.shape[0]), n_examples=n_examples,
            quantile_bands=quantile_bands, window=2 * context_window + 1,
            n_hist_bins=cfg.n_hist_bins, correlations=correlations,
        )
        for sid, sae in named.items()
    }
    prints = fingerprints(asdict(cfg), tokens, model, named, hooks)
    done_rows = claim_ids(root, prints, overwrite)
    if done_rows is not None:
        return done_rows
    fingerprint = settings_fingerprint(prints)
    state_path = root / STATE_DIR / f"{run_key(named)}.pt"
    generator = torch.Generator().manual_seed(seed)
    start = 0
    if state_path.exists():
        state = read_state(state_path)
        if state.get("fingerprint") == fingerprint:
            for sid, st in streams.items():
                st.load_state_dict(state["streams"][sid])
            generator.set_state(state["rng"])
            start = int(state["next_batch"])
        elif not overwrite:
            raise RunConflict(
                f"{root} holds an interrupted analyze of SAE(s) {sorted(named)} made with other "
                "settings, tokens or weights; pass {opt:overwrite=True} to discard it and start "
                "again, or analyze into another store"
            )
    n_batches = (len(tokens) + batch_size - 1) // batch_size
    bar = _progress(progress, n_batches, start)
    last_save = time.perf_counter()
    for i in range(start, n_batches):
        batch = tokens[i * batch_size : (i + 1) * batch_size]
        with torch.no_grad():
            _, cache = model.run_with_cache(batch, names_filter=names, stop_at_layer=stop)
            for sid, sae in named.items():
                x = cache[hooks[sid]]
                x = x.reshape(x.shape[0], x.shape[1], -1).float()
                if not torch.isfinite(x).all():
                    raise FloatingPointError(
                        f"non-finite activations at hook {hooks[sid]!r} in batch {i} "
                        f"(sequences {i * batch_size}..{i * batch_size + len(batch) - 1})"
                    )
                code, x_hat = _code_and_reconstruction(sae, x.reshape(-1, x.shape[-1]))
                streams[sid].update(x, code, x_hat.reshape(x.shape).float(), i * batch_size,
                                    generator)  # fmt: skip
        if bar is not None:
            bar.update(1)
        done = i + 1
        now = time.perf_counter()
        due = done < n_batches and (
            bool(checkpoint_every) and done % checkpoint_every == 0
            or checkpoint_seconds is not None and now - last_save >= checkpoint_seconds)
        if due:
            _save_state(state_path, fingerprint, streams, generator, done)
            last_save = now
        signal_name = stop_requested()
        if signal_name is not None and done < n_batches:
            if bar is not None:
                bar.close()
            if not due:
                _save_state(state_path, fingerprint, streams, generator, done)
            raise Interrupted("analyze", done, n_batches, state_path, signal_name)
    if bar is not None:
        bar.close()

    unknown = sorted(set(sae_paths or {}) - set(named))
    if unknown:
        raise KeyError(f"sae_paths names SAE(s) {unknown} not being analysed; SAE ids are "
                       f"{sorted(named)}")
    locations = {sid: _locations(root, model_path, (sae_paths or {}).get(sid)) for sid in named}
    # Overwriting: new parts replace old ones by rename (no gap for a reader of a served
    # store); old parts the new analysis does not write again go afterwards.
    stale = analysis_parts(root, list(named)) if overwrite else {}
    rows = _write_tables(root, model, named, hooks, streams, tokens, cfg, vocab, model_name,
                         locations, prints)
    remove_unreplaced(stale)
    state_path.unlink(missing_ok=True)
    return rows


def _code_and_reconstruction(sae: Any, flat: torch.Tensor) -> tuple[Entries, torch.Tensor]:
    """The positive entries of `sae`'s code of ``flat [n, d_in]`` and its reconstruction.
    featlab SAEs are read through their sparse code (no ``[n, d_sae]`` matrix); others
    (anything with `encode` / `decode`) through the dense one."""
    if not hasattr(sae, "encode_sparse"):
        z = sae.encode(flat)
        return dense_entries(z), sae.decode(z)
    code = sae.encode_sparse(flat)
    rows, cols, vals = coo_entries(code.vals.float(), code.idx, code.n_rows,
                                   int(sae.W_dec.shape[0]), code.rows)  # fmt: skip
    positive = vals > 0
    return Entries(rows[positive], cols[positive], vals[positive]), sae.decode_sparse(code)


# -- validation ---------------------------------------------------------------------------------
def _check_config(cfg: AnalyzeConfig) -> None:
    for name in ("batch_size", "n_examples", "quantile_bands"):
        if getattr(cfg, name) <= 0:
            raise UserError(f"{{opt:{name}}} must be positive, got {getattr(cfg, name)}")
    if cfg.context_window < 0:
        raise UserError(f"{{opt:context_window}} must be >= 0, got {cfg.context_window}")


def _check_tokens(tokens: Any, d_vocab: int | None) -> torch.Tensor:
    tokens = torch.as_tensor(tokens)
    if tokens.ndim != 2 or tokens.dtype.is_floating_point or tokens.numel() == 0:
        raise UserError(
            f"tokens must be integer ids of shape [n_seq, seq_len], got shape "
            f"{tuple(tokens.shape)} dtype {tokens.dtype}"
        )
    if d_vocab is not None and not 0 <= int(tokens.min()) <= int(tokens.max()) < d_vocab:
        raise UserError(
            f"token ids span {int(tokens.min())}..{int(tokens.max())} but the model's "
            f"vocabulary has ids 0..{d_vocab - 1}; were the tokens made for another model?"
        )
    return tokens.long()


def _name_saes(saes: Any) -> dict[str, Any]:
    if isinstance(saes, Mapping):
        named = {str(k): v for k, v in saes.items()}
    else:
        seq = list(saes) if isinstance(saes, (list, tuple)) else [saes]
        named = {}
        for sae in seq:
            c = sae.cfg
            base = f"{c.hook_name}/{c.kind}-{int(sae.W_dec.shape[0])}"
            sid, n = base, 1
            while sid in named:
                n += 1
                sid = f"{base}-{n}"
            named[sid] = sae
    if not named:
        raise UserError("no SAEs given; pass one SAE, a list or a dict sae_id -> SAE")
    for sid, sae in named.items():
        for attr in ("encode", "decode", "W_dec", "cfg"):
            if not hasattr(sae, attr):
                raise TypeError(f"SAE {sid!r} has no {attr!r}; pass a featlab/SAELens SAE")
    return named


def _hook_of(model: Any, sid: str, sae: Any) -> str:
    hook = getattr(sae.cfg, "hook_name", None)
    if not hook:
        raise UserError(f"SAE {sid!r} has no cfg.hook_name; set the hook it was trained on")
    if hook not in model.hook_dict:
        valid = [n for n in model.hook_dict if "hook_" in n]
        raise UserError(f"SAE {sid!r} reads hook {hook!r}, which the model lacks; valid: {valid}")
    return hook


def _check_widths(model: Any, saes: dict, hooks: dict, one: torch.Tensor, names: list[str],
                  stop: int | None) -> None:
    """Every SAE's d_in equals its hook's width (one sequence through the model)."""
    with torch.no_grad():
        _, cache = model.run_with_cache(one, names_filter=names, stop_at_layer=stop)
    for sid, sae in saes.items():
        x = cache[hooks[sid]]
        width = int(x.reshape(x.shape[0], x.shape[1], -1).shape[-1])
        if width != int(sae.W_dec.shape[1]):
            raise UserError(
                f"SAE {sid!r} takes d_in={int(sae.W_dec.shape[1])} but hook {hooks[sid]!r} "
                f"gives width {width}; pair it with the model (and hook) it was trained on")


def _layer(hook: str) -> int | None:
    parts = hook.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" else None


def _progress(enabled: bool, total: int, initial: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="analyze", unit="batch")


def _save_state(
    path: Path, fingerprint: str, streams: dict, generator: torch.Generator, next_batch: int
) -> None:
    state = {
        "fingerprint": fingerprint, "next_batch": next_batch, "rng": generator.get_state(),
        "streams": {sid: st.state_dict() for sid, st in streams.items()},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _locations(root: Path, model_path: Any, sae_path: Any) -> dict[str, str]:
    """{"model_path": ..., "sae_path": ...} for the SAE's config JSON: paths relative to the
    store where possible (a store moved together with its runs keeps working), else absolute.
    `featlab.app.live` resolves relative ones against the store directory."""
    out = {}
    for key, value in (("model_path", model_path), ("sae_path", sae_path)):
        if value is None:
            continue
        path = Path(value).expanduser().resolve()
        try:
            out[key] = os.path.relpath(path, root.resolve())
        except ValueError:  # another drive (Windows): keep it absolute
            out[key] = str(path)
    return out


# -- tables ------------------------------------------------------------------------------------
def _vocab_strings(model: Any, vocab: Sequence[str] | None, d_vocab: int) -> list[str]:
    if vocab is not None:
        return [str(v) for v in vocab]
    tok = getattr(model, "tokenizer", None)
    if tok is not None:
        return [tok.decode([i]) for i in range(d_vocab)]
    return [str(i) for i in range(d_vocab)]


def _write_tables(
    root: Path, model: Any, saes: dict, hooks: dict, streams: dict, tokens: torch.Tensor,
    cfg: AnalyzeConfig, vocab: Sequence[str] | None, model_name: str | None,
    locations: dict[str, dict[str, str]], prints: dict[str, str],
) -> pd.DataFrame:
    d_vocab = int(getattr(model.cfg, "d_vocab", int(tokens.max()) + 1))
    strings = _vocab_strings(model, vocab, d_vocab)
    write_part(root, "vocab", {"token_id": list(range(len(strings))), "token": strings},
               name="vocab")
    name = model_name or str(getattr(model.cfg, "model_name", None) or type(model).__name__)
    w_u = getattr(model, "W_U", None)
    saes_rows = []
    for sid, sae in saes.items():
        st: FeatureStream = streams[sid]
        w_dec = sae.W_dec.detach().float().cpu()
        summary = st.summary()
        t = st.t
        count = t["count"]
        n_tok = max(summary["n_tokens"], 1)
        examples = example_table(sid, st, tokens)
        peak_tokens = top_peak_tokens(examples, w_dec.shape[0])
        xy = dic.pca_map(w_dec)
        features = pd.DataFrame({
            "sae_id": sid, "feature": np.arange(w_dec.shape[0]),
            "density": (count.double() / n_tok).numpy(), "max_act": t["max"].double().numpy(),
            "mean_act": (t["sum"] / count.clamp_min(1)).numpy(), "dead": (count == 0).numpy(),
            "x": xy[:, 0].double().numpy(), "y": xy[:, 1].double().numpy(),
            "top_token": [strings[c[0][0]] if c and c[0][0] < len(strings) else None
                          for c in peak_tokens],
        })
        feat_arrow = pa.Table.from_pandas(features, preserve_index=False).append_column(
            "hist", pa.array(list(t["hist"].numpy()), type=pa.list_(pa.int64()))
        )
        write_part(root, "features", feat_arrow, name=sid)
        write_part(root, "examples", examples, name=sid)
        frames = [dic.decoder_neighbours(sid, w_dec, cfg.n_neighbours)]
        if cfg.correlations:
            live = ~(count == 0)

            def corr(rows: torch.Tensor, st: FeatureStream = st, live: torch.Tensor = live):
                c = st.correlation_rows(rows)
                c.masked_fill_(~live[None, :] | ~live[rows, None], torch.nan)
                return c

            vals, idxs = dic.topk_rows(corr, w_dec.shape[0], cfg.n_neighbours, exclude_self=True)
            frames.append(dic.neighbour_frame(sid, "act_correlation", vals, idxs, sid))
        for other, osae in saes.items():
            if other != sid and osae.W_dec.shape[1] == w_dec.shape[1]:
                frames.append(dic.cross_sae_matches(sid, w_dec, other, osae.W_dec.detach().cpu()))
        write_part(root, "neighbours", pd.concat(frames, ignore_index=True), name=sid)
        if w_u is not None and w_u.shape[0] == w_dec.shape[1]:
            write_part(root, "logits", dic.logit_effects(sid, w_dec, w_u.detach().cpu(),
                                                         cfg.n_logits), name=sid)
        bigrams = top_peak_bigrams(examples, w_dec.shape[0])
        write_part(root, "explanations", auto_explanations(sid, peak_tokens, strings, bigrams),
                   name=f"auto-{sid}")
        c = sae.cfg
        config = c.to_json() if hasattr(c, "to_json") else json.dumps(
            {k: v for k, v in vars(c).items() if isinstance(v, (str, int, float, bool))}
        )
        parsed = json.loads(config)
        if isinstance(parsed, dict):
            config = json.dumps({**parsed, **locations.get(sid, {}),
                                 "analyze_fingerprint": prints[sid]})
        row = {
            "sae_id": sid, "model": name, "hook": hooks[sid], "kind": str(c.kind),
            "d_in": int(w_dec.shape[1]), "d_sae": int(w_dec.shape[0]),
            "k": getattr(c, "k", None), "ce_recovered": float("nan"),
            "hist_edges": st.hist_edges(), "config": config, "created_at": now_iso(), **summary,
        }
        write_part(root, "saes", {k: [v] for k, v in row.items()}, name=sid)
        saes_rows.append(row)
    return pd.DataFrame(saes_rows)
