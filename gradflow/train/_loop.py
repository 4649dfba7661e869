"""A small jit-compiled training loop with clipping monitors and divergence stops."""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from .._checks import check_float, check_int
from .._measure import hidden_grad_norms
from ..cells import Cell
from ..models import Model
from ..tasks import Batch, Task
from ._clip import MonitorState, monitor
from ._floss import Flossing
from ._network import check_fits, model_for
from ._optim import optimizer as resolve_optimizer


class TrainLog(NamedTuple):
    """What a run recorded. With a batch of keys every field has a leading seed axis.

    Steps where nothing was learned hold NaN (absent, never data): every step
    from ``diverged_at`` on, and steps whose batch (inputs or targets) held
    NaN/inf.

    Attributes:
        loss: ``(steps,)`` training loss of each step's batch (before its update).
        accuracy: ``(steps,)`` the task's accuracy on that batch.
        grad_norm: ``(steps,)`` global gradient norm before clipping.
        clipped_norm: ``(steps,)`` global gradient norm after clipping.
        clipped: ``(steps,)`` bool, whether clipping fired.
        profile: ``(records, T)`` log10 ``‖∂ℓ/∂h_t‖`` of the per-example loss,
            averaged in log space over a fixed profile batch; NaN where the
            norm underflowed to 0 or the run had diverged.
        profile_steps: ``(records,)`` int32, the training step each profile was
            taken at (before that step's update; the last one after training).
        diverged: ``()`` bool.
        diverged_at: ``()`` int32, the step where divergence was detected (-1:
            never). Parameters are frozen at their values before that step.
        bad_input_at: ``()`` int32, the first step whose batch (inputs or
            float targets) held NaN/inf (-1: never); such steps are skipped,
            not taken as divergence.
        diverged_by: ``()`` int32, why the run diverged: an index into
            :data:`DIVERGENCE_REASONS` (0: it did not).
    """

    loss: jax.Array
    accuracy: jax.Array
    grad_norm: jax.Array
    clipped_norm: jax.Array
    clipped: jax.Array
    profile: jax.Array
    profile_steps: jax.Array
    diverged: jax.Array
    diverged_at: jax.Array
    bad_input_at: jax.Array
    diverged_by: jax.Array


#: What ``TrainLog.diverged_by`` counts: none; a NaN/inf loss, gradient or
#: parameter; loss growth; gradient-norm growth; a parameter-norm jump.
DIVERGENCE_REASONS = ("none", "non-finite", "loss", "grad_norm", "param_jump")


class TrainResult(NamedTuple):
    """``params`` after training and the :class:`TrainLog`."""

    params: Any
    log: TrainLog


class _Carry(NamedTuple):
    params: Any
    monitor: MonitorState
    opt_state: Any
    alive: jax.Array
    diverged_at: jax.Array
    bad_input_at: jax.Array
    diverged_by: jax.Array
    ref_loss: jax.Array
    ref_grad: jax.Array


