"""The MQAR recipe of `featlab demo --task mqar`: a gdn/attn hybrid trained on multi-query
associative recall, a TopK and a BatchTopK SAE at the residual stream between its two
layers, and a circuit for recalling the queried value.

A recipe names its sizes (`SIZES`), trains its model (`train`), says which SAE runs to make
(`sae_configs`) and which analysis stages to run (`stages`); `featlab.runs.demo` chains
them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featlab.datasets.mqar import MQARConfig

HOOK = "blocks.0.hook_resid_post"  # between the GDN and the attention layer
KINDS = ("topk", "batchtopk")


@dataclass(frozen=True)
class MQARDemoSize:
    """Every size knob of the MQAR demo (model, SAEs, analysis, circuit, probes)."""

    d_model: int = 32
    seq_len: int = 32
    vocab_size: int = 32
    kv: int = 2
    n_train: int = 8_000
    steps: int = 600
    batch: int = 32
    d_sae: int = 256
    k: int = 8
    sae_tokens: int = 200_000
    n_analyze: int = 1_024  # sequences run through `analyze`
    n_examples: int = 10
    n_clean: int = 64  # clean/corrupt pairs for the circuit and importance
    ig_steps: int = 16
    max_nodes: int = 8
    n_attr: int = 8  # attribution maps stored
    attr_steps: int = 32
    n_complexity: int = 48  # latents per SAE given a complexity score
    complexity_tokens: int = 4_000


SIZES = {
    "default": MQARDemoSize(),
    "quick": MQARDemoSize(d_model=16, seq_len=16, vocab_size=16, kv=2, n_train=256, steps=5,
                          batch=8, d_sae=32, k=4, sae_tokens=4_096, n_analyze=32, n_examples=4,
                          n_clean=8, ig_steps=4, max_nodes=4, n_attr=4, attr_steps=8,
                          n_complexity=6, complexity_tokens=400),
}


def mqar_task(size: MQARDemoSize) -> MQARConfig:
    return MQARConfig(vocab_size=size.vocab_size, seq_len=size.seq_len, num_kv_pairs=size.kv)


def train(size: MQARDemoSize, seed: int, out: Path, quick: bool, loud: bool) -> Any:
    """(model, its held-out accuracy table, cached)."""
    from featlab.runs.model import MQARModelConfig, train_mqar_model

    run = train_mqar_model(MQARModelConfig(
        layers=("gdn", "attn"), d_model=size.d_model, n_heads=2, vocab_size=size.vocab_size,
        seq_len=size.seq_len, num_kv_pairs=size.kv, n_train=size.n_train, steps=size.steps,
        batch_size=size.batch, seed=seed, n_test=200 if quick else 500, out=out,
        progress=loud))
    return run.model, run.table, run.cached


def sae_configs(size: MQARDemoSize, seed: int, out: Path, model: Path,
                loud: bool) -> dict[str, Any]:
    from featlab.runs.sae import SAERunConfig

    return {kind: SAERunConfig(model=model, hook=HOOK, kind=kind, width=size.d_sae, k=size.k,
                               tokens=size.sae_tokens, batch_size=256, seed=seed * 10 + i,
                               out=out / kind, progress=loud)
            for i, kind in enumerate(KINDS)}


def stages(model: Any, saes: dict[str, Any], size: MQARDemoSize, seed: int,
           store: Path) -> dict[str, Callable[[], dict[str, Any]]]:
    """The circuit (TopK SAE), attributions and complexity stages."""
    from featlab.datasets.mqar import make_mqar, recall_pairs, token_names
    from featlab.datasets.text_pairs import PromptPairs
    from featlab.runs import demo_stages as st

    task = mqar_task(size)
    pairs = PromptPairs(*recall_pairs(task, size.n_clean, seed))
    names = token_names(task)
    readable = [[names[t] for t in row] for row in pairs.clean.tolist()]
    n_data = max(size.complexity_tokens // size.seq_len + 1, 8)
    return {
        "circuit": lambda: st.circuit(
            model, {"topk": saes["topk"]}, pairs, store, circuit_id=f"mqar-recall-seed{seed}",
            name="MQAR value recall", model_name="gdn+attn",
            metric_name="logit diff (clean value - corrupt value) at query",
            ig_steps=size.ig_steps, budgets=(size.max_nodes,), target=None, seed=seed,
            tokens=readable[0]),
        "attributions": lambda: st.attributions(
            model, pairs, store, n=size.n_attr, steps=size.attr_steps, names=readable,
            target=f"answer logit at position {pairs.pos}",
            id_prefix=f"mqar-answer-ig-seed{seed}"),
        "complexity": lambda: st.complexity(
            model, saes, pairs, store,
            layers=["hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"],
            data=make_mqar(task, n_data, seed=seed + 17).inputs,
            n_tokens=size.complexity_tokens, n_latents=size.n_complexity, seed=seed),
    }
