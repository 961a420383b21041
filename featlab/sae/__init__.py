"""Sparse autoencoders: six kinds, one trainer, metrics and SAELens interchange.

```python
from featlab.sae import train_sae, evaluate, save_sae, load_sae
sae = train_sae(acts, kind="topk", d_sae=1024, k=8, tokens=2_000_000, batch_size=1024, seed=0)
z = sae.encode(x); x_hat = sae.decode(z)      # sae.W_dec: [d_sae, d_in]
metrics = evaluate(sae, x)                    # SAEMetrics: print(metrics), metrics.fvu, ...
save_sae(sae, "out/dir"); sae2 = load_sae("out/dir")
```

Names load on first use: importing this package imports neither torch nor sae_lens (only
the interchange tests import sae_lens), so `featlab.sae.kinds` serves light checks.
"""

from __future__ import annotations

from featlab._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("SAEOutput", "SparseAutoencoder", "SparseCode", "TrainOutput"),
                    "featlab.sae.base"),
    "BatchTopKSAE": "featlab.sae.batchtopk",
    **dict.fromkeys(("SAEConfig", "TrainConfig"), "featlab.sae.config"),
    "SAEMetrics": "featlab.sae.evaluation",
    "FeatureChoiceSAE": "featlab.sae.feature_choice",
    "GatedSAE": "featlab.sae.gated",
    **dict.fromkeys(("load_sae", "save_sae"), "featlab.sae.io"),
    "MatchingPursuitSAE": "featlab.sae.matching_pursuit",
    **dict.fromkeys(("ce_loss_recovered", "evaluate", "hungarian_cosine", "mmcs"),
                    "featlab.sae.metrics"),
    **dict.fromkeys(("SAE_KINDS", "build_sae", "kind_names", "make_config", "register"),
                    "featlab.sae.registry"),
    "ReLUSAE": "featlab.sae.relu",
    "TopKSAE": "featlab.sae.topk",
    **dict.fromkeys(("default_lr", "train_sae", "train_saes"), "featlab.sae.train"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = sorted(_EXPORTS)