def train(
    model: Cell | Model,
    task: Task,
    optimizer: str | optax.GradientTransformation = "adam",
    *,
    key: jax.Array,
    steps: int,
    learning_rate: float = 1e-3,
    clip: optax.GradientTransformation | None = None,
    batch_size: int = 32,
    record_every: int = 0,
    profile_batch_size: int | None = None,
    divergence_factor: float = 100.0,
    grad_divergence_factor: float | None = None,
    param_divergence_factor: float | None = 10.0,
    batches: Batch | None = None,
    vmap_seeds: bool | None = None,
    compiler_options: dict[str, Any] | None = None,
    flossing: Flossing | None = None,
) -> TrainResult:
    """Train ``model`` on fresh batches of ``task`` inside one compiled ``lax.scan``.

    The optimiser is ``optax.chain(gf.train.monitor(clip), optimizer)``; step
    ``i`` trains on ``task.sample(fold_in(data_key, i), batch_size)``, where
    ``init_key, data_key, profile_key = split(key, 3)``. A step is a divergence
    when its loss or gradient norm is NaN/inf, the loss exceeds
    ``divergence_factor`` × the first step's loss, or the gradient norm exceeds
    ``grad_divergence_factor`` × the first step's, or one update multiplies the
    parameters' global norm by more than ``param_divergence_factor`` (a jump into
    saturation: an unclipped tanh RNN at gain 3 leaves its first SGD step with
    weights ~100x larger while its loss stays flat). The run then freezes (no
    Python branching: updates are masked with ``jnp.where``) and
    ``log.diverged_by`` records which test fired.

    Args:
        model: a cell (wired to the task by :func:`model_for`) or a
            :class:`gradflow.models.Model` that fits the task (e.g.
            ``gf.models.sentiment_classifier(vocab)`` for ``gf.tasks.sentiment``);
            the task's loss gets the model's logits (before its activation).
        task: a :class:`gradflow.tasks.Task`.
        optimizer: a name (see :func:`optimizer`) or an optax transform.
        key: one key, or a batch of keys ``(S,)``: then ``S`` independent seeds
            run (see ``vmap_seeds``) and every output gains a leading seed axis.
        steps: training steps.
        learning_rate: for a named optimiser.
        clip: the clip transform (``None``: no clipping), e.g.
            ``gf.train.clipper("global_norm", 1.0)``.
        batch_size: sequences per step.
        record_every: take the gradient profile every this many steps (and
            after the last); 0 never.
        profile_batch_size: sequences in the fixed profile batch (default
            ``batch_size``).
        divergence_factor: loss growth (over the first step's) that counts as
            divergence, > 1.
        grad_divergence_factor: the same for the gradient norm (``None``: only
            non-finite gradients count).
        param_divergence_factor: the growth of the parameters' global norm in
            one update that counts as divergence, > 1 (``None``: never).
        batches: train on these batches (a :class:`Batch` with a leading
            ``(steps,)`` axis on every field) instead of sampling ``task``.
        vmap_seeds: with a batch of keys, run the seeds as one vmapped program
            (True) or call a one-seed program once per seed (False). ``None``
            (default): loop on CPU, vmap elsewhere. On a 2-core CPU
            ``benchmarks/bench_train.py`` found the one-seed program compiling
            1.3-1.6x faster every time while run times were a wash (vmap up to
            1.5x faster for RNNs, the loop up to 1.8x faster for LSTMs, whose
            per-seed weights turn each matrix product into a batched one);
            compilation dominates a study's conditions at these sizes. With
            several local devices (e.g. ``JAX_NUM_CPU_DEVICES=2``) the loop is
            split over them (one program, compiled once; same numbers).
        compiler_options: passed to ``jax.jit`` (e.g.
            ``{"xla_backend_optimization_level": 0}`` compiles several times
            faster on CPU for short smoke runs).
        flossing: gradient flossing (:func:`gradflow.train.flossing`):
            ``before`` optimiser steps on the flossing loss alone (fresh task
            batches, the optimiser's state reset afterwards), then
            ``weight · Σ_{i≤k} λ_i²`` of each step's batch added to the task
            loss every ``every`` steps (the logged loss stays the task's).

    Returns:
        :class:`TrainResult` ``(params, log)``.

    Example:
        >>> task = gf.tasks.adding(50)
        >>> res = gf.train.train(gf.cells.lstm(32), task, "adam", key=jax.random.key(0),
        ...                      steps=300, clip=gf.train.clipper("global_norm", 1.0))
        >>> res.log.loss[-1] < task.chance_loss
    """
    setup = _checked(
        model,
        task,
        optimizer,
        steps=steps,
        learning_rate=learning_rate,
        clip=clip,
        batch_size=batch_size,
        record_every=record_every,
        profile_batch_size=profile_batch_size,
        divergence_factor=divergence_factor,
        grad_divergence_factor=grad_divergence_factor,
        param_divergence_factor=param_divergence_factor,
        flossing=flossing,
    )
    keys, batched = _check_key(key)
    if batches is not None:
        _check_batches(batches, setup.steps)
    run = _prepare(setup)
    jit = functools.partial(jax.jit, compiler_options=compiler_options)
    if not batched:
        return jit(run)(keys, batches)
    if vmap_seeds is None:
        vmap_seeds = jax.default_backend() != "cpu"
    if vmap_seeds:
        return jit(jax.vmap(run, in_axes=(0, None)))(keys, batches)
    devices = jax.local_devices()
    if len(devices) > 1:
        return _seeds_over_devices(run, keys, batches, devices, jit)
    one = jit(run)
    outs = [one(k, batches) for k in keys]
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *outs)


