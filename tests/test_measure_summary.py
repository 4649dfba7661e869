"""gf.decay_rate, gf.vanishing_bound, and eager errors for bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf


def test_decay_rate_of_exact_exponentials():
    steps = 50
    dist = steps - 1 - np.arange(steps)
    rates = np.array([0.1, -0.05, 0.0])
    norms = 3.0 * np.exp(-dist[:, None] * rates[None])
    fit = jax.jit(gf.decay_rate)(jnp.asarray(norms))
    np.testing.assert_allclose(fit.rate, rates, atol=1e-6)
    np.testing.assert_allclose(fit.half_life[0], np.log(2) / 0.1, rtol=1e-5)
    assert np.isinf(fit.half_life[1]) and np.isinf(fit.half_life[2])
    np.testing.assert_allclose(fit.r2, 1.0, atol=1e-5)
    np.testing.assert_allclose(fit.intercept, np.log(3.0), atol=1e-5)
    logs = gf.decay_rate(jnp.asarray(np.log10(norms)), log10=True)
    np.testing.assert_allclose(logs.rate, rates, atol=1e-6)
    # integer norms (counts, say) are fitted as float32: 1, 2, 4, 8 at distances
    # 3, 2, 1, 0 decay at ln 2 per step back
    ints = gf.decay_rate(jnp.asarray([1, 2, 4, 8], jnp.int32))
    assert ints.rate.dtype == jnp.float32
    np.testing.assert_allclose(ints.rate, np.log(2.0), rtol=1e-6)


def test_decay_rate_window_and_zero_norms():
    """A zero norm (log = -inf) is left out; start/stop pick the fitted steps."""
    dist = 29 - np.arange(30)
    norms = np.exp(-0.2 * dist)
    norms[:10] = 5.0  # a plateau the window skips
    norms[15] = 0.0
    fit = gf.decay_rate(jnp.asarray(norms, jnp.float32), start=10)
    np.testing.assert_allclose(fit.rate, 0.2, rtol=1e-4)
    whole = gf.decay_rate(jnp.asarray(norms, jnp.float32))
    assert float(whole.r2) < 0.9


def test_decay_rate_undefined_fit_is_nan():
    """Issue 10: an all-NaN or all-zero profile reported r2 = 1.0. A fit with
    fewer than 2 usable steps, or a NaN/+inf inside the window, is NaN."""
    dist = 19 - np.arange(20)
    good = np.exp(-0.3 * dist)[:, None]
    one_nan = good.copy()
    one_nan[7] = np.nan
    overflowed = good.copy()
    overflowed[3] = np.inf
    single = np.zeros_like(good)
    single[4] = 1.0
    profiles = np.concatenate(
        [np.full_like(good, np.nan), np.zeros_like(good), one_nan, overflowed, single],
        axis=1,
    )
    fit = jax.jit(gf.decay_rate)(jnp.asarray(profiles, jnp.float32))
    for field in fit:
        assert np.all(np.isnan(np.asarray(field))), field
    ok = gf.decay_rate(jnp.asarray(good, jnp.float32))
    np.testing.assert_allclose(ok.rate, 0.3, rtol=1e-4)
    np.testing.assert_allclose(ok.r2, 1.0, atol=1e-5)


def test_decay_rate_reads_a_grad_norms_record():
    cell = gf.cells.rnn(5, "linear", bias_init="zeros")
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 5)))[0]
    params = {**cell.init(jax.random.key(0), 1), "W_hh": jnp.asarray(0.5 * q)}
    prof = gf.hidden_grad_norms(
        cell, params, jnp.ones((300, 1)), lambda hs: jnp.sum(hs[-1]), log10=True
    )
    fit = gf.decay_rate(prof)  # log space: no underflowed step is lost
    np.testing.assert_allclose(fit.rate, np.log(2.0), rtol=1e-4)
    np.testing.assert_allclose(fit.r2, 1.0, atol=1e-5)


def test_decay_rate_of_jacobian_norms_and_pascanu_bound():
    """ρQ: measured rate −ln ρ; a tanh RNN decays at least as fast as the bound."""
    rho = 0.8
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 5)))[0]
    cell = gf.cells.rnn(5, "linear", bias_init="zeros")
    params = {**cell.init(jax.random.key(0), 1), "W_hh": jnp.asarray(rho * q)}
    fit = gf.decay_rate(gf.jacobian_norms(cell, params, jnp.ones((40, 1))))
    np.testing.assert_allclose(fit.rate, -np.log(rho), rtol=1e-4)
    bound = gf.vanishing_bound(cell, params, activation="linear")
    np.testing.assert_allclose(bound.sigma_max, rho, rtol=1e-5)
    np.testing.assert_allclose(bound.rate_bound, -np.log(rho), rtol=1e-4)
    assert bool(bound.satisfied) and bool(bound.exact)

    tanh = gf.cells.rnn(16, recurrent_init="gaussian", gain=0.9)
    p = tanh.init(jax.random.key(1), 2)
    xs = jax.random.normal(jax.random.key(2), (60, 2))
    measured = gf.decay_rate(gf.jacobian_norms(tanh, p, xs))
    theory = gf.vanishing_bound(tanh, p)
    want = float(np.linalg.svd(np.asarray(p["W_hh"]), compute_uv=False)[0])
    np.testing.assert_allclose(theory.sigma_max, want, rtol=1e-5)
    assert float(measured.rate) >= float(theory.rate_bound)
    sig = gf.vanishing_bound(tanh, p, activation="sigmoid")
    np.testing.assert_allclose(sig.bound, 4.0)
    np.testing.assert_allclose(sig.rate_bound, -np.log(want / 4), rtol=1e-5)


def test_vanishing_bound_gated_and_stacked():
    stack = gf.cells.stack([gf.cells.lstm(4), gf.cells.rnn(3)])
    params = stack.init(jax.random.key(0), 2)
    b = gf.vanishing_bound(stack, params)
    assert b.sigma_max.shape == (2,)
    np.testing.assert_array_equal(b.exact, [False, True])
    want = np.linalg.svd(np.asarray(params[0]["W_hh"]), compute_uv=False)[0]
    np.testing.assert_allclose(b.sigma_max[0], want, rtol=1e-5)
    np.testing.assert_allclose(b.gamma, 1.0)


@pytest.fixture
def small():
    cell = gf.cells.lstm(4)
    return cell, cell.init(jax.random.key(0), 3), jnp.ones((10, 2, 3))


def test_bad_loss_fn(small):
    cell, params, xs = small
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar.*\(10, 2\)"):
        gf.hidden_grad_norms(cell, params, xs, lambda hs: jnp.sum(hs, axis=-1))
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        gf.param_grad_by_step(cell, params, xs, lambda hs: hs)
    with pytest.raises(TypeError, match="loss_fn must be a callable"):
        gf.hidden_grad_norms(cell, params, xs, "mse")
    with pytest.raises(TypeError, match="floating scalar, got dtype int32"):
        gf.hidden_grad_norms(
            cell, params, xs, lambda hs: jnp.sum(hs > 0).astype(jnp.int32)
        )


@pytest.mark.parametrize(
    "fn",
    [
        lambda c, p, x: gf.hidden_grad_norms(c, p, x, jnp.sum),
        lambda c, p, x: gf.param_grad_by_step(c, p, x, jnp.sum),
        gf.jacobian_norms,
        gf.jacobian_singular_values,
        gf.lyapunov_spectrum,
    ],
)
def test_bad_xs(small, fn):
    cell, params, _ = small
    with pytest.raises(ValueError, match=r"xs must have shape \(T, \*batch, 3\)"):
        fn(cell, params, jnp.ones((10,)))
    with pytest.raises(ValueError, match="xs must have last axis input_size=3"):
        fn(cell, params, jnp.ones((10, 2, 5)))
    with pytest.raises(TypeError, match="cell must be a gradflow Cell"):
        fn("lstm", params, jnp.ones((10, 2, 3)))


def test_bad_k_warmup_method(small):
    cell, params, xs = small
    with pytest.raises(ValueError, match=r"k must be <= the state size 8, got 9"):
        gf.jacobian_singular_values(cell, params, xs, k=9)
    with pytest.raises(ValueError, match=r"k must be <= the state size 8, got 9"):
        gf.lyapunov_spectrum(cell, params, xs, k=9)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        gf.lyapunov_spectrum(cell, params, xs, k=0)
    with pytest.raises(ValueError, match="warmup must be < the number of steps"):
        gf.lyapunov_spectrum(cell, params, xs, warmup=10)
    with pytest.raises(ValueError, match="method must be one of"):
        gf.jacobian_norms(cell, params, xs, method="qr")
    with pytest.raises(ValueError, match="start, stop must select at least 2"):
        gf.decay_rate(jnp.ones((5,)), start=4)
    with pytest.raises(TypeError, match="norms must be an array"):
        gf.decay_rate(3.0)
    with pytest.raises(ValueError, match="activation must be one of"):
        gf.vanishing_bound(cell, params, activation="softplus")
    with pytest.raises(TypeError, match="cell must be a gradflow Cell, got str"):
        gf.vanishing_bound("lstm", params)
    with pytest.raises(TypeError, match="lstm cell must be a dict with 'W_hh', got"):
        gf.vanishing_bound(cell, (params["W_hh"],))
    two = gf.cells.stack([cell, cell])
    with pytest.raises(ValueError, match="w_hh is for one cell, got a stack"):
        gf.vanishing_bound(two, None, w_hh=params["W_hh"])
