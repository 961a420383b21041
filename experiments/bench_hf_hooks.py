"""What featlab's hooks cost on Hugging Face models: the hooked forward against HF's own.

For each architecture's tiny random model (`featlab.models.hf.tiny`: hidden 32, 2-3 layers),
one process times, alternating:

- the plain HF forward;
- the `HookedHFModel` forward with no hook active (the issue's goal: at most 1.15x);
- the same with every residual hook caching (`run_with_cache`, what an SAE pipeline pays);
- where featlab has mixer adapters, every hook caching including the mixers' insides (which
  runs featlab's ops in those mixers instead of HF's code), and the same with per-token
  states (``use_state_hook=True``).

Median of 15 alternating timed calls after a warm-up, batch [8, 128] tokens (the tiny
configs allow 128 positions), torch's threads as set by OMP_NUM_THREADS. The hooks cost a
fixed Python overhead per module call, so these tiny models are the worst case: a real
checkpoint does far more work per call.

    python experiments/bench_hf_hooks.py [--quick] [--out results/bench_hf_hooks]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sae_common import write_figure, write_table  # noqa: E402

SIZES = {"full": dict(batch=8, pos=128, repeats=15),
         "quick": dict(batch=1, pos=16, repeats=2)}


def _build(model_type: str) -> Any:
    from transformers import AutoModelForCausalLM

    from featlab.models.hf.tiny import tiny_config

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config(model_type)).eval()


def bench(model_type: str, size: dict[str, int]) -> dict[str, Any]:
    """One row: the plain HF forward and each hooked variant, each on its own copy of the
    same weights (a wrapper's hooks stay on the HF modules it wraps)."""
    import copy

    from featlab.models import HookedHFModel
    from featlab.models.hf.mixers import adapter_for

    hf = _build(model_type)
    tokens = torch.randint(3, 256, (size["batch"], size["pos"]),
                           generator=torch.Generator().manual_seed(0))
    hooked = HookedHFModel(copy.deepcopy(hf), mixer_hooks=False)
    kinds = {k for kind in hooked.cfg.mixer_kinds for k in kind.split("+")}
    adapters = any(adapter_for(model_type, k) is not None for k in kinds)
    variants: dict[str, Callable[[], Any]] = {
        "hf": lambda: hf(input_ids=tokens, use_cache=False),
        "hooked": lambda: hooked(tokens),
        "hooked+cache": lambda: hooked.run_with_cache(tokens),
    }
    if adapters:
        mixer = HookedHFModel(copy.deepcopy(hf), mixer_hooks=True)
        states = HookedHFModel(copy.deepcopy(hf), mixer_hooks=True, use_state_hook=True)
        variants["mixer hooks+cache"] = lambda: mixer.run_with_cache(tokens)
        variants["state hooks+cache"] = lambda: states.run_with_cache(tokens)
    row: dict[str, Any] = {"model_type": model_type, "mixers": "+".join(sorted(kinds)),
                           "adapters": adapters}
    with torch.no_grad():
        for fn in variants.values():
            fn()  # warm-up
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(size["repeats"]):  # alternate, so load changes hit every variant
            for name, fn in variants.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        row[f"{name}_ms"] = round(1e3 * statistics.median(ts), 3)
    for name in variants:
        if name != "hf":
            row[f"{name}_x"] = round(row[f"{name}_ms"] / row["hf_ms"], 3)
    return row


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one small size, 2 repeats")
    ap.add_argument("--seed", type=int, default=0, help="unused: the models are seeded")
    ap.add_argument("--out", type=Path, default=Path("results/bench_hf_hooks"))
    args = ap.parse_args(argv)
    from featlab.models.hf.tiny import TINY_TYPES

    size = SIZES["quick" if args.quick else "full"]
    rows = [bench(t, size) for t in TINY_TYPES]
    table = pd.DataFrame(rows)
    write_table(table, args.out, "bench_hf_hooks")
    import plotly.express as px

    ratios = [c for c in table.columns if c.endswith("_x")]
    fig = px.bar(table.melt(id_vars="model_type", value_vars=ratios), x="model_type",
                 y="value", color="variable", barmode="group",
                 title="featlab's hooked forward / HF's own forward (tiny models)")
    note = write_figure(fig, args.out, "bench_hf_hooks")
    print(table.to_string(index=False))
    if note:
        print(note)
    return table


if __name__ == "__main__":
    main()
