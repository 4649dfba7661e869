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


def test_global_norm_clip_rescales_big_gradients_and_leaves_small_ones():
    tx = gf.train.monitor(gf.train.clipper("global_norm", 1.0))
    big, small = _tree(jax.random.key(0), 10.0), _tree(jax.random.key(1), 0.01)
    out, state = _apply(tx, big)
    raw = float(optax.tree.norm(big))
    # the same direction at norm 1: every element divided by the global norm
    for name in big:
        np.testing.assert_allclose(out[name], np.asarray(big[name]) / raw, rtol=1e-5)
    assert bool(state.fired)
    out, state = _apply(tx, small)
    jax.tree_util.tree_map(np.testing.assert_array_equal, out, small)
    assert not bool(state.fired)


def test_value_clip_is_elementwise_clip_to_the_threshold():
    g = {
        "W": jnp.array([[3.0, -0.2], [0.5, -7.0]]),
        "b": jnp.array([0.1, -0.6, 0.0]),
    }
    out, _ = _apply(gf.train.clipper("value", 0.5), g)
    # exactly: elements inside [-0.5, 0.5] are untouched, the rest are ±0.5
    f32 = np.float32
    np.testing.assert_array_equal(out["W"], f32([[0.5, -0.2], [0.5, -0.5]]))
    np.testing.assert_array_equal(out["b"], f32([0.1, -0.5, 0.0]))


def test_agc_clips_each_output_row_to_a_multiple_of_its_weight_norm():
    # weights are (out, in) as in PyTorch: one unit per row (hand-computed)
    params = {
        "W": jnp.array([[3.0, 4.0], [0.0, 5e-4], [1.0, 0.0]]),  # row norms 5, 5e-4, 1
        "b": jnp.array([0.6, 0.8]),  # a vector is one unit, norm 1
        "E": jnp.array([[[3.0, 4.0]], [[1.0, 0.0]]]),  # rank 3: (out, 1, 2)
    }
    grads = {
        "W": jnp.array([[6.0, 8.0], [1.0, 0.0], [0.03, 0.04]]),  # norms 10, 1, 0.05
        "b": jnp.array([3.0, 4.0]),
        "E": jnp.array([[[0.0, 10.0]], [[0.01, 0.0]]]),
    }
    tx = gf.train.clipper("agc", 0.1)
    out, _ = jax.jit(lambda g, p: tx.update(g, tx.init(p), p))(grads, params)
    want = {
        # row 0: limit 0.1*5 = 0.5 of norm 10; row 1: weight norm floored at
        # eps=1e-3, limit 1e-4; row 2: norm 0.05 < limit 0.1, untouched
        "W": [[0.3, 0.4], [1e-4, 0.0], [0.03, 0.04]],
        "b": [0.06, 0.08],
        "E": [[[0.0, 0.5]], [[0.01, 0.0]]],
    }
    for name, value in want.items():
        np.testing.assert_allclose(out[name], value, rtol=1e-6, err_msg=name)


def _run_percentile(norms, percentile, history):
    """Feed gradients with the given global norms; return thresholds and outputs."""
    return _run_norms(gf.train.percentile_clip(percentile, history=history), norms)


def _run_norms(tx, norms):
    """Gradients of the given global norms through ``tx``: ``(state.threshold``
    where the state has one, else the norms in``, the norms out``)``."""
    direction = _tree(jax.random.key(4), 1.0)
    unit = jax.tree_util.tree_map(lambda a: a / optax.tree.norm(direction), direction)

    @jax.jit
    def run(norms):
        def step(state, n):
            g = jax.tree_util.tree_map(lambda a: n * a, unit)
            out, state = tx.update(g, state)
            return state, (getattr(state, "threshold", n), optax.tree.norm(out))

        return jax.lax.scan(step, tx.init(unit), norms)[1]

    return jax.device_get(run(jnp.asarray(norms, jnp.float32)))


