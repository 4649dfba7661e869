"""Did a clipping condition learn? Success per seed, rates with Wilson intervals.

numpy only (the summary of a clipping study is written without jax).

A run *succeeds* when, after training, the task's accuracy on
``eval_batch_size`` fresh sequences reaches ``success_accuracy`` (0.99 by
default: fewer than 1% misclassified for the temporal order problem, as Pascanu
et al. 2013; for the adding problem, 99% of sequences within the 0.04 absolute
error of Hochreiter & Schmidhuber 1997). Its *steps to success* is the first
step at which the mean training-batch accuracy over the last
:data:`SUCCESS_WINDOW` steps reached the same level (``NaN`` for a seed that did
not succeed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Training steps whose batch accuracies are averaged for steps to success.
SUCCESS_WINDOW = 25


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> list[float]:
    """The Wilson score interval of a binomial proportion (95% by default).

    Args:
        successes: ``k``, 0 <= k <= n.
        n: trials, >= 1.
        z: the normal quantile (1.96 for 95%).

    Returns:
        ``[low, high]`` in [0, 1].

    Raises:
        ValueError: ``n < 1`` or ``k`` outside ``[0, n]``.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes!r}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def steps_to_success(
    accuracy: np.ndarray, level: float, window: int = SUCCESS_WINDOW
) -> np.ndarray:
    """The first step where the windowed mean batch accuracy reached ``level``.

    Args:
        accuracy: ``(seeds, steps)`` training-batch accuracy (NaN: absent).
        level: the success level, e.g. 0.99.
        window: steps averaged.

    Returns:
        ``(seeds,)`` float: the step (the last of its window), NaN if never.
    """
    acc = np.atleast_2d(np.asarray(accuracy, np.float64))
    out = np.full(acc.shape[0], np.nan)
    if acc.shape[1] < window:
        return out
    filled = np.nan_to_num(acc, nan=0.0)  # an absent step counts as a miss
    csum = np.cumsum(filled, axis=1)
    csum = np.concatenate([np.zeros((acc.shape[0], 1)), csum], axis=1)
    mean = (csum[:, window:] - csum[:, :-window]) / window
    for s in range(acc.shape[0]):
        hit = np.flatnonzero(mean[s] >= level - 1e-12)
        if hit.size:
            out[s] = float(hit[0] + window - 1)
    return out


def _values(metrics: Mapping[str, Any], name: str) -> np.ndarray:
    raw = metrics.get(name, [])
    return np.asarray([np.nan if v is None else float(v) for v in raw], float)


def success_fields(
    metrics: Mapping[str, Any], chance_loss: float | None
) -> dict[str, Any]:
    """The learning half of a condition's summary entry.

    Args:
        metrics: the condition's per-seed metrics (``success``,
            ``steps_to_success``, ``final_loss``; ``None`` = NaN).
        chance_loss: the task's chance loss (``None``: unknown).

    Returns:
        ``success_rate``, ``success_interval`` (Wilson 95% over seeds),
        ``successes``, ``steps_to_success`` (median over the seeds that
        succeeded, or ``None``) and ``final_loss_ratio`` (median final loss over
        chance, or ``None``).
    """
    ok = _values(metrics, "success")
    n = int(ok.size)
    k = int(np.nansum(ok))
    steps = _values(metrics, "steps_to_success")
    steps = steps[np.isfinite(steps)]
    loss = _values(metrics, "final_loss")
    loss = loss[np.isfinite(loss)]
    ratio = None
    if loss.size and chance_loss:
        ratio = float(np.median(loss) / chance_loss)
    return {
        "success_rate": k / n if n else None,
        "success_interval": wilson_interval(k, n) if n else None,
        "successes": k,
        "steps_to_success": float(np.median(steps)) if steps.size else None,
        "final_loss_ratio": ratio,
    }


def _loss(e: Mapping[str, Any]) -> float:
    fl = e.get("final_loss")
    return fl["median"] if fl else math.inf


def _frac(e: Mapping[str, Any]) -> float:
    v = (e.get("clip_fraction") or {}).get("median")
    return math.inf if v is None else v


def rank(entries: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Conditions best first: success rate, then median final loss, then clip fraction.

    Lower final loss and lower clip fraction (clipping that interferes less)
    win ties; a condition without a finished seed has infinite loss.
    """
    return sorted(
        entries,
        key=lambda e: (-(e.get("success_rate") or 0.0), _loss(e), _frac(e)),
    )


def comparison_sentence(
    best: Mapping[str, Any], runner_up: Mapping[str, Any] | None
) -> str:
    """Say whether the best condition's lead over the runner-up is within the intervals.

    Wilson intervals that overlap mean the seeds cannot tell the two apart.
    """
    if runner_up is None:
        return "It was the only condition."
    a, b = best["success_interval"], runner_up["success_interval"]
    name = runner_up["label"] + (
        f" at lr {runner_up['lr']:g}" if runner_up.get("lr") is not None else ""
    )
    rates = (
        f"Success {best['success_rate']:.0%} [{a[0]:.0%}, {a[1]:.0%}] against "
        f"{runner_up['success_rate']:.0%} [{b[0]:.0%}, {b[1]:.0%}] for the "
        f"runner-up, {name}"
    )
    if a[0] <= b[1] and b[0] <= a[1]:
        if best["success_rate"] == runner_up["success_rate"]:
            how = "equal success, ranked by final loss then clip fraction"
        else:
            how = "the difference is within the 95% intervals"
        return f"{rates}: {how}, so more seeds are needed to separate them."
    return f"{rates}: the 95% intervals do not overlap."
