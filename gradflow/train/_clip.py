"""Gradient clipping as optax transforms: a percentile clip and a clip monitor."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._checks import check_choice, check_float, check_int

CLIP_NAMES = ("none", "global_norm", "value", "agc", "autoclip")

# optax.global_norm is deprecated in favour of optax.tree.norm (optax >= 0.2.5)
global_norm = getattr(getattr(optax, "tree", None), "norm", None) or optax.global_norm


class PercentileClipState(NamedTuple):
    """State of :func:`percentile_clip`.

    Attributes:
        history: ``(size,)`` the finite global norms seen, a ring buffer (slot
            ``i % size`` holds the ``i``-th); unused slots are 0.
        count: ``()`` int32, how many finite norms were seen in all.
        threshold: ``()`` the threshold the last update was clipped at (``inf``
            before any finite norm was seen).
    """

    history: jax.Array
    count: jax.Array
    threshold: jax.Array


class MonitorState(NamedTuple):
    """State of :func:`monitor`: what the last update looked like.

    Attributes:
        inner: the wrapped transform's state.
        norm_before: ``()`` global norm of the gradient that came in.
        norm_after: ``()`` global norm after the inner transform.
        fired: ``()`` bool, whether the inner transform changed the gradient.
        count: ``()`` int32, updates seen.
        fired_count: ``()`` int32, updates where it fired.
    """

    inner: Any
    norm_before: jax.Array
    norm_after: jax.Array
    fired: jax.Array
    count: jax.Array
    fired_count: jax.Array


def _norm_zero(params) -> jax.Array:
    # a scalar with the dtype that global_norm of these params will have
    return jnp.zeros_like(global_norm(params))


def check_percentile(name: str, value: Any) -> float:
    """A percentile in (0, 100]."""
    value = check_float(name, value)
    if not 0.0 < value <= 100.0:
        raise ValueError(f"{name} must be a percentile in (0, 100], got {value}")
    return value


def percentile_clip(
    percentile: float = 10.0, history: int = 4096
) -> optax.GradientTransformation:
    """Clip to the ``percentile``-th percentile of the gradient norms seen so far.

    AutoClip (Seetharaman et al. 2020): each update appends the global norm of
    the incoming gradient to a history, then rescales the gradient to norm
    ``np.percentile(history, percentile)`` (linear interpolation) if it is
    larger. To stay ``jit``-safe the history is a fixed-size ring buffer in the
    state: with more than ``history`` updates it holds the last ``history``
    norms (a sliding window); size it to the number of training steps for the
    exact "all norms so far" rule. Non-finite norms are not recorded (they would
    poison every later percentile) and their gradients pass through unchanged,
    so divergence detection downstream still sees them.

    Args:
        percentile: ``p`` in (0, 100]; 100 never clips.
        history: ring-buffer length (sorted once per update).

    Returns:
        An ``optax.GradientTransformation`` with :class:`PercentileClipState`.

    Example:
        >>> opt = optax.chain(gf.train.percentile_clip(10.0), optax.sgd(0.01))
    """
    p = check_percentile("percentile", percentile)
    size = check_int("history", history)

    def init_fn(params):
        z = _norm_zero(params)
        return PercentileClipState(
            history=jnp.zeros((size,), z.dtype),
            count=jnp.zeros([], jnp.int32),
            threshold=jnp.full([], jnp.inf, z.dtype),
        )

    def update_fn(updates, state, params=None):
        del params
        g = global_norm(updates)
        finite = jnp.isfinite(g)
        slot = state.count % size
        hist = jnp.where(finite, state.history.at[slot].set(g), state.history)
        count = state.count + finite.astype(jnp.int32)
        n = jnp.minimum(count, size)
        ordered = jnp.sort(jnp.where(jnp.arange(size) < n, hist, jnp.inf))
        pos = (p / 100.0) * (n - 1).astype(hist.dtype)
        lo = jnp.floor(pos).astype(jnp.int32)
        hi = jnp.minimum(lo + 1, jnp.maximum(n - 1, 0))
        frac = pos - lo.astype(hist.dtype)
        thr = (1.0 - frac) * ordered[lo] + frac * ordered[hi]
        thr = jnp.where(n > 0, thr, jnp.inf)
        scale = jnp.where(g > thr, thr / g, 1.0)
        updates = jax.tree_util.tree_map(lambda u: (u * scale).astype(u.dtype), updates)
        return updates, PercentileClipState(hist, count, thr.astype(hist.dtype))

    return optax.GradientTransformation(init_fn, update_fn)


def monitor(
    inner: optax.GradientTransformation | None = None,
) -> optax.GradientTransformation:
    """Record the global gradient norm before and after ``inner`` and whether it fired.

    Put it anywhere in an optax chain, e.g.
    ``optax.chain(gf.train.monitor(optax.clip_by_global_norm(1.0)), optax.adam(1e-3))``;
    after each update ``state[0].norm_before`` is ``optax.global_norm`` of the raw
    gradient, ``norm_after`` that of the clipped one, and ``fired`` tells whether
    the clip changed anything (any element differs). Everything lives in the
    state, so it works under ``jit``, ``vmap`` and ``lax.scan``.

    Args:
        inner: the transform to watch (``None``: identity, a pure norm monitor).

    Returns:
        An ``optax.GradientTransformation`` with :class:`MonitorState`.
    """
    if inner is None:
        inner = optax.identity()
    if not isinstance(inner, optax.GradientTransformation):
        raise TypeError(
            f"inner must be an optax.GradientTransformation, got {type(inner).__name__}"
        )

    def init_fn(params):
        z = _norm_zero(params)
        zero = jnp.zeros([], jnp.int32)
        return MonitorState(inner.init(params), z, z, jnp.zeros([], bool), zero, zero)

    def update_fn(updates, state, params=None):
        before = global_norm(updates)
        new, inner_state = inner.update(updates, state.inner, params)
        after = global_norm(new)
        changed = jax.tree_util.tree_map(lambda a, b: jnp.any(a != b), updates, new)
        fired = jnp.any(
            jnp.stack([jnp.asarray(False), *jax.tree_util.tree_leaves(changed)])
        )
        return new, MonitorState(
            inner=inner_state,
            norm_before=before.astype(state.norm_before.dtype),
            norm_after=after.astype(state.norm_after.dtype),
            fired=fired,
            count=state.count + 1,
            fired_count=state.fired_count + fired.astype(jnp.int32),
        )

    return optax.GradientTransformation(init_fn, update_fn)


def clipper(
    name: str, threshold: float | None = None, *, history: int = 4096
) -> optax.GradientTransformation:
    """Build a clip transform by name, as a config file names it.

    Args:
        name: ``"none"`` (identity), ``"global_norm"``
            (``optax.clip_by_global_norm(threshold)``), ``"value"``
            (``optax.clip(threshold)``, elementwise), ``"agc"``
            (``optax.adaptive_grad_clip(threshold)``, unit-wise ratio) or
            ``"autoclip"`` (:func:`percentile_clip` with ``threshold`` the
            percentile, default 10).
        threshold: the clip level, > 0 (ignored for ``"none"``).
        history: AutoClip's ring-buffer length.

    Example:
        >>> clip = gf.train.clipper("global_norm", 1.0)
    """
    check_choice("clip", name, CLIP_NAMES)
    if name == "none":
        return optax.identity()
    if name == "autoclip":
        return percentile_clip(10.0 if threshold is None else threshold, history)
    if threshold is None:
        raise ValueError(f"clip {name!r} needs a threshold > 0, got None")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(
            f"threshold must be a real number > 0, got "
            f"{type(threshold).__name__} {threshold!r}"
        )
    t = check_float("threshold", threshold, minimum=0.0, strict=True)
    if name == "global_norm":
        return optax.clip_by_global_norm(t)
    if name == "value":
        return optax.clip(t)
    return optax.adaptive_grad_clip(t)
