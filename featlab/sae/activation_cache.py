"""An on-disk activation cache: sharded `.npy` arrays read back memory-mapped.

Layout of a cache directory::

    shard_00000.npy   [n_0, d_in]   (written to a temp name, then renamed)
    shard_00001.npy   ...
    manifest.json     written last, atomically: a directory without it is incomplete

The manifest records what the activations were made from (model class and a hash of its
weights, hook name, dtype, a hash of the tokens); `check_matches` refuses a cache made for
anything else, so a stale cache can never be silently trained on.

`.npy` + `np.load(mmap_mode="r")` was chosen over safetensors shards because a memmap gives
random row access without reading the whole shard, and numpy reads it with no extra code.
bfloat16 (which numpy lacks) is stored as its raw uint16 bits and viewed back in torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from featlab._atomic import atomic_path, atomic_write_text
from featlab._fingerprint import model_fingerprint, tensor_fingerprint

if TYPE_CHECKING:
    from featlab.sae.activations import ActivationSource

__all__ = ["ActivationCache", "model_fingerprint", "tensor_fingerprint"]

MANIFEST = "manifest.json"
FORMAT = "featlab-activation-cache"
FORMAT_VERSION = 1
_NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}


def _save_shard(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)


def _to_numpy(x: torch.Tensor, dtype: str) -> np.ndarray:
    x = x.detach().cpu()
    if dtype == "bfloat16":
        return x.to(torch.bfloat16).view(torch.uint16).numpy()
    return x.to(getattr(torch, dtype)).numpy()


def _to_torch(a: np.ndarray, dtype: str) -> torch.Tensor:
    t = torch.from_numpy(np.array(a))  # copy: memmaps are read-only
    return t.view(torch.bfloat16) if dtype == "bfloat16" else t


class ActivationCache:
    """Read side of a cache directory; `ActivationCache.write(source, n, dir)` makes one."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        mpath = self.path / MANIFEST
        if not mpath.is_file():
            raise FileNotFoundError(
                f"no activation cache at {self.path} ({MANIFEST} missing: the directory does "
                "not exist or a write was interrupted); write one with ActivationCache.write"
            )
        try:
            self.manifest: dict[str, Any] = json.loads(mpath.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"corrupt manifest {mpath}: {e}; delete the directory") from e
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{mpath} is not a featlab activation cache manifest")
        missing = [
            s["file"] for s in self.manifest["shards"] if not (self.path / s["file"]).is_file()
        ]
        if missing:
            raise FileNotFoundError(f"activation cache {self.path} lacks shard files {missing}")
        self._shards: list[np.ndarray] | None = None

    # -- metadata ---------------------------------------------------------------------------
    @staticmethod
    def exists(path: str | Path) -> bool:
        return (Path(path) / MANIFEST).is_file()

    @property
    def d_in(self) -> int:
        return int(self.manifest["d_in"])

    @property
    def hook_name(self) -> str:
        return str(self.manifest["identity"]["hook_name"])

    @property
    def dtype(self) -> str:
        return str(self.manifest["identity"]["dtype"])

    @property
    def n_tokens(self) -> int:
        return int(self.manifest["n_tokens"])

    def __len__(self) -> int:
        return self.n_tokens

    def check_matches(self, identity: dict[str, Any]) -> None:
        """Raise ValueError naming every field where this cache differs from `identity`."""
        mine = self.manifest["identity"]
        diff = {k: (mine.get(k), v) for k, v in identity.items() if mine.get(k) != v}
        if diff:
            lines = "; ".join(
                f"{k}: cache has {a!r}, source has {b!r}" for k, (a, b) in diff.items()
            )
            raise ValueError(
                f"activation cache {self.path} was made for another model/hook/dtype/tokens "
                f"({lines}). Use a different cache_dir or delete this one to rebuild it."
            )

    # -- reading ----------------------------------------------------------------------------
    def shards(self) -> list[np.ndarray]:
        """The shards as read-only memmaps `[n_i, d_in]` (opened once, lazily)."""
        if self._shards is None:
            self._shards = [
                np.load(self.path / s["file"], mmap_mode="r") for s in self.manifest["shards"]
            ]
        return self._shards

    def collect(self, n_tokens: int | None = None) -> torch.Tensor:
        """The first `n_tokens` rows in stored order as one `[n, d_in]` tensor."""
        n = self.n_tokens if n_tokens is None else min(n_tokens, self.n_tokens)
        parts, have = [], 0
        for shard in self.shards():
            if have >= n:
                break
            take = min(len(shard), n - have)
            parts.append(_to_torch(shard[:take], self.dtype))
            have += take
        return torch.cat(parts) if parts else torch.empty(0, self.d_in)

    def batches(
        self,
        batch_size: int,
        seed: int = 0,
        *,
        buffer_size: int = 65_536,
        rank: int = 0,
        world_size: int = 1,
        loop: bool = True,
    ) -> Iterator[torch.Tensor]:
        """Shuffled `[batch_size, d_in]` batches; endless unless `loop=False` (one epoch).

        Each epoch visits the shards in a seeded random order and shuffles rows inside windows
        of about `buffer_size` rows, so reads stay sequential on disk. With `world_size > 1`
        rank r reads only every world_size-th shard (data-parallel training over shards).
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        shards = self.shards()[rank::world_size]
        if not shards:
            raise ValueError(
                f"rank {rank} of {world_size} gets no shard: the cache has only "
                f"{len(self.shards())}; write it with a smaller shard_size"
            )
        gen = torch.Generator().manual_seed(seed)
        carry = torch.empty(0, self.d_in)
        while True:
            for si in torch.randperm(len(shards), generator=gen).tolist():
                shard = shards[si]
                for s in range(0, len(shard), buffer_size):
                    window = _to_torch(shard[s : s + buffer_size], self.dtype)
                    window = torch.cat([carry.to(window.dtype), window])
                    window = window[torch.randperm(len(window), generator=gen)]
                    n_full = len(window) // batch_size * batch_size
                    for b in range(0, n_full, batch_size):
                        yield window[b : b + batch_size]
                    # Rows that do not fill a batch move on to the next window.
                    carry = window[n_full:]
            if not loop:
                return

    # -- writing ----------------------------------------------------------------------------
    @classmethod
    def write(
        cls,
        source: ActivationSource,
        n_tokens: int | None,
        path: str | Path,
        *,
        shard_size: int = 262_144,
        progress: bool = False,
    ) -> ActivationCache:
        """Run `source`'s model over its tokens (model order) and store `n_tokens` rows.

        `n_tokens=None` stores one full epoch. An existing complete cache is refused (delete
        it first); leftovers of an interrupted write (no manifest) are replaced.
        """
        path = Path(path)
        if cls.exists(path):
            raise FileExistsError(
                f"{path} already holds an activation cache; open it with ActivationCache(path) "
                "or delete it to rebuild"
            )
        available = source.n_tokens
        n_target = available if n_tokens is None else int(n_tokens)
        if not 0 < n_target <= available:
            raise ValueError(
                f"n_tokens={n_tokens} must be in (0, {available}] (rows in one epoch of the "
                "source's tokens); give more tokens to the source"
            )
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("shard_*.npy"):  # leftovers of an interrupted write
            old.unlink()
        dtype = str(source.dtype).removeprefix("torch.")
        if dtype not in _NUMPY_DTYPES:
            raise ValueError(f"cache dtype {dtype} unsupported; use one of {list(_NUMPY_DTYPES)}")

        shards: list[dict[str, Any]] = []
        pending: list[torch.Tensor] = []
        n_pending = written = 0
        d_in = None

        def flush(rows: torch.Tensor) -> None:
            name = f"shard_{len(shards):05d}.npy"
            _save_shard(path / name, _to_numpy(rows, dtype))
            shards.append({"file": name, "n": len(rows)})

        it = source.iter_model_activations()
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc=f"caching {source.hook_name}", unit="batch")
        for chunk in it:
            d_in = chunk.shape[-1]
            chunk = chunk[: n_target - written - n_pending]
            pending.append(chunk.cpu())
            n_pending += len(chunk)
            while n_pending >= shard_size:
                allrows = torch.cat(pending)
                flush(allrows[:shard_size])
                written += shard_size
                rest = allrows[shard_size:]
                pending, n_pending = [rest], len(rest)
            if written + n_pending >= n_target:
                break
        if n_pending:
            flush(torch.cat(pending))
            written += n_pending
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "identity": source.identity(),
            "d_in": d_in,
            "n_tokens": written,
            "drop_bos": source.drop_bos,
            "shards": shards,
        }
        atomic_write_text(path / MANIFEST, json.dumps(manifest, indent=2))
        return cls(path)
