"""Clipping studies that learn: success over (lr, threshold), and against T."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from gradflow.plots import _common as c
from gradflow.plots._style import StyleLike, finish, new_figure
from gradflow.plots._style import style as use_style
from gradflow.results import threshold_label


def success_heatmap(
    panels: Mapping[str, tuple[Sequence[Any], Sequence[float], Any]],
    *,
    works: float = 0.5,
    column: str = "double",
    style: StyleLike = "paper",
) -> Figure:
    """Success rate over learning rate × threshold, one panel per clipping method.

    Each cell is coloured by its success rate (share of seeds that reached the
    task's criterion) and labelled with it; cells at or above ``works`` (the
    region where training works) get a bold outline. Conditions that were not
    run are hatched.

    Args:
        panels: ``method -> (levels, lrs, rate)`` with ``levels`` the
            thresholds (x, in the given order), ``lrs`` the learning rates (y)
            and ``rate`` ``(len(lrs), len(levels))`` in [0, 1] (NaN: not run).
        works: the success rate from which a cell counts as working.
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    if not isinstance(panels, Mapping) or not panels:
        raise ValueError("panels must be a non-empty mapping method -> data")
    works = float(works)
    checked = {}
    for name, (levels, lrs, rate) in panels.items():
        r = c.as_array(f"panels[{name!r}] rate", rate, (2,))
        if r.shape != (len(lrs), len(levels)):
            raise ValueError(
                f"panels[{name!r}] rate must have shape ({len(lrs)}, {len(levels)}) "
                f"(lrs, levels), got {r.shape}"
            )
        checked[name] = (list(levels), [float(v) for v in lrs], r)
    n = len(checked)
    with use_style(style):
        widths = [len(levels) + 1.0 for levels, _, _ in checked.values()]
        fig, axes = new_figure(
            column,
            0.3 if n > 1 else 0.62,
            ncols=n,
            gridspec_kw={"width_ratios": widths},
        )
        axes = np.atleast_1d(axes)
        mesh = None
        for ax, (name, (levels, lrs, r)) in zip(axes, checked.items(), strict=True):
            xe = np.arange(len(levels) + 1) - 0.5
            ye = np.arange(len(lrs) + 1) - 0.5
            z = np.ma.masked_invalid(r)
            mesh = ax.pcolormesh(
                xe, ye, z, cmap="cividis", vmin=0.0, vmax=1.0, shading="flat"
            )
            what = c.hatch_nonfinite(ax, r, xe, ye)
            for i in range(len(lrs)):
                for j in range(len(levels)):
                    v = r[i, j]
                    if not np.isfinite(v):
                        continue
                    ax.text(
                        j,
                        i,
                        c.num(v, 2),
                        ha="center",
                        va="center",
                        fontsize="x-small",
                        color="black" if v > 0.55 else "white",
                    )
                    if v >= works:
                        ax.add_patch(
                            Rectangle(
                                (j - 0.5, i - 0.5),
                                1,
                                1,
                                fill=False,
                                edgecolor="#D55E00",
                                lw=1.4,
                            )
                        )
            ax.set_xticks(range(len(levels)), [threshold_label(v) for v in levels])
            ax.set_yticks(range(len(lrs)), [f"{v:g}" for v in lrs])
            ax.set_title(name, loc="left")
            ax.set_xlabel("threshold")
            ax.grid(False)
            c.heat_note(ax, what)
        axes[0].set_ylabel("learning rate")
        cb = fig.colorbar(mesh, ax=list(axes), shrink=0.9, pad=0.02)
        cb.set_label("success rate (share of seeds)")
        axes[-1].text(
            1.0,
            -0.32,
            f"outlined: success rate ≥ {works:g}",
            transform=axes[-1].transAxes,
            ha="right",
            va="top",
            fontsize="x-small",
            color="#D55E00",
        )
        return finish(fig)


def success_vs(
    x: Sequence[float],
    rates: Mapping[str, Any],
    *,
    intervals: Mapping[str, Any] | None = None,
    xlabel: str = "sequence length T",
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """Success rate against a quantity (e.g. T), one line per condition.

    Args:
        x: ``(n,)`` values of the quantity.
        rates: ``label -> (n,)`` success rates in [0, 1] (NaN: not run).
        intervals: ``label -> (n, 2)`` low/high of a 95% interval (Wilson),
            drawn as error bars.
        xlabel: the x axis label.
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    xs = c.as_array("x", x, (1,))
    data = c.labelled("rates", rates)
    with use_style(style):
        fig, ax = new_figure(column, 0.68)
        bad = 0
        for (label, v), color in zip(data.items(), c.colors(len(data)), strict=True):
            r = c.as_array(f"rates[{label!r}]", v, (1,))
            if r.shape != xs.shape:
                raise ValueError(
                    f"rates[{label!r}] must have shape {xs.shape} like x, got {r.shape}"
                )
            ok = np.isfinite(r)
            yerr = None
            if intervals is not None and label in intervals:
                iv = c.as_array(f"intervals[{label!r}]", intervals[label], (2,))
                if iv.shape != (xs.size, 2):
                    raise ValueError(
                        f"intervals[{label!r}] must have shape ({xs.size}, 2), got "
                        f"{iv.shape}"
                    )
                yerr = np.abs(np.stack([r - iv[:, 0], iv[:, 1] - r]))[:, ok]
            ax.errorbar(
                xs[ok],
                r[ok],
                yerr=yerr,
                fmt="o-",
                ms=3.5,
                lw=1.0,
                capsize=2,
                elinewidth=0.8,
                color=color,
                label=label or None,
            )
            bad += c.mark_nonfinite(ax, xs, r, color)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("success rate (share of seeds)")
        c.legend(ax, bad)
        return finish(fig)
