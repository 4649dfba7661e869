"""Initialisers: each one checked for the statistic it promises."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf

INITS = ["torch", "gaussian", "orthogonal", "identity", "sparse", "zeros"]


def _eig_abs(w):
    return np.abs(np.linalg.eigvals(np.asarray(w, np.float64)))


def _init(cell, key, d):
    # eager: compiling each init costs ~1 s of CPU; jit is checked once below
    return cell.init(key, d)


def test_init_under_jit_equals_eager():
    cell = gf.cells.lstm(8, recurrent_init="orthogonal", forget_bias=1.0)
    eager = cell.init(jax.random.key(0), 3)
    jitted = jax.jit(cell.init, static_argnums=1)(jax.random.key(0), 3)
    for k in eager:
        np.testing.assert_allclose(jitted[k], eager[k], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("gain", [0.5, 1.5])
def test_gaussian_spectral_radius_and_variance(gain):
    """Circular law: eigenvalues of N(0, g²/N) fill the disc of radius g uniformly."""
    n = 256
    cell = gf.cells.rnn(n, recurrent_init="gaussian", gain=gain)
    w = np.asarray(_init(cell, jax.random.key(0), 3)["W_hh"], np.float64)
    # entry variance g²/N: 65536 samples give a relative standard error of 0.6%
    np.testing.assert_allclose(w.var() * n, gain**2, rtol=0.03)
    ev = _eig_abs(w)
    # uniform on the disc: P(|λ| < r) = r²/g², so the median modulus is g/√2
    np.testing.assert_allclose(np.median(ev), gain / np.sqrt(2), rtol=0.04)
    # the edge at N=256 overshoots g by a few % (finite-size fluctuation)
    assert 0.97 * gain < ev.max() < 1.12 * gain


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("gain", [1.0, 1.3])
def test_orthogonal_blocks(kind, gain):
    n = 24
    cell = gf.cells.make(kind, n, recurrent_init="orthogonal", gain=gain)
    w = np.asarray(_init(cell, jax.random.key(1), 5)["W_hh"], np.float64)
    gates = w.shape[0] // n
    for k in range(gates):
        q = w[k * n : (k + 1) * n]
        np.testing.assert_allclose(q.T @ q, gain**2 * np.eye(n), atol=1e-5)
    # the gates are independent draws, not copies
    if gates > 1:
        assert not np.allclose(w[:n], w[n : 2 * n])


def test_identity_irnn():
    cell = gf.cells.rnn(6, "relu", recurrent_init="identity", gain=0.9)
    p = _init(cell, jax.random.key(0), 2)
    np.testing.assert_array_equal(p["W_hh"], 0.9 * np.eye(6, dtype=np.float32))
    lstm = gf.cells.lstm(3, recurrent_init="identity")
    w = np.asarray(_init(lstm, jax.random.key(0), 2)["W_hh"])
    np.testing.assert_array_equal(w, np.tile(np.eye(3, dtype=np.float32), (4, 1)))


@pytest.mark.parametrize(("gain", "fan_in"), [(0.95, 15), (1.2, 4)])
def test_sparse_fan_in_and_radius(gain, fan_in):
    n = 40
    if fan_in == 15:  # the default, reachable by name as a config file writes it
        cell = gf.cells.rnn(n, recurrent_init="sparse", gain=gain)
    else:
        cell = gf.cells.rnn(n, recurrent_init=gf.cells.sparse(gain, fan_in))
    w = np.asarray(_init(cell, jax.random.key(2), 3)["W_hh"])
    np.testing.assert_array_equal((w != 0).sum(axis=1), np.full(n, fan_in))
    np.testing.assert_allclose(_eig_abs(w).max(), gain, rtol=1e-5)


def test_sparse_under_vmap_gives_distinct_draws():
    init = gf.cells.sparse(0.95, 5)
    ws = jax.jit(jax.vmap(lambda k: init(k, (16, 16), jnp.float32)))(
        jax.random.split(jax.random.key(0), 3)
    )
    for w in ws:
        np.testing.assert_allclose(_eig_abs(w).max(), 0.95, rtol=1e-5)
    assert not np.array_equal(ws[0], ws[1])


def test_sparse_default_gain_is_the_same_by_name_and_called_directly():
    key = jax.random.key(4)
    direct = gf.cells.sparse()(key, (12, 12), jnp.float32)
    by_name = gf.cells.initializer("sparse")(key, (12, 12), jnp.float32)
    np.testing.assert_array_equal(np.asarray(direct), np.asarray(by_name))
    np.testing.assert_allclose(_eig_abs(np.asarray(direct)).max(), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_torch_uniform_bounds(kind):
    """PyTorch: every weight and bias is U(-1/√N, 1/√N), whatever the input size."""
    n, d = 50, 7
    p = _init(gf.cells.make(kind, n), jax.random.key(3), d)
    bound = 1.0 / np.sqrt(n)
    for name, a in p.items():
        a = np.asarray(a)
        assert np.abs(a).max() <= bound, name
        # the samples fill the interval: the extreme of thousands of draws is close
        assert np.abs(a).max() > 0.95 * bound, name
        # variance of U(-b, b) is b²/3
        if a.size > 1000:
            np.testing.assert_allclose(a.var(), bound**2 / 3, rtol=0.1)


def test_lstm_forget_bias():
    n = 5
    cell = gf.cells.lstm(n, forget_bias=1.0)
    p = _init(cell, jax.random.key(4), 3)
    ref = _init(gf.cells.lstm(n), jax.random.key(4), 3)
    np.testing.assert_array_equal(p["b_ih"][n : 2 * n], np.ones(n, np.float32))
    np.testing.assert_array_equal(p["b_hh"][n : 2 * n], np.zeros(n, np.float32))
    # the other gates keep PyTorch's init
    for name in ("b_ih", "b_hh"):
        np.testing.assert_array_equal(p[name][:n], ref[name][:n])
        np.testing.assert_array_equal(p[name][2 * n :], ref[name][2 * n :])


def test_lstm_chrono_bias():
    n, t_max = 200, 50.0
    p = _init(gf.cells.lstm(n, chrono_tmax=t_max), jax.random.key(5), 3)
    b_f = np.asarray(p["b_ih"][n : 2 * n])
    b_i = np.asarray(p["b_ih"][:n])
    np.testing.assert_array_equal(b_i, -b_f)
    np.testing.assert_array_equal(p["b_hh"][: 2 * n], np.zeros(2 * n, np.float32))
    # b_f = log(u), u ~ U(1, T_max - 1)
    u = np.exp(b_f)
    assert u.min() >= 1.0 and u.max() <= t_max - 1.0 + 1e-4
    np.testing.assert_allclose(u.mean(), t_max / 2, rtol=0.1)
    assert u.max() > 0.9 * (t_max - 1)


@pytest.mark.parametrize(
    ("kind", "name"),
    [("lstm", name) for name in INITS] + [("rnn", "torch"), ("gru", "orthogonal")],
)
def test_same_key_same_params_different_key_different(kind, name):
    cell = gf.cells.make(kind, 16, recurrent_init=name)
    a = _init(cell, jax.random.key(7), 4)
    b = _init(cell, jax.random.key(7), 4)
    c = _init(cell, jax.random.key(8), 4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    # every draw differs with the key (the deterministic W_hh of identity/zeros aside)
    assert not np.array_equal(a["W_ih"], c["W_ih"])
    if name not in ("identity", "zeros"):
        assert not np.array_equal(a["W_hh"], c["W_hh"])


def test_torch_gain_scales_the_gain_one_draw():
    """gain is the scale of W_hh for torch too: U(-g/√N, g/√N), g times the same
    key's gain-1 draw (a config's gain must not be dropped for this init)."""
    n, key = 40, jax.random.key(4)
    one = np.asarray(gf.cells.initializer("torch")(key, (n, n), jnp.float32))
    got = np.asarray(gf.cells.initializer("torch", gain=2.5)(key, (n, n), jnp.float32))
    np.testing.assert_allclose(got, 2.5 * one, rtol=1e-6)
    assert 0.95 * 2.5 / np.sqrt(n) < np.abs(got).max() <= 2.5 / np.sqrt(n)
    w = _init(gf.cells.rnn(n, gain=2.5), key, 3)["W_hh"]
    assert np.abs(np.asarray(w)).max() > 1.0 / np.sqrt(n)  # beyond gain 1's bound


def test_initializer_resolves_names_and_callables():
    def mine(key, shape, dtype):
        return jnp.full(shape, 0.25, dtype)

    assert gf.cells.initializer(mine) is mine
    p = _init(gf.cells.gru(3, recurrent_init=mine), jax.random.key(0), 2)
    np.testing.assert_array_equal(p["W_hh"], np.full((9, 3), 0.25, np.float32))
    with pytest.raises(ValueError, match="initializer must be one of"):
        gf.cells.initializer("xavier")
    with pytest.raises(ValueError, match="gain applies only"):
        gf.cells.rnn(4, recurrent_init=mine, gain=2.0)
    with pytest.raises(ValueError, match="gain must be >= 0"):
        gf.cells.gaussian(-1.0)
    with pytest.raises(ValueError, match="sparse init needs a square block"):
        gf.cells.sparse()(jax.random.key(0), (3, 4), jnp.float32)


def test_float64_params(x64):
    p = gf.cells.lstm(4).init(jax.random.key(0), 3, jnp.float64)
    assert all(v.dtype == jnp.float64 for v in p.values())
