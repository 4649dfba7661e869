"""Jacobian spectra, Lyapunov exponents, the edge of chaos, phase diagrams, bounds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gradflow.plots import _common as c
from gradflow.plots._profiles import LAG_LABEL, _heat
from gradflow.plots._style import StyleLike, finish, new_figure
from gradflow.plots._style import style as use_style

RATE = "nats / step"


def jacobian_singular_values(
    log10_singular_values: Any,
    *,
    lags: Any | None = None,
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """Top-k singular values of ``∂s_T/∂s_t`` against lag, one line per index i.

    Args:
        log10_singular_values: ``(lags, k)`` or ``(seeds, lags, k)`` (median over
            seeds) of ``log10 σ_i``, descending in i.
        lags: ``(lags,)`` the lag of each row (default 1, 2, ...).
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    arr = c.as_array("log10_singular_values", log10_singular_values, (2, 3))
    vals = arr if arr.ndim == 3 else arr[None]
    n_lag, k = vals.shape[1:]
    x = _coords_or("lags", lags, np.arange(1, n_lag + 1, dtype=np.float64), n_lag)
    with use_style(style):
        fig, ax = new_figure(column, 0.68)
        bad = 0
        shown = _spread_indices(k, 8)
        for i, color in zip(shown, c.colors(len(shown)), strict=True):
            med, lo, hi = c.band(vals[:, :, i])
            ax.plot(x, med, color=color, label=rf"$\sigma_{{{i + 1}}}$")
            if vals.shape[0] > 1:
                ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
            bad += c.mark_nonfinite(ax, x, vals[:, :, i], color)
        ax.axhline(0.0, color="black", lw=0.5, ls=":")
        ax.set_xlabel(LAG_LABEL)
        ax.set_ylabel(r"$\log_{10}\,\sigma_i(\partial s_T/\partial s_t)$")
        c.legend(ax, bad, ncols=2 if len(shown) > 4 else 1)
        return finish(fig)


def lyapunov_spectrum(
    exponents: Mapping[str, Any] | Any,
    *,
    running: Mapping[str, Any] | Any | None = None,
    resolved: Mapping[str, Any] | Any | None = None,
    column: str | None = None,
    style: StyleLike = "paper",
) -> Figure:
    """The Lyapunov spectrum, and (with ``running``) how its estimates converge.

    Args:
        exponents: ``label -> (seeds, k)`` (or ``(k,)``) exponents in nats per
            step, descending; or one such array.
        running: running estimates ``(seeds, steps, k)`` (or ``(steps, k)``) for
            one condition, drawn as the first 8 exponents against step; or
            ``label ->`` such arrays, drawn as λ_max per label.
        resolved: ``label -> (seeds, k)`` (or one such) booleans from
            ``gf.lyapunov_spectrum(...).resolved``: an exponent that some seed
            could not resolve is drawn as an upper bound (a ``v`` marker) and
            counted in the legend.
        column: width; default single without ``running``, double with it.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure: one panel, or two (spectrum | convergence).
    """
    data = c.labelled("exponents", exponents)
    arrays = {k: c.seeds_first(f"exponents[{k!r}]", v) for k, v in data.items()}
    runs = None
    if running is not None:
        runs = {
            k: _seeds_3d(f"running[{k!r}]", v)
            for k, v in c.labelled("running", running).items()
        }
    column = column or ("double" if runs else "single")
    with use_style(style):
        if runs:
            fig, (ax, ax2) = new_figure(column, 0.34, ncols=2)
        else:
            fig, ax = new_figure(column, 0.68)
        bad = bounds = 0
        cols = c.colors(len(arrays))
        masks = _resolved_masks(resolved, arrays)
        for (label, vals), color in zip(arrays.items(), cols, strict=True):
            idx = np.arange(1, vals.shape[1] + 1, dtype=np.float64)
            med, lo, hi = c.band(vals)
            unresolved = ~masks[label].all(axis=0) if label in masks else None
            if unresolved is not None and unresolved.any():
                # the true exponent lies below: the precision's floor, not a value
                ax.plot(
                    idx[unresolved],
                    med[unresolved],
                    ls="none",
                    marker="v",
                    markersize=5,
                    markerfacecolor="white",
                    color=color,
                    label=None if bounds else "upper bound (not resolved)",
                )
                bounds += int(unresolved.sum())
            ax.plot(
                idx,
                med,
                color=color,
                marker="o" if idx.size <= 32 else None,
                markersize=2.5,
                label=label or None,
            )
            if vals.shape[0] > 1:
                ax.fill_between(idx, lo, hi, color=color, alpha=0.2, lw=0)
            bad += c.mark_nonfinite(ax, idx, vals, color)
        ax.axhline(0.0, color="black", lw=0.6, ls="--")
        ax.set_xlabel(r"exponent index $i$")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(rf"$\lambda_i$ ({RATE})")
        c.legend(ax, bad)
        if runs:
            _convergence(ax2, runs, arrays)
        return finish(fig)


