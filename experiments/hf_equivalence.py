"""How closely featlab's hooked Hugging Face models reproduce HF's own, per architecture.

For each architecture's tiny random model (`featlab.models.hf.tiny`, `--seed` 0, SSD mixers
re-drawn by `redraw_ssd_mixers` so their recurrence shows; 2 x 80 tokens so every chunked op
runs more than one chunk), measured against HF's own forward and HF's own
step-by-step decoding with its cache:

- ``no hook``: the `HookedHFModel` forward with nothing attached (max abs; HF's code runs);
- ``residual identity``: every residual hook returns a copy of its input (max abs);
- ``mixer hooks``: every hook observed, so featlab's ops run inside the mixers it has adapters
  for (normwise relative error / max abs);
- ``state hook``: the same with ``use_state_hook=True`` (per-token states materialised);
- ``state vs decode``: ``hook_state`` of the parallel forward against HF's cache state after
  each decoded token (normwise), in featlab's orientation;
- ``patch at t``: zeroing ``hook_resid_mid`` of layer 0 (all architectures) and ``hook_state``
  of the first stateful mixer (where there is one) at t = 40: the largest change of the
  logits before t (must be exactly 0) and the smallest per-position change from t on
  (must be > 0: the patch propagates);
- ``zero hook_v``: how far zeroing the first mixer's ``hook_v`` moves the logits (normwise):
  whether the recurrence is visible in the logits at all at this init.

A dash marks what does not apply (no mixer adapter: GPT-2, Llama; no recurrent state: LFM2's
short convolution). The unit tests (`tests/models/hf/`) assert each of these per
architecture; this script reports the figures in one table.

    python experiments/hf_equivalence.py [--quick] [--out results/hf_equivalence]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sae_common import write_figure, write_table  # noqa: E402

SIZES = {"full": dict(batch=2, pos=80, patch_at=40), "quick": dict(batch=1, pos=12, patch_at=6)}


def _normwise(got: torch.Tensor, want: torch.Tensor) -> float:
    want = want.double()
    return float((got.double() - want).norm() / want.norm().clamp_min(1e-300))


def _max_abs(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want.double()).abs().max())


def _build(model_type: str, seed: int) -> Any:
    from transformers import AutoModelForCausalLM

    from featlab.models.hf.tiny import redraw_ssd_mixers, tiny_config

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(model_type)).eval()
    redraw_ssd_mixers(model, seed)  # else Bamba's and Falcon-H1's recurrence is invisible
    return model


def _stateful_layer(model: Any) -> int | None:
    """The first layer whose mixer adapter has a per-token state hook."""
    for index, block in enumerate(model.blocks):
        if hasattr(getattr(block, "mixer", None), "hook_state"):
            return index
    return None


def _adapter_layer(model: Any) -> int | None:
    from featlab.models.hf.mixers import MixerAdapter

    for index, block in enumerate(model.blocks):
        if isinstance(getattr(block, "mixer", None), MixerAdapter):
            return index
    return None


def decode_states(hf: Any, model_type: str, mixer: Any, layer: int,
                  tokens: torch.Tensor) -> torch.Tensor:
    """HF's own step-by-step decoding with its cache: the state of `layer` after every token,
    in featlab's orientation ``[b, t, heads, d_k, d_v]``. `mixer` is the HF mixer module."""
    from transformers import DynamicCache

    b = tokens.shape[0]
    cache = DynamicCache(config=hf.config)
    base = getattr(hf, "model", None)
    if hasattr(base, "_setup_cache"):  # RecurrentGemma keeps its state on the modules
        base._setup_cache(hf.config, b, tokens.device, torch.float32)
    states = []
    for i in range(tokens.shape[1]):
        # explicit positions: some hybrids otherwise take 0 (their first layer's cache is empty)
        hf(input_ids=tokens[:, i:i + 1], cache=cache, use_cache=True,
           position_ids=torch.full((b, 1), i))
        if model_type == "recurrent_gemma":  # [b, W] -> heads = W, d_k = d_v = 1
            state = mixer.rg_lru.recurrent_states[:, :, None, None]
        else:
            state = cache.get_recurrent_state(layer)
            if model_type in ("mamba2", "bamba", "falcon_h1"):  # HF's [b, H, P, N]
                state = state.transpose(-1, -2)
        states.append(state.clone())  # the cache updates in place
    return torch.stack(states, dim=1)


