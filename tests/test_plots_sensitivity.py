"""plots.sensitivity_vs_memory: measured points as markers, closed forms as lines."""

import matplotlib
import numpy as np
import pytest

from gradflow import plots

matplotlib.use("Agg")


def test_points_and_closed_forms_are_drawn_where_given():
    lam = np.array([0.5, 0.9, 0.99])
    q = lam**2
    tau = 1 / (1 - lam)
    measured = (1 + q) / (1 - q) ** 3 * np.array([1.02, 0.97, np.nan])
    grid = np.linspace(0.5, 0.99, 50)
    fig = plots.sensitivity_vs_memory(
        {"linear": tau},
        {"linear": measured},
        stderr={"linear": 0.05 * np.nan_to_num(measured)},
        closed_forms={"linear": (1 / (1 - grid), (1 + grid**2) / (1 - grid**2) ** 3)},
    )
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 50]
    assert len(lines) == 1
    np.testing.assert_allclose(lines[0].get_ydata(), (1 + grid**2) / (1 - grid**2) ** 3)
    # the NaN point is counted, not drawn: two markers
    markers = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert len(markers) == 1 and len(markers[0].get_xdata()) == 2
    np.testing.assert_allclose(markers[0].get_ydata(), measured[:2])
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("1" in t and ("NaN" in t or "non-finite" in t) for t in texts), texts


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match=r"memory\['a'\] and sensitivity\['a'\]"):
        plots.sensitivity_vs_memory({"a": [1.0, 2.0]}, {"a": [1.0]})
