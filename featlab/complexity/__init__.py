"""V-information, feature complexity, importance, representation strength, temporal decoding.

>>> from featlab.complexity import v_information, feature_complexity
>>> I = v_information(X, y, family="gaussian")     # held-out; ~ R^2 for a standardised target
>>> K = feature_complexity(cache, z, layers=model.layer_hooks())
"""

from __future__ import annotations

from featlab.complexity.feature_complexity import (
    complexity_table,
    feature_complexity,
    v_information_by_layer,
)
from featlab.complexity.importance import importance
from featlab.complexity.strength import pc_alignment, representation_strength, strength_table
from featlab.complexity.temporal import first_decodable, temporal_decoding
from featlab.complexity.v_information import VInfo, v_information, v_information_details
from featlab.probes._layers import ConstantTargetError

__all__ = [
    "ConstantTargetError",
    "VInfo",
    "complexity_table",
    "feature_complexity",
    "first_decodable",
    "importance",
    "pc_alignment",
    "representation_strength",
    "strength_table",
    "temporal_decoding",
    "v_information",
    "v_information_by_layer",
    "v_information_details",
]
