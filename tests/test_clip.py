"""Clip transforms against their definitions; the monitor against optax.global_norm."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow as gf


def _tree(key, scale):
    k1, k2 = jax.random.split(key)
    return {
        "W": scale * jax.random.normal(k1, (3, 4)),
        "b": scale * jax.random.normal(k2, (4,)),
    }


def _apply(tx, grads):
    @jax.jit
    def run(g):
        return tx.update(g, tx.init(g))

    return run(grads)


def test_global_norm_clip_bounds_and_leaves_small_gradients():
    tx = gf.train.monitor(gf.train.clipper("global_norm", 1.0))
    big, small = _tree(jax.random.key(0), 10.0), _tree(jax.random.key(1), 0.01)
    out, state = _apply(tx, big)
    assert float(optax.tree.norm(out)) == pytest.approx(1.0, rel=1e-5)
    assert bool(state.fired)
    out, state = _apply(tx, small)
    jax.tree_util.tree_map(np.testing.assert_array_equal, out, small)
    assert not bool(state.fired)


def test_value_and_agc_clips():
    g = _tree(jax.random.key(2), 3.0)
    out, _ = _apply(gf.train.clipper("value", 0.5), g)
    assert (
        max(float(jnp.max(jnp.abs(v))) for v in jax.tree_util.tree_leaves(out)) <= 0.5
    )
    # AGC needs params: an output unit's (a row's) gradient norm is cut to 0.1 x
    # its weight norm
    params = _tree(jax.random.key(3), 1.0)
    tx = gf.train.clipper("agc", 0.1)
    out, _ = jax.jit(lambda g, p: tx.update(g, tx.init(p), p))(g, params)
    ratio = np.linalg.norm(out["W"], axis=1) / np.maximum(
        np.linalg.norm(params["W"], axis=1), 1e-3
    )
    assert np.all(ratio <= 0.1 + 1e-5)


def _run_percentile(norms, percentile, history):
    """Feed gradients with the given global norms; return thresholds and outputs."""
    tx = gf.train.percentile_clip(percentile, history=history)
    direction = _tree(jax.random.key(4), 1.0)
    unit = jax.tree_util.tree_map(lambda a: a / optax.tree.norm(direction), direction)

    @jax.jit
    def run(norms):
        def step(state, n):
            g = jax.tree_util.tree_map(lambda a: n * a, unit)
            out, state = tx.update(g, state)
            return state, (state.threshold, optax.tree.norm(out))

        return jax.lax.scan(step, tx.init(unit), norms)[1]

    return jax.device_get(run(jnp.asarray(norms, jnp.float32)))


def test_autoclip_threshold_is_running_percentile():
    norms = np.asarray(np.exp(np.random.default_rng(0).normal(size=40)), np.float32)
    thr, out = _run_percentile(norms, 25.0, history=64)
    want = np.array([np.percentile(norms[: i + 1], 25.0) for i in range(40)])
    np.testing.assert_allclose(thr, want, rtol=1e-5)
    np.testing.assert_allclose(out, np.minimum(norms, want), rtol=1e-5)


def test_autoclip_ring_buffer_is_a_sliding_window_and_skips_nan():
    norms = np.arange(1, 13, dtype=np.float32)
    thr, _ = _run_percentile(norms, 50.0, history=5)
    want = [np.percentile(norms[max(0, i - 4) : i + 1], 50.0) for i in range(12)]
    np.testing.assert_allclose(thr, want, rtol=1e-6)
    with_nan = np.array([1.0, 2.0, np.nan, 3.0], np.float32)
    thr, out = _run_percentile(with_nan, 100.0, history=8)
    np.testing.assert_allclose(thr, [1.0, 2.0, 2.0, 3.0])
    assert np.isnan(out[2])


def test_monitor_records_raw_and_clipped_norm_in_a_chain():
    tx = optax.chain(gf.train.monitor(optax.clip_by_global_norm(0.5)), optax.sgd(0.1))
    params = _tree(jax.random.key(5), 1.0)
    grads = [_tree(jax.random.key(6), s) for s in (2.0, 0.001, 3.0)]

    @jax.jit
    def step(state, g):
        _, state = tx.update(g, state, params)
        return state

    state = tx.init(params)
    for g in grads:
        state = step(state, g)
        raw = float(optax.tree.norm(g))
        mon = state[0]
        assert float(mon.norm_before) == pytest.approx(raw, rel=1e-6)
        assert float(mon.norm_after) == pytest.approx(min(raw, 0.5), rel=1e-5)
        assert bool(mon.fired) == (raw > 0.5)
    assert int(state[0].count) == 3 and int(state[0].fired_count) == 2


@pytest.mark.parametrize(
    "build, err, match",
    [
        (
            lambda: gf.train.percentile_clip(0.0),
            ValueError,
            r"percentile in \(0, 100\]",
        ),
        (lambda: gf.train.percentile_clip(101), ValueError, "percentile"),
        (
            lambda: gf.train.clipper("global_norm", -1.0),
            ValueError,
            "threshold must be > 0",
        ),
        (lambda: gf.train.clipper("global_norm"), ValueError, "needs a threshold"),
        (lambda: gf.train.clipper("norm", 1.0), ValueError, "clip must be one of"),
        (lambda: gf.train.clipper("value", "1"), TypeError, "threshold must be"),
        (lambda: gf.train.monitor(lambda g: g), TypeError, "inner must be"),
    ],
)
def test_bad_input(build, err, match):
    with pytest.raises(err, match=match):
        build()
