"""Clipping studies: loss curves, divergence and final loss per threshold, norms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gradflow.plots import _common as c
from gradflow.plots._style import StyleLike, finish, new_figure
from gradflow.plots._style import style as use_style
from gradflow.results import threshold_label

LOSS_LABEL = "loss (nats)"


def loss_curves(
    losses: Mapping[str, Any] | Any,
    *,
    iterations: Any | None = None,
    log_y: bool | None = None,
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """Training loss against iteration, one line per threshold (or any label).

    Each line is the median over the seeds still finite at that iteration, with
    the 10-90% range; where a seed's loss turns NaN/inf (divergence) a mark sits
    on the axes edge and the legend counts the values left out.

    Args:
        losses: ``label -> (seeds, iterations)`` (or ``(iterations,)``), or one.
        iterations: ``(iterations,)`` x values (default 0, 1, ...).
        log_y: logarithmic y axis; default when all finite losses are positive
            and span more than a factor 30.
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    data = c.labelled("losses", losses)
    arrays = {k: c.seeds_first(f"losses[{k!r}]", v) for k, v in data.items()}
    with use_style(style):
        fig, ax = new_figure(column, 0.68)
        bad = 0
        finite = []
        for (label, vals), color in zip(
            arrays.items(), c.colors(len(arrays)), strict=True
        ):
            n = vals.shape[1]
            x = np.arange(n, dtype=np.float64)
            if iterations is not None:
                x = c.as_array("iterations", iterations, (1,))
                if x.shape != (n,):
                    raise ValueError(
                        f"iterations must have shape ({n},) like losses[{label!r}], "
                        f"got {x.shape}"
                    )
            med, lo, hi = c.band(vals)
            ax.plot(x, med, color=color, lw=1.0, label=label or None)
            if vals.shape[0] > 1:
                ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
            bad += c.mark_nonfinite(ax, x, vals, color)
            finite.append(vals[np.isfinite(vals)])
        f = np.concatenate(finite)
        if log_y is None:
            log_y = bool(f.size and f.min() > 0 and f.max() / f.min() > 30)
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel("training iteration")
        ax.set_ylabel(LOSS_LABEL)
        c.legend(
            ax,
            bad,
            title="clipping" if len(arrays) > 1 else None,
            title_fontsize="x-small",
            below=len(arrays) > 3,
        )
        return finish(fig)


