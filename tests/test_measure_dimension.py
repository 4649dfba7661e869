"""LyapunovSpectrum.kaplan_yorke and .entropy_rate on maps whose spectra are known."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf


def _linear_rnn(w):
    cell = gf.cells.rnn(w.shape[0], "linear", bias_init="zeros")
    params = cell.init(jax.random.key(0), 1, dtype=w.dtype)
    return cell, {**params, "W_hh": w}


def _ky(lam):
    """D_KY by the textbook loop, for a descending spectrum that decides it."""
    total = 0.0
    for j, value in enumerate(lam):
        if total + value < 0:
            return j + total / abs(value)
        total += value
    raise AssertionError("spectrum too short")


def test_constant_linear_map():
    # W = Q diag(e^λ) Qᵀ: a constant, non-diagonal linear map with spectrum λ
    lam = np.array([0.5, 0.1, -0.3, -1.0, -2.0])
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 5)))[0]
    w = jnp.asarray(q @ np.diag(np.exp(lam)) @ q.T, jnp.float32)
    cell, params = _linear_rnn(w)
    xs = jnp.zeros((60, 3, 1), jnp.float32)
    lyap = gf.lyapunov_spectrum(cell, params, xs, warmup=30)
    np.testing.assert_allclose(lyap.exponents, np.broadcast_to(lam, (3, 5)), atol=1e-4)
    ky, rate = jax.jit(lambda s: (s.kaplan_yorke, s.entropy_rate))(lyap)
    assert ky.shape == rate.shape == (3,)
    # partial sums 0.5, 0.6, 0.3, -0.7: j = 3, D = 3 + 0.3 / 1
    assert _ky(lam) == pytest.approx(3.3)
    np.testing.assert_allclose(ky, 3.3, atol=1e-3)
    np.testing.assert_allclose(rate, 0.6, atol=1e-4)


def _skew(p, s, x):
    """Doubling map driving two contractions: a triangular Jacobian whose
    diagonal is the constant (2, 0.25, 0.6), so λ = log(2, 0.6, 0.25)."""
    u, v, w = s[0], s[1], s[2]
    u2 = jnp.mod(2.0 * u + 0.0 * x[0], 1.0)
    v2 = p["a"] * v + jnp.sin(2 * np.pi * u)
    w2 = p["b"] * w + u * v
    s2 = jnp.stack([u2, v2, w2])
    return s2, s2


def test_independent_expanding_and_contracting_directions():
    cell = gf.cells.custom(_skew, jnp.zeros(3), input_size=1)
    params = {"a": jnp.float32(0.25), "b": jnp.float32(0.6)}
    xs = jnp.zeros((1000, 2, 1), jnp.float32)
    carry = jnp.asarray([[0.1234, 0.3, -0.2], [0.377, 0.0, 0.5]], jnp.float32)
    lyap = gf.lyapunov_spectrum(cell, params, xs, carry=carry, warmup=100)
    lam = np.log([2.0, 0.6, 0.25])
    # the off-diagonal coupling costs O(1/T) at finite T
    np.testing.assert_allclose(lyap.exponents, np.broadcast_to(lam, (2, 3)), atol=2e-3)
    want = 2 + (lam[0] + lam[1]) / abs(lam[2])
    assert _ky(lam) == pytest.approx(want)
    measured = np.asarray(lyap.exponents, np.float64)
    np.testing.assert_allclose(lyap.kaplan_yorke, [_ky(m) for m in measured], rtol=1e-5)
    np.testing.assert_allclose(lyap.kaplan_yorke, want, atol=5e-3)
    np.testing.assert_allclose(lyap.entropy_rate, measured[:, 0], rtol=1e-6)
    np.testing.assert_allclose(lyap.entropy_rate, np.log(2.0), atol=2e-3)

    # with the first two exponents only, λ_3 is missing: D_KY undecided, NaN
    # with a warning; the entropy rate is decided (λ_2 < 0)
    two = gf.lyapunov_spectrum(cell, params, xs, carry=carry, warmup=20, k=2)
    with pytest.warns(gf.SpectrumTooShortWarning, match="kaplan_yorke.*2 of 2"):
        assert np.all(np.isnan(two.kaplan_yorke))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(two.entropy_rate, np.log(2.0), atol=2e-3)
    one = gf.lyapunov_spectrum(cell, params, xs, carry=carry, warmup=20, k=1)
    with pytest.warns(gf.SpectrumTooShortWarning, match="entropy_rate"):
        assert np.all(np.isnan(one.entropy_rate))


def _spectrum(lam, resolved):
    lam = jnp.asarray(lam, jnp.float32)
    return gf.LyapunovSpectrum(lam, lam[None], jnp.asarray(resolved))


def test_contracting_map_has_dimension_zero_and_no_entropy():
    s = _spectrum([-0.1, -0.5], [True, True])
    assert float(s.kaplan_yorke) == 0.0
    assert float(s.entropy_rate) == 0.0


def test_unresolved_or_nan_exponents_give_nan_only_where_needed():
    # j = 1 needs λ_1, λ_2; an unresolved λ_3 does not matter to either
    s = _spectrum([0.4, -0.8, -3.0], [True, True, False])
    assert float(s.kaplan_yorke) == pytest.approx(1.5)
    assert float(s.entropy_rate) == pytest.approx(0.4)
    s = _spectrum([0.4, -0.8, -3.0], [True, False, True])
    assert np.isnan(s.kaplan_yorke)
    # an unresolved negative exponent is an upper bound: still not positive
    assert float(s.entropy_rate) == pytest.approx(0.4)
    s = _spectrum([0.4, 0.1, -3.0], [True, False, True])
    assert np.isnan(s.entropy_rate)
    s = _spectrum([0.4, np.nan, -3.0], [True, True, True])
    assert np.isnan(s.kaplan_yorke) and np.isnan(s.entropy_rate)