def _resolved_masks(resolved: Any, arrays: dict[str, np.ndarray]) -> dict:
    """``label -> (seeds, k)`` bool, checked against the exponents' shapes."""
    if resolved is None:
        return {}
    out = {}
    for label, value in c.labelled("resolved", resolved).items():
        mask = np.asarray(value, dtype=bool)
        mask = mask[None] if mask.ndim == 1 else mask
        if label not in arrays:
            raise ValueError(
                f"resolved[{label!r}] has no exponents of that label; labels are "
                f"{sorted(arrays)}"
            )
        if mask.shape != arrays[label].shape:
            raise ValueError(
                f"resolved[{label!r}] must have the exponents' shape "
                f"{arrays[label].shape}, got {np.shape(value)}"
            )
        out[label] = mask
    return out


def _convergence(ax: Any, runs: dict[str, np.ndarray], arrays: dict) -> None:
    bad = 0
    if len(runs) == 1:
        ((label, vals),) = runs.items()
        shown = list(range(min(vals.shape[2], 8)))
        lines = [(rf"$\lambda_{{{i + 1}}}$", vals[:, :, i]) for i in shown]
        title = label or None
        quantity = "running estimate"
    else:
        lines = [(label, vals[:, :, 0]) for label, vals in runs.items()]
        # a legend title would sit on the λ = 0 line; the axis says it instead
        title = None
        quantity = r"running $\lambda_{\max}$"
    for (label, v), color in zip(lines, c.colors(len(lines)), strict=True):
        x = np.arange(1, v.shape[1] + 1, dtype=np.float64)
        med, lo, hi = c.band(v)
        ax.plot(x, med, color=color, label=label, lw=1.0)
        if v.shape[0] > 1:
            ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
        bad += c.mark_nonfinite(ax, x, v, color)
    ax.axhline(0.0, color="black", lw=0.6, ls="--")
    ax.set_xlabel("steps averaged (after warm-up)")
    ax.set_ylabel(f"{quantity} ({RATE})")
    c.legend(ax, bad, title=title, ncols=2 if len(lines) > 4 else 1)


def _seeds_3d(name: str, value: Any) -> np.ndarray:
    arr = c.as_array(name, value, (2, 3))
    return arr[None] if arr.ndim == 2 else arr


