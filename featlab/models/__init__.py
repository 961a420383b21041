"""Hooked models: the hybrid sequence model (config, mixers, protocol, save/load, training)
and the small MLP / CNN classifiers of the probe and shortcut experiments.

>>> from featlab.models import HybridConfig, HookedHybrid
>>> model = HookedHybrid(HybridConfig(layers=["conv", "attn"], d_model=64, n_heads=2))
>>> logits, cache = model.run_with_cache(tokens)   # tokens: LongTensor [batch, pos]

Names load on first use, so `featlab.models.config` (and the CLI's checks on it) can be
imported without torch.
"""

from __future__ import annotations

from featlab._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("CNNConfig", "HookedCNN"), "featlab.models.cnn"),
    **dict.fromkeys(("MIXER_NAMES", "HybridConfig"), "featlab.models.config"),
    **dict.fromkeys(("FitResult", "fit_classifier", "predict_logits"), "featlab.models.fit"),
    **dict.fromkeys(("HookedHybrid", "lm_cross_entropy"), "featlab.models.hybrid"),
    "HookedHFModel": "featlab.models.hf.hooked",
    **dict.fromkeys(("load_model", "save_model", "load_task", "read_model_info"),
                    "featlab.models.io"),
    **dict.fromkeys(("MIXERS", "get_mixer"), "featlab.models.mixers"),
    **dict.fromkeys(("HookedMLP", "MLPConfig"), "featlab.models.mlp"),
    **dict.fromkeys(
        ("HookedModel", "check_hook_name", "get_activations", "hook_names", "layer_of_hook",
         "model_d_model", "model_d_vocab", "model_device", "model_loss", "model_n_ctx",
         "model_n_layers"),
        "featlab.models.protocol",
    ),
    **dict.fromkeys(("TrainResult", "evaluate_accuracy", "train_model"), "featlab.models.train"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = sorted(_EXPORTS)
