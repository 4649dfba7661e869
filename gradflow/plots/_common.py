"""Shared numpy helpers: argument checks, seed bands, decay fits, non-finite marks."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.transforms import blended_transform_factory

from gradflow._decay import LN10, fit_line
from gradflow.plots._style import PALETTE


def as_array(name: str, value: Any, ndims: tuple[int, ...]) -> np.ndarray:
    """A float64 copy of ``value`` with one of the allowed ranks."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"{name} must be a real-valued array, got {type(value).__name__}"
        ) from e
    if arr.ndim not in ndims:
        raise ValueError(
            f"{name} must have {' or '.join(str(n) for n in ndims)} dimensions, "
            f"got shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    return arr


def seeds_first(name: str, value: Any) -> np.ndarray:
    """``(n,)`` or ``(seeds, n)`` as ``(seeds, n)``."""
    arr = as_array(name, value, (1, 2))
    return arr[None] if arr.ndim == 1 else arr


def labelled(name: str, data: Any) -> dict[str, Any]:
    """A mapping ``label -> array`` (a bare array gets the empty label)."""
    if isinstance(data, Mapping):
        if not data:
            raise ValueError(f"{name} must not be empty")
        return {str(k): v for k, v in data.items()}
    return {"": data}


def band(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, ...]:
    """Median and 10-90% range over ``axis``, of the finite values only.

    Returns:
        ``(median, lo, hi)``, NaN where no value along ``axis`` is finite.
    """
    finite = np.where(np.isfinite(values), values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        med = np.nanmedian(finite, axis=axis)
        lo, hi = np.nanpercentile(finite, [10.0, 90.0], axis=axis)
    return med, lo, hi


def finite_median(values: Any) -> float:
    """The median of the finite entries (``None`` counts as non-finite), or NaN."""
    arr = np.array(
        [np.nan if v is None else v for v in np.ravel(np.asarray(values, object))],
        dtype=np.float64,
    )
    arr = arr[np.isfinite(arr)]
    return float(np.median(arr)) if arr.size else math.nan


def num(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures, with a true minus sign."""
    return f"{value:.{digits}g}".replace("-", "\u2212")


def fit_decay(lags: np.ndarray, log10_norms: np.ndarray) -> float:
    """Decay rate in nats per step: minus the least-squares slope of ln‖·‖ vs lag.

    Positive means vanishing. Only finite points count; NaN if fewer than two.
    The formula is the saved ``decay_rate`` metric's (``gradflow.decay_rate``),
    in float64.
    """
    lags = np.asarray(lags, np.float64)
    y = np.asarray(log10_norms, np.float64) * LN10
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = fit_line(np, y, np.broadcast_to(lags, y.shape))[0]
    return float(rate)


_KINDS = (
    # (test, y in axes coordinates, marker, name)
    (lambda v: v == np.inf, 1.0, "^", "+∞"),
    (lambda v: v == -np.inf, 0.0, "v", "−∞"),
    (np.isnan, 0.0, "x", "NaN"),
)


def mark_nonfinite(
    ax: Axes, x: np.ndarray, values: np.ndarray, color: str = "black"
) -> int:
    """Mark non-finite values at the axes edge instead of drawing them.

    ``+inf`` is a ``^`` on the top edge, ``-inf`` a ``v`` on the bottom edge, NaN
    an ``x`` on the bottom edge, at the x of the first value of each run of
    non-finite values in each row (a diverged run is one mark, not thousands).

    Args:
        ax: where to draw.
        x: ``(n,)`` positions.
        values: ``(n,)`` or ``(rows, n)`` data as given.
        color: marker colour (the line's).

    Returns:
        The number of non-finite values (0: nothing drawn).
    """
    values = np.atleast_2d(values)
    x = np.asarray(x, np.float64)
    count = int((~np.isfinite(values)).sum())
    if count == 0:
        return 0
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for test, y, marker, _ in _KINDS:
        hit = test(values)
        starts = hit & ~np.concatenate([np.zeros_like(hit[:, :1]), hit[:, :-1]], 1)
        cols = np.flatnonzero(starts.any(axis=0))
        if cols.size:
            ax.plot(
                x[cols],
                np.full(cols.size, y),
                linestyle="none",
                marker=marker,
                markersize=4,
                markeredgewidth=0.9,
                color=color,
                transform=trans,
                clip_on=False,
                zorder=5,
            )
    return count


def nonfinite_text(count: int) -> str:
    noun = "value" if count == 1 else "values"
    return f"{count} non-finite {noun} not drawn"


def nonfinite_handle(count: int) -> Line2D:
    """A legend entry that says how many values were not drawn."""
    return Line2D(
        [], [], linestyle="none", marker="x", color="black", label=nonfinite_text(count)
    )


def legend(ax: Axes, nonfinite: int, *, below: bool = False, **kwargs: Any) -> None:
    """The axes' legend, plus a non-finite entry when some values were not drawn.

    ``below`` puts it under the axes, outside the data (for many dense lines).
    """
    handles, labels = ax.get_legend_handles_labels()
    if nonfinite:
        h = nonfinite_handle(nonfinite)
        handles.append(h)
        labels.append(h.get_label())
    if not any(labels):
        return
    if below:
        kwargs.setdefault("ncols", min(3, len(labels)))
        ax.figure.legend(handles, labels, loc="outside lower center", **kwargs)
    else:
        ax.legend(handles, labels, **kwargs)


def edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (midpoints; end cells mirrored)."""
    c = np.asarray(centers, np.float64)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def hatch_nonfinite(ax: Axes, z: np.ndarray, xe: np.ndarray, ye: np.ndarray) -> str:
    """Hatch behind a heat map so its non-finite (masked, unpainted) cells show.

    Returns:
        What was left out, e.g. ``"3 NaN, 1 −∞"`` (empty when every cell is finite).
    """
    kinds = [(np.isnan(z).sum(), "NaN"), ((z == np.inf).sum(), "+∞")]
    kinds.append(((z == -np.inf).sum(), "−∞"))
    text = ", ".join(f"{int(n)} {name}" for n, name in kinds if n)
    if text:
        ax.add_patch(
            Rectangle(
                (xe[0], ye[0]),
                xe[-1] - xe[0],
                ye[-1] - ye[0],
                fill=False,
                hatch="////",
                edgecolor="#888888",
                linewidth=0,
                zorder=0,
            )
        )
    return text


def heat_note(ax: Axes, what: str) -> None:
    """Say above a heat map which cells are non-finite (hatched, not coloured)."""
    if what:
        ax.text(
            1.0,
            1.01,
            f"hatched: non-finite, not coloured ({what})",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize="x-small",
        )


def colors(n: int) -> list[str]:
    """``n`` colour-blind-safe colours: the palette (its faint yellow only when
    all of it is needed), then cividis samples."""
    if n <= len(PALETTE):
        return list(PALETTE[:n])
    from matplotlib import colormaps

    cmap = colormaps["cividis"]
    return [cmap(v) for v in np.linspace(0.0, 0.9, n)]
