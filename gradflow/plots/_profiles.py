"""Gradient norm against distance back in time, and heat maps of the profile."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from gradflow.plots import _common as c
from gradflow.plots._style import StyleLike, finish, new_figure
from gradflow.plots._style import style as use_style

GRAD_LABEL = r"$\log_{10}\,\|\partial L/\partial h_t\|$"
LAG_LABEL = r"distance back in time, $T-t$ (steps)"
STEP_LABEL = r"time step $t$"


def grad_norm_profile(
    log10_norms: Mapping[str, Any] | Any,
    *,
    lags: Mapping[str, Any] | Any | None = None,
    log10: bool = True,
    time_axis: int = -1,
    ylabel: str = GRAD_LABEL,
    fit: bool = True,
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """Gradient norm against distance back in time, one line per label.

    Each line is the median over seeds with a shaded 10-90% range; the legend
    gives the decay rate fitted to the median (minus the slope of ln‖·‖ against
    lag, nats per step; positive = vanishing).

    Args:
        log10_norms: ``label -> (seeds, T)`` (or ``(T,)``) arrays of
            ``log10 ‖∂L/∂h_t‖`` for t = 0..T−1, or one such array. Any other
            layout works with ``time_axis``: every other axis counts as seeds.
            ``gf.hidden_grad_norms(...).log10_norms`` is ``(T, *batch)``: pass
            ``time_axis=0`` (and ``log10=False`` for its plain ``.norms``).
        lags: ``label ->`` or one ``(T,)`` array of distances back in time for
            entry t; default ``T − 1 − t`` (0 for the last step, whose loss term
            is nearest). Jacobian norms ``log10‖∂s_T/∂s_t‖`` span ``T − t``.
        log10: the values are already log10 (the saved arrays are); with False,
            plain norms whose log10 is taken here (a 0 becomes −inf: flagged).
        time_axis: which axis of each array is the time step.
        ylabel: y-axis label (e.g. for Jacobian norms).
        fit: put the fitted decay rate in the legend.
        column: ``"single"`` (3.5 in) or ``"double"`` (7 in) wide.
        style: a style name, rc mapping, or ``None`` (see ``gf.plots.style``).

    Returns:
        The figure.
    """
    data = c.labelled("log10_norms", log10_norms)
    arrays = {
        k: _time_last(f"log10_norms[{k!r}]", v, time_axis, log10)
        for k, v in data.items()
    }
    lag_map = _lags_for(arrays, lags)
    cols = c.colors(len(arrays))
    with use_style(style):
        fig, ax = new_figure(column, 0.68)
        bad = 0
        for (label, vals), color in zip(arrays.items(), cols, strict=True):
            x = lag_map[label]
            order = np.argsort(x)
            med, lo, hi = c.band(vals)
            text = label
            if fit:
                rate = c.fit_decay(x, med)
                rate_text = "n/a" if math.isnan(rate) else c.num(rate)
                text = f"{label}: {rate_text}" if label else rate_text
            order = _thinned(order)
            ax.plot(x[order], med[order], color=color, label=text)
            if vals.shape[0] > 1:
                ax.fill_between(
                    x[order], lo[order], hi[order], color=color, alpha=0.2, lw=0
                )
            bad += c.mark_nonfinite(ax, x, vals, color)
        ax.set_xlabel(LAG_LABEL)
        ax.set_ylabel(ylabel)
        title = "decay rate (nats / step)" if fit else None
        c.legend(ax, bad, title=title, title_fontsize="x-small")
        return finish(fig)


# Past MAX_DRAWN steps a line is drawn through every k-th, about THINNED of
# them (the fit above uses all): a 10,000-step profile would otherwise make
# multi-MB PDF/SVG files.
MAX_DRAWN = 2000
THINNED = 600


def _thinned(order: np.ndarray) -> np.ndarray:
    """Every k-th index of ``order`` (its last kept) when it is long."""
    if order.size <= MAX_DRAWN:
        return order
    step = -(-order.size // THINNED)
    keep = order[::step]
    return keep if keep[-1] == order[-1] else np.append(keep, order[-1])


def _time_last(name: str, value: Any, time_axis: int, log10: bool) -> np.ndarray:
    """Any layout as ``(samples, T)``, in log10."""
    arr = c.as_array(name, value, (1, 2, 3, 4))
    if not -arr.ndim <= time_axis < arr.ndim:
        raise ValueError(
            f"time_axis={time_axis} is out of range for {name} of shape {arr.shape}"
        )
    arr = np.moveaxis(arr, time_axis, -1).reshape(-1, arr.shape[time_axis])
    if not log10:
        with np.errstate(divide="ignore", invalid="ignore"):
            arr = np.log10(arr)
    return arr


def _lags_for(arrays: dict[str, np.ndarray], lags: Any) -> dict[str, np.ndarray]:
    out = {}
    given = c.labelled("lags", lags) if lags is not None else {}
    for label, vals in arrays.items():
        T = vals.shape[-1]
        raw = given.get(label, given.get("")) if given else None
        if raw is None:
            out[label] = np.arange(T - 1, -1, -1, dtype=np.float64)
            continue
        x = c.as_array(f"lags[{label!r}]", raw, (1,))
        if x.shape != (T,):
            raise ValueError(
                f"lags[{label!r}] must have shape ({T},) to match log10_norms, "
                f"got {x.shape}"
            )
        out[label] = x
    return out


def grad_norm_heatmap(
    log10_norms: Any,
    *,
    iterations: Any | None = None,
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """Heat map of ``log10 ‖∂L/∂h_t‖`` over time step × training iteration.

    Shows how the gradient profile changes as the network learns.

    Args:
        log10_norms: ``(records, T)`` or ``(seeds, records, T)`` (median over
            seeds): the profile recorded at each of ``records`` training
            iterations (``profile_log10_grad_norms``).
        iterations: ``(records,)`` training iteration of each record (default
            0, 1, ...).
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    z = _median_2d("log10_norms", log10_norms)
    y = _coords("iterations", iterations, z.shape[0])
    with use_style(style):
        fig, ax = new_figure(column, 0.72)
        _heat(ax, z, np.arange(z.shape[1], dtype=np.float64), y)
        ax.set_xlabel(STEP_LABEL)
        ax.set_ylabel("training iteration")
        return finish(fig)


