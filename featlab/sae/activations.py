"""Stream the activations of one hook of a hooked model into a shuffling buffer.

`ActivationSource` is what `featlab.sae.train_sae` consumes: any object with
`.batches(batch_size, seed) -> Iterator[Tensor [batch, d_in]]`, `.d_in` and `.hook_name`.
It works on every TransformerLens `HookedRootModule` (a featlab `HookedHybrid`, a
`HookedTransformer`) through the same path: `run_with_cache(tokens, names_filter=hook,
stop_at_layer=layer + 1)`, so the layers after the hook never run.

>>> src = ActivationSource(model, "blocks.0.hook_resid_post", tokens, seed=0)
>>> sae = train_sae(src, kind="topk", d_sae=512, k=8, tokens=200_000)

With `cache_dir` the activations are written once to an on-disk cache (see
`featlab.sae.activation_cache`) and later runs read them back instead of running the model.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from featlab.sae.activation_cache import ActivationCache, model_fingerprint, tensor_fingerprint

__all__ = [
    "ActivationCache",
    "ActivationSource",
    "hook_layer",
]

# Hooks that fire before the first block: stop_at_layer=0 runs only the embeddings.
_EMBED_HOOKS = ("hook_embed", "hook_pos_embed", "hook_tokens")


def hook_layer(hook_name: str) -> int | None:
    """The `stop_at_layer` that still fires `hook_name`.

    `blocks.{l}.*` -> l + 1; embedding hooks -> 0; anything after the blocks (`ln_final.*`,
    `unembed.*`) -> None, meaning the whole model must run.
    """
    from featlab.models.protocol import layer_of_hook

    layer = layer_of_hook(hook_name)
    if layer is not None:
        return layer + 1
    if hook_name in _EMBED_HOOKS:
        return 0
    return None


def _accepts_stop_at_layer(model: torch.nn.Module) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic forward
        return False
    return "stop_at_layer" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


class ActivationSource:
    """Activations of `hook_name` over `tokens`, flattened to `[n, d_in]` and shuffled.

    Args:
        model: a hooked model (`hook_dict`, `run_with_cache`). Put it on `device` yourself.
        hook_name: e.g. ``"blocks.0.hook_resid_post"``; a wrong name lists the valid ones.
        tokens: `[n_seq, pos]` integer token ids; the source loops over them in epochs.
        batch_size: sequences per model forward pass.
        buffer_size: rows held in the shuffling buffer; it is refilled when half empty, so
            two consecutive batches come from ~`buffer_size` rows of many sequences.
        seed: default seed of `batches` (sequence order and buffer permutations).
        device: where batches are returned (and the model runs).
        cache_dir: reuse (or on first use write) an on-disk activation cache here.
        drop_bos: drop position 0 of every sequence (its activations are outliers).
        mask: `[n_seq, pos]` bool, True for positions to keep (e.g. not padding).
        dtype: dtype of the returned activations (and of the cache).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        hook_name: str,
        tokens: torch.Tensor,
        *,
        batch_size: int = 32,
        buffer_size: int = 65_536,
        seed: int = 0,
        device: str | torch.device = "cpu",
        cache_dir: str | Path | None = None,
        drop_bos: bool = False,
        mask: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        from featlab.models.protocol import check_hook_name

        check_hook_name(model, hook_name)
        if tokens.ndim != 2 or tokens.dtype.is_floating_point:
            raise ValueError(
                f"tokens must be an integer tensor [n_seq, pos], got shape {tuple(tokens.shape)} "
                f"and dtype {tokens.dtype}"
            )
        if mask is not None and mask.shape != tokens.shape:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} differs from tokens shape {tuple(tokens.shape)}; "
                "give one bool per token"
            )
        if batch_size <= 0 or buffer_size <= 0:
            raise ValueError(f"batch_size={batch_size} and buffer_size={buffer_size} must be > 0")
        self.model = model
        self.hook_name = hook_name
        self.tokens = tokens.long().cpu()
        self.mask = None if mask is None else mask.bool().cpu()
        self.batch_size = batch_size
        self.buffer_size = buffer_size
        self.seed = seed
        self.device = torch.device(device)
        self.drop_bos = drop_bos
        self.dtype = dtype
        self.stop_at_layer = hook_layer(hook_name)
        self._pass_stop = self.stop_at_layer is not None and _accepts_stop_at_layer(model)
        self._d_in: int | None = None
        self.cache: ActivationCache | None = None
        if cache_dir is not None:
            self.cache = self._open_or_write_cache(Path(cache_dir))

    # -- identity of what this source produces (checked against an on-disk cache) ------------
    def identity(self) -> dict[str, Any]:
        """What a cache must have been made from to stand in for this source."""
        kept = self._keep_mask()
        return {
            "model_class": type(self.model).__name__,
            "model_fingerprint": model_fingerprint(self.model),
            "hook_name": self.hook_name,
            "dtype": str(self.dtype).removeprefix("torch."),
            "tokens_fingerprint": tensor_fingerprint(self.tokens)
            + ("" if kept is None else "/" + tensor_fingerprint(kept)),
        }

    @property
    def n_tokens(self) -> int:
        """Activation rows in one epoch over `tokens` (after dropping BOS / masked positions)."""
        kept = self._keep_mask()
        return int(self.tokens.numel() if kept is None else kept.sum())

    @property
    def d_in(self) -> int:
        if self.cache is not None:
            return self.cache.d_in
        if self._d_in is None:
            self._d_in = int(self._run(self.tokens[:1]).shape[-1])
        return self._d_in

    # -- the model side --------------------------------------------------------------------
    def _keep_mask(self) -> torch.Tensor | None:
        if self.mask is None and not self.drop_bos:
            return None
        keep = torch.ones_like(self.tokens, dtype=torch.bool) if self.mask is None else self.mask
        if self.drop_bos:
            keep = keep.clone()
            keep[:, 0] = False
        return keep

    @torch.no_grad()
    def _run(self, toks: torch.Tensor) -> torch.Tensor:
        """`[b, pos]` tokens -> `[b, pos, d_in]` activations of the hook."""
        kwargs: dict[str, Any] = {"names_filter": self.hook_name}
        if self._pass_stop:
            kwargs["stop_at_layer"] = self.stop_at_layer
        _, cache = self.model.run_with_cache(toks.to(self.device), **kwargs)
        act = cache[self.hook_name]
        if act.ndim != 3:
            # Mixer-internal hooks carry a head axis ([b, pos, heads, d_head]): one vector per
            # token is what an SAE sees, so heads are concatenated.
            act = act.reshape(act.shape[0], act.shape[1], -1)
        return act

    def iter_model_activations(
        self, seq_order: torch.Tensor | None = None
    ) -> Iterator[torch.Tensor]:
        """One epoch in model order (or `seq_order`): chunks `[n_i, d_in]` on `device`."""
        order = torch.arange(len(self.tokens)) if seq_order is None else seq_order
        keep = self._keep_mask()
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            act = self._run(self.tokens[idx])
            if keep is not None:
                act = act[keep[idx].to(act.device)]
            else:
                act = act.reshape(-1, act.shape[-1])
            if not torch.isfinite(act).all():
                bad = idx[0].item()
                raise FloatingPointError(
                    f"non-finite activations at hook {self.hook_name!r} in the model batch "
                    f"starting at sequence {bad}; check the model weights and inputs"
                )
            self._d_in = act.shape[-1]
            yield act.to(device=self.device, dtype=self.dtype)

    def collect(self, n_tokens: int | None = None) -> torch.Tensor:
        """The first `n_tokens` rows (model order, no shuffle) as one `[n, d_in]` tensor."""
        if self.cache is not None:
            return self.cache.collect(n_tokens).to(self.device)
        chunks, total = [], 0
        for chunk in self.iter_model_activations():
            chunks.append(chunk)
            total += len(chunk)
            if n_tokens is not None and total >= n_tokens:
                break
        out = torch.cat(chunks)
        return out if n_tokens is None else out[:n_tokens]

    # -- the training side -------------------------------------------------------------------
    def batches(
        self, batch_size: int, seed: int | None = None, *, rank: int = 0, world_size: int = 1
    ) -> Iterator[torch.Tensor]:
        """Endless shuffled `[batch_size, d_in]` batches (a new sequence order every epoch).

        The buffer holds `buffer_size` rows; when half of it has been served it is topped up
        from the model and permuted again, the usual shuffling buffer of SAELens/sparsify.
        Same seed, same batches. With `world_size > 1` (data-parallel training) rank r sees
        only sequences r, r + world_size, ... (cache: only its shards), disjoint across ranks.
        """
        seed = self.seed if seed is None else seed
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        if self.cache is not None:
            yield from self.cache.batches(
                batch_size, seed, buffer_size=self.buffer_size, rank=rank, world_size=world_size
            )
            return
        if batch_size > self.buffer_size:
            raise ValueError(
                f"batch_size={batch_size} exceeds buffer_size={self.buffer_size}; raise buffer_size"
            )
        gen = torch.Generator().manual_seed(seed)
        stream = self._endless(gen, torch.arange(rank, len(self.tokens), world_size))
        buf = torch.empty(0, 0)
        while True:
            parts = [buf] if len(buf) else []
            have = len(buf)
            while have < self.buffer_size:
                chunk = next(stream)
                parts.append(chunk)
                have += len(chunk)
            buf = torch.cat(parts)
            buf = buf[torch.randperm(len(buf), generator=gen).to(buf.device)]
            # Serve half, keep the rest to mix with the next fill.
            n_serve = max(batch_size, (len(buf) // 2) // batch_size * batch_size)
            for s in range(0, n_serve, batch_size):
                yield buf[s : s + batch_size]
            buf = buf[n_serve:]

    def _endless(self, gen: torch.Generator, seqs: torch.Tensor) -> Iterator[torch.Tensor]:
        if self.n_tokens == 0 or len(seqs) == 0:
            raise ValueError(
                "no activation rows for this rank: every position is masked or dropped, or "
                "there are fewer sequences than ranks"
            )
        while True:
            yield from self.iter_model_activations(seqs[torch.randperm(len(seqs), generator=gen)])

    # -- cache --------------------------------------------------------------------------------
    def _open_or_write_cache(self, cache_dir: Path) -> ActivationCache:
        """Open the cache, writing it first if it is not there. Under torch.distributed only
        rank 0 writes (every rank runs the same model on the same tokens, so one copy
        serves all) and the others wait for it at a barrier, then read their shards."""
        import torch.distributed as dist

        distributed = dist.is_available() and dist.is_initialized()
        if distributed and dist.get_rank() != 0:
            dist.barrier()  # rank 0 is writing
        elif not ActivationCache.exists(cache_dir):
            # at least one shard per rank: ranks read disjoint shards
            world = dist.get_world_size() if distributed else 1
            shard = max(1, min(262_144, -(-self.n_tokens // world)))
            ActivationCache.write(self, None, cache_dir, shard_size=shard)
            if distributed:
                dist.barrier()
        elif distributed:
            dist.barrier()
        cache = ActivationCache(cache_dir)
        cache.check_matches(self.identity())
        return cache

    def __repr__(self) -> str:
        where = f", cache={str(self.cache.path)!r}" if self.cache is not None else ""
        return (
            f"ActivationSource(hook={self.hook_name!r}, n_seq={len(self.tokens)}, "
            f"n_tokens={self.n_tokens}, stop_at_layer={self.stop_at_layer}{where})"
        )
