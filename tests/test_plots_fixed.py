"""Fixed-point figures: what is drawn matches the data (numpy only, no jax)."""

import matplotlib.collections as mcoll
import numpy as np
import pytest

import gradflow.plots as gp


def scattered(ax):
    """All points drawn by scatter on ``ax``, as one (n, 2) array."""
    offs = [
        col.get_offsets()
        for col in ax.collections
        if isinstance(col, mcoll.PathCollection)
    ]
    return np.concatenate([np.asarray(o).reshape(-1, 2) for o in offs])


def test_eigenvalues_every_finite_value_drawn_once_and_bad_ones_counted():
    eig = np.array([[0.5 + 0.2j, 0.5 - 0.2j, 0.1], [1.5, 0.3j, np.nan]])
    ref = np.array([0.9, -0.9, 0.9j])
    fig = gp.fixed_point_eigenvalues({"rnn": eig}, reference={"rnn": ref})
    ax = fig.axes[0]
    pts = scattered(ax)
    want = np.concatenate([ref, eig.ravel()[np.isfinite(eig.ravel())]])
    got = {tuple(np.round(p, 6)) for p in pts}
    assert got == {(round(w.real, 6), round(w.imag, 6)) for w in want}
    assert len(pts) == len(want)
    # Stability from the moduli: point 0 inside the circle, point 1 outside.
    assert "1 stable, 1 unstable" in ax.get_title()
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("1" in t and ("NaN" in t or "non-finite" in t) for t in texts), texts
    # The unit circle is drawn and the view holds the largest modulus.
    circle = ax.lines[0].get_xydata()
    np.testing.assert_allclose(np.hypot(circle[:, 0], circle[:, 1]), 1.0)
    assert ax.get_xlim()[1] >= 1.5


def test_eigenvalues_one_panel_per_label_and_given_stability():
    eig = {"a": np.zeros((1, 2)), "b": np.zeros((0, 2)), "c": np.ones((2, 2))}
    fig = gp.fixed_point_eigenvalues(eig, stable={"c": np.array([True, False])})
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [
        "a: 1 stable, 0 unstable",
        "b: 0 stable, 0 unstable",
        "c: 1 stable, 1 unstable",
    ]
    with pytest.raises(ValueError, match="stable has labels"):
        gp.fixed_point_eigenvalues(eig, stable={"zz": np.array([True])})
    with pytest.raises(ValueError, match=r"stable\['a'\] must be a bool array"):
        gp.fixed_point_eigenvalues(eig, stable={"a": np.array([1, 0])})
    with pytest.raises(ValueError, match="must have 2 dimensions"):
        gp.fixed_point_eigenvalues(np.zeros(3))


@pytest.mark.parametrize("dims", [2, 3])
def test_pca_projects_on_top_components(dims):
    # States on an ellipse in the (e0, e1) plane of 5-D: variances 4.5 and 0.5,
    # uncorrelated exactly, so PC1 = ±e0 and PC2 = ±e1.
    theta = 2 * np.pi * np.arange(200) / 200
    runs = np.zeros((2, 200, 5))
    runs[..., 0] = 3.0 * np.cos(theta)
    runs[..., 1] = np.sin(theta)
    points = np.array([[0.0, 0, 0, 0, 0], [3.0, 0, 0, 0, 0]])
    fig = gp.trajectories_pca(
        runs, fixed_points=points, stable=np.array([True, False]), dims=dims
    )
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("PC1 (9")  # ~90% of the variance
    assert len(ax.lines) == 2
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["stable (1)", "unstable (1)"]
    if dims == 2:
        pts = scattered(ax)
        np.testing.assert_allclose(np.abs(pts), [[0.0, 0.0], [3.0, 0.0]], atol=1e-9)


def test_pca_bad_inputs():
    runs = np.zeros((10, 3))
    with pytest.raises(ValueError, match="dims must be 2 or 3"):
        gp.trajectories_pca(runs, dims=4)
    with pytest.raises(ValueError, match=r"fixed_points must have shape \(M, 3\)"):
        gp.trajectories_pca(runs, fixed_points=np.zeros((2, 4)), stable=[True, True])
    with pytest.raises(ValueError, match="stable must be given"):
        gp.trajectories_pca(runs, fixed_points=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="no finite state"):
        gp.trajectories_pca(np.full((4, 3), np.nan))
