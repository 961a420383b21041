"""The language-model recipe of `featlab demo` (the default task): a gdn/attn/gdn/attn
hybrid trained on the offline corpus of Python's documentation, a TopK SAE on the residual
stream after every layer, and a circuit for closing a quote on held-out text.

The circuit's prompts (`featlab.datasets.text_pairs.quote_pairs`) are stretches of held-out
documents, then ``␣"`` (clean) or ``␣(`` (corrupt) and a few words; the metric is
``logit('"') - logit(')')`` at the last token. 144 pairs rank the nodes; 48 pairs from
other documents measure faithfulness, and the stored circuit is the smallest per-site node
budget whose faithfulness on those reaches 0.8 (`demo_stages.circuit`).

A recipe names its sizes (`SIZES`), trains its model (`train`), says which SAE runs to make
(`sae_configs`) and which analysis stages to run (`stages`); `featlab.runs.demo` chains
them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGET_FAITHFULNESS = 0.8


@dataclass(frozen=True)
class TextDemoSize:
    """Every size knob of the language-model demo."""

    layers: tuple[str, ...] = ("gdn", "attn", "gdn", "attn")
    d_model: int = 128
    n_heads: int = 4
    vocab_size: int = 4096
    corpus_bytes: int = 2_500_000
    context_size: int = 128
    steps: int = 240
    batch: int = 32
    d_sae: int = 1024
    k: int = 16
    sae_tokens: int = 100_000
    n_eval_seqs: int = 32  # held-out windows for each SAE's metrics
    n_analyze: int = 200  # held-out windows run through `analyze`
    n_examples: int = 10
    n_prompts: int = 144  # quote prompt pairs that rank the circuit's nodes (and importance)
    n_held_out: int = 48  # other pairs, from other windows, its faithfulness is measured on
    prefix: int = 24  # held-out tokens before the opening quote
    words: int = 3  # words after it
    ig_steps: int = 8
    # nodes per site, tried in turn until the circuit's faithfulness reaches the target
    budgets: tuple[int, ...] = (4, 8, 16, 24, 32, 48, 64, 80, 96, 128, 160, 192, 256)
    n_attr: int = 8
    attr_steps: int = 32
    n_complexity: int = 24
    complexity_tokens: int = 4_000


SIZES = {
    "default": TextDemoSize(),
    "quick": TextDemoSize(layers=("gdn", "attn"), d_model=32, n_heads=2, vocab_size=512,
                          corpus_bytes=150_000, context_size=32, steps=10, batch=8, d_sae=64,
                          k=4, sae_tokens=2_048, n_eval_seqs=4, n_analyze=16, n_examples=4,
                          n_prompts=6, n_held_out=4, prefix=8, words=2, ig_steps=2,
                          budgets=(2, 4),
                          n_attr=2, attr_steps=4, n_complexity=4, complexity_tokens=300),
}


def hooks(size: TextDemoSize) -> dict[str, str]:
    """Store id -> hook: the residual stream after every layer."""
    return {f"resid{i}": f"blocks.{i}.hook_resid_post" for i in range(len(size.layers))}


def train(size: TextDemoSize, seed: int, out: Path, quick: bool, loud: bool) -> Any:
    """(model, its held-out loss table, cached)."""
    import pandas as pd

    from featlab.models import load_task
    from featlab.runs.text_model import TextModelConfig, train_text_model

    run = train_text_model(TextModelConfig(
        layers=size.layers, d_model=size.d_model, n_heads=size.n_heads,
        vocab_size=size.vocab_size, corpus_bytes=size.corpus_bytes,
        context_size=size.context_size, steps=size.steps, batch_size=size.batch, seed=seed,
        out=out, progress=loud))
    run.model.task = load_task(out)
    m = run.metrics
    table = pd.DataFrame([{
        "train tokens": m["train_tokens_seen"], "held-out tokens": m["held_out_tokens"],
        "loss (nats/token)": m["loss_nats_per_token"], "bits/byte": m["bits_per_byte"]}])
    return run.model, table, run.status == "done"


def sae_configs(size: TextDemoSize, seed: int, out: Path, model: Path,
                loud: bool) -> dict[str, Any]:
    from featlab.runs.sae import SAERunConfig

    return {sid: SAERunConfig(model=model, hook=hook, kind="topk", width=size.d_sae, k=size.k,
                              tokens=size.sae_tokens, batch_size=256, seed=seed * 10 + i,
                              n_eval_seqs=size.n_eval_seqs, out=out / sid, progress=loud)
            for i, (sid, hook) in enumerate(hooks(size).items())}


def readable(tokenizer: Any, rows: Any) -> list[list[str]]:
    return [[tokenizer.decode([t]) for t in row] for row in rows.tolist()]


def stages(model: Any, saes: dict[str, Any], size: TextDemoSize, seed: int,
           store: Path) -> dict[str, Callable[[], dict[str, Any]]]:
    """The quote circuit over every layer's SAE, attributions and complexity stages."""
    from featlab.datasets.text_pairs import quote_pairs
    from featlab.runs import demo_stages as st
    from featlab.runs.tasks import task_tokens

    tok = model.tokenizer
    n = size.n_prompts + size.n_held_out
    held = task_tokens(model.task, n, seed + 101, tok, part="held_out")
    if len(held) < n:
        raise ValueError(f"the held-out text gives {len(held)} windows; the circuit needs {n}")
    pairs = quote_pairs(tok, held[: size.n_prompts], prefix=size.prefix, words=size.words,
                        seed=seed)
    test = quote_pairs(tok, held[size.n_prompts: n], prefix=size.prefix, words=size.words,
                       seed=seed + 1)
    names = readable(tok, pairs.clean)
    layers = ["hook_embed", *hooks(size).values()]
    data = task_tokens(model.task, size.complexity_tokens // size.context_size + 1,
                       seed + 17, tok, part="held_out")
    mixers = "+".join(size.layers)
    return {
        "circuit": lambda: st.circuit(
            model, saes, pairs, store, circuit_id=f"quote-close-seed{seed}",
            name="closing a quote", model_name=mixers,
            metric_name="logit(\") - logit()) at the last token", ig_steps=size.ig_steps,
            budgets=size.budgets, target=TARGET_FAITHFULNESS, seed=seed, held_out=test,
            tokens=names[0]),
        "attributions": lambda: st.attributions(
            model, pairs, store, n=size.n_attr, steps=size.attr_steps, names=names,
            target='logit(") at the last token', id_prefix=f"quote-close-ig-seed{seed}"),
        "complexity": lambda: st.complexity(
            model, saes, pairs, store, layers=layers, data=data,
            n_tokens=size.complexity_tokens, n_latents=size.n_complexity, seed=seed),
    }
