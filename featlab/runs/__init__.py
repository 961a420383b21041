"""The run layer: everything that reads or writes run folders.

The command line, the demo and the experiments call these; the packages below them take
tensors and models and return tensors and DataFrames. One resume rule for every run
(`featlab.runs.folder`): the same settings resume or load, other settings are refused
unless `overwrite`. Each run's settings are a dataclass whose fields are also its CLI flags
(`featlab.runs.options`).

>>> from featlab.runs import SAERunConfig, train_sae_run
>>> run = train_sae_run(SAERunConfig(model="runs/demo/model", hook="blocks.0.hook_resid_post",
...                                  out="runs/sae_l0"))
>>> run.metrics["fvu"]
"""

from __future__ import annotations

from featlab._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("AnalyzeRunConfig", "analyze_run"), "featlab.runs.analyze"),
    **dict.fromkeys(("DemoConfig", "DemoResult", "run_demo"), "featlab.runs.demo"),
    **dict.fromkeys(("RunFolder", "read_run"), "featlab.runs.folder"),
    **dict.fromkeys(("MQARModelConfig", "MQARRun", "train_mqar_model"), "featlab.runs.model"),
    **dict.fromkeys(("SAERun", "SAERunConfig", "train_sae_run"), "featlab.runs.sae"),
    **dict.fromkeys(("TextModelConfig", "TextModelRun", "train_text_model"),
                    "featlab.runs.text_model"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = sorted(_EXPORTS)
