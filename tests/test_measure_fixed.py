"""gf.fixed_points against closed forms: linear maps, uncoupled tanh units, LSTM."""

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from tests.conftest import tol


def rnn_with(w, activation="tanh", input_size=1, w_ih=None, bias=None):
    n = w.shape[0]
    cell = gf.cells.rnn(n, activation, bias_init="zeros")
    params = cell.init(jax.random.key(0), input_size, dtype=w.dtype)
    params = {**params, "W_hh": w}
    if w_ih is not None:
        params["W_ih"] = w_ih
    if bias is not None:
        params["b_ih"] = bias
    return cell, params


def uncoupled_root():
    """a > 0 with a = tanh(2a), by bisection in float64."""
    lo, hi = 0.5, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.tanh(2 * mid) > mid else (lo, mid)
    return 0.5 * (lo + hi)


def as_rows(a):
    return {tuple(np.round(np.asarray(r), 6)) for r in a}


@pytest.mark.usefixtures("x64")
def test_linear_rnn_single_point_and_eigenvalues_of_w():
    n = 5
    rng = np.random.default_rng(0)
    w = rng.normal(size=(n, n))
    w *= 0.8 / np.max(np.abs(np.linalg.eigvals(w)))
    w_ih = rng.normal(size=(n, 2))
    b = rng.normal(size=n)
    cell, params = rnn_with(jnp.asarray(w), "linear", 2, jnp.asarray(w_ih), b)
    x = jnp.asarray([0.3, -0.7])
    starts = gf.cells.RNNCarry(jax.random.normal(jax.random.key(1), (16, n)))
    fp = gf.fixed_points(cell, params, x, starts)
    want = np.linalg.solve(np.eye(n) - w, w_ih @ np.asarray(x) + b)
    assert fp.states.shape == (1, n)
    np.testing.assert_allclose(fp.states[0], want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fp.carries.h[0], want, rtol=1e-10, atol=1e-12)
    lam = np.linalg.eigvals(w)
    lam = lam[np.lexsort((-lam.imag, -np.abs(lam)))]
    assert jnp.iscomplexobj(fp.eigenvalues)
    np.testing.assert_allclose(fp.eigenvalues[0], lam, atol=1e-10)
    assert np.all(np.diff(np.abs(np.asarray(fp.eigenvalues[0]))) <= 1e-12)
    assert bool(fp.stable[0]) and int(fp.counts[0]) == 16
    assert fp.unconverged_states.shape == (0, n)


@pytest.mark.usefixtures("x64")
def test_uncoupled_tanh_units_all_three_to_the_n_points():
    """s_i ↦ tanh(2 s_i): each unit at −a, 0 or +a; all 27 combinations."""
    n = 3
    cell, params = rnn_with(2.0 * jnp.eye(n))
    a = uncoupled_root()
    grid = np.array(list(itertools.product([-1.3, -0.2, 0.0, 0.2, 1.3], repeat=n)))
    fp = gf.fixed_points(cell, params, None, gf.cells.RNNCarry(jnp.asarray(grid)))
    want = np.array(list(itertools.product([-a, 0.0, a], repeat=n)))
    assert fp.states.shape == (27, n)
    assert as_rows(fp.states) == as_rows(want)
    assert int(np.sum(fp.counts)) == len(grid)
    for s, lam, stable in zip(
        np.asarray(fp.states),
        np.asarray(fp.eigenvalues),
        np.asarray(fp.stable),
        strict=True,
    ):
        expect = np.sort(2.0 * (1.0 - np.tanh(2.0 * s) ** 2))[::-1]
        np.testing.assert_allclose(lam.real, expect, atol=1e-9)
        np.testing.assert_allclose(lam.imag, 0.0, atol=1e-12)
        # Attracting exactly when no unit sits at 0 (slope 2 there).
        assert stable == bool(np.all(np.abs(s) > 0.5))
    assert int(np.sum(fp.stable)) == 8
    assert np.all(np.asarray(fp.speeds) <= gf._measure._fixed.default_tol(n, "f8"))


