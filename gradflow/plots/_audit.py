"""A training run's gradient norm over steps, with a threshold, a range and spikes."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gradflow.plots import _common as c
from gradflow.plots._style import StyleLike, finish, new_figure
from gradflow.plots._style import style as use_style


def grad_norm_trace(
    grad_norms: Any,
    *,
    steps: Any | None = None,
    threshold: float | None = None,
    spikes: Any | None = None,
    shade: tuple[float, float] | None = None,
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """Global gradient norm against training step (log y), as ``gradflow audit`` draws.

    Args:
        grad_norms: ``(n,)`` norms before clipping; non-finite ones are marked
            on the axes edge and counted in the legend.
        steps: ``(n,)`` step numbers (default 0, 1, ...).
        threshold: a clipping threshold, drawn as a dashed line (``None`` or
            inf: none).
        spikes: ``(n,)`` bool, steps to mark as spikes (red dots).
        shade: ``(lo, hi)``, a band of norms to shade (the recommended range).
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    g = c.as_array("grad_norms", grad_norms, (1,))
    x = (
        np.arange(g.size, dtype=np.float64)
        if steps is None
        else c.as_array("steps", steps, (1,))
    )
    if x.shape != g.shape:
        raise ValueError(
            f"steps must have shape {g.shape} like grad_norms, got {x.shape}"
        )
    mask = np.zeros(g.shape, bool)
    if spikes is not None:
        mask = np.asarray(spikes, bool)
        if mask.shape != g.shape:
            raise ValueError(
                f"spikes must have shape {g.shape} like grad_norms, got {mask.shape}"
            )
    with use_style(style):
        fig, ax = new_figure(column, 0.62)
        ok = np.isfinite(g) & (g > 0)
        ax.plot(x[ok], g[ok], color=c.colors(1)[0], lw=0.7, label="gradient norm")
        if shade is not None:
            lo, hi = (float(v) for v in shade)
            ax.axhspan(
                lo, hi, color="#009E73", alpha=0.15, lw=0, label="recommended range"
            )
        if threshold is not None and np.isfinite(threshold):
            ax.axhline(
                float(threshold),
                color="#D55E00",
                ls="--",
                lw=1.0,
                label=f"threshold {threshold:g}",
            )
        sp = mask & ok
        if sp.any():
            ax.plot(
                x[sp],
                g[sp],
                "o",
                ms=3,
                color="#D55E00",
                mfc="none",
                mew=0.8,
                label=f"spikes ({int(sp.sum())})",
            )
        bad = c.mark_nonfinite(ax, x, g, c.colors(1)[0])
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel(r"global gradient norm $\|g\|$")
        c.legend(ax, bad, below=True)
        return finish(fig)


def clip_replay(
    steps: Any,
    replays: Any,
    *,
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """Each replayed clipping method's factor over training (log y; 1: no clip).

    Args:
        steps: ``(n,)`` the log's step numbers.
        replays: ``audit(...)["replays"]``: records with ``method``, ``value``,
            ``clipped_steps`` and ``factors`` (the factor at each clipped step).
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    x = c.as_array("steps", steps, (1,))
    replays = list(replays)
    with use_style(style):
        fig, ax = new_figure(column, 0.62)
        for color, rep in zip(c.colors(len(replays)), replays, strict=True):
            f = np.ones(x.shape)
            f[np.isin(x, np.asarray(rep["clipped_steps"], np.float64))] = rep["factors"]
            ax.step(
                x,
                f,
                where="mid",
                color=color,
                lw=0.8,
                label=f"{rep['method']}:{rep['value']:g} "
                f"({100 * rep['clip_fraction']:.0f}% clipped)",
            )
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("clip factor (1: not clipped)")
        c.legend(ax, 0, below=True)
        return finish(fig)