def test_autoclip_threshold_is_running_percentile():
    norms = np.asarray(np.exp(np.random.default_rng(0).normal(size=40)), np.float32)
    thr, out = _run_percentile(norms, 25.0, history=64)
    want = np.array([np.percentile(norms[: i + 1], 25.0) for i in range(40)])
    np.testing.assert_allclose(thr, want, rtol=1e-5)
    np.testing.assert_allclose(out, np.minimum(norms, want), rtol=1e-5)


def test_autoclip_ring_buffer_is_a_sliding_window():
    norms = np.arange(1, 13, dtype=np.float32)
    thr, _ = _run_percentile(norms, 50.0, history=5)
    want = [np.percentile(norms[max(0, i - 4) : i + 1], 50.0) for i in range(12)]
    np.testing.assert_allclose(thr, want, rtol=1e-6)


def test_autoclip_skips_nan_and_counts_only_finite_norms():
    # percentile 50 sees the whole window: a NaN counted as a step would leave
    # a stale 0 in it (thresholds 1, 1, 1 ... instead)
    with_nan = np.array([1.0, 2.0, np.nan, 3.0], np.float32)
    thr, out = _run_percentile(with_nan, 50.0, history=8)
    np.testing.assert_allclose(thr, [1.0, 1.5, 1.5, 2.0], rtol=1e-6)
    assert np.isnan(out[2])  # a NaN gradient passes through for divergence checks
    np.testing.assert_allclose(out[[0, 1, 3]], [1.0, 1.5, 2.0], rtol=1e-6)
    # a NaN first: no threshold yet (inf), and the NaN still passes through
    thr, out = _run_percentile([np.nan, 4.0], 50.0, history=8)
    assert np.isinf(thr[0]) and np.isnan(out[0])
    np.testing.assert_allclose(thr[1], 4.0)


def test_autoclip_nan_after_the_ring_buffer_wraps():
    # the window is the last `history` finite norms: a NaN must not move the slot
    norms = np.array([1, 2, 3, 10, np.nan, 5, 7, np.nan, np.nan, 4, 8], np.float32)
    history, p = 3, 25.0
    thr, out = _run_percentile(norms, p, history=history)
    seen, want = [], []
    for n in norms:
        if np.isfinite(n):
            seen.append(float(n))
        want.append(np.percentile(seen[-history:], p))
    np.testing.assert_allclose(thr, want, rtol=1e-6)
    finite = np.isfinite(norms)
    np.testing.assert_allclose(out[finite], np.minimum(norms, want)[finite], rtol=1e-6)
    assert np.isnan(out[~finite]).all()


def test_clipper_by_name_defaults_none_and_autoclip():
    """'none' passes every gradient through (NaN and huge ones too); 'autoclip'
    without a threshold is the 10th percentile, with one that percentile."""
    norms = np.array([0.5, 1e6, np.nan, 3.0], np.float32)
    _, out = _run_norms(gf.train.clipper("none"), norms)
    np.testing.assert_allclose(out, norms, rtol=1e-6)
    norms = np.arange(1, 12, dtype=np.float32)
    last = []
    for threshold, p in ((None, 10.0), (50.0, 50.0)):
        thr, _ = _run_norms(gf.train.clipper("autoclip", threshold, history=16), norms)
        want = [np.percentile(norms[: i + 1], p) for i in range(len(norms))]
        np.testing.assert_allclose(thr, want, rtol=1e-6)
        last.append(float(thr[-1]))
    np.testing.assert_allclose(last, [2.0, 6.0], rtol=1e-6)  # p10, p50 of 1..11


def test_monitor_without_inner_only_measures():
    tx = gf.train.monitor()
    grads = [_tree(jax.random.key(7), s) for s in (0.1, 30.0)]
    state = tx.init(grads[0])
    for g in grads:
        out, state = jax.jit(tx.update)(g, state)
        leaves = zip(jax.tree.leaves(out), jax.tree.leaves(g), strict=True)
        for a, b in leaves:
            np.testing.assert_array_equal(a, b)
        raw = float(optax.tree.norm(g))
        assert float(state.norm_before) == pytest.approx(raw, rel=1e-6)
        assert float(state.norm_after) == float(state.norm_before)
        assert not bool(state.fired)
    assert int(state.count) == 2 and int(state.fired_count) == 0


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
