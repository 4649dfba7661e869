"""The curse of memory: parameter sensitivity against memory, closed forms over it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gradflow.plots import _common as c
from gradflow.plots._style import StyleLike, finish, new_figure
from gradflow.plots._style import style as use_style


def sensitivity_vs_memory(
    memory: Mapping[str, Any],
    sensitivity: Mapping[str, Any],
    *,
    stderr: Mapping[str, Any] | None = None,
    closed_forms: Mapping[str, tuple[Any, Any]] | None = None,
    xlabel: str = r"memory $1/(1-\lambda)$",
    ylabel: str = r"$\mathbb{E}\,\|\partial h_t/\partial\theta\|^2$ per unit",
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """Measured sensitivities (markers) with closed forms (lines), log-log.

    Args:
        memory: ``label -> (n,)`` the memory coordinate of each measured point
            (e.g. ``1/(1−λ)``), positive.
        sensitivity: ``label -> (n,)`` the measured ``E‖∂h_t/∂θ‖²``.
        stderr: ``label -> (n,)`` Monte-Carlo standard errors (drawn as ±2
            error bars), optional.
        closed_forms: ``label -> (x (m,), y (m,))`` curves drawn as lines, in
            the colour of the measured series of the same label when there
            is one.
        xlabel: x-axis label.
        ylabel: y-axis label.
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure. Non-finite or non-positive values are marked, not drawn.
    """
    closed_forms = dict(closed_forms or {})
    stderr = dict(stderr or {})
    labels = list(dict.fromkeys([*sensitivity, *closed_forms]))
    palette = dict(zip(labels, c.colors(len(labels)), strict=True))
    with use_style(style):
        fig, ax = new_figure(column, 0.8)
        bad = 0
        for label, raw in sensitivity.items():
            x = c.as_array(f"memory[{label!r}]", memory[label], (1,))
            y = c.as_array(f"sensitivity[{label!r}]", raw, (1,))
            if x.shape != y.shape:
                raise ValueError(
                    f"memory[{label!r}] and sensitivity[{label!r}] must have one "
                    f"shape, got {x.shape} and {y.shape}"
                )
            ok = np.isfinite(y) & (y > 0) & np.isfinite(x) & (x > 0)
            bad += int(np.sum(~ok))
            err = None
            if label in stderr:
                e = c.as_array(f"stderr[{label!r}]", stderr[label], (1,))[ok]
                err = 2 * np.where(np.isfinite(e), e, 0.0)
            ax.errorbar(
                x[ok],
                y[ok],
                yerr=err,
                fmt="o",
                ms=3.5,
                color=palette[label],
                label=f"{label} (measured)",
                lw=0.8,
                capsize=1.5,
            )
        for label, (cx, cy) in closed_forms.items():
            cx = c.as_array(f"closed_forms[{label!r}] x", cx, (1,))
            cy = c.as_array(f"closed_forms[{label!r}] y", cy, (1,))
            ax.plot(
                cx,
                cy,
                color=palette[label],
                lw=1.0,
                ls="-",
                zorder=1,
                label=f"{label} (closed form)",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        c.legend(ax, bad)
        return finish(fig)
