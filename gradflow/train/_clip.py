"""Gradient clipping as optax transforms: AutoClip, ZClip, AdaGC, AGC, a monitor."""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .. import _names
from .._checks import check_choice, check_float, check_int

#: The clip kinds by name (from the registry, ``gradflow._names.CLIPS``).
CLIP_NAMES = tuple(_names.CLIPS)
ZCLIP_MODES = ("zscore", "percentile")
ZCLIP_OPTIONS = ("adaptive_scaling", "mean")

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


class ZClipState(NamedTuple):
    """State of :func:`zclip`.

    Attributes:
        buffer: ``(warmup_steps,)`` the finite global norms of the warm-up
            updates (slot ``i`` holds the ``i``-th); unused slots are 0.
        count: ``()`` int32, finite norms seen, counted up to ``warmup_steps``
            (the statistics are live once it reaches ``warmup_steps``).
        mean: ``()`` EMA of the norm (0 during warm-up).
        var: ``()`` EMA of its variance (0 during warm-up).
        threshold: ``()`` the norm the last update was clipped to (``inf``:
            not clipped).
        spike: ``()`` bool, whether the last norm was an outlier (``zscore``
            mode: z-score above ``z_thresh``; ``percentile`` mode: above
            ``mean + z_thresh * std``).
    """

    buffer: jax.Array
    count: jax.Array
    mean: jax.Array
    var: jax.Array
    threshold: jax.Array
    spike: jax.Array


class AdaGCState(NamedTuple):
    """State of :func:`adagc`.

    Attributes:
        gamma: a pytree like the updates with one ``()`` per leaf: the EMA of
            that tensor's clipped norm (its warm-up minimum until warm-up ends).
        count: ``()`` int32, updates seen with a finite global norm.
    """

    gamma: Any
    count: jax.Array


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