def _patch_effect(model: Any, tokens: torch.Tensor, hook: str, t: int,
                  clean: torch.Tensor) -> tuple[float, float]:
    """Zero `hook` at position t: (largest logit change before t, smallest per-position
    largest change from t on)."""
    def zero_at_t(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        x[:, t] = 0
        return x

    patched = model.run_with_hooks(tokens, fwd_hooks=[(hook, zero_at_t)])
    change = (patched - clean).abs().amax(dim=(0, 2))  # [pos]
    before = float(change[:t].max()) if t else 0.0
    return before, float(change[t:].min())


def measure(model_type: str, size: dict[str, int], seed: int = 0) -> dict[str, Any]:
    from featlab.models import HookedHFModel

    hf = _build(model_type, seed)
    tokens = torch.randint(3, 256, (size["batch"], size["pos"]),
                           generator=torch.Generator().manual_seed(seed + 1))
    t = size["patch_at"]
    with torch.no_grad():
        ref = hf(input_ids=tokens, use_cache=False).logits
        # each wrapper on its own copy: a wrapper's hooks stay on the modules it wraps
        model = HookedHFModel(copy.deepcopy(hf))
        row: dict[str, Any] = {"architecture": model_type,
                               "mixers": "/".join(model.cfg.mixer_kinds)}
        row["no hook (max abs)"] = _max_abs(model(tokens), ref)
        residual = [(name, lambda x, hook: x.clone()) for name in model.hook_dict
                    if ".mixer." not in name]
        row["residual identity (max abs)"] = _max_abs(
            model.run_with_hooks(tokens, fwd_hooks=residual), ref)
        before, after = _patch_effect(model, tokens, "blocks.0.hook_resid_mid", t, ref)
        row["resid_mid patch: before t"], row["resid_mid patch: min from t"] = before, after

        adapter = _adapter_layer(model)
        if adapter is not None:
            logits, _ = model.run_with_cache(tokens)
            row["mixer hooks (normwise)"] = _normwise(logits, ref)
            row["mixer hooks (max abs)"] = _max_abs(logits, ref)
            zeroed = model.run_with_hooks(tokens, fwd_hooks=[
                (f"blocks.{adapter}.mixer.hook_v", lambda x, hook: torch.zeros_like(x))])
            row["zero hook_v moves logits (normwise)"] = _normwise(zeroed, ref)

        stated = HookedHFModel(copy.deepcopy(hf), use_state_hook=True)
        layer = _stateful_layer(stated)
        if layer is not None:
            clean, cache = stated.run_with_cache(tokens)
            row["state hook (normwise)"] = _normwise(clean, ref)
            # the same mixer in the unwrapped model, which decodes with HF's code alone
            names = {module: name for name, module in stated.hf.named_modules()}
            mixer = hf.get_submodule(names[stated.blocks[layer].mixer.hf])
            hf_states = decode_states(hf, model_type, mixer, layer, tokens)
            row["state vs decode (normwise)"] = _normwise(
                cache[f"blocks.{layer}.mixer.hook_state"], hf_states)
            before, after = _patch_effect(stated, tokens, f"blocks.{layer}.mixer.hook_state",
                                          t, clean)
            row["state patch: before t"], row["state patch: min from t"] = before, after
    return row


def _figure(df: pd.DataFrame) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for column in ("mixer hooks (normwise)", "state hook (normwise)",
                   "state vs decode (normwise)"):
        if column in df:
            fig.add_bar(name=column, x=df["architecture"], y=df[column])
    fig.add_hline(y=1e-5, line_dash="dash", annotation_text="test tolerance 1e-5")
    fig.update_layout(title="featlab's hooked HF models vs HF's own forward and decoding (fp32)",
                      yaxis=dict(type="log", title="normwise relative error"),
                      barmode="group")
    return fig


def main(argv: list[str] | None = None) -> pd.DataFrame:
    from featlab.models.hf.tiny import TINY_TYPES

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short sequence (smoke test)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and tokens")
    parser.add_argument("--types", nargs="*", default=list(TINY_TYPES),
                        help="architectures (HF model_type) to measure")
    parser.add_argument("--out", type=Path, default=Path("results/hf_equivalence"))
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    df = pd.DataFrame([measure(model_type, size, args.seed) for model_type in args.types])
    write_table(df, args.out, "equivalence")
    note = write_figure(_figure(df), args.out, "equivalence")
    with pd.option_context("display.width", 250, "display.max_columns", None,
                           "display.float_format", "{:.1e}".format):
        print(df.to_string(index=False))
    if note:
        print(note)
    return df


if __name__ == "__main__":
    main()