@pytest.mark.usefixtures("x64")
def test_lstm_without_recurrence_closed_form():
    """W_hh = 0: c* = i g / (1 − f), h* = o tanh(c*); eigenvalues f and zeros."""
    n, d = 4, 3
    cell = gf.cells.lstm(n)
    params = cell.init(jax.random.key(3), d, dtype=jnp.float64)
    params = {**params, "W_hh": jnp.zeros_like(params["W_hh"])}
    x = jnp.asarray([0.5, -1.0, 0.3])
    z = np.asarray(params["W_ih"] @ x + params["b_ih"] + params["b_hh"])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    i, f, g, o = (
        sig(z[:n]),
        sig(z[n : 2 * n]),
        np.tanh(z[2 * n : 3 * n]),
        sig(z[3 * n :]),
    )
    c = i * g / (1 - f)
    h = o * np.tanh(c)
    xs = jax.random.normal(jax.random.key(4), (10, 2, d), jnp.float64)
    starts = gf.sample_states(cell, params, xs, 12, noise=0.5)
    fp = gf.fixed_points(cell, params, x, starts)
    assert fp.states.shape == (1, 2 * n)
    np.testing.assert_allclose(fp.carries.h[0], h, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fp.carries.c[0], c, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fp.states[0], np.concatenate([h, c]), rtol=1e-9)
    want = np.concatenate([np.sort(f)[::-1], np.zeros(n)])
    np.testing.assert_allclose(fp.eigenvalues[0], want, atol=1e-9)
    assert bool(fp.stable[0])


@pytest.mark.usefixtures("x64")
def test_stack_of_linear_layers_block_triangular_jacobian():
    """Layer 2 reads layer 1's new h: J = [[W1, 0], [U2 W1, W2]].

    So the eigenvalues are eig(W1) ∪ eig(W2).
    """
    rng = np.random.default_rng(5)
    n1, n2 = 3, 2
    w1 = 0.5 * rng.normal(size=(n1, n1)) / np.sqrt(n1)
    w2 = 0.5 * rng.normal(size=(n2, n2)) / np.sqrt(n2)
    cells = [gf.cells.rnn(n1, "linear"), gf.cells.rnn(n2, "linear")]
    cell = gf.cells.stack(cells)
    params = cell.init(jax.random.key(6), 2, dtype=jnp.float64)
    params = (
        {**params[0], "W_hh": jnp.asarray(w1)},
        {**params[1], "W_hh": jnp.asarray(w2)},
    )
    x = jnp.asarray([1.0, -0.5])
    p1, p2 = params
    h1 = np.linalg.solve(
        np.eye(n1) - w1, np.asarray(p1["W_ih"] @ x + p1["b_ih"] + p1["b_hh"])
    )
    h2 = np.linalg.solve(
        np.eye(n2) - w2, np.asarray(p2["W_ih"] @ h1 + p2["b_ih"] + p2["b_hh"])
    )
    starts = (
        gf.cells.RNNCarry(jax.random.normal(jax.random.key(7), (5, n1))),
        gf.cells.RNNCarry(jax.random.normal(jax.random.key(8), (5, n2))),
    )
    fp = gf.fixed_points(cell, params, x, starts)
    assert fp.states.shape == (1, n1 + n2)
    np.testing.assert_allclose(fp.carries[0].h[0], h1, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fp.carries[1].h[0], h2, rtol=1e-9, atol=1e-12)
    lam = np.concatenate([np.linalg.eigvals(w1), np.linalg.eigvals(w2)])
    lam = lam[np.lexsort((-lam.imag, -np.abs(lam)))]
    np.testing.assert_allclose(fp.eigenvalues[0], lam, atol=1e-9)