def zclip(
    alpha: float = 0.97,
    z_thresh: float = 2.5,
    warmup_steps: int = 25,
    max_norm: float | None = None,
    mode: str = "zscore",
    *,
    clip_option: str = "adaptive_scaling",
    clip_factor: float = 1.0,
    skip_update_on_spike: bool = False,
    eps: float = 1e-6,
) -> optax.GradientTransformation:
    """ZClip (Kumar et al. 2025): clip norms that are z-score outliers against an EMA.

    Step by step what the reference package ``zclip`` 1.0.0 (``ZClip.step``) does
    to a model's gradients, with ``g`` the global norm of the incoming update:

    * warm-up (the first ``warmup_steps`` updates): record ``g``; clip to
      ``max_norm`` as ``torch.nn.utils.clip_grad_norm_`` would (scale
      ``min(1, max_norm / (g + 1e-6))``) if given. After the last one the mean
      and (population) variance of the recorded norms start the EMA.
    * then, with ``std = sqrt(var)``: in ``"zscore"`` mode, if
      ``z = (g - mean) / (std + eps) > z_thresh`` the clip level is
      ``clip_factor * (mean + z_thresh * std / (z / z_thresh))``
      (``clip_option="adaptive_scaling"``) or ``mean`` (``"mean"``); in
      ``"percentile"`` mode it is ``mean + z_thresh * std`` whenever ``g``
      exceeds that. ``max_norm`` caps the level (and ``g`` itself when there is
      none); a level below ``g`` scales the update by ``level / (g + 1e-6)``.
    * the EMA then takes the clip level if there was one, else ``g``:
      ``mean = alpha * mean + (1 - alpha) * x``,
      ``var = alpha * var + (1 - alpha) * (x - mean)**2`` with the *new* mean
      (unless ``skip_update_on_spike`` and there was one).

    Differences from the reference, both on purpose: the statistics live in
    the norm's dtype (the reference keeps Python floats, float64), and a
    non-finite norm is neither recorded nor clipped (the reference would turn
    its mean into NaN for good and never clip again; here the update passes
    through unchanged so divergence checks downstream still see it).

    Args:
        alpha: EMA smoothing factor in (0, 1).
        z_thresh: z-score threshold, > 0.
        warmup_steps: updates recorded before the EMA starts, >= 1.
        max_norm: a hard cap on the norm, > 0 (``None``: none; the reference's
            own default is 1.0).
        mode: ``"zscore"`` or ``"percentile"``.
        clip_option: ``"adaptive_scaling"`` or ``"mean"`` (``"zscore"`` mode).
        clip_factor: multiplies the adaptive level, > 0.
        skip_update_on_spike: leave the EMA alone on clipped updates.
        eps: added to ``std`` in the z-score, >= 0.

    Returns:
        An ``optax.GradientTransformation`` with :class:`ZClipState`.

    Example:
        >>> opt = optax.chain(gf.train.zclip(), optax.adam(1e-3))
    """
    alpha = check_float("alpha", alpha, minimum=0.0, strict=True)
    if alpha >= 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    z_thresh = check_float("z_thresh", z_thresh, minimum=0.0, strict=True)
    warmup = check_int("warmup_steps", warmup_steps)
    cap = (
        math.inf
        if max_norm is None
        else check_float("max_norm", max_norm, minimum=0.0, strict=True)
    )
    check_choice("mode", mode, ZCLIP_MODES)
    check_choice("clip_option", clip_option, ZCLIP_OPTIONS)
    factor = check_float("clip_factor", clip_factor, minimum=0.0, strict=True)
    eps = check_float("eps", eps, minimum=0.0)
    if not isinstance(skip_update_on_spike, bool):
        raise TypeError(
            f"skip_update_on_spike must be a bool, got "
            f"{type(skip_update_on_spike).__name__} {skip_update_on_spike!r}"
        )

    def init_fn(params):
        z = _norm_zero(params)
        return ZClipState(
            buffer=jnp.zeros((warmup,), z.dtype),
            count=jnp.zeros([], jnp.int32),
            mean=z,
            var=z,
            threshold=jnp.full([], jnp.inf, z.dtype),
            spike=jnp.zeros([], bool),
        )

    def update_fn(updates, state, params=None):
        del params
        g = global_norm(updates).astype(state.mean.dtype)
        finite = jnp.isfinite(g)
        warming = state.count < warmup
        live = finite & ~warming
        # warm-up: record, and start the EMA once the buffer is full
        buffer = jnp.where(
            finite & warming, state.buffer.at[state.count % warmup].set(g), state.buffer
        )
        count = state.count + (finite & warming).astype(jnp.int32)
        start = warming & (count == warmup)
        b_mean = jnp.mean(buffer)
        b_var = jnp.mean((buffer - b_mean) ** 2)
        # adaptive level from the statistics before this update
        std = jnp.sqrt(state.var)
        if mode == "percentile":
            level = state.mean + z_thresh * std
            spike = g > level
        else:
            z = (g - state.mean) / (std + eps)
            spike = z > z_thresh
            if clip_option == "mean":
                level = state.mean
            else:
                level = factor * (state.mean + z_thresh * std / (z / z_thresh))
        spike = live & spike
        adaptive = jnp.where(spike, level, g)
        effective = jnp.minimum(adaptive, cap)
        one = jnp.ones([], g.dtype)
        scale_live = jnp.where(g > effective, effective / (g + 1e-6), one)
        scale_warm = jnp.minimum(cap / (g + 1e-6), one)
        scale = jnp.where(finite, jnp.where(warming, scale_warm, scale_live), one)
        x = jnp.where(spike, level, g)
        new_mean = alpha * state.mean + (1 - alpha) * x
        new_var = alpha * state.var + (1 - alpha) * (x - new_mean) ** 2
        move = live & ~spike if skip_update_on_spike else live
        mean = jnp.where(start, b_mean, jnp.where(move, new_mean, state.mean))
        var = jnp.where(start, b_var, jnp.where(move, new_var, state.var))
        clipped_to = jnp.where(scale < 1, jnp.where(warming, cap, effective), jnp.inf)
        updates = jax.tree_util.tree_map(lambda u: (u * scale).astype(u.dtype), updates)
        return updates, ZClipState(
            buffer=buffer,
            count=count,
            mean=mean,
            var=var,
            threshold=clipped_to.astype(state.threshold.dtype),
            spike=spike,
        )

    return optax.GradientTransformation(init_fn, update_fn)


