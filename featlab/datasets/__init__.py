"""Synthetic datasets. Names load on first use, so a config (`featlab.datasets.mqar.MQARConfig`)
can be built and checked without torch."""

from __future__ import annotations

from featlab._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("GradedDataset", "make_graded_dataset"), "featlab.datasets.graded"),
    **dict.fromkeys(("HierarchicalConfig", "HierarchicalData", "make_hierarchical"),
                    "featlab.datasets.hierarchical"),
    **dict.fromkeys(("MQARConfig", "MQARData", "make_mqar", "recall_pairs", "token_names"),
                    "featlab.datasets.mqar"),
    **dict.fromkeys(("ProbeGrid", "ShortcutDataset", "make_shortcut_dataset", "probe_grid"),
                    "featlab.datasets.shortcut"),
    **dict.fromkeys(("ShortcutImageDataset", "make_shortcut_images"),
                    "featlab.datasets.shortcut_images"),
    **dict.fromkeys(("SuperpositionConfig", "SuperpositionData", "make_superposition"),
                    "featlab.datasets.superposition"),
    **dict.fromkeys(("PromptPairs", "quote_pairs"), "featlab.datasets.text_pairs"),
    **dict.fromkeys(("check_tokens_path", "load_tokens"), "featlab.datasets.tokens"),
    **dict.fromkeys(("WCST_CUES", "WCSTDataset", "make_wcst_dataset", "wcst_test_sets"),
                    "featlab.datasets.wcst"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = sorted(_EXPORTS)