def clipping_summary(
    thresholds: Sequence[Any],
    divergence_rate: Any,
    final_loss: Any,
    *,
    final_loss_range: Any | None = None,
    recommended: Any | None = None,
    column: str = "double",
    style: StyleLike = "paper",
) -> Figure:
    """Divergence rate and final loss against clipping threshold (two panels).

    Thresholds sit at equal spacing in the given order and are labelled by value
    (``None``/inf is "none": no clipping; names such as "autoclip" as given).

    Args:
        thresholds: ``(n,)`` thresholds or names.
        divergence_rate: ``(n,)`` share of seeds that diverged, in [0, 1].
        final_loss: ``(n,)`` median final loss, or ``(n, seeds)`` (median drawn).
        final_loss_range: ``(n, 2)`` low/high of the final loss over seeds
            (default: the 10-90% range of ``final_loss`` when it has seeds).
        recommended: the recommended threshold (an entry of ``thresholds``),
            starred on both panels.
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    if isinstance(thresholds, str | bytes) or not isinstance(thresholds, Sequence):
        thresholds = list(np.ravel(np.asarray(thresholds, dtype=object)))
    n = len(thresholds)
    if n == 0:
        raise ValueError("thresholds must not be empty")
    div = c.as_array("divergence_rate", divergence_rate, (1,))
    fl = c.as_array("final_loss", final_loss, (1, 2))
    if div.shape != (n,) or fl.shape[0] != n:
        raise ValueError(
            f"divergence_rate and final_loss must have {n} entries (one per "
            f"threshold), got shapes {div.shape} and {fl.shape}"
        )
    if fl.ndim == 2:
        med, lo, hi = c.band(fl.T)
        fl_raw = fl.T
    else:
        med, lo, hi = fl, fl, fl
        fl_raw = fl[None]
    if final_loss_range is not None:
        rng = c.as_array("final_loss_range", final_loss_range, (2,))
        if rng.shape != (n, 2):
            raise ValueError(
                f"final_loss_range must have shape ({n}, 2), got {rng.shape}"
            )
        lo, hi = rng[:, 0], rng[:, 1]
    labels = [threshold_label(t) for t in thresholds]
    x = np.arange(n, dtype=np.float64)
    star = None
    if recommended is not None:
        rec = threshold_label(recommended)
        star = labels.index(rec) if rec in labels else None
    with use_style(style):
        fig, (ax1, ax2) = new_figure(column, 0.3, ncols=2)
        ok = np.isfinite(div)
        bars = ax1.bar(x[ok], div[ok], width=0.6, color=c.colors(1)[0])
        ax1.bar_label(
            bars, [c.num(v, 2) for v in div[ok]], padding=1.5, fontsize="x-small"
        )
        bad1 = c.mark_nonfinite(ax1, x, div)
        ax1.set_ylim(0.0, 1.1)
        ax1.set_ylabel("divergence rate (share of seeds)")
        ok = np.isfinite(med)
        err = np.abs(np.stack([med - lo, hi - med]))
        err = np.where(np.isfinite(err), err, 0.0)
        ax2.errorbar(
            x[ok],
            med[ok],
            yerr=err[:, ok],
            fmt="o",
            ms=3.5,
            color=c.colors(2)[1],
            elinewidth=0.8,
            capsize=2,
        )
        bad2 = c.mark_nonfinite(ax2, x, np.where(np.isfinite(med), med, fl_raw[0]))
        ax2.set_ylabel(f"final {LOSS_LABEL}")
        ticks = list(labels)
        if star is not None:
            ticks[star] += "\n(recommended)"
        # Long names (e.g. "global_norm 0.1") would run into each other.
        slant = n > 5 or sum(len(t) for t in labels) > 6 * n
        for ax in (ax1, ax2):
            ax.set_xticks(
                x, ticks, rotation=30 if slant else 0, ha="right" if slant else "center"
            )
            ax.set_xlabel("clipping threshold")
            ax.grid(axis="x", visible=False)
            ax.set_xlim(-0.6, n - 0.4)
            if star is not None:
                ax.axvspan(
                    star - 0.45,
                    star + 0.45,
                    color="#009E73",
                    alpha=0.13,
                    lw=0,
                    zorder=0,
                )
                ax.get_xticklabels()[star].set_fontweight("bold")
        c.legend(ax1, bad1, loc="upper left")
        c.legend(ax2, bad2, loc="upper left")
        return finish(fig)


def grad_norm_histogram(
    grad_norms: Any,
    *,
    thresholds: Mapping[str, float] | Sequence[float] = (),
    shade: tuple[float, float] | None = None,
    bins: int = 40,
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """Histogram of global gradient norms (log-spaced bins) with thresholds drawn.

    Args:
        grad_norms: any shape: norms before clipping (e.g. ``(seeds, iterations)``).
        thresholds: ``label -> threshold`` or a sequence of thresholds, each drawn
            as a vertical line (non-finite ones, "no clipping", are skipped).
        shade: ``(lo, hi)``, a range of norms to shade (e.g. the recommended
            range of ``gradflow audit``).
        bins: number of bins.
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    arr = np.ravel(c.as_array("grad_norms", grad_norms, (1, 2, 3)))
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    if not isinstance(thresholds, Mapping):
        thresholds = {threshold_label(t): t for t in thresholds}
    finite = arr[np.isfinite(arr)]
    nonpos = int((finite <= 0).sum())
    pos = finite[finite > 0]
    with use_style(style):
        fig, ax = new_figure(column, 0.62)
        if pos.size:
            lo, hi = np.log10(pos.min()), np.log10(pos.max())
            if hi - lo < 1e-6:
                lo, hi = lo - 0.5, hi + 0.5
            edges = np.logspace(lo, hi, bins + 1)
            ax.hist(pos, bins=edges, color="#56B4E9", edgecolor="white", lw=0.3)
        ax.set_xscale("log")
        if shade is not None:
            lo_s, hi_s = (float(v) for v in shade)
            ax.axvspan(
                lo_s, hi_s, color="#009E73", alpha=0.15, lw=0, label="recommended range"
            )
        drawn = [
            (k, float(v))
            for k, v in thresholds.items()
            if v is not None and np.isfinite(float(v)) and float(v) > 0
        ]
        for (label, v), color in zip(drawn, c.colors(len(drawn) + 1)[1:], strict=True):
            ax.axvline(v, color=color, lw=1.0, ls="--", label=f"threshold {label}")
        handles_bad = int((~np.isfinite(arr)).sum())
        ax.set_xlabel(r"global gradient norm $\|g\|$ (before clipping)")
        ax.set_ylabel("count (iterations × seeds)")
        note = []
        if handles_bad:
            note.append(f"{handles_bad} non-finite")
        if nonpos:
            note.append(f"{nonpos} zero")
        if note:
            ax.text(
                1.0,
                1.01,
                " and ".join(note) + " values not drawn",
                transform=ax.transAxes,
                ha="right",
                va="bottom",
                fontsize="x-small",
            )
        c.legend(ax, 0)
        return finish(fig)