@pytest.mark.usefixtures("x64")
def test_custom_cell_with_a_dict_carry():
    """u ↦ A u + B x, v ↦ ½ v + 1 (a scalar leaf): u* = (I − A)⁻¹ B x, v* = 2."""
    a = jnp.asarray([[0.5, 0.2], [-0.1, 0.3]])
    b = jnp.asarray([[1.0, 0.0, 2.0], [0.0, -1.0, 1.0]])

    def step(p, carry, x):
        u = p["A"] @ carry["u"] + p["B"] @ x
        v = 0.5 * carry["v"] + 1.0
        return {"u": u, "v": v}, u

    cell = gf.cells.custom(step, {"u": jnp.zeros(2), "v": jnp.zeros(())})
    params = {"A": a, "B": b}
    x = jnp.asarray([0.1, 0.2, -0.3])
    starts = {"u": jnp.ones((3, 2)), "v": jnp.asarray([0.0, 5.0, -1.0])}
    fp = gf.fixed_points(cell, params, x, starts)
    u = np.linalg.solve(np.eye(2) - np.asarray(a), np.asarray(b @ x))
    assert fp.states.shape == (1, 3)
    np.testing.assert_allclose(fp.carries["u"][0], u, rtol=1e-10)
    np.testing.assert_allclose(fp.carries["v"][0], 2.0, rtol=1e-10)
    lam = np.concatenate([np.linalg.eigvals(np.asarray(a)), [0.5]])
    lam = lam[np.lexsort((-lam.imag, -np.abs(lam)))]
    np.testing.assert_allclose(fp.eigenvalues[0], lam, atol=1e-10)
    with pytest.raises(ValueError, match="x must be given"):
        gf.fixed_points(cell, params, None, starts)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_gru_points_are_fixed_and_eigenvalues_match_finite_differences(dtype):
    if dtype == jnp.float64:
        jax.config.update("jax_enable_x64", True)
    try:
        n, d = 6, 2
        cell = gf.cells.gru(n, gain=1.5, recurrent_init="gaussian")
        params = cell.init(jax.random.key(9), d, dtype=dtype)
        x = jnp.asarray([0.2, -0.4], dtype)
        xs = jax.random.normal(jax.random.key(10), (30, 4, d), dtype)
        starts = gf.sample_states(cell, params, xs, 32, key=jax.random.key(11))
        fp = gf.fixed_points(cell, params, x, starts)
        assert fp.states.shape[0] >= 1
        step = jax.jit(lambda c: cell.step(params, c, x)[0])
        for k in range(fp.states.shape[0]):
            carry = jax.tree_util.tree_map(lambda a, k=k: a[k], fp.carries)
            np.testing.assert_allclose(
                step(carry).h, carry.h, atol=30 * np.finfo(dtype).eps
            )
        # Central differences in float64 as the independent Jacobian.
        s = np.asarray(fp.states[0], np.float64)
        p64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)

        def f(v):
            z = np.asarray(params["W_ih"], np.float64) @ np.asarray(x, np.float64)
            z = z + p64["b_ih"]
            hh = p64["W_hh"] @ v + p64["b_hh"]
            sig = lambda u: 1 / (1 + np.exp(-u))  # noqa: E731
            r = sig(z[:n] + hh[:n])
            u = sig(z[n : 2 * n] + hh[n : 2 * n])
            c = np.tanh(z[2 * n :] + r * hh[2 * n :])
            return (1 - u) * c + u * v

        eps = 1e-6
        jac = np.stack(
            [(f(s + eps * e) - f(s - eps * e)) / (2 * eps) for e in np.eye(n)], 1
        )
        lam = np.linalg.eigvals(jac)
        lam = lam[np.lexsort((-lam.imag, -np.abs(lam)))]
        atol = 1e-7 if dtype == jnp.float64 else 1e-4
        np.testing.assert_allclose(np.abs(fp.eigenvalues[0]), np.abs(lam), atol=atol)
        assert bool(fp.stable[0]) == bool(np.max(np.abs(lam)) < 1)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_candidates_under_jit_with_starts_of_different_speeds():
    n = 2
    cell, params = rnn_with(2.0 * jnp.eye(n, dtype=jnp.float32))
    a = np.float32(uncoupled_root())
    starts = gf.cells.RNNCarry(
        jnp.asarray([[a, a], [a + 1e-3, a], [0.3, 0.4], [2.5, -3.0]], jnp.float32)
    )
    run = jax.jit(lambda p, s: gf.fixed_point_candidates(cell, p, None, s))
    cand = run(params, starts)
    assert cand.states.shape == (4, n)
    assert np.all(cand.converged)
    steps = np.asarray(cand.steps)
    assert steps[0] == 0  # already there
    assert 1 <= steps[1] < steps[3]
    np.testing.assert_allclose(cand.states[0], [a, a], rtol=tol(jnp.float32))
    np.testing.assert_allclose(cand.states[1], [a, a], rtol=tol(jnp.float32))
    np.testing.assert_allclose(np.abs(cand.states[3]), [a, a], rtol=tol(jnp.float32))
    # The same solve vmapped over two parameter sets (e.g. the seeds of a sweep).
    both = jax.tree_util.tree_map(lambda v: jnp.stack([v, v]), params)
    both["W_hh"] = jnp.stack([2.0 * jnp.eye(n), 0.5 * jnp.eye(n)])
    out = jax.vmap(run, in_axes=(0, None))(both, starts)
    np.testing.assert_allclose(out.states[0], cand.states, rtol=tol(jnp.float32))
    np.testing.assert_allclose(out.states[1], 0.0, atol=1e-4)


