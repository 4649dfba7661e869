"""Clipping methods replayed over a logged series of gradient norms (numpy only).

Each method's rule and state run over the norms as they were logged, giving the
factor it would have scaled each step's gradient by (1: not clipped). The run
itself is not re-simulated: had the method clipped, later norms would differ,
so this says what it would have done at each logged step, given that history.

* ``global_norm:T``: ``optax.clip_by_global_norm(T)``, factor ``T / g`` above T;
* ``autoclip:P``: ``gf.train.percentile_clip(P)`` with a history as long as the
  log (AutoClip: the P-th percentile of every norm so far, this one included);
* ``zclip:Z``: ``gf.train.zclip(z_thresh=Z)`` (defaults otherwise, no cap);
* ``adagc[:LAMBDA_REL]``: ``gf.train.adagc(lambda_rel=...)``, pytorch-optimizer's
  AdaGC: per tensor, so per logged group (``grad_norm/<name>``) when the log
  has them (the global norm sets the warm-up scale), else the model as one tensor.

Non-finite norms get no factor (NaN) and leave every state as it was.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

#: Replayable methods and the parameter after the colon (``None``: required).
REPLAY_DEFAULTS: dict[str, float | None] = {
    "global_norm": None,
    "autoclip": 10.0,
    "zclip": 2.5,
    "adagc": 1.05,
}
#: AdaGC's other settings, pytorch-optimizer's defaults.
ADAGC = {"lambda_abs": 1.0, "beta": 0.98, "warmup_steps": 100, "eps": 1e-8}


def parse_replay(spec: str) -> tuple[str, float]:
    """``"zclip:2.5"`` -> ``("zclip", 2.5)``; the parameter may be left out
    where the method has a default.

    Raises:
        ValueError: an unknown method, a missing or non-positive parameter.
    """
    if not isinstance(spec, str):
        raise TypeError(f"replay must be a string METHOD[:VALUE], got {spec!r}")
    name, _, raw = spec.partition(":")
    name = name.strip()
    if name not in REPLAY_DEFAULTS:
        raise ValueError(
            f"replay method must be one of {', '.join(REPLAY_DEFAULTS)}, got "
            f"{name!r} (in {spec!r})"
        )
    if not raw.strip():
        value = REPLAY_DEFAULTS[name]
        if value is None:
            raise ValueError(f"replay {name!r} needs a value: {name}:THRESHOLD")
        return name, value
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"replay {spec!r}: {raw!r} is not a number") from None
    if not value > 0 or (name == "autoclip" and value > 100):
        want = "a percentile in (0, 100]" if name == "autoclip" else "a number > 0"
        raise ValueError(f"replay {spec!r}: expected {want}, got {raw!r}")
    return name, value


def zclip_levels(
    g: np.ndarray, *, alpha: float, z_thresh: float, warmup_steps: int, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """ZClip's spike flags and clip levels over ``g`` (``inf`` where no clip)."""
    spikes = np.zeros(g.shape, bool)
    level = np.full(g.shape, np.inf)
    buf: list[float] = []
    mean = var = math.nan
    for i, x in enumerate(g):
        if not math.isfinite(x):
            continue
        if len(buf) < warmup_steps:
            buf.append(float(x))
            if len(buf) == warmup_steps:
                mean = sum(buf) / warmup_steps
                var = sum((b - mean) ** 2 for b in buf) / warmup_steps
            continue
        std = math.sqrt(var)
        z = (x - mean) / (std + eps)
        if z > z_thresh:
            spikes[i] = True
            x = level[i] = mean + z_thresh * std / (z / z_thresh)
        mean = alpha * mean + (1 - alpha) * x
        var = alpha * var + (1 - alpha) * (x - mean) ** 2
    return spikes, level


def _autoclip(g: np.ndarray, p: float) -> np.ndarray:
    out = np.full(g.shape, np.nan)
    seen: list[float] = []
    for i, x in enumerate(g):
        if not math.isfinite(x):
            continue
        bisect.insort(seen, float(x))
        pos = p / 100.0 * (len(seen) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(seen) - 1)
        thr = (1 - (pos - lo)) * seen[lo] + (pos - lo) * seen[hi]
        out[i] = thr / x if x > thr else 1.0
    return out


