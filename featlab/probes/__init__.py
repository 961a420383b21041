"""Probes per layer (linear, logistic, ridge, MLP), control tasks, and shortcut reliance/bias.

>>> from featlab.probes import probe_layers, scored_positions, shortcut_bias
>>> df = probe_layers(cache, labels, layers=model.layer_hooks(), kind="logistic")
>>> acts, y = scored_positions(cache, data.labels, layers=hooks)  # [batch, pos] -> [n, d]
>>> df = probe_layers(acts, y)                                    # sequence models
>>> b = shortcut_bias(model, dataset)     # reliance(model) - reliance(Bayes-optimal)
"""

from __future__ import annotations

from featlab.probes._layers import ConstantTargetError
from featlab.probes.control import control_labels, input_keys, selectivity
from featlab.probes.linear import (
    PROBE_KINDS,
    ProbeResult,
    fit_probe,
    probe_direction,
    probe_layers,
)
from featlab.probes.mlp_probe import make_mlp_probe, mlp_probe
from featlab.probes.positions import scored_positions
from featlab.probes.shortcut import predict_sign, reliance, shortcut_bias, shortcut_report

__all__ = [
    "PROBE_KINDS",
    "ConstantTargetError",
    "ProbeResult",
    "control_labels",
    "fit_probe",
    "input_keys",
    "make_mlp_probe",
    "mlp_probe",
    "predict_sign",
    "probe_direction",
    "probe_layers",
    "reliance",
    "scored_positions",
    "selectivity",
    "shortcut_bias",
    "shortcut_report",
]
