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
        lambda p, x, c: gf.lyapunov_spectrum(cell, p, x, c, k=2, warmup=100)
    )(params, xs, carry)
    top = float(lyap.exponents[0])
    assert lyap.exponents[0] >= lyap.exponents[1]
    if gain < 1:
        radius = np.max(np.abs(np.linalg.eigvals(np.asarray(w, np.float64))))
        assert abs(top - np.log(radius)) < 0.03
        assert abs(top - np.log(gain)) < 0.1
    else:
        assert top > 0.1


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
