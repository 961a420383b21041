"""Where a TopK training step's time goes on CPU, at widths 1k-64k: featlab's `train_sae`
(its defaults) and, when installed (`make bench-peers`), sparsify's loop beside it.

torch.profiler records a run of ``--steps`` steps after an untimed warm-up run; every op's
self time goes to one phase by its name: the encoder product (addmm / mm / matmul), selection
(topk, featlab's TopKEncode body, sort), decode (embedding_bag, SparseDecode), backward
(autograd nodes ``*Backward*``, segment sums), optimizer (``Optimizer.step``, lerp, sign,
swaps), and bookkeeping (everything else: statistics, FVU, copies, casts). The table gives
milliseconds per step per phase; a run's one-off work (b_dec's geometric median on the
first batch) is spread over its steps, under bookkeeping.

    .venv-peers/bin/python experiments/profile_sae_step.py [--quick]
        [--widths 1024,4096,16384,65536] [--steps 10] [--out results/profile_sae_step]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peers import installed  # noqa: E402
from _probe_common import comma_list, parse_args, print_tables, write_outputs  # noqa: E402
from _sae_common import endless_batches  # noqa: E402

NAME = "profile_sae_step"
SIZES = {
    "full": dict(d_in=64, k=8, batch=1024, steps=10, widths="1024,4096,16384,65536"),
    "quick": dict(d_in=16, k=4, batch=64, steps=2, widths="64"),
}
PHASES = ("encoder product", "selection", "decode", "backward", "optimizer", "bookkeeping")
_RULES = (  # first match wins; names are lower-cased
    ("backward", ("backward", "segment_sum")),
    ("optimizer", ("optimizer.step", "lerp", "sign", "bitwise_xor", "zero_grad")),
    ("encoder product", ("addmm", "aten::mm", "matmul")),
    ("selection", ("topk", "sort")),
    ("decode", ("embedding_bag", "sparsedecode")),
)


def _flags(p: Any) -> None:
    p.add_argument("--widths", type=comma_list(int), default=None, help="comma-separated latents")
    p.add_argument("--steps", type=int, default=None)


def phase_of(name: str) -> str:
    low = name.lower()
    for phase, keys in _RULES:
        if any(key in low for key in keys):
            return phase
    return "bookkeeping"


def _train(library: str, x: torch.Tensor, width: int, size: dict, steps: int) -> None:
    if library == "sparsify":
        from _peers import train_sparsify

        train_sparsify(endless_batches(x, size["batch"]), x.shape[1], width, size["k"], steps, 0)
        return
    from featlab.sae import train_sae

    train_sae(endless_batches(x, size["batch"]), kind="topk", d_sae=width, k=size["k"],
              tokens=steps * size["batch"], batch_size=size["batch"], progress=False)  # fmt: skip


def profile(library: str, x: torch.Tensor, width: int, size: dict) -> dict:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    _train(library, x, width, size, 2)  # untimed: compilation, allocation
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        _train(library, x, width, size, size["steps"])
    ms = dict.fromkeys(PHASES, 0.0)
    for event in prof.key_averages():
        ms[phase_of(event.key)] += event.self_cpu_time_total / 1e3 / size["steps"]
    return {"library": library, "d_sae": width, **ms, "total": sum(ms.values())}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__, argv, extra=_flags)
    torch.set_num_threads(args.threads)
    size = dict(SIZES["quick" if args.quick else "full"])
    if args.steps:
        size["steps"] = args.steps
    widths = args.widths or comma_list(int)(size["widths"])
    libraries = ["featlab"]
    if installed("sparsify"):
        libraries.append("sparsify")
    else:
        print(f"{NAME}: sparsify is not installed, so its rows are skipped (make bench-peers)",
              file=sys.stderr)  # fmt: skip
    from featlab.datasets import make_superposition

    x = make_superposition(4 * size["batch"], n_features=4 * size["d_in"], d=size["d_in"],
                           l0=size["k"], seed=args.seed).acts  # fmt: skip
    rows = [profile(lib, x, width, size) for width in widths for lib in libraries]
    table = pd.DataFrame(rows)
    import plotly.express as px

    long = table.melt(id_vars=["library", "d_sae"], value_vars=list(PHASES), var_name="phase",
                      value_name="ms_per_step")  # fmt: skip
    fig = px.bar(long, x="library", y="ms_per_step", color="phase", facet_col="d_sae",
                 title=f"TopK training step on CPU, batch {size['batch']}, k {size['k']}")
    write_outputs(NAME, table, fig, args.out)
    print_tables(table)
    return table


if __name__ == "__main__":
    main()