def _adagc(
    g: np.ndarray, parts: np.ndarray, lambda_rel: float, settings: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Global and per-part factors; ``parts``: ``(k, n)`` per-tensor norms."""
    lam_abs, beta, warmup, eps = ({**ADAGC, **settings}[k] for k in ADAGC)
    k, n = parts.shape
    factor = np.full(n, np.nan)
    per = np.full((k, n), np.nan)
    gamma = np.zeros(k)
    count = 0
    for i in range(n):
        col = parts[:, i]
        if not (math.isfinite(g[i]) and np.all(np.isfinite(col))):
            continue
        if count == 0 or count + 1 < warmup:
            f = np.full(k, min(lam_abs / (g[i] + eps), 1.0))
            new = f * col
            gamma = new if count == 0 else np.minimum(gamma, new)
        else:
            f = np.minimum(
                lambda_rel * np.maximum(gamma, eps) / np.maximum(col, eps), 1.0
            )
            gamma = gamma + (1 - beta) * (f * col - gamma)
        count += 1
        per[:, i] = f
        total = math.sqrt(float(np.sum(col**2)))
        factor[i] = math.sqrt(float(np.sum((f * col) ** 2))) / total if total else 1.0
    return factor, per


def replay(
    grad_norm: Any,
    method: str,
    value: float,
    *,
    groups: Mapping[str, np.ndarray] | None = None,
    zclip: Mapping[str, Any] | None = None,
    adagc: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """The factor ``method`` would have scaled each logged step by.

    Args:
        grad_norm: ``(n,)`` global norms in step order.
        method, value: from :func:`parse_replay`.
        groups: per-tensor norms, name -> ``(n,)`` (AdaGC only).
        zclip: ZClip's other settings (``alpha``, ``warmup_steps``, ``eps``).
        adagc: AdaGC's other settings (default :data:`ADAGC`).

    Returns:
        ``(n,)`` factors in (0, 1] (NaN at non-finite norms), and AdaGC's
        per-group factors (``None`` for the other methods or without groups).
    """
    g = np.asarray(grad_norm, np.float64)
    if method == "global_norm":
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(g > value, value / g, 1.0)
        return np.where(np.isfinite(g), f, np.nan), None
    if method == "autoclip":
        return _autoclip(g, value), None
    if method == "zclip":
        z = {"alpha": 0.97, "warmup_steps": 25, "eps": 1e-6, **(zclip or {})}
        _, level = zclip_levels(g, z_thresh=value, **z)
        f = np.where(g > level, level / (g + 1e-6), 1.0)
        return np.where(np.isfinite(g), f, np.nan), None
    if method == "adagc":
        names = list(groups or {})
        parts = np.stack([groups[n] for n in names]) if names else g[None]
        factor, per = _adagc(g, parts, value, adagc or {})
        return factor, (dict(zip(names, per, strict=True)) if names else None)
    raise ValueError(
        f"method must be one of {', '.join(REPLAY_DEFAULTS)}, got {method!r}"
    )


def replay_summary(
    step: np.ndarray,
    grad_norm: np.ndarray,
    spec: str,
    *,
    groups: Mapping[str, np.ndarray] | None = None,
    zclip: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One replay as JSON-ready data: the clipped steps and their factors."""
    method, value = parse_replay(spec)
    factor, per = replay(grad_norm, method, value, groups=groups, zclip=zclip)
    hit = factor < 1.0
    finite = np.isfinite(factor)
    out: dict[str, Any] = {
        "method": method,
        "value": value,
        "clip_fraction": float(hit.sum() / max(finite.sum(), 1)),
        "clipped_steps": [int(s) for s in step[hit]],
        "factors": [float(f) for f in factor[hit]],
    }
    if per is not None:
        out["groups"] = {
            name: {
                "clipped_steps": [int(s) for s in step[f < 1.0]],
                "factors": [float(x) for x in f[f < 1.0]],
            }
            for name, f in per.items()
        }
    return out
