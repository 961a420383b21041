"""The prompt view's live model: run a prompt through the model and an SAE, top features per
token.

The model and SAEs are loaded lazily, once, from paths the store recorded (keys `model_path`
and `sae_path` in an SAE's `config` JSON, relative paths taken from the store directory) or
from what `create_app(..., model=, saes=)` was given, which takes precedence: folders (any
source `featlab.models.load_model` takes) or objects already in memory.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import pandas as pd

_IDS = re.compile(r"^\s*-?\d+(?:[\s,]+-?\d+)*\s*$")


class LiveFeatures:
    """Top-k SAE features per token of a prompt, from the live model.

    store: an open FeatureStore. model / saes: overrides of the recorded paths, each a
    folder or an object (a hooked or HF model; an SAE).
    """

    def __init__(self, store: Any, model: Any = None, saes: dict[str, Any] | None = None) -> None:
        self.store = store
        self._models: dict[Any, Any] = {}
        self._saes: dict[str, Any] = {}
        self.model_path: Path | str | None = None
        if isinstance(model, str | Path):
            self.model_path = model if str(model).startswith(("hf:", "tl:")) else Path(model)
        elif model is not None:
            from featlab.models.io import load_model

            self.model_path = "<in memory>"
            self._models[self.model_path] = load_model(model)  # wraps an HF model
        self.sae_paths: dict[str, Path] = {}
        for sid, sae in (saes or {}).items():
            if isinstance(sae, str | Path):
                self.sae_paths[sid] = Path(sae)
            else:
                self._saes[sid] = sae.eval()
        self._vocab: list[str] | None = None
        self._lock = threading.Lock()  # loading
        # One prompt at a time through the shared model: `run_with_cache` adds hooks to the
        # model's hook points for the length of a forward pass, so two server threads
        # running at once each cache the other's activations (seen as "shape '[9, -1]' is
        # invalid" with 8 concurrent prompts). A model run is ~10 ms on the demo's models.
        self._run_lock = threading.Lock()

    # -- where things are --------------------------------------------------------------------
    def _recorded(self, sae_id: str) -> dict[str, Any]:
        saes = self.store.saes()
        rows = saes[saes["sae_id"] == sae_id]
        if not len(rows):
            raise KeyError(f"no SAE {sae_id!r} in the store; stored: {saes['sae_id'].tolist()}")
        try:
            cfg = json.loads(rows.iloc[0].get("config") or "{}")
        except json.JSONDecodeError:
            cfg = {}
        return cfg if isinstance(cfg, dict) else {}

    def _resolve(self, value: Any) -> Path:
        path = Path(str(value)).expanduser()
        # `analyze` records paths relative to the store ("../model"): fold the ".." away.
        return path if path.is_absolute() else Path(os.path.normpath(Path(self.store.path) / path))

    def paths(self, sae_id: str) -> tuple[Any, Any]:
        """(model source, SAE directory) for `sae_id`; a clear error if unknown. An object
        given to `create_app` stands for its own path."""
        cfg = self._recorded(sae_id)
        sae_path = self.sae_paths.get(sae_id) or ("<in memory>" if sae_id in self._saes else (
            self._resolve(cfg["sae_path"]) if cfg.get("sae_path") else None))
        model_path = self.model_path or (
            self._resolve(cfg["model_path"]) if cfg.get("model_path") else None)
        if sae_path is None or model_path is None:
            missing = [n for n, p in (("model_path", model_path), ("sae_path", sae_path)) if not p]
            raise FileNotFoundError(
                f"the store records no {' or '.join(missing)} for SAE {sae_id!r}; start the app "
                "with --model DIR and --sae ID=DIR (or record them when analysing)"
            )
        return model_path, sae_path

    # -- loading, once -------------------------------------------------------------------------
    def model_and_sae(self, sae_id: str) -> tuple[Any, Any]:
        model_path, sae_path = self.paths(sae_id)
        with self._lock:
            if model_path not in self._models:
                from featlab.models.io import load_model

                self._models[model_path] = load_model(str(model_path))
            if sae_id not in self._saes:
                from featlab.sae import load_sae

                self._saes[sae_id] = load_sae(sae_path).eval()
        return self._models[model_path], self._saes[sae_id]

    def vocab(self) -> list[str]:
        if self._vocab is None:
            v = self.store.vocab()
            self._vocab = [str(t) for t in v.sort_values("token_id")["token"]] if len(v) else []
        return self._vocab

    # -- prompts -------------------------------------------------------------------------------
    def tokenize(self, model: Any, text: str) -> tuple[Any, list[str]]:
        """(`[1, pos]` token ids, token strings). A tokenizer if the model has one; else ids
        typed as numbers, or whitespace-separated tokens looked up in the store's vocab."""
        import torch

        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is not None and not _IDS.match(text):
            ids = model.to_tokens(text)
            return ids, [tokenizer.decode([int(t)]) for t in ids[0]]
        vocab = self.vocab()
        if _IDS.match(text):
            ids = [int(t) for t in re.split(r"[\s,]+", text.strip())]
        else:
            index = {t: i for i, t in enumerate(vocab)}
            unknown = [w for w in text.split() if w not in index]
            if unknown:
                raise ValueError(
                    f"unknown token(s) {unknown[:5]}: this model has no tokenizer; type token "
                    f"ids (e.g. '3 17 42') or tokens from its vocabulary such as {vocab[:8]}"
                )
            ids = [index[w] for w in text.split()]
        d_vocab = int(getattr(getattr(model, "cfg", None), "d_vocab", len(vocab) or 1 << 62))
        bad = [i for i in ids if not 0 <= i < d_vocab]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside [0, {d_vocab})")
        names = [vocab[i] if i < len(vocab) else str(i) for i in ids]
        return torch.tensor([ids], dtype=torch.long), names

    def top_features(self, sae_id: str, text: str, k: int = 5) -> pd.DataFrame:
        """Columns pos, token, feature, act: the `k` most active features at each position
        (only positive activations)."""
        import torch

        model, sae = self.model_and_sae(sae_id)
        hook = str(getattr(sae.cfg, "hook_name", "") or self._recorded(sae_id).get("hook_name"))
        with self._run_lock, torch.no_grad():  # tokenizers are not thread-safe either
            tokens, names = self.tokenize(model, text)
            _, cache = model.run_with_cache(tokens, names_filter=[hook])
            x = cache[hook][0].reshape(tokens.shape[1], -1).float()  # [pos, d_in]
            z = sae.encode(x).float()  # [pos, d_sae]
            vals, idx = z.topk(min(k, z.shape[1]), dim=1)
        rows = [
            (p, names[p], int(idx[p, j]), float(vals[p, j]))
            for p in range(z.shape[0]) for j in range(vals.shape[1]) if vals[p, j] > 0
        ]
        return pd.DataFrame(rows, columns=["pos", "token", "feature", "act"])
