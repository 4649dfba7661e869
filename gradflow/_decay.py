"""The one decay fit: a least-squares line through ``ln ‖g‖`` against distance.

Written once against the array API that numpy and ``jax.numpy`` share, so the
saved ``decay_rate`` metric (``gradflow.decay_rate``, under ``jit``) and the
rate a figure's legend shows (``gradflow.plots.fit_decay``, numpy) are the same
formula. Imports neither jax nor matplotlib.
"""

from __future__ import annotations

import math
from typing import Any

#: ``ln 10``: a log10 norm times this is a natural log.
LN10 = math.log(10.0)


def fit_line(xp: Any, logs: Any, dist: Any) -> tuple[Any, Any, Any, Any]:
    """Fit ``logs ≈ intercept − rate · dist`` along axis 0, finite points only.

    Args:
        xp: ``numpy`` or ``jax.numpy``.
        logs: ``(T, *batch)`` natural logs of the norms (non-finite: left out).
        dist: ``(T, *batch)`` distance back in time of each entry (non-finite:
            left out).

    Returns:
        ``(rate, half_life, r2, intercept)``, each ``(*batch,)``: ``rate`` in
        nats per step (positive: vanishing; NaN with fewer than two distinct
        finite points), ``half_life = ln 2 / rate`` (``inf`` when the norm does
        not decay), ``r2`` the coefficient of determination (1 for a flat
        series) and ``intercept`` the fitted ``ln ‖g‖`` at distance 0; all
        NaN where the fit is undefined.
    """
    weight = (xp.isfinite(logs) & xp.isfinite(dist)).astype(logs.dtype)
    y = xp.where(weight > 0, logs, 0.0)
    dist = xp.where(weight > 0, dist, 0.0)
    count = xp.sum(weight, axis=0)
    mean_x = xp.sum(weight * dist, axis=0) / count
    mean_y = xp.sum(weight * y, axis=0) / count
    dx = (dist - mean_x[None]) * weight
    dy = (y - mean_y[None]) * weight
    slope = xp.sum(dx * dy, axis=0) / xp.sum(dx * dx, axis=0)
    intercept = mean_y - slope * mean_x
    resid = (y - intercept[None] - slope[None] * dist) * weight
    ss_res = xp.sum(resid * resid, axis=0)
    ss_tot = xp.sum(dy * dy, axis=0)
    # A flat series has no variance to explain (0/0): a perfect fit, r2 = 1.
    eps = xp.finfo(logs.dtype).eps
    level = count * xp.square(4 * eps * xp.max(xp.abs(y), axis=0))
    varies = ss_tot > level
    r2 = xp.where(varies, 1.0 - ss_res / xp.where(varies, ss_tot, 1.0), 1.0)
    rate = -slope
    half_life = xp.where(
        rate > 0, math.log(2.0) / xp.where(rate > 0, rate, 1.0), xp.inf
    )
    # An undefined fit (fewer than two points: rate 0/0) is NaN in every field,
    # never "a perfect fit" or "never halves".
    undefined = xp.isnan(rate)
    half_life = xp.where(undefined, xp.nan, half_life)
    r2 = xp.where(undefined, xp.nan, r2)
    return rate, half_life, r2, intercept