def layer_heatmap(
    log10_norms: Any,
    *,
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """Heat map of ``log10 ‖∂L/∂h_t‖`` over layer × time step (stacked cells).

    Args:
        log10_norms: ``(layers, T)`` or ``(seeds, layers, T)`` (median over
            seeds); layer 0 is the one nearest the input.
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    z = _median_2d("log10_norms", log10_norms)
    with use_style(style):
        fig, ax = new_figure(column, 0.55)
        layers = np.arange(z.shape[0], dtype=np.float64)
        _heat(ax, z, np.arange(z.shape[1], dtype=np.float64), layers)
        ax.set_yticks(layers)
        ax.set_xlabel(STEP_LABEL)
        ax.set_ylabel(r"layer $\ell$")
        return finish(fig)


def _median_2d(name: str, value: Any) -> np.ndarray:
    arr = c.as_array(name, value, (2, 3))
    if arr.ndim == 2:
        return arr
    med = c.band(arr, axis=0)[0]
    # A cell is non-finite when every seed is; keep the sign of an infinity.
    allbad = ~np.isfinite(arr).any(axis=0)
    return np.where(allbad, arr[0], med)


def _coords(name: str, value: Any, n: int) -> np.ndarray:
    if value is None:
        return np.arange(n, dtype=np.float64)
    arr = c.as_array(name, value, (1,))
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr


def _heat(
    ax: Any,
    z: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    cmap: str = "viridis",
    label: str = GRAD_LABEL,
    norm: Any = None,
) -> None:
    """pcolormesh of ``z (len(y), len(x))`` with non-finite cells hatched."""
    xe, ye = c.edges(x), c.edges(y)
    cm = colormaps[cmap].with_extremes(bad=(0, 0, 0, 0))
    if norm is None and not np.isfinite(z).any():
        norm = Normalize(0.0, 1.0)  # nothing to colour; keep the colour bar valid
    mesh = ax.pcolormesh(
        xe,
        ye,
        np.ma.masked_invalid(z),
        cmap=cm,
        norm=norm,
        shading="flat",
        rasterized=z.size > 4096,
    )
    ax.grid(False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    c.heat_note(ax, c.hatch_nonfinite(ax, z, xe, ye))
    cbar = ax.figure.colorbar(mesh, ax=ax, pad=0.02, fraction=0.06)
    cbar.set_label(label)
    cbar.outline.set_linewidth(0.4)


def param_grad_share(
    shares: Mapping[str, Any] | Any,
    *,
    level: float = 0.9,
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """How much of ``∂L/∂W_hh`` comes from the last k steps, against k.

    Plots the cumulative share ``Σ_{T−t ≤ k} share_t`` (median over seeds and
    10-90% band): a curve that reaches 1 within a few steps means the weight's
    gradient is dominated by short-term terms. The legend gives the k where the
    median first reaches ``level``.

    Args:
        shares: ``label -> (seeds, T)`` (or ``(T,)``) per-step shares of
            ``‖∂L/∂W_hh‖`` for t = 0..T−1 (``param_grad_share``; each row sums
            to 1), or one such array.
        level: the share whose reach is reported in the legend, in (0, 1].
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    if isinstance(level, bool) or not isinstance(level, int | float):
        raise TypeError(f"level must be a number in (0, 1], got {level!r}")
    if not 0 < level <= 1:
        raise ValueError(f"level must be in (0, 1], got {level}")
    data = c.labelled("shares", shares)
    arrays = {k: c.seeds_first(f"shares[{k!r}]", v) for k, v in data.items()}
    with use_style(style):
        fig, ax = new_figure(column, 0.68)
        bad = 0
        for (label, vals), color in zip(
            arrays.items(), c.colors(len(arrays)), strict=True
        ):
            T = vals.shape[1]
            back = vals[:, ::-1]  # column k: the step k back from the end
            # A non-finite share poisons every cumulative sum after it: mark it,
            # and leave those sums out rather than draw them.
            cum = np.cumsum(np.where(np.isfinite(back), back, np.nan), axis=1)
            k = np.arange(T, dtype=np.float64)
            med, lo, hi = c.band(cum)
            reach = np.flatnonzero(med >= level - 1e-12)
            text = f"{label}: " if label else ""
            text += f"k = {int(k[reach[0]])}" if reach.size else f"k > {T - 1}"
            ax.plot(k, med, color=color, label=text)
            if vals.shape[0] > 1:
                ax.fill_between(k, lo, hi, color=color, alpha=0.2, lw=0)
            bad += c.mark_nonfinite(ax, k, back, color)
        ax.axhline(level, color="black", lw=0.6, ls=":")
        ax.set_ylim(0.0, 1.05)
        ax.set_xlabel(r"steps back from the end, $k = T-1-t$")
        ax.set_ylabel(r"share of $\|\partial L/\partial W_{hh}\|$ within $k$")
        c.legend(ax, bad, title=f"{level:.0%} reached at", title_fontsize="x-small")
        return finish(fig)
