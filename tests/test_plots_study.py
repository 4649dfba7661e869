"""Success heat map and success-against-T figures: what is drawn, and bad input."""

import numpy as np
import pytest
from matplotlib.patches import Rectangle

from gradflow.plots._study import success_heatmap, success_vs


def test_success_heatmap_outlines_the_working_region():
    rate = np.array([[0.0, 0.6, 1.0], [0.2, np.nan, 0.4]])
    fig = success_heatmap(
        {"global_norm": (["none", 0.1, 1.0], [0.01, 0.1], rate)}, works=0.5
    )
    ax = fig.axes[0]
    outlined = [
        (p.get_x(), p.get_y())
        for p in ax.patches
        if isinstance(p, Rectangle) and not p.get_fill() and p.get_hatch() is None
    ]
    assert sorted(outlined) == [(0.5, -0.5), (1.5, -0.5)]  # 0.6 and 1.0
    texts = sorted(t.get_text() for t in ax.texts)
    assert "1" in texts and "0.6" in texts and any("1 NaN" in t for t in texts)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["none", "0.1", "1"]


def test_success_vs_draws_one_line_per_condition():
    fig = success_vs(
        [50, 100],
        {"none": [1.0, np.nan], "global_norm 1": [1.0, 0.5]},
        intervals={"global_norm 1": [[0.7, 1.0], [0.2, 0.8]]},
    )
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels[:2] == ["none", "global_norm 1"]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: success_heatmap({}), "non-empty"),
        (
            lambda: success_heatmap({"a": ([1.0], [0.1, 0.2], np.zeros((1, 1)))}),
            r"shape \(2, 1\)",
        ),
        (lambda: success_vs([1, 2], {"a": [0.5]}), r"shape \(2,\)"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
