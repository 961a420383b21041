"""`SAE_KINDS`: the registry from kind name to SAE class, and config construction by name.

Kind names are known without importing any SAE class (or torch): the built-in kinds are
registered by module path and loaded on first lookup, so the CLI can reject a misspelt
`--kind` before the heavy imports. `register` adds a kind of your own.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from featlab.sae.config import SAEConfig, validate_hparams

if TYPE_CHECKING:  # pragma: no cover
    from featlab.sae.base import SparseAutoencoder


class _KindRegistry(Mapping[str, "type[SparseAutoencoder]"]):
    """name -> SAE class; a built-in entry is a "module:Class" path until first looked up."""

    def __init__(self, entries: dict[str, Any]) -> None:
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> type[SparseAutoencoder]:
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, cls = entry.partition(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), cls)
        return entry

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def add(self, name: str, cls: Any) -> None:
        self._entries[name] = cls


SAE_KINDS = _KindRegistry({
    "relu": "featlab.sae.relu:ReLUSAE",
    "topk": "featlab.sae.topk:TopKSAE",
    "batchtopk": "featlab.sae.batchtopk:BatchTopKSAE",
    # Ayonrinde 2024: the same global top k*B selection as BatchTopK
    "mutual_choice": "featlab.sae.batchtopk:BatchTopKSAE",
    "feature_choice": "featlab.sae.feature_choice:FeatureChoiceSAE",
    "matching_pursuit": "featlab.sae.matching_pursuit:MatchingPursuitSAE",
    "gated": "featlab.sae.gated:GatedSAE",
})
# kinds whose class has no k (active latents per token): their sparsity comes from a penalty
_NO_K = frozenset({"relu", "gated"})


def kind_names() -> list[str]:
    """Every registered kind name (aliases included), without importing an SAE class."""
    return list(SAE_KINDS)


def check_kind(kind: str) -> str:
    """`kind` if registered, else a ValueError listing the valid names."""
    if kind not in SAE_KINDS:
        import difflib

        close = difflib.get_close_matches(kind, kind_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown SAE kind {kind!r}{hint}; valid kinds: {', '.join(SAE_KINDS)}")
    return kind


def register(name: str, cls: type[SparseAutoencoder]) -> None:
    """Make `cls` (a `SparseAutoencoder` subclass with a `kind` and an `Hparams` dataclass)
    trainable and loadable by `name`; refuses to shadow a registered kind."""
    if name in SAE_KINDS:
        raise ValueError(f"SAE kind {name!r} is already registered (as {SAE_KINDS[name]})")
    for attr in ("kind", "Hparams"):
        if not hasattr(cls, attr):
            raise TypeError(f"{cls.__name__} has no {attr!r}; subclass SparseAutoencoder")
    SAE_KINDS.add(name, cls)


def uses_k(kind: str) -> bool:
    """Whether kind `kind` takes k: False for "relu" and "gated" (their sparsity comes from an
    L1 penalty) and for a registered class that says ``uses_k = False``. Imports no SAE class
    for the built-in kinds."""
    name = check_kind(kind)
    if name in _NO_K:
        return False
    entry = SAE_KINDS._entries[name]
    return isinstance(entry, str) or bool(getattr(entry, "uses_k", True))


def canonical_kind(kind: str) -> str:
    """Registry name -> the class's own kind name ("mutual_choice" -> "batchtopk")."""
    return SAE_KINDS[check_kind(kind)].kind


def make_config(
    kind: str,
    d_in: int,
    d_sae: int,
    k: int | None = None,
    *,
    hook_name: str | None = None,
    model_name: str | None = None,
    dtype: str = "float32",
    seed: int = 0,
    context_size: int | None = None,
    dataset_path: str | None = None,
    prepend_bos: bool | None = False,
    tokenizer_name: str | None = None,
    **hparams: Any,
) -> SAEConfig:
    """Validated `SAEConfig`; unknown hyperparameters raise a TypeError listing valid ones.

    k is dropped (None) for the kinds without one (`uses_k`). context_size, dataset_path,
    prepend_bos and tokenizer_name record what the SAE was trained on (see `SAEConfig`)."""
    name = canonical_kind(kind)
    cls = SAE_KINDS[name]
    if not uses_k(name):
        k = None
    elif k is None:
        raise ValueError(f"SAE kind {kind!r} needs k (active latents per token)")
    return SAEConfig(
        kind=name,
        d_in=d_in,
        d_sae=d_sae,
        k=k,
        hook_name=hook_name,
        model_name=model_name,
        dtype=dtype,
        seed=seed,
        hparams=validate_hparams(name, cls.Hparams, hparams),
        context_size=context_size,
        dataset_path=dataset_path,
        prepend_bos=prepend_bos,
        tokenizer_name=tokenizer_name,
    )


def build_sae(cfg: SAEConfig) -> SparseAutoencoder:
    """Instantiate the class registered for ``cfg.kind``."""
    return SAE_KINDS[canonical_kind(cfg.kind)](cfg)
