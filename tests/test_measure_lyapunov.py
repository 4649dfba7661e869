"""gf.lyapunov_spectrum against closed forms and random-matrix theory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf


def rnn_with(w, activation="linear"):
    cell = gf.cells.rnn(w.shape[0], activation, bias_init="zeros")
    params = cell.init(jax.random.key(0), 1, dtype=w.dtype)
    return cell, {**params, "W_hh": w}


def test_diagonal_linear_map_gives_sorted_log_diagonal():
    d = np.array([0.9, 0.3, 1.2, 0.6, 0.05], np.float32)
    cell, params = rnn_with(jnp.diag(jnp.asarray(d)))
    xs = jnp.zeros((300, 2, 1), jnp.float32)
    lyap = jax.jit(lambda p, x: gf.lyapunov_spectrum(cell, p, x, warmup=100))(
        params, xs
    )
    want = np.sort(np.log(d))[::-1]
    assert lyap.exponents.shape == (2, 5)
    assert lyap.running.shape == (200, 2, 5)
    np.testing.assert_allclose(lyap.exponents, np.stack([want, want]), atol=1e-4)
    # The running estimates are exact from the first averaged step on.
    np.testing.assert_allclose(lyap.running[0, 0], want, atol=1e-4)
    assert np.all(lyap.resolved)


def test_scaled_orthogonal_gives_log_rho_everywhere():
    rho = 1.3
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 6)))[0]
    cell, params = rnn_with(jnp.asarray(rho * q, jnp.float32))
    xs = jnp.zeros((50, 1), jnp.float32)
    lyap = jax.jit(lambda p, x: gf.lyapunov_spectrum(cell, p, x, k=4))(params, xs)
    assert lyap.exponents.shape == (4,)
    np.testing.assert_allclose(lyap.exponents, np.full(4, np.log(rho)), atol=1e-5)
    np.testing.assert_allclose(lyap.running, np.log(rho), atol=1e-5)


def test_zero_diagonal_entry_is_floored_not_minus_inf():
    d = jnp.asarray([0.5, 0.0, 2.0], jnp.float32)
    cell, params = rnn_with(jnp.diag(d))
    xs = jnp.zeros((40, 1), jnp.float32)
    lyap = jax.jit(lambda p, x: gf.lyapunov_spectrum(cell, p, x, warmup=15))(params, xs)
    assert np.all(np.isfinite(lyap.running))
    np.testing.assert_allclose(lyap.exponents[:2], np.log([2.0, 0.5]), atol=1e-5)
    floor = np.log(np.finfo(np.float32).tiny)
    np.testing.assert_allclose(lyap.exponents[2], floor, rtol=1e-6)
    # the floored exponent is a bound, not a value
    np.testing.assert_array_equal(lyap.resolved, [True, True, False])


@pytest.mark.parametrize("gain", [0.5, 2.0])
def test_random_tanh_network(gain):
    """N = 200, W ~ N(0, g²/N): λ_max = log ρ(W) ≈ log g at g = 0.5 (the origin
    is a stable fixed point and tanh'(0) = 1); chaos (λ_max > 0) at g = 2."""
    n = 200
    w = gain * jax.random.normal(jax.random.key(1), (n, n)) / np.sqrt(n)
    cell, params = rnn_with(w, "tanh")
    steps = 600 if gain < 1 else 400
    xs = jnp.zeros((steps, 1), jnp.float32)
    carry = gf.cells.RNNCarry(0.5 * jax.random.normal(jax.random.key(2), (n,)))
    lyap = jax.jit(
        lambda p, x, c: gf.lyapunov_spectrum(cell, p, x, k=2, warmup=100, carry=c)
    )(params, xs, carry)
    top = float(lyap.exponents[0])
    assert lyap.exponents[0] >= lyap.exponents[1]
    if gain < 1:
        radius = np.max(np.abs(np.linalg.eigvals(np.asarray(w, np.float64))))
        assert abs(top - np.log(radius)) < 0.03
        assert abs(top - np.log(gain)) < 0.1
    else:
        assert top > 0.1


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_nonlinear_cell_matches_numpy_qr_of_explicit_jacobians(kind):
    """Benettin by hand: the states by a numpy loop, each step's Jacobian
    ``∂s_{t+1}/∂s_t`` written out (tanh RNN: ``diag(1 − h²) W``; GRU: by
    ``jax.jacfwd`` of one step at the numpy state), numpy QR along the
    trajectory from the same initial frame. A driven nonlinear cell: the
    Jacobian depends on the state, so a frame that moves with a frozen (or
    one-step-late) state gives other exponents."""
    n, d, steps, warmup, k = 5, 2, 150, 20, 4
    cell = gf.cells.make(kind, n)
    params = cell.init(jax.random.key(3), d, dtype=jnp.float64)
    xs = 1.5 * jax.random.normal(jax.random.key(4), (steps, d), jnp.float64)
    lyap = jax.jit(lambda p, x: gf.lyapunov_spectrum(cell, p, x, k=k, warmup=warmup))(
        params, xs
    )
    frame = np.asarray(jax.random.normal(jax.random.key(0), (n, k), jnp.float64))
    q = np.linalg.qr(frame)[0]
    p = {name: np.asarray(v) for name, v in params.items()}
    x = np.asarray(xs)
    h = np.zeros(n)
    logs = []

    def step(s, x_t):
        return cell.step(params, gf.cells.GRUCarry(s), x_t)[1]

    gru_step, gru_jac = jax.jit(step), jax.jit(jax.jacfwd(step))
    for t in range(steps):
        if kind == "rnn":
            h_next = np.tanh(p["W_ih"] @ x[t] + p["b_ih"] + p["W_hh"] @ h + p["b_hh"])
            jac = (1.0 - h_next**2)[:, None] * p["W_hh"]
        else:
            h_next = np.asarray(gru_step(h, x[t]))
            jac = np.asarray(gru_jac(h, x[t]))
        q, r = np.linalg.qr(jac @ q)
        logs.append(np.log(np.abs(np.diag(r))))
        h = h_next
    running = (
        np.cumsum(logs[warmup:], axis=0) / np.arange(1, steps - warmup + 1)[:, None]
    )
    want = np.sort(running, axis=-1)[:, ::-1]
    np.testing.assert_allclose(lyap.running, want, atol=1e-9)
    np.testing.assert_allclose(lyap.exponents, want[-1], atol=1e-9)
    assert np.all(lyap.resolved)
    assert np.ptp(want[-1]) > 0.1  # distinct exponents: the order is tested


def _driven_tanh(scale, dtype):
    """Issue 10's case: a tanh net (gain 0.9) driven hard by its input."""
    n, d, steps = 16, 4, 600
    cell = gf.cells.rnn(n, recurrent_init="gaussian", gain=0.9)
    params = cell.init(jax.random.key(0), d)
    xs = scale * jax.random.normal(jax.random.key(1), (steps, d))
    cast = {k: np.asarray(v, dtype) for k, v in params.items()}
    return cell, cast, np.asarray(xs, dtype)


@pytest.mark.parametrize("scale", [1.0, 400.0, 4000.0])
def test_exponents_float32_cannot_resolve_are_marked(scale):
    """Issue 10: input ×400 gave float32 λ₃, λ₄ = −42.8, −50.3 where float64
    says −46.8, −58.1, and ×4000 (saturated) −63.8 for −144, as plain numbers.

    Every exponent float32 marks resolved agrees with float64 (to 0.2: close
    exponents of a finite run differ by a few 0.01 from rounding of the frame
    alone); every one that does not agree is marked; at ×1 nothing is lost."""
    cell, p32, x32 = _driven_tanh(scale, np.float32)
    f32 = jax.jit(lambda p, x: gf.lyapunov_spectrum(cell, p, x))(p32, x32)
    jax.config.update("jax_enable_x64", True)
    try:
        _, p64, x64 = _driven_tanh(scale, np.float64)
        f64 = jax.jit(lambda p, x: gf.lyapunov_spectrum(cell, p, x))(p64, x64)
        f64 = jax.tree_util.tree_map(np.asarray, f64)
    finally:
        jax.config.update("jax_enable_x64", False)
    ok = np.asarray(f32.resolved)
    err = np.abs(np.asarray(f32.exponents, np.float64) - f64.exponents)
    assert np.all(err[ok] < 0.2)
    if scale == 1.0:
        assert ok.all()
    else:
        assert ok.sum() <= 1  # at most λ₁ (×400); the saturated net loses all
        assert err[~ok].max() > 5.0


def test_single_threaded_lapack_pins_and_restores_openblas():
    from gradflow._measure._lapack import _loaded_openblas, single_threaded_lapack

    libs = _loaded_openblas()
    if not libs:
        pytest.skip("no OpenBLAS loaded (another LAPACK or no /proc)")
    before = [get() for _, get in libs]
    libs[0][0](2)  # a threaded start, whatever the environment says
    with single_threaded_lapack() as found:
        assert found[0] == 2
        assert [get() for _, get in libs] == [1] * len(libs)
        q = jax.jit(lambda a: jnp.linalg.qr(a)[0])(jnp.eye(3))
        np.testing.assert_allclose(np.abs(np.asarray(q)), np.eye(3), atol=1e-6)
    assert libs[0][1]() == 2
    for (setter, _), n in zip(libs, before, strict=True):
        setter(n)


@pytest.mark.parametrize("missing", ["proc", "library"])
def test_single_threaded_lapack_is_a_no_op_without_openblas(monkeypatch, missing):
    """No /proc (not Linux), or a listed library that will not load: found is
    empty and the threads of the OpenBLAS that is loaded are left alone."""
    from gradflow._measure import _lapack

    libs = _lapack._loaded_openblas()
    before = [get() for _, get in libs]

    def fail(*args, **kwargs):
        raise OSError("not here")

    if missing == "proc":
        monkeypatch.setattr(_lapack, "open", fail, raising=False)
    else:
        monkeypatch.setattr(_lapack.ctypes, "CDLL", fail)
    assert _lapack._loaded_openblas() == []
    with _lapack.single_threaded_lapack() as found:
        assert found == []
        assert [get() for _, get in libs] == before


@pytest.mark.parametrize("turn", ["times_nan", "set_nan"])
def test_a_state_that_turns_nan_gives_nan_unresolved_exponents(turn):
    """After 12 steps the state is NaN: no exponent is finite or resolved
    (a constant NaN has a zero Jacobian, which read as a finite λ₁)."""
    w = 0.9 * jnp.eye(3)

    def step(p, c, x):
        h, t = c
        h = jnp.tanh(p["W"] @ h + x)
        nan = h * jnp.nan if turn == "times_nan" else jnp.nan
        h = jnp.where(t >= 12, nan, h)
        return (h, t + 1.0), h

    def initial(batch_shape=(), dtype=jnp.float32):
        return jnp.zeros((*batch_shape, 3), dtype), jnp.zeros(batch_shape, dtype)

    cell = gf.cells.custom(step, initial, hidden_size=3)
    xs = jnp.full((40, 2, 3), 0.1)
    out = jax.jit(lambda p, x: gf.lyapunov_spectrum(cell, p, x))({"W": w}, xs)
    assert np.all(np.isnan(out.exponents)) and not np.any(out.resolved)
    # The same cell before it turns: finite and resolved.
    early = gf.lyapunov_spectrum(cell, {"W": w}, xs[:12], warmup=0)
    assert np.all(np.isfinite(early.exponents)) and np.all(early.resolved)