def test_no_fixed_point_reports_every_start_with_its_q():
    """h ↦ h + b has none: q = ½‖b‖² everywhere, nothing converges."""
    n = 3
    b = jnp.asarray([0.1, -0.2, 0.3])
    cell, params = rnn_with(jnp.eye(n), "linear", bias=b)
    starts = gf.cells.RNNCarry(jax.random.normal(jax.random.key(12), (4, n)))
    fp = gf.fixed_points(cell, params, None, starts)
    assert fp.states.shape == (0, n)
    assert fp.eigenvalues.shape == (0, n) and fp.stable.shape == (0,)
    assert fp.unconverged_states.shape == (4, n)
    np.testing.assert_allclose(fp.unconverged_speeds, 0.5 * np.sum(b**2), rtol=1e-5)


def test_sample_states_are_visited_states():
    cell = gf.cells.rnn(4)
    params = cell.init(jax.random.key(13), 2)
    xs = jax.random.normal(jax.random.key(14), (7, 3, 2))
    _, hs = gf.unroll(cell, params, xs)
    got = gf.sample_states(cell, params, xs, 21)
    assert got.h.shape == (21, 4)
    # The carries entering steps 0..T-1: the zero carry and h_0..h_{T-2}.
    entering = np.concatenate([np.zeros((1, 3, 4), np.float32), np.asarray(hs[:-1])])
    assert as_rows(got.h) == as_rows(entering.reshape(-1, 4))
    assert len(as_rows(got.h)) == 1 + 18  # three equal zero carries, the rest once
    noisy = gf.sample_states(cell, params, xs, 5, noise=0.1, key=jax.random.key(1))
    assert noisy.h.shape == (5, 4)
    with pytest.raises(ValueError, match="k must be <= the number of visited"):
        gf.sample_states(cell, params, xs, 22)


