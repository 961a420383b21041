"""What a SAELens directory means in featlab's terms, both ways: cfg.json fields, weight names
and the exact folds that turn SAELens options into featlab's one inference convention
(centre by b_dec, unit-free codes). `featlab.sae.io` reads and writes the files.

| featlab kind     | SAELens architecture   | inference in both (pre = (x - b_dec) W_enc + b_enc) |
|------------------|------------------------|-----------------------------------------------------|
| relu             | standard               | ReLU(pre)                                           |
| topk             | topk                   | ReLU(TopK_k(pre)), rescale_acts_by_decoder_norm off |
| batchtopk        | jumprelu               | ReLU(pre) * (pre > threshold), threshold = theta    |
| matching_pursuit | matching_pursuit       | tied W_dec; max_iterations, residual_threshold      |
| gated            | gated                  | 1[pi_gate > 0] * ReLU(pi_mag) (featlab.sae.gated)   |
| feature_choice   | featlab_feature_choice | per-latent JumpReLU thresholds (featlab only)       |

Loading SAELens's own directories, options are folded into the weights where that is exact:

- ``rescale_acts_by_decoder_norm`` (topk; the batchtopk / matryoshka_batchtopk training
  saves): SAELens computes h = ((x - b_dec) W_enc + b_enc) * n with n_j = ||W_dec_j||, selects
  and ReLUs on h, and decodes z @ (W_dec / n) + b_dec. With W_enc' = W_enc * n (column j times
  n_j), b_enc' = b_enc * n, W_dec' = W_dec / n, featlab's pre-activation *is* h, so the
  selection, the codes and the reconstruction are SAELens's (up to float rounding).
- ``apply_b_dec_to_input=False``: pre = x W_enc + b_enc = (x - b_dec) W_enc + (b_enc + b_dec
  W_enc), so b_enc' = b_enc + b_dec W_enc (gated: b_gate likewise, b_mag' = b_mag + b_dec
  (W_enc * exp(r_mag))); a Matching Pursuit SAE neither centres nor adds b_dec, so b_dec' = 0.

and refused with the reason otherwise (see `_refusals`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from featlab.sae.base import SparseAutoencoder
from featlab.sae.config import SAEConfig, validate_hparams
from featlab.sae.registry import SAE_KINDS

SAELENS_FORMAT_VERSION = "6.54.0"  # the sae_lens release whose directory format this follows
ARCH = {
    "relu": "standard",
    "topk": "topk",
    "batchtopk": "jumprelu",
    "matching_pursuit": "matching_pursuit",
    "gated": "gated",
    "feature_choice": "featlab_feature_choice",
}
_ENC = ["W_enc", "b_enc", "W_dec", "b_dec"]
_WEIGHTS = {
    "batchtopk": [*_ENC, "threshold"],
    "feature_choice": [*_ENC, "threshold"],
    "matching_pursuit": ["W_dec", "b_dec"],
    "gated": ["W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"],
}
_SAELENS_WEIGHTS = {  # what SAELens's classes save, where it is not W_enc, b_enc, W_dec, b_dec
    "matching_pursuit": ["W_dec", "b_dec"],
    "gated": _WEIGHTS["gated"],
    "batchtopk": [*_ENC, "topk_threshold"],  # the training class's save: a scalar threshold
    "matryoshka_batchtopk": [*_ENC, "topk_threshold"],
}
_LOADABLE = ("standard", "topk", "jumprelu", "gated", "matching_pursuit", "batchtopk",
             "matryoshka_batchtopk")  # fmt: skip
_NOT_A_KIND = {
    "abstopk": "it keeps the top k by |pre-activation| with their signs (no ReLU); featlab "
    "has no kind with signed codes",
    "temporal": "its code depends on earlier positions through attention; featlab SAEs code "
    "one activation row at a time",
}
_NORMALIZE_FOLDABLE = {
    "expected_average_only_in": "fold_activation_norm_scaling_factor(scaling_factor) with the "
    "factor from the checkpoint's activation_scaler.json",
    "covariance_whitening": "fold_activation_whitening(mean, matrix, inverse_matrix) with the "
    "tensors of the checkpoint's activation_whitening.safetensors",
}


def architecture(kind: str) -> str:
    """The SAELens architecture name featlab writes for ``kind``."""
    return ARCH.get(kind, f"featlab_{kind}")


def weight_names(sae: SparseAutoencoder) -> list[str]:
    """The tensors of ``sae_weights.safetensors`` for this SAE (SAELens loads them strictly)."""
    if sae.kind in _WEIGHTS:
        return list(_WEIGHTS[sae.kind])
    return ["W_dec", "b_dec"] if sae.tied else list(_ENC)


def _dtype_name(t: Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def cfg_dict(sae: SparseAutoencoder) -> dict[str, Any]:
    """cfg.json for ``sae``: SAELens 6 fields (metadata from what the `SAEConfig` records; no
    claim the config does not make) plus a ``featlab`` entry with the full `SAEConfig`."""
    cfg = sae.cfg
    out: dict[str, Any] = {
        "architecture": architecture(sae.kind),
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": _dtype_name(sae.W_dec),  # what the weights file holds
        "device": "cpu",  # the weights file is written from CPU copies
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_FORMAT_VERSION,
            "sae_lens_training_version": None,  # trained by featlab, not SAELens
            "model_name": cfg.model_name,
            "hook_name": cfg.hook_name,
            "hook_head_index": None,
            "context_size": cfg.context_size,
            "prepend_bos": cfg.prepend_bos,
            "dataset_path": cfg.dataset_path,
            # not a SAELens field (its metadata keeps any key); only when there was text
            **({"tokenizer_name": cfg.tokenizer_name} if cfg.tokenizer_name else {}),
        },
        "featlab": cfg.to_dict(),
    }
    if sae.kind == "topk":
        out.update(k=cfg.k, rescale_acts_by_decoder_norm=False)
    elif sae.kind == "matching_pursuit":
        hp = sae.hp
        out.update(
            residual_threshold=float(hp.residual_tol),
            max_iterations=int(hp.inference_steps or cfg.k),
            stop_on_duplicate_support=bool(hp.stop_on_duplicate_support),
        )
    return out


def _refusals(cfg: dict[str, Any], arch: str) -> None:
    """Raise for the SAELens settings featlab cannot reproduce exactly, naming the option."""
    where = "SAELens cfg.json"
    if arch in _NOT_A_KIND:
        raise ValueError(f"{where}: architecture {arch!r} cannot be loaded: {_NOT_A_KIND[arch]}")
    if "transcoder" in arch:
        raise ValueError(
            f"{where}: architecture {arch!r} is a transcoder (it maps hook_name to "
            "hook_name_out); featlab SAEs reconstruct their own input, so it cannot be loaded"
        )
    if arch.startswith("featlab_"):
        raise ValueError(
            f"{where}: architecture {arch!r} is featlab's own and needs the 'featlab' entry "
            "of cfg.json, which is missing; re-save the SAE with featlab.sae.save_sae"
        )
    if arch not in _LOADABLE:
        raise ValueError(
            f"{where}: SAELens architecture {arch!r} has no featlab kind; loadable: "
            f"{', '.join(_LOADABLE)}"
        )
    norm = cfg.get("normalize_activations") or "none"
    if norm in _NORMALIZE_FOLDABLE:
        raise ValueError(
            f"{where}: normalize_activations={norm!r}: this SAE expects inputs transformed by "
            "statistics that the directory does not apply (SAELens folds them into the weights "
            "at the end of training, so this is likely a mid-training checkpoint). Fold them "
            f"in SAELens (sae.{_NORMALIZE_FOLDABLE[norm]}), save_model, and load that"
        )
    if norm != "none":
        raise ValueError(
            f"{where}: normalize_activations={norm!r} rescales every input row by its own "
            "norm / statistics and un-does it on the output; no fixed weights reproduce that, "
            "and featlab SAEs have no such step, so it cannot be loaded"
        )
    if (cfg.get("reshape_activations") or "none") != "none":
        raise ValueError(
            f"{where}: reshape_activations={cfg['reshape_activations']!r} (the SAE flattens "
            "[..., n_heads, d_head] at a hook_z): featlab SAEs read [..., d_in] rows, so it "
            "cannot be loaded as is; flatten the heads yourself and save it with "
            "reshape_activations='none'"
        )
    meta = cfg.get("metadata") or {}
    head = meta.get("hook_head_index", cfg.get("hook_head_index"))
    if head is not None:
        raise ValueError(
            f"{where}: hook_head_index={head}: the SAE reads one attention head of its hook, "
            "and featlab's hook_name has no head index, so it would be run on the wrong "
            "activations; it cannot be loaded"
        )


def _rescale_fold(w: dict[str, Tensor]) -> None:
    """Fold rescale_acts_by_decoder_norm (see the module docstring) into ``w`` in place."""
    norms = w["W_dec"].norm(dim=-1)
    if bool((norms == 0).any()):
        rows = (norms == 0).nonzero().flatten().tolist()[:8]
        raise ValueError(
            f"SAELens cfg.json: rescale_acts_by_decoder_norm=True but decoder row(s) {rows} "
            "have zero norm; SAELens itself decodes this SAE to NaN (it divides by the norms)"
        )
    w["W_enc"] = w["W_enc"] * norms
    w["b_enc"] = w["b_enc"] * norms
    w["W_dec"] = w["W_dec"] / norms[:, None]


def _centre_fold(arch: str, w: dict[str, Tensor]) -> None:
    """Fold apply_b_dec_to_input=False (see the module docstring) into ``w`` in place."""
    if arch == "matching_pursuit":
        w["b_dec"] = torch.zeros_like(w["b_dec"])
    elif arch == "gated":
        w["b_gate"] = w["b_gate"] + w["b_dec"] @ w["W_enc"]
        w["b_mag"] = w["b_mag"] + w["b_dec"] @ (w["W_enc"] * w["r_mag"].exp())
    else:
        w["b_enc"] = w["b_enc"] + w["b_dec"] @ w["W_enc"]


def _int_k(cfg: dict[str, Any], arch: str) -> int:
    k = float(cfg["k"])
    if k != int(k) or k <= 0:
        raise ValueError(f"SAELens cfg.json: {arch} k={cfg['k']}; featlab needs a positive "
                         "integer k")  # fmt: skip
    return int(k)


def from_saelens(
    cfg: dict[str, Any], weights: dict[str, Tensor]
) -> tuple[SAEConfig, dict[str, Tensor], dict[str, Tensor]]:
    """(featlab config, featlab weights, extra buffers) of a SAELens cfg.json and its
    weights, with the options folded in (float64, then the file's dtype) or refused."""
    arch = cfg.get("architecture", "standard")
    _refusals(cfg, arch)
    meta = cfg.get("metadata") or {}

    def fact(key: str, default: Any = None) -> Any:
        return meta.get(key, cfg.get(key, default))

    context = fact("context_size")
    common = {
        "d_in": int(cfg["d_in"]),
        "d_sae": int(cfg["d_sae"]),
        "hook_name": fact("hook_name"),
        "model_name": fact("model_name"),
        "dtype": cfg.get("dtype", "float32"),
        "context_size": int(context) if context is not None and int(context) > 0 else None,
        "dataset_path": fact("dataset_path") or None,
        "prepend_bos": None if fact("prepend_bos") is None else bool(fact("prepend_bos")),
        "tokenizer_name": fact("tokenizer_name") or None,
    }
    w = {name: t.to(torch.float64) for name, t in weights.items()}
    extra: dict[str, Tensor] = {}
    need = _SAELENS_WEIGHTS.get(arch, _ENC)
    missing = [n for n in need if n not in w]
    if missing:
        raise ValueError(f"sae_weights.safetensors lacks tensor(s) {missing} for SAELens "
                         f"architecture {arch!r}")  # fmt: skip
    dtype = weights["W_dec"].dtype
    if not cfg.get("apply_b_dec_to_input", True):
        _centre_fold(arch, w)
    if arch in ("topk", "batchtopk", "matryoshka_batchtopk") and cfg.get(
        "rescale_acts_by_decoder_norm", False
    ):
        _rescale_fold(w)

    def config(kind: str, k: int | None = None, **hp: Any) -> SAEConfig:
        hparams = validate_hparams(kind, SAE_KINDS[kind].Hparams, hp)
        return SAEConfig(kind=kind, k=k, **common, hparams=hparams)

    if arch == "standard":
        out = config("relu")
    elif arch == "topk":
        out = config("topk", _int_k(cfg, arch))
    elif arch == "gated":
        out = config("gated")
    elif arch == "jumprelu":
        out = config("batchtopk")
        extra["threshold_ready"] = torch.tensor(True)
    elif arch in ("batchtopk", "matryoshka_batchtopk"):  # saved by SAELens's training class
        out = config("batchtopk", _int_k(cfg, arch))
        w["threshold"] = w.pop("topk_threshold").reshape(()).expand(common["d_sae"]).clone()
        extra["threshold_ready"] = torch.tensor(True)
    else:  # matching_pursuit
        steps = cfg.get("max_iterations") or common["d_in"]
        out = config(
            "matching_pursuit", int(steps),
            residual_tol=float(cfg.get("residual_threshold", 1e-2)),
            inference_steps=int(steps),
            stop_on_duplicate_support=bool(cfg.get("stop_on_duplicate_support", True)),
        )  # fmt: skip
    return out, {name: t.to(dtype) for name, t in w.items()}, extra