def adagc(
    lambda_abs: float = 1.0,
    lambda_rel: float = 1.05,
    beta: float = 0.98,
    warmup_steps: int = 100,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """AdaGC (Wang et al. 2025): clip each tensor against an EMA of its own norm.

    The clipping of ``pytorch_optimizer.AdaGC`` (4.1.0) step by step, as an
    optax transform to chain before any optimizer (AdaGC itself is this in front
    of Adam: ``optax.chain(gf.train.adagc(), optax.adam(lr))`` is the
    reference's update without weight decay). For update ``t = 1, 2, ...`` with
    ``G`` the global norm and ``g_k`` the norm of leaf ``k``:

    * warm-up (``t = 1`` and every ``t < warmup_steps``): every leaf is scaled
      by ``min(lambda_abs / (G + eps), 1)`` (global-norm clipping at
      ``lambda_abs``); ``gamma_k`` is the clipped leaf's norm at ``t = 1``, then
      the minimum of it and each later one;
    * then each leaf is scaled by
      ``h_k = min(lambda_rel * max(gamma_k, eps) / max(g_k, eps), 1)`` and
      ``gamma_k += (1 - beta) * (norm(h_k * leaf_k) - gamma_k)``.

    Unlike the reference, an update whose global norm is not finite passes
    through unchanged and leaves the state alone (the reference's ``gamma``
    would turn NaN for good).

    Args:
        lambda_abs: the warm-up's global-norm threshold, > 0.
        lambda_rel: a tensor is clipped to this multiple of its EMA norm, > 0.
        beta: EMA factor in [0, 1).
        warmup_steps: updates of global-norm clipping, >= 0.
        eps: floor of norms and ``gamma``, >= 0.

    Returns:
        An ``optax.GradientTransformation`` with :class:`AdaGCState`.

    Example:
        >>> opt = optax.chain(gf.train.adagc(), optax.adam(1e-3))
    """
    lambda_abs = check_float("lambda_abs", lambda_abs, minimum=0.0, strict=True)
    lambda_rel = check_float("lambda_rel", lambda_rel, minimum=0.0, strict=True)
    beta = check_float("beta", beta, minimum=0.0)
    if beta >= 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    warmup = check_int("warmup_steps", warmup_steps, minimum=0)
    eps = check_float("eps", eps, minimum=0.0)

    def init_fn(params):
        return AdaGCState(
            gamma=jax.tree_util.tree_map(
                lambda p: jnp.zeros([], jnp.result_type(p)), params
            ),
            count=jnp.zeros([], jnp.int32),
        )

    def update_fn(updates, state, params=None):
        del params
        big = global_norm(updates)
        finite = jnp.isfinite(big)
        warming = (state.count == 0) | (state.count + 1 < warmup)
        warm_scale = jnp.minimum(lambda_abs / (big + eps), 1.0)

        def leaf(u, gamma):
            n = jnp.sqrt(jnp.sum(jnp.square(u)))
            h = jnp.minimum(
                lambda_rel * jnp.maximum(gamma, eps) / jnp.maximum(n, eps), 1.0
            )
            scale = jnp.where(warming, warm_scale, h).astype(u.dtype)
            out = u * scale
            m = jnp.sqrt(jnp.sum(jnp.square(out)))
            new = jnp.where(
                warming,
                jnp.where(state.count == 0, m, jnp.minimum(gamma, m)),
                gamma + (1 - beta) * (m - gamma),
            )
            return (
                jnp.where(finite, out, u),
                jnp.where(finite, new, gamma).astype(gamma.dtype),
            )

        pairs = jax.tree_util.tree_map(leaf, updates, state.gamma)
        treedef = jax.tree_util.tree_structure(updates)
        outs, gammas = zip(*treedef.flatten_up_to(pairs), strict=True)
        return treedef.unflatten(outs), AdaGCState(
            gamma=treedef.unflatten(gammas),
            count=state.count + finite.astype(jnp.int32),
        )

    return optax.GradientTransformation(init_fn, update_fn)


def adaptive_grad_clip(
    clipping: float, eps: float = 1e-3
) -> optax.GradientTransformation:
    """Unit-wise adaptive gradient clipping (Brock et al. 2021) for (out, in) weights.

    Each output unit's gradient is rescaled to at most ``clipping`` times the
    norm of its weights (floored at ``eps``): ``optax.adaptive_grad_clip``'s
    rule, with the unit taken the way gradflow (like PyTorch) stores weights.
    A leaf of rank >= 2 is ``(out, *in)``: one norm per slice along axis 0, over
    all other axes (a row of ``W_ih``/``W_hh``, a row of a readout, a token's
    embedding). A vector or scalar (a bias) is one unit. optax's default
    reduces a rank-2 leaf over axis 0, the output unit of an ``(in, out)``
    kernel, which for ``(out, in)`` weights would take one norm per input column.

    Args:
        clipping: the largest allowed ratio of a unit's gradient norm to its
            weight norm, > 0.
        eps: the smallest weight norm used, >= 0 (so zero-initialised units
            can move).

    Returns:
        An ``optax.GradientTransformation`` (stateless; needs ``params``).
    """
    clipping = check_float("clipping", clipping, minimum=0.0, strict=True)
    eps = check_float("eps", eps, minimum=0.0)

    def clip_leaf(g, p):
        axis = tuple(range(1, g.ndim)) if g.ndim >= 2 else tuple(range(g.ndim))
        g_norm = optax.transforms.unitwise_norm(g, axis=axis)
        p_norm = optax.transforms.unitwise_norm(p, axis=axis)
        limit = clipping * jnp.maximum(p_norm, eps)
        return optax.transforms.unitwise_clip(g_norm, limit, g)

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(
                "adaptive_grad_clip needs params: call update(updates, state, params)"
            )
        return jax.tree_util.tree_map(clip_leaf, updates, params), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


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
            (:func:`adaptive_grad_clip`, the ratio of each output unit's
            gradient norm to its weight norm), ``"autoclip"``
            (:func:`percentile_clip` with ``threshold`` the percentile, default
            10), ``"zclip"`` (:func:`zclip` with ``threshold`` the z-score
            threshold, default 2.5) or ``"adagc"`` (:func:`adagc` with
            ``threshold`` its ``lambda_rel``, default 1.05; its other settings
            pytorch-optimizer's defaults).
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
    if name == "zclip":
        return zclip(z_thresh=2.5 if threshold is None else threshold)
    if name == "adagc":
        return adagc(lambda_rel=1.05 if threshold is None else threshold)
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
    return adaptive_grad_clip(t)