def lambda_max_vs_gain(
    gains: Any,
    lambda_max: Mapping[str, Any] | Any,
    *,
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """Largest Lyapunov exponent against gain, with the edge of chaos (λ = 0).

    Each line is the median over seeds with its 10-90% range; the gain where the
    median crosses zero (linear interpolation) is marked and given in the legend.

    Args:
        gains: ``(n,)`` gains g (any order; sorted for drawing).
        lambda_max: ``label -> (n, seeds)`` or ``(n,)``, nats per step; or one
            such array.
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    return metric_against(
        gains,
        lambda_max,
        xlabel=r"gain $g$",
        ylabel=rf"$\lambda_{{\max}}$ ({RATE})",
        zero_label=r"edge of chaos, $\lambda_{\max}=0$",
        crossing="g",
        column=column,
        style=style,
    )


def metric_against(
    x: Any,
    values: Mapping[str, Any] | Any,
    *,
    xlabel: str,
    ylabel: str,
    zero_label: str | None = None,
    crossing: str | None = None,
    log_x: bool = False,
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """A per-seed scalar against a grid coordinate, one line per label.

    E.g. decay rate against gain, or ``log10 ‖∂L/∂h_0‖`` against sequence
    length (a straight line on this axis is exponential in T).

    Args:
        x: ``(n,)`` coordinate values (sorted for drawing).
        values: ``label -> (n, seeds)`` or ``(n,)``; or one such array.
        xlabel: x-axis label.
        ylabel: y-axis label.
        zero_label: draw y = 0 as a dashed line with this legend label.
        crossing: mark where each median crosses 0 upwards, named by this
            symbol in the legend (e.g. ``"g"`` gives ``g* ≈ 1.02``).
        log_x: logarithmic x axis.
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    g = c.as_array("x", x, (1,))
    data = c.labelled("values", values)
    with use_style(style):
        fig, ax = new_figure(column, 0.68)
        bad = 0
        order = np.argsort(g)
        for (label, raw), color in zip(data.items(), c.colors(len(data)), strict=True):
            vals = c.as_array(f"values[{label!r}]", raw, (1, 2))
            vals = vals[:, None] if vals.ndim == 1 else vals
            if vals.shape[0] != g.size:
                raise ValueError(
                    f"values[{label!r}] must have {g.size} rows (one per x), "
                    f"got shape {vals.shape}"
                )
            vals = vals[order].T  # (seeds, n)
            med, lo, hi = c.band(vals)
            text = label
            g_star = _zero_crossing(g[order], med) if crossing else math.nan
            if not math.isnan(g_star):
                text = f"{label}, " if label else ""
                text += rf"${crossing}^* \approx$ {c.num(g_star)}"
                ax.axvline(g_star, color=color, lw=0.6, ls=":")
            ax.plot(g[order], med, color=color, marker="o", label=text or None)
            if vals.shape[0] > 1:
                ax.fill_between(g[order], lo, hi, color=color, alpha=0.2, lw=0)
            bad += c.mark_nonfinite(ax, g[order], vals, color)
        if zero_label is not None:
            ax.axhline(0.0, color="black", lw=0.7, ls="--", label=zero_label)
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        c.legend(ax, bad)
        return finish(fig)


def _zero_crossing(x: np.ndarray, y: np.ndarray) -> float:
    """First x where y changes sign from below 0 to at least 0, interpolated."""
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    for i in range(len(y) - 1):
        if y[i] < 0 <= y[i + 1]:
            return float(x[i] + (x[i + 1] - x[i]) * (-y[i]) / (y[i + 1] - y[i]))
    return math.nan


def phase_diagram(
    gains: Any,
    lengths: Any,
    log10_norm_step0: Any,
    *,
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """Gain × sequence length coloured by ``log10 ‖∂L/∂h_0‖``.

    Blue is vanishing, red exploding when the data spans both; the dashed contour
    is norm 1 (``log10 = 0``). Grid cells are equal-sized, labelled by value.

    Args:
        gains: ``(G,)`` gains.
        lengths: ``(L,)`` sequence lengths.
        log10_norm_step0: ``(G, L)`` or ``(G, L, seeds)`` (median over seeds).
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    g = c.as_array("gains", gains, (1,))
    length = c.as_array("lengths", lengths, (1,))
    z = c.as_array("log10_norm_step0", log10_norm_step0, (2, 3))
    if z.shape[:2] != (g.size, length.size):
        raise ValueError(
            f"log10_norm_step0 must have shape ({g.size}, {length.size}[, seeds]) "
            f"for {g.size} gains and {length.size} lengths, got {z.shape}"
        )
    if z.ndim == 3:
        med = c.band(z, axis=2)[0]
        z = np.where(~np.isfinite(z).any(axis=2), z[:, :, 0], med)
    gi, li = np.argsort(g), np.argsort(length)
    zz = z[gi][:, li].T  # rows = lengths, cols = gains
    finite = zz[np.isfinite(zz)]
    spans = finite.size and finite.min() < 0 < finite.max()
    norm = TwoSlopeNorm(0.0, finite.min(), finite.max()) if spans else None
    with use_style(style):
        fig, ax = new_figure(column, 0.75)
        xi = np.arange(g.size, dtype=np.float64)
        yi = np.arange(length.size, dtype=np.float64)
        _heat(
            ax,
            zz,
            xi,
            yi,
            cmap="RdBu_r" if spans else "viridis",
            label=r"$\log_{10}\,\|\partial L/\partial h_0\|$",
            norm=norm,
        )
        if spans and min(zz.shape) > 1:
            ax.contour(
                xi,
                yi,
                np.ma.masked_invalid(zz),
                levels=[0.0],
                colors="black",
                linewidths=0.8,
                linestyles="--",
            )
        ax.set_xticks(xi, [f"{v:g}" for v in g[gi]])
        ax.set_yticks(yi, [f"{v:g}" for v in length[li]])
        _thin_ticks(ax, g.size, length.size)
        ax.set_xlabel(r"gain $g$")
        ax.set_ylabel(r"sequence length $T$")
        return finish(fig)


def _thin_ticks(ax: Any, nx: int, ny: int, most: int = 10) -> None:
    for labels, n in ((ax.get_xticklabels(), nx), (ax.get_yticklabels(), ny)):
        step = max(1, math.ceil(n / most))
        for i, t in enumerate(labels):
            t.set_visible(i % step == 0)


def pascanu_bound(
    sigma_max: Mapping[str, Any] | Any,
    decay_rate: Mapping[str, Any] | Any,
    *,
    gamma: float | Mapping[str, float] = 1.0,
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """Measured decay rate against ``σ_max(W_hh)``, next to Pascanu et al.'s bound.

    Each step's Jacobian has norm at most ``γ σ_max``, so the gradient decays at
    least at ``−ln(γ σ_max)`` nats per step: vanishing is guaranteed left of the
    vertical line ``σ_max = 1/γ`` (γ = 1 for tanh, 1/4 for sigmoid). Points
    below the bound curve would contradict the theory.

    Args:
        sigma_max: ``label -> (n,)`` or ``(n,)`` largest singular values of W_hh.
        decay_rate: same shape (or ``(n, seeds)``: median drawn, range as bars),
            measured decay in nats per step (positive = vanishing).
        gamma: bound on the activation's derivative, per label or for all.
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    sig = c.labelled("sigma_max", sigma_max)
    dec = c.labelled("decay_rate", decay_rate)
    if set(sig) != set(dec):
        raise ValueError(
            f"sigma_max and decay_rate must have the same labels, got {sorted(sig)} "
            f"and {sorted(dec)}"
        )
    gammas = {k: _gamma(gamma, k) for k in sig}
    with use_style(style):
        fig, ax = new_figure(column, 0.68)
        bad = 0
        all_s = []
        for label, color in zip(sig, c.colors(len(sig)), strict=True):
            s = c.as_array(f"sigma_max[{label!r}]", sig[label], (1,))
            d = c.as_array(f"decay_rate[{label!r}]", dec[label], (1, 2))
            d = d[:, None] if d.ndim == 1 else d
            if d.shape[0] != s.size:
                raise ValueError(
                    f"decay_rate[{label!r}] must have {s.size} rows like sigma_max, "
                    f"got shape {d.shape}"
                )
            med, lo, hi = c.band(d.T)
            ok = np.isfinite(s) & np.isfinite(med)
            yerr = np.abs(np.stack([med - lo, hi - med])[:, ok])
            ax.errorbar(
                s[ok],
                med[ok],
                yerr=yerr if d.shape[1] > 1 else None,
                fmt="o",
                color=color,
                ms=3,
                elinewidth=0.6,
                capsize=0,
                label=label or "measured",
            )
            bad += c.mark_nonfinite(ax, np.where(np.isfinite(s), s, 0.0), d.T, color)
            all_s.append(s[np.isfinite(s)])
        # The x range shows every point and every 1/γ line, with a margin.
        marks = [*np.concatenate(all_s), *(1.0 / g for g in gammas.values())]
        lo_s, hi_s = 0.85 * min(marks), 1.15 * max(marks)
        for gm in sorted(set(gammas.values())):
            grid = np.linspace(lo_s, hi_s, 200)
            ax.plot(
                grid,
                -np.log(gm * grid),
                color="black",
                lw=0.8,
                label=rf"bound $-\ln(\gamma\,\sigma_{{\max}})$, $\gamma={gm:g}$",
            )
            ax.axvline(1.0 / gm, color="black", lw=0.6, ls="--")
            ax.text(
                1.0 / gm,
                1.0,
                rf" $1/\gamma={1 / gm:g}$",
                rotation=90,
                va="top",
                ha="right",
                fontsize="x-small",
                transform=ax.get_xaxis_transform(),
            )
        ax.axhline(0.0, color="#999999", lw=0.5)
        ax.set_xlabel(r"$\sigma_{\max}(W_{hh})$")
        ax.set_ylabel(f"decay rate ({RATE})")
        c.legend(ax, bad)
        return finish(fig)


def _gamma(gamma: float | Mapping[str, float], label: str) -> float:
    g = gamma.get(label, 1.0) if isinstance(gamma, Mapping) else gamma
    if isinstance(g, bool) or not isinstance(g, int | float) or not g > 0:
        raise ValueError(f"gamma must be a positive number, got {g!r}")
    return float(g)


def _coords_or(name: str, value: Any, default: np.ndarray, n: int) -> np.ndarray:
    if value is None:
        return default
    arr = c.as_array(name, value, (1,))
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr


def _spread_indices(k: int, most: int) -> Sequence[int]:
    """Up to ``most`` indices from 0..k−1, always the first and the last."""
    if k <= most:
        return list(range(k))
    return sorted({round(float(v)) for v in np.linspace(0, k - 1, most)})
