"""Plot builders: pure DataFrame -> figure functions, checked without a browser."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from featlab.app import figures


def _nodes(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(f"n{i}", layer, pos, float(rng.normal()))
            for i, (layer, pos) in enumerate([(0, 0), (0, 0), (0, 0), (0, 1), (1, 0), (1, 2),
                                               (1, 2), (2, 1)])]
    return pd.DataFrame(rows, columns=["node_id", "layer", "pos", "effect"]).assign(
        sae_id="s", feature=range(8))


def test_circuit_positions_layer_by_position_without_overlap() -> None:
    placed = figures.circuit_positions(_nodes())
    assert (placed["y"] == placed["layer"]).all()
    # Each node stays within 0.4 of its token position, and no two share a point.
    assert ((placed["x"] - placed["pos"]).abs() <= 0.4 + 1e-12).all()
    assert not placed.duplicated(subset=["x", "y"]).any()
    # Within a shared cell the strongest |effect| sits leftmost (the spread is ordered).
    cell = placed[(placed["layer"] == 0) & (placed["pos"] == 0)].sort_values("x")
    assert cell["effect"].abs().is_monotonic_decreasing


def test_circuit_figure_customdata_and_diverging_colours() -> None:
    nodes = figures.circuit_positions(_nodes())
    edges = pd.DataFrame({"src": ["n0", "n3"], "dst": ["n4", "n7"], "effect": [0.5, -1.0]})
    fig = figures.circuit_figure(nodes, edges, node_col="node_id")
    node_trace = fig.data[-1]
    assert len(node_trace.x) == len(nodes)
    assert list(node_trace.customdata[0]) == ["n0", "s", "0"]
    assert node_trace.marker.cmid == 0
    assert node_trace.marker.cmin == -node_trace.marker.cmax
    # One positive and one negative edge trace, each with one segment (3 points incl. None).
    assert len(fig.data) == 3 and all(len(t.x) == 3 for t in fig.data[:2])


def test_attribution_heatmap_sign_toggle_and_clipping() -> None:
    values = np.array([[-3.0, -1.0, 0.5, 2.0, 100.0]])
    fig = figures.attribution_heatmap(values, tokens=list("abcde"), clip_percentile=80)
    z = np.asarray(fig.data[0].z, dtype=float)
    bound = np.percentile(np.abs(values), 80)
    assert z.max() == pytest.approx(bound) and z.min() == pytest.approx(-3.0)
    assert fig.data[0].zmid == 0 and fig.data[0].zmin == -fig.data[0].zmax
    pos = np.asarray(figures.attribution_heatmap(values, sign="positive").data[0].z, float)
    neg = np.asarray(figures.attribution_heatmap(values, sign="negative").data[0].z, float)
    assert (pos >= 0).all() and (neg <= 0).all()
    assert (pos[0, :2] == 0).all() and (neg[0, 2:] == 0).all()
    with pytest.raises(ValueError, match="sign must be"):
        figures.attribution_heatmap(values, sign="up")


def test_image_heatmap_keeps_the_image_shape() -> None:
    img = np.arange(12.0).reshape(3, 4) - 6
    fig = figures.attribution_heatmap(img)
    assert np.asarray(fig.data[0].z).shape == (3, 4)


def test_density_histograms_log_bins_and_dead_count() -> None:
    hist = pd.DataFrame({"bin_left": [0.0, 1e-3, 1e-2], "bin_right": [0.0, 1e-2, 1e-1],
                         "count": [4, 10, 6]})
    fig = figures.density_histograms({"a": hist})
    bar = fig.data[0]
    assert "dead: 4" in bar.name
    assert list(bar.y) == [10, 6]
    assert np.allclose(bar.x, [-2.5, -1.5])  # centres on the log10 axis


def test_feature_map_points_carry_their_feature() -> None:
    df = pd.DataFrame({"feature": [5, 9], "x": [0.1, 0.2], "y": [1.0, -1.0],
                       "density": [0.1, 0.01]})
    fig = figures.feature_map(df, color="density")
    assert [int(c) for c in fig.data[0].customdata] == [5, 9]


def test_empty_inputs_give_a_message_not_an_error() -> None:
    for fig in (figures.feature_map(pd.DataFrame()),
                figures.activation_histogram(pd.DataFrame()),
                figures.complexity_spectrum(pd.DataFrame()),
                figures.logit_bars(pd.DataFrame(), pd.DataFrame())):
        assert fig.layout.annotations and fig.layout.annotations[0].text


def test_complexity_spectrum_mean_line() -> None:
    df = pd.DataFrame({"feature": [0, 0, 1, 1], "layer": [0, 1, 0, 1], "metric": "v_info",
                       "value": [0.2, 0.4, 0.6, 1.0]})
    fig = figures.complexity_spectrum(df)
    mean = fig.data[-1]
    assert mean.name == "mean" and np.allclose(mean.y, [0.4, 0.7])


def test_circuit_positions_give_each_hook_of_a_block_its_own_row() -> None:
    # Marks et al.'s edges run resid_pre -> attn -> resid_post inside one layer: on one row
    # they would be drawn over each other.
    hooks = ["blocks.1.hook_resid_pre", "blocks.1.hook_attn_out", "blocks.1.hook_mlp_out",
             "blocks.1.hook_resid_post", "blocks.2.hook_resid_pre", "blocks.1.hook_other"]
    nodes = pd.DataFrame({"node_id": [f"n{i}" for i in range(6)], "hook": hooks,
                          "layer": [1, 1, 1, 1, 2, 1], "pos": 0, "effect": 1.0})
    y = figures.circuit_positions(nodes).set_index("hook")["y"]
    assert y["blocks.1.hook_resid_pre"] < y["blocks.1.hook_attn_out"] \
        < y["blocks.1.hook_mlp_out"] < y["blocks.1.hook_resid_post"]
    # resid_post of layer 1 is resid_pre of layer 2: the same row, the layer's own.
    assert y["blocks.1.hook_resid_post"] == y["blocks.2.hook_resid_pre"] == 1.0
    assert y["blocks.1.hook_other"] == 1.0  # unknown hooks keep the layer's row
