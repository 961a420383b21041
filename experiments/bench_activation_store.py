"""Activation throughput from one Hugging Face model: featlab's `ActivationSource` against
SAELens's `ActivationsStore`, side by side in one process.

Both wrap the same `HookedHFModel` (SAELens drives it through `run_with_cache` with
`stop_at_layer`, as it does a HookedTransformer) and produce shuffled `[batch, d_in]` rows of
one residual hook from the same pre-tokenised sequences through shuffling buffers of the same
number of rows, until 4 buffers' worth of rows; the table gives
tokens/s per library and their ratio, alternating the two `--repeats` times (median), and the
model's forward alone (as the stores call it, nothing stored or shuffled): the rate no store
can beat by more than noise, so ``forward alone / saelens`` is about the most any store could
gain over SAELens's. Two
model widths show where each library's own overhead matters: at the tiny width the model is
cheap and the store's bookkeeping shows; at the larger one both wait on the same forward.

    python experiments/bench_activation_store.py [--quick] [--out results/bench_activation_store]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sae_common import write_figure, write_table  # noqa: E402

# rows = 4 buffers, so filling the first buffer (both libraries fill one before the first
# batch) does not decide the figure
SIZES = {"full": dict(n_seq=512, context=128, rows=131_072, batch=1024, buffer_rows=32_768,
                      widths=(32, 128), repeats=5, model_type="llama"),
         "quick": dict(n_seq=32, context=16, rows=1024, batch=128, buffer_rows=512,
                       widths=(32,), repeats=1, model_type="llama")}
HOOK = "blocks.1.hook_resid_post"


def _model(model_type: str, width: int) -> Any:
    from transformers import AutoModelForCausalLM

    from featlab.models import HookedHFModel
    from featlab.models.hf.tiny import tiny_config

    torch.manual_seed(0)
    cfg = tiny_config(model_type, hidden_size=width, intermediate_size=2 * width)
    return HookedHFModel(AutoModelForCausalLM.from_config(cfg).eval())


def _featlab_rows(model: Any, tokens: torch.Tensor, rows: int, batch: int,
                  buffer_rows: int) -> float:
    from featlab.sae.activations import ActivationSource

    t0 = time.perf_counter()
    src = ActivationSource(model, HOOK, tokens, batch_size=32, seed=0, buffer_size=buffer_rows)
    n = 0
    for x in src.batches(batch):
        n += x.shape[0]
        if n >= rows:
            break
    return n / (time.perf_counter() - t0)


def _forward_rows(model: Any, tokens: torch.Tensor, rows: int, batch: int,
                  buffer_rows: int) -> float:
    """The model's forward alone, as both stores call it (32 sequences, up to the hook's
    layer, only that hook cached): no store can deliver rows faster than this."""
    layer = int(HOOK.split(".")[1])
    t0 = time.perf_counter()
    n, start = 0, 0
    while n < rows:
        chunk = tokens[start:start + 32]
        start = (start + 32) % tokens.shape[0]
        _, cache = model.run_with_cache(chunk, names_filter=HOOK, stop_at_layer=layer + 1)
        n += cache[HOOK].shape[0] * cache[HOOK].shape[1]
    return n / (time.perf_counter() - t0)


def _saelens_rows(model: Any, tokens: torch.Tensor, rows: int, batch: int,
                  buffer_rows: int) -> float:
    from datasets import Dataset
    from sae_lens import ActivationsStore

    t0 = time.perf_counter()
    store = ActivationsStore(
        model, Dataset.from_dict({"input_ids": tokens.tolist()}), streaming=False,
        hook_name=HOOK, hook_head_index=None, context_size=tokens.shape[1],
        # SAELens's mixing buffer holds n_batches_in_buffer * context_size rows
        d_in=model.cfg.d_model, n_batches_in_buffer=buffer_rows // tokens.shape[1],
        total_training_tokens=rows,
        store_batch_size_prompts=32, train_batch_size_tokens=batch, prepend_bos=False,
        normalize_activations="none", device=torch.device("cpu"), dtype="float32",
    )  # fmt: skip
    n = 0
    while n < rows:
        n += store.next_batch().shape[0]
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repeat")
    ap.add_argument("--seed", type=int, default=0, help="seed of the token sequences")
    ap.add_argument("--out", type=Path, default=Path("results/bench_activation_store"))
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    size = SIZES["quick" if args.quick else "full"]
    tokens = torch.randint(3, 256, (size["n_seq"], size["context"]),
                           generator=torch.Generator().manual_seed(args.seed))
    rows = []
    for width in size["widths"]:
        model = _model(size["model_type"], width)
        speeds: dict[str, list[float]] = {"featlab": [], "saelens": [], "forward": []}
        with torch.no_grad():
            for _ in range(size["repeats"]):
                run = (model, tokens, size["rows"], size["batch"], size["buffer_rows"])
                speeds["featlab"].append(_featlab_rows(*run))
                speeds["saelens"].append(_saelens_rows(*run))
                speeds["forward"].append(_forward_rows(*run))
        f, s = statistics.median(speeds["featlab"]), statistics.median(speeds["saelens"])
        bare = statistics.median(speeds["forward"])
        rows.append({"model": f"{size['model_type']} (hidden {width}, 2 layers)",
                     "rows": size["rows"], "featlab_tokens_per_s": round(f),
                     "saelens_tokens_per_s": round(s), "featlab / saelens": round(f / s, 2),
                     "forward_alone_tokens_per_s": round(bare),
                     "forward alone / saelens": round(bare / s, 2)})
    table = pd.DataFrame(rows)
    write_table(table, args.out, "bench_activation_store")
    import plotly.express as px

    fig = px.bar(table.melt(id_vars="model", value_vars=["featlab_tokens_per_s",
                                                         "saelens_tokens_per_s"]),
                 x="model", y="value", color="variable", barmode="group",
                 title="Activation rows per second from one HF model")
    note = write_figure(fig, args.out, "bench_activation_store")
    print(table.to_string(index=False))
    if note:
        print(note)
    return table


if __name__ == "__main__":
    main()
