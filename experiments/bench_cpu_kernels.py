"""featlab's numba CPU kernels against their torch references, side by side in one process.

Four ops of the CPU SAE step (docs/kernels.md, "CPU kernels"): Matching Pursuit's Gram pick
loop (`gram_select`), its value replay forward + backward (`pursuit_replay`), TopK's row
top-k (`select_topk`), and the per-latent segment sum of the sparse backward
(`segment_sum`). Each is timed as the median of `--repeats` calls after a warm-up (which
also compiles the kernel), kernel and reference alternating, and reported with the ratio.

    python experiments/bench_cpu_kernels.py [--quick] [--out results/bench_cpu_kernels]
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

SIZES = {
    "full": dict(n=1024, d_in=64, d_sae=1024, k=8, repeats=40),
    "quick": dict(n=64, d_in=16, d_sae=64, k=4, repeats=3),
}


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def cases(s: dict) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """op -> (kernel call, reference call) on the same inputs."""
    from featlab.kernels.encode import select_topk
    from featlab.kernels.pursuit import (
        gram_select,
        gram_select_reference,
        pursuit_replay,
        pursuit_replay_reference,
    )
    from featlab.kernels.segments import coo_segment_sum, segment_sum

    g = torch.Generator().manual_seed(0)
    n, d, F, k = s["n"], s["d_in"], s["d_sae"], s["k"]
    W = torch.randn(F, d, generator=g)
    W = (W / W.norm(dim=1, keepdim=True)).requires_grad_()
    r0 = torch.randn(n, d, generator=g)
    with torch.no_grad():
        c0, G = r0 @ W.T, W @ W.T
    chosen = gram_select_reference(c0.clone(), G, k)
    pre = torch.randn(n, F, generator=g)
    idx = torch.randint(0, F, (n, k), generator=g)
    rows, cols = torch.arange(n).repeat_interleave(k), idx.reshape(-1)
    w, src = torch.randn(n * k, generator=g), torch.randn(n, d, generator=g)

    def replay(fn: Callable[..., Any]) -> Callable[[], None]:
        def run() -> None:
            W.grad = None
            fn(r0, W, chosen)[1].pow(2).sum().backward()

        return run

    return {
        "gram_select (MP pick loop)": (
            lambda: gram_select(c0.clone(), G, k), lambda: gram_select_reference(c0.clone(), G, k)
        ),
        "pursuit_replay fwd+bwd": (replay(pursuit_replay), replay(pursuit_replay_reference)),
        "row top-k (TopK select)": (
            lambda: select_topk(pre, k, cpu_kernel=True), lambda: select_topk(pre, k)
        ),
        "segment_sum (sparse dW)": (
            lambda: segment_sum(rows, cols, w, src, F),
            lambda: coo_segment_sum(rows, cols, w, src, F),
        ),
    }


def bench(s: dict) -> pd.DataFrame:
    rows = []
    for op, (kernel, reference) in cases(s).items():
        kernel(), reference()  # warm-up: compiles the kernel
        k_times, r_times = [], []
        for _ in range(s["repeats"]):  # alternate so load hits both alike
            k_times.append(_median_ms(kernel, 1))
            r_times.append(_median_ms(reference, 1))
        k_ms, r_ms = statistics.median(k_times), statistics.median(r_times)
        rows.append({
            "op": op, "n": s["n"], "d_in": s["d_in"], "d_sae": s["d_sae"], "k": s["k"],
            "numba_ms": k_ms, "torch_ms": r_ms, "speedup": r_ms / k_ms,
        })  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument("--out", type=Path, default=Path("results/bench_cpu_kernels"))
    args = p.parse_args(argv)
    from featlab.kernels.dispatch import numba_available

    if not numba_available():
        raise SystemExit("numba is not installed: pip install 'numba>=0.60'")
    df = bench(SIZES["quick" if args.quick else "full"])
    write_table(df, args.out, "bench_cpu_kernels")

    import plotly.express as px

    fig = px.bar(df, x="op", y="speedup", title="numba CPU kernels: speed-up over torch")
    note = write_figure(fig, args.out, "bench_cpu_kernels")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if note:
        print(note)
    return df


if __name__ == "__main__":
    main()