def _seeds_over_devices(run, keys, batches, devices, jit):
    """The seed loop split over devices: each loops (``lax.map``) over its share.

    One program, compiled once, whose body is the one-seed program, so the
    shares can train in parallel (a program per device would compile once per
    device: 2.2x slower for a clipping point; benchmarks/README.md, "Sweeps on
    every core"). Seeds are padded to a multiple of the device count with
    copies of the first, then dropped.
    """
    from jax.sharding import Mesh, PartitionSpec

    n = keys.shape[0]
    d = min(len(devices), n)
    padded = keys[jnp.arange(-(-n // d) * d) % n]
    mesh = Mesh(np.asarray(devices[:d]), ("seed",))
    spec = PartitionSpec("seed")

    def share(ks):
        return lax.map(lambda k: run(k, batches), ks)

    # check_vma=False: lax.map's carry mixes per-device and replicated values
    mapped = jax.shard_map(
        share, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False
    )
    out = jit(mapped)(padded)
    return jax.tree_util.tree_map(lambda a: a[:n], out)


class _Setup(NamedTuple):
    """``train``'s arguments, checked (the one place they are)."""

    net: Model
    task: Task
    monitor: optax.GradientTransformation
    optimizer: optax.GradientTransformation
    steps: int
    batch_size: int
    record_every: int
    profile_batch_size: int
    factor: float
    grad_factor: float
    param_factor: float
    flossing: Flossing | None


def _checked(
    model,
    task,
    optimizer,
    *,
    steps,
    learning_rate,
    clip,
    batch_size,
    record_every,
    profile_batch_size,
    divergence_factor,
    grad_divergence_factor,
    param_divergence_factor,
    flossing=None,
) -> _Setup:
    if not isinstance(task, Task):
        raise TypeError(
            f"task must be a gradflow.tasks.Task (e.g. gf.tasks.adding(100)), "
            f"got {type(task).__name__}"
        )
    if isinstance(model, Cell):
        net = model_for(model, task)
    elif isinstance(model, Model):
        net = model
        check_fits(net, task)
    else:
        raise TypeError(
            f"model must be a gradflow Cell or a gf.models.Model, got "
            f"{type(model).__name__}"
        )
    batch_size = check_int("batch_size", batch_size)
    profile_batch_size = (
        batch_size
        if profile_batch_size is None
        else check_int("profile_batch_size", profile_batch_size)
    )
    grad_factor = (
        math.inf
        if grad_divergence_factor is None
        else check_float(
            "grad_divergence_factor", grad_divergence_factor, minimum=1.0, strict=True
        )
    )
    param_factor = (
        math.inf
        if param_divergence_factor is None
        else check_float(
            "param_divergence_factor",
            param_divergence_factor,
            minimum=1.0,
            strict=True,
        )
    )
    if clip is not None and not isinstance(clip, optax.GradientTransformation):
        raise TypeError(
            f"clip must be an optax.GradientTransformation or None (e.g. "
            f"gf.train.clipper('global_norm', 1.0)), got {type(clip).__name__}"
        )
    if flossing is not None:
        if not isinstance(flossing, Flossing):
            raise TypeError(
                "flossing must be a gf.train.flossing(...) record or None, got "
                f"{type(flossing).__name__}"
            )
        size = sum(
            a.size for a in jax.tree_util.tree_leaves(net.cell.initial_carry(()))
        )
        if flossing.k > size:
            raise ValueError(
                f"flossing k must be <= the state size {size} of the model's "
                f"cell, got {flossing.k}"
            )
    return _Setup(
        net=net,
        task=task,
        monitor=monitor(clip),
        optimizer=resolve_optimizer(optimizer, learning_rate),
        steps=check_int("steps", steps),
        batch_size=batch_size,
        record_every=check_int("record_every", record_every, minimum=0),
        profile_batch_size=profile_batch_size,
        factor=check_float(
            "divergence_factor", divergence_factor, minimum=1.0, strict=True
        ),
        grad_factor=grad_factor,
        param_factor=param_factor,
        flossing=flossing,
    )


def _prepare(setup: _Setup):
    """``run(key, batches) -> TrainResult`` for one seed, from checked arguments."""
    net, task = setup.net, setup.task
    steps, batch_size = setup.steps, setup.batch_size
    record_every, profile_batch_size = setup.record_every, setup.profile_batch_size
    factor, grad_factor = setup.factor, setup.grad_factor
    param_factor = setup.param_factor
    # The monitor runs first (it sees the raw gradient and clips it), then the
    # optimiser: optax.chain(monitor, optimizer), with the monitor's state kept
    # by name in the carry rather than read back by position from the chain's.
    mon_t, opt_t = setup.monitor, setup.optimizer

    floss = setup.flossing

    def objective(params, batch):
        outputs = net.logits(params, batch.xs)
        return task.loss(outputs, batch), task.accuracy(outputs, batch)

    def floss_loss(params, batch):
        return floss.loss(net.cell, params["cell"], net.inputs(params, batch.xs))

    def flossed_objective(params, batch):
        (loss, acc) = objective(params, batch)
        return loss + floss.weight * floss_loss(params, batch), (loss, acc)

    def loss_and_grad(params, batch, i):
        plain = jax.value_and_grad(objective, has_aux=True)
        if floss is None or floss.every == 0 or floss.weight == 0:
            return plain(params, batch)

        def with_floss(_):
            (_, aux), grads = jax.value_and_grad(flossed_objective, has_aux=True)(
                params, batch
            )
            return (aux[0], aux[1]), grads

        return lax.cond(
            i % floss.every == 0, with_floss, lambda _: plain(params, batch), None
        )

    def preflossing(params, key):
        """``floss.before`` optimiser steps on the flossing loss alone."""

        def one(p_state, j):
            p, state = p_state
            batch = task.sample(jax.random.fold_in(key, j), batch_size)
            grads = jax.grad(floss_loss)(p, batch)
            updates, state = opt_t.update(grads, state, p)
            new = optax.apply_updates(p, updates)
            ok = optax.tree.norm(grads) < jnp.inf  # NaN or inf: skip the step
            new = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, p)
            return (new, state), None

        (params, _), _ = lax.scan(
            one, (params, opt_t.init(params)), jnp.arange(floss.before)
        )
        return params

    def profile(params, batch):
        xs = net.inputs(params, batch.xs)

        def loss_of_hs(hs):
            # per-example loss: the batch mean times the batch size
            return task.loss(net.head(params, hs), batch) * profile_batch_size

        logs = hidden_grad_norms(
            net.cell, params["cell"], xs, loss_of_hs, log10=True
        ).log10_norms
        # log10(0) = -inf only where the maths is exactly 0 (no path to the loss)
        logs = jnp.where(jnp.isfinite(logs), logs, jnp.nan)
        return jnp.mean(logs, axis=tuple(range(1, logs.ndim)))

    def run(one_key, data):
        k_init, k_data, k_prof = jax.random.split(one_key, 3)
        params = net.init(k_init)
        if floss is not None and floss.before:
            params = preflossing(params, jax.random.fold_in(k_init, 1))
        prof_batch = task.sample(k_prof, profile_batch_size)
        nan = jnp.full([], jnp.nan, jnp.float32)
        carry = _Carry(
            params=params,
            monitor=mon_t.init(params),
            opt_state=opt_t.init(params),
            alive=jnp.asarray(True),
            diverged_at=jnp.asarray(-1, jnp.int32),
            bad_input_at=jnp.asarray(-1, jnp.int32),
            diverged_by=jnp.asarray(0, jnp.int32),
            ref_loss=nan,
            ref_grad=nan,
        )

        def step(c: _Carry, i):
            if data is None:
                batch = task.sample(jax.random.fold_in(k_data, i), batch_size)
            else:
                batch = jax.tree_util.tree_map(lambda a: a[i], data)
            # NaN/inf in the data is bad input, not the model diverging.
            input_ok = _all_finite(batch.xs) & _all_finite(batch.targets)
            (loss, acc), grads = loss_and_grad(c.params, batch, i)
            clipped, mon = mon_t.update(grads, c.monitor, c.params)
            updates, opt_state = opt_t.update(clipped, c.opt_state, c.params)
            gnorm = mon.norm_before
            finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)
            first = jnp.isnan(c.ref_loss) & finite & input_ok
            ref_loss = jnp.where(first, loss, c.ref_loss)
            ref_grad = jnp.where(first, gnorm, c.ref_grad)
            # a zero reference (a zero first loss or gradient) cannot grow by a factor
            loss_grew = (loss > factor * ref_loss) & (ref_loss > 0)
            grad_grew = (gnorm > grad_factor * ref_grad) & (ref_grad > 0)
            new_params = optax.apply_updates(c.params, updates)
            new_norm = optax.tree.norm(new_params)
            jumped = new_norm > param_factor * optax.tree.norm(c.params)
            finite = finite & jnp.isfinite(new_norm)
            # The first test that fires names the reason (DIVERGENCE_REASONS).
            reason = jnp.select(
                [~finite, loss_grew, grad_grew, jumped],
                jnp.arange(1, 5, dtype=jnp.int32),
                0,
            )
            blew_up = reason > 0
            diverge_now = c.alive & input_ok & blew_up
            take = c.alive & input_ok & ~blew_up
            keep = lambda new, old: jax.tree_util.tree_map(  # noqa: E731
                lambda a, b: jnp.where(take, a, b), new, old
            )
            c = _Carry(
                params=keep(new_params, c.params),
                monitor=keep(mon, c.monitor),
                opt_state=keep(opt_state, c.opt_state),
                alive=c.alive & ~diverge_now,
                diverged_at=jnp.where(diverge_now, i, c.diverged_at),
                diverged_by=jnp.where(diverge_now, reason, c.diverged_by),
                bad_input_at=jnp.where(
                    (c.bad_input_at < 0) & ~input_ok, i, c.bad_input_at
                ),
                ref_loss=ref_loss,
                ref_grad=ref_grad,
            )
            absent = lambda v: jnp.where(take, v, jnp.nan).astype(jnp.float32)  # noqa: E731
            rec = (
                absent(loss),
                absent(acc),
                absent(gnorm),
                absent(mon.norm_after),
                take & mon.fired,
            )
            return c, rec

        def snapshot(c: _Carry):
            return jnp.where(c.alive, profile(c.params, prof_batch), jnp.nan).astype(
                jnp.float32
            )

        profiles = []
        if record_every:
            blocks, rest = divmod(steps, record_every)

            def block(c, b):
                prof = snapshot(c)
                c, rec = lax.scan(step, c, b * record_every + jnp.arange(record_every))
                return c, (rec, prof)

            carry, (recs, profs) = lax.scan(block, carry, jnp.arange(blocks))
            recs = jax.tree_util.tree_map(lambda a: a.reshape(-1, *a.shape[2:]), recs)
            profiles.append(profs)
            if rest:
                carry, tail = lax.scan(
                    step, carry, blocks * record_every + jnp.arange(rest)
                )
                recs = jax.tree_util.tree_map(
                    lambda a, b: jnp.concatenate([a, b]), recs, tail
                )
            profiles.append(snapshot(carry)[None])
            prof_steps = [*range(0, blocks * record_every, record_every), steps]
        else:
            carry, recs = lax.scan(step, carry, jnp.arange(steps))
            prof_steps = []
        profile_arr = (
            jnp.concatenate(profiles)
            if profiles
            else jnp.zeros((0, task.steps), jnp.float32)
        )
        log = TrainLog(
            *recs,
            profile=profile_arr,
            profile_steps=jnp.asarray(prof_steps, jnp.int32).reshape(-1),
            diverged=~carry.alive,
            diverged_at=carry.diverged_at,
            bad_input_at=carry.bad_input_at,
            diverged_by=carry.diverged_by,
        )
        return TrainResult(carry.params, log)

    return run


def _all_finite(xs: jax.Array) -> jax.Array:
    if jnp.issubdtype(xs.dtype, jnp.floating):
        return jnp.all(jnp.isfinite(xs))
    return jnp.asarray(True)


def _check_key(key: Any) -> tuple[jax.Array, bool]:
    """A typed key ``()``/``(S,)`` or a raw uint32 key ``(2,)``/``(S, 2)``."""
    dtype = getattr(key, "dtype", None)
    if dtype is None:
        raise TypeError(f"key must be a jax.random key, got {type(key).__name__}")
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        batch = key.shape
    elif dtype == jnp.uint32 and key.shape[-1:] == (2,):
        batch = key.shape[:-1]
    else:
        raise TypeError(
            f"key must be a jax.random key (jax.random.key(0)) or a batch of keys, "
            f"got an array of dtype {dtype} and shape {key.shape}"
        )
    if len(batch) > 1:
        raise ValueError(
            f"key must be one key or a 1-D batch of keys (one per seed), got "
            f"batch shape {batch}"
        )
    return key, len(batch) == 1


def _check_batches(batches: Any, steps: int) -> None:
    if not isinstance(batches, Batch):
        raise TypeError(
            f"batches must be a gradflow.tasks.Batch with a leading (steps,) axis, "
            f"got {type(batches).__name__}"
        )
    for name, a in zip(Batch._fields, batches, strict=True):
        if a is not None and (np.ndim(a) < 1 or np.shape(a)[0] != steps):
            raise ValueError(
                f"batches.{name} must have a leading axis of length steps={steps}, "
                f"got shape {np.shape(a)}"
            )