def test_bad_inputs_rejected_clearly():
    cell = gf.cells.lstm(3)
    params = cell.init(jax.random.key(15), 2)
    good = cell.initial_carry((4,))
    with pytest.raises(TypeError, match="initial must be shaped like"):
        gf.fixed_points(cell, params, None, gf.cells.RNNCarry(jnp.zeros((4, 3))))
    with pytest.raises(ValueError, match="initial must have leaf shapes"):
        gf.fixed_points(cell, params, None, good._replace(c=jnp.zeros((4, 5))))
    with pytest.raises(ValueError, match="leading K axis"):
        gf.fixed_points(cell, params, None, cell.initial_carry(()))
    with pytest.raises(
        ValueError, match=r"initial contains NaN or inf \(first in start 2"
    ):
        gf.fixed_points(
            cell, params, None, good._replace(h=good.h.at[2, 1].set(jnp.nan))
        )
    with pytest.raises(ValueError, match=r"x must have shape \(2,\)"):
        gf.fixed_points(cell, params, jnp.zeros(3), good)
    with pytest.raises(TypeError, match="x must have the dtype of initial"):
        gf.fixed_points(cell, params, jnp.zeros(2, jnp.int32), good)
    with pytest.raises(ValueError, match="tol must be > 0"):
        gf.fixed_points(cell, params, None, good, tol=-1.0)
    with pytest.raises(ValueError, match="unique_tol must be > 0"):
        gf.fixed_points(cell, params, None, good, unique_tol=0.0)
    with pytest.raises(TypeError, match="max_steps must be an int"):
        gf.fixed_points(cell, params, None, good, max_steps=1.5)
    with pytest.raises(TypeError, match=r"outside jax\.jit"):
        jax.jit(lambda s: gf.fixed_points(cell, params, None, s).states)(good)
    with pytest.raises(TypeError, match="initial must be a carry whose leaves are"):
        gf.fixed_points(cell, params, None, ())
    with pytest.raises(TypeError, match="initial must be a carry whose leaves are"):
        gf.fixed_points(cell, params, None, good._replace(h=[0.0] * 3))
    with pytest.raises(ValueError, match=r"on every leaf, got a leaf of shape \(\)"):
        gf.fixed_points(cell, params, None, good._replace(h=jnp.zeros(())))
    with pytest.raises(
        TypeError, match="initial must have a floating dtype, got int32"
    ):
        gf.fixed_points(cell, params, None, cell.initial_carry((4,), jnp.int32))
    with pytest.raises(TypeError, match="got float32 and float16"):
        gf.fixed_points(cell, params, None, good._replace(c=good.c.astype("float16")))
    with pytest.raises(ValueError, match="at least one start, got K=0"):
        gf.fixed_points(cell, params, None, cell.initial_carry((0,)))
    with pytest.raises(
        TypeError, match=r"x must be an array of shape \(2,\), got list"
    ):
        gf.fixed_points(cell, params, [0.0, 0.0], good)
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        gf.fixed_points(cell, params, jnp.asarray([0.0, jnp.inf]), good)


def test_nan_params_give_nan_speeds_not_fixed_points():
    cell, params = rnn_with(jnp.full((2, 2), jnp.nan))
    fp = gf.fixed_points(cell, params, None, gf.cells.RNNCarry(jnp.ones((3, 2))))
    assert fp.states.shape == (0, 2)
    assert np.all(np.isnan(fp.unconverged_speeds))


def spread_starts(n, count):
    """Starts of very different convergence speeds for s ↦ tanh(2 s) per unit.

    Exactly at fixed points (0 steps), 1e-3 from one, and far out in the
    saturated tails (many steps), in a fixed shuffled order.
    """
    a = uncoupled_root()
    rng = np.random.default_rng(16)
    points = np.array(list(itertools.product([-a, 0.0, a], repeat=n)))
    at = points[rng.choice(len(points), count // 4)]
    near = points[rng.choice(len(points), count // 4)] + 1e-3
    far = rng.choice([-1.0, 1.0], (count // 4, n)) * rng.uniform(2.0, 6.0, (1, n))
    mid = rng.uniform(-1.5, 1.5, (count - 3 * (count // 4), n))
    starts = np.concatenate([at, near, far, mid])
    return starts[rng.permutation(count)], points


@pytest.mark.usefixtures("x64")
def test_compaction_gives_the_end_points_of_one_batch():
    """Running only the chunks that hold running starts (re-sorted before
    every sweep) changes no start's iterations."""
    from gradflow._measure._fixed import _solve

    n, count = 3, 40
    # The default chunks of 32 pad the 40 starts to 2 chunks; chunks of 8 make
    # 5, fewer as starts stop.
    cell, params = rnn_with(2.0 * jnp.eye(n))
    starts, points = spread_starts(n, count)
    initial = gf.cells.RNNCarry(jnp.asarray(starts))
    x = jnp.zeros((1,))
    tol = gf._measure._fixed.default_tol(n, "f8")
    for max_steps in (3, 100):
        solve = partial(_solve, cell, params, x, initial, tol, max_steps)
        whole = jax.tree_util.tree_map(np.asarray, solve(compact=False, chunk=None))
        for packed in (solve(), solve(chunk=8), solve(compact=False, chunk=8)):
            packed = jax.tree_util.tree_map(np.asarray, packed)
            np.testing.assert_array_equal(packed.steps, whole.steps)
            np.testing.assert_array_equal(packed.converged, whole.converged)
            np.testing.assert_allclose(packed.states, whole.states, atol=1e-14)
            np.testing.assert_allclose(packed.speeds, whole.speeds, rtol=1e-10)
            assert packed.steps.max() <= max_steps
    # The starts took from 0 to many steps, so later sweeps ran fewer chunks.
    assert packed.steps.min() == 0 and packed.steps.max() >= 5
    assert np.all(packed.converged)
    # Every end point is one of the 27 closed-form points.
    gap = np.abs(packed.states[:, None] - points[None]).max(axis=-1)
    assert np.all(gap.min(axis=1) < 1e-12)


def test_compacted_solve_under_vmap_matches_separate_solves():
    """Compaction inside vmap (a sweep's seeds): each set as if solved alone."""
    from gradflow._measure._fixed import _solve

    n, count = 2, 24
    cell, params = rnn_with(2.0 * jnp.eye(n, dtype=jnp.float32))
    starts, _ = spread_starts(n, count)
    initial = gf.cells.RNNCarry(jnp.asarray(starts, jnp.float32))
    x = jnp.zeros((1,), jnp.float32)
    tol = gf._measure._fixed.default_tol(n, "f4")
    # Chunks of 8: three, fewer as starts stop (each set at its own pace).
    packed = jax.jit(lambda p, s: _solve(cell, p, x, s, tol, 100, chunk=8))
    alone = jax.jit(lambda p, s: gf.fixed_point_candidates(cell, p, None, s))
    sets = [params, {**params, "W_hh": 1.5 * jnp.eye(n, dtype=jnp.float32)}]
    both = jax.tree_util.tree_map(lambda *v: jnp.stack(v), *sets)
    out = jax.vmap(packed, in_axes=(0, None))(both, initial)
    for i, p in enumerate(sets):
        one = alone(p, initial)
        np.testing.assert_array_equal(out.steps[i], one.steps)
        np.testing.assert_array_equal(out.converged[i], one.converged)
        np.testing.assert_allclose(out.states[i], one.states, atol=1e-6)
    assert np.all(out.converged)
    assert len(set(np.asarray(out.steps[0]).tolist())) >= 3  # different speeds


def test_a_carry_of_another_type_is_named_not_shown_twice():
    import collections

    cell = gf.cells.rnn(4)
    params = cell.init(jax.random.key(0), input_size=2)
    look_alike = collections.namedtuple("RNNCarry", "h")
    with pytest.raises(TypeError, match=r"got a plain array of shape \(8, 4\)"):
        gf.fixed_points(cell, params, None, jnp.zeros((8, 4)))
    with pytest.raises(TypeError) as err:
        gf.fixed_points(cell, params, None, look_alike(jnp.zeros((8, 4))))
    message = str(err.value)
    assert "(a gradflow.cells._rnn.RNNCarry)" in message
    assert f"(a {__name__}.RNNCarry)" in message
    with pytest.raises(TypeError, match=r"got a plain array of shape \(8, 4\)"):
        gf.unroll(cell, params, jnp.ones((5, 8, 2)), jnp.zeros((8, 4)))
