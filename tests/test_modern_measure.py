"""Measurements on the cells linear in their state: closed forms of their
Jacobian products (the exact diagonal path and the generic one), Lyapunov
exponents, fixed points, gradient norms against brute force, jit and vmap."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf

H = 4


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_lru_input_free_closed_form_at_100k_steps():
    """log10 ‖∂s_T/∂s_t‖ = (T − t) · log10 max|λ| to 1e-5 relative, float32."""
    steps = 100_000
    cell = gf.cells.lru(H, r_min=0.99, r_max=0.99999)
    params = cell.init(jax.random.key(0), H)
    xs = jnp.zeros((steps, H))
    got = jax.jit(lambda p, x: gf.jacobian_norms(cell, p, x).log10_norms)(params, xs)
    nu = np.exp(np.asarray(params["nu_log"], np.float64))
    ref = np.arange(steps, 0, -1) * (-nu.min() / math.log(10))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert ref[0] < -5  # a product far below float32's resolution of 1


def _gates(kind, params, xs):
    """Per step and unit, the diagonal of each step's Jacobian, by hand."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(xs, np.float64)
    if kind == "min_gru":
        return 1 - _sigmoid(x @ p["W_z"].T + p["b_z"])  # Π(1 − z_t)
    if kind == "min_lstm":
        f = _sigmoid(x @ p["W_f"].T + p["b_f"])
        i = _sigmoid(x @ p["W_i"].T + p["b_i"])
        return f / (f + i)
    delta = np.log1p(np.exp(x @ p["W_delta"].T + p["b_delta"]))  # (T, H)
    return np.exp(delta[:, :, None] * -np.exp(p["A_log"])).reshape(len(x), -1)


@pytest.mark.parametrize("kind", ["min_gru", "min_lstm", "selective_ssm"])
@pytest.mark.parametrize("method", ["auto", "svd"])
def test_diagonal_products_closed_form(kind, method):
    """minGRU: Π(1 − z_t) per unit; minLSTM: Π f'_t; the selective SSM:
    exp(Σ Δ_t A) per unit and state; by the exact path and the generic SVD."""
    cell = gf.cells.make(kind, H, **({"state_size": 3} if "ssm" in kind else {}))
    params = cell.init(jax.random.key(1), H)
    xs = 2.0 * jax.random.normal(jax.random.key(2), (25, H))
    gains = _gates(kind, params, xs)
    logs = np.cumsum(np.log(gains)[::-1], axis=0)[::-1] / math.log(10)
    ref = -np.sort(-logs, axis=1)
    size = gains.shape[1]
    spec = jax.jit(
        lambda p, x: gf.jacobian_singular_values(cell, p, x, k=size, method=method)
    )(params, xs)
    norms = gf.jacobian_norms(
        cell, params, xs, method="power" if method == "svd" else "auto"
    )
    atol = 1e-4 if method == "auto" else 2e-3
    np.testing.assert_allclose(spec.log10_singular_values, ref, rtol=1e-5, atol=atol)
    np.testing.assert_allclose(norms.log10_norms, ref[:, 0], rtol=1e-5, atol=atol)
    if method == "auto":
        assert bool(jnp.all(spec.log10_floor == -jnp.inf))


def test_lru_generic_path_agrees_with_the_closed_form():
    cell = gf.cells.lru(H, state_size=3, r_min=0.5, r_max=0.9)
    params = cell.init(jax.random.key(3), H)
    xs = jax.random.normal(jax.random.key(4), (40, H))
    mag = np.exp(-np.exp(np.asarray(params["nu_log"], np.float64)))
    lags = np.arange(40, 0, -1)[:, None]
    ref = np.sort(np.repeat(lags * np.log10(mag)[None], 2, axis=1), axis=1)[:, ::-1]
    spec = gf.jacobian_singular_values(cell, params, xs, method="svd")
    np.testing.assert_allclose(spec.log10_singular_values, ref, atol=2e-3)
    fast = gf.jacobian_singular_values(cell, params, xs)
    np.testing.assert_allclose(fast.log10_singular_values, ref, rtol=1e-5, atol=1e-5)


def test_diagonal_path_under_vmap_remat_and_nan():
    """vmap over seeds, chunks that do not divide T, NaN in gives NaN out."""
    cell = gf.cells.min_gru(H)
    params = jax.vmap(lambda k: cell.init(k, H))(jax.random.split(jax.random.key(5), 2))
    xs = jax.random.normal(jax.random.key(6), (23, 2, H))
    f = jax.jit(
        lambda p, x, r: gf.jacobian_norms(cell, p, x, remat=r).log10_norms,
        static_argnums=2,
    )
    full = jax.vmap(lambda p: f(p, xs, False))(params)
    chunked = jax.vmap(lambda p: f(p, xs, 5))(params)
    one = f(jax.tree_util.tree_map(lambda a: a[1], params), xs, False)
    assert full.shape == (2, 23, 2)
    np.testing.assert_allclose(chunked, full, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(full[1], one, rtol=1e-6, atol=1e-6)
    bad = f(
        params_0 := jax.tree_util.tree_map(lambda a: a[0], params),
        xs.at[10, 0].set(jnp.nan),
        False,
    )
    assert bool(jnp.all(jnp.isnan(bad[:11, 0]))) and bool(
        jnp.all(jnp.isfinite(bad[11:]))
    )
    assert bool(jnp.all(jnp.isfinite(bad[:, 1])))
    del params_0


def test_diagonal_method_needs_a_diagonal_cell():
    cell = gf.cells.lstm(H)
    params = cell.init(jax.random.key(0), H)
    with pytest.raises(ValueError, match=r"method='diagonal'.*got a lstm cell"):
        gf.jacobian_norms(cell, params, jnp.ones((3, H)), method="diagonal")


def test_lyapunov_exponents_of_the_lru_are_log_abs_lambda():
    cell = gf.cells.lru(H, state_size=3, r_min=0.3, r_max=0.9)
    params = cell.init(jax.random.key(7), H)
    xs = jax.random.normal(jax.random.key(8), (2000, H))
    lyap = gf.lyapunov_spectrum(cell, params, xs, k=6, warmup=0)
    ref = np.sort(np.repeat(-np.exp(np.asarray(params["nu_log"], np.float64)), 2))
    # a finite-T average: O(1/T) from the start frame's transient
    np.testing.assert_allclose(lyap.exponents, ref[::-1], atol=2e-3)


def test_fixed_points_of_the_lru_and_min_gru(x64):
    """LRU: h* = γBx/(1 − λ) with eigenvalues λ, λ̄; minGRU: h* = h̃ with 1 − z."""
    lru = gf.cells.lru(H, state_size=2, r_min=0.5, r_max=0.8)
    p = lru.init(jax.random.key(9), H, jnp.float64)
    x = jnp.linspace(-1.0, 1.0, H)
    starts = gf.cells.LRUCarry(*(jnp.zeros((1, 2), jnp.float64),) * 2)
    fp = gf.fixed_points(lru, p, x, starts)
    q = {k: np.asarray(v) for k, v in p.items()}
    lam = np.exp(-np.exp(q["nu_log"]) + 1j * np.exp(q["theta_log"]))
    star = np.exp(q["gamma_log"]) * ((q["B_re"] + 1j * q["B_im"]) @ np.asarray(x))
    star = star / (1 - lam)
    np.testing.assert_allclose(
        fp.states[0], np.concatenate([star.real, star.imag]), rtol=1e-8, atol=1e-10
    )
    eig = np.asarray(fp.eigenvalues[0])
    want = np.concatenate([lam, lam.conj()])
    np.testing.assert_allclose(np.sort_complex(eig), np.sort_complex(want), atol=1e-10)

    gru = gf.cells.min_gru(H)
    p = gru.init(jax.random.key(10), H, jnp.float64)
    fp = gf.fixed_points(
        gru, p, x, gf.cells.MinGRUCarry(jnp.zeros((1, H), jnp.float64))
    )
    q = {k: np.asarray(v) for k, v in p.items()}
    np.testing.assert_allclose(
        fp.states[0], q["W_h"] @ np.asarray(x) + q["b_h"], rtol=1e-8, atol=1e-10
    )
    z = _sigmoid(q["W_z"] @ np.asarray(x) + q["b_z"])
    np.testing.assert_allclose(
        np.sort(np.real(fp.eigenvalues[0])), np.sort(1 - z), atol=1e-10
    )


def loss_fn(hs):
    return jnp.sum(hs[-1] ** 2) + 0.5 * jnp.sum(jnp.sin(hs[3]))


@pytest.mark.parametrize("kind", ["min_gru", "lru"])
def test_hidden_grad_norms_against_brute_force(kind):
    """min_gru: ‖∂L/∂h_t‖; lru (a readout output): of='state', ‖∂L/∂s_t‖ of
    the carry entering step t, by jax.grad of additive perturbations."""
    steps = 8
    cell = gf.cells.make(kind, H)
    params = cell.init(jax.random.key(11), H)
    xs = jax.random.normal(jax.random.key(12), (steps, 2, H))
    carry0 = cell.initial_carry((2,))

    def perturbed(eps):
        c, hs = carry0, []
        for t in range(steps):
            if kind == "lru":  # perturb the state entering step t
                c = gf.cells.LRUCarry(c.re + eps[t][..., :H], c.im + eps[t][..., H:])
            c, h = cell.step(params, c, xs[t])
            if kind == "min_gru":  # perturb the output (the carry's h)
                h = h + eps[t]
                c = gf.cells.MinGRUCarry(h)
            hs.append(h)
        return loss_fn(jnp.stack(hs))

    width = 2 * H if kind == "lru" else H
    ref = jnp.linalg.norm(jax.grad(perturbed)(jnp.zeros((steps, 2, width))), axis=-1)
    of = "state" if kind == "lru" else "output"
    got = gf.hidden_grad_norms(cell, params, xs, loss_fn, of=of)
    np.testing.assert_allclose(got.norms, ref, rtol=1e-5, atol=1e-7)
    if kind == "lru":
        with pytest.warns(UserWarning, match="no leaf of its carry"):
            gf.hidden_grad_norms(cell, params, xs, loss_fn)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gf.hidden_grad_norms(cell, params, xs, loss_fn)


def test_hidden_grad_norms_state_with_layers_all_is_an_error():
    cell = gf.cells.lru(H)
    params = cell.init(jax.random.key(0), H)
    with pytest.raises(ValueError, match=r"of='state'.*layers='all'"):
        gf.hidden_grad_norms(
            cell, params, jnp.ones((3, H)), loss_fn, of="state", layers="all"
        )


def test_param_grad_by_step_sums_to_jax_grad():
    cell = gf.cells.lru(H, state_size=2)
    params = cell.init(jax.random.key(13), H)
    xs = jax.random.normal(jax.random.key(14), (6, 2, H))
    ref = jax.grad(lambda p: loss_fn(gf.unroll(cell._replace(linear=None), p, xs)[1]))(
        params
    )
    got = gf.param_grad_by_step(cell, params, xs, loss_fn, contributions=True)
    for name, g in ref.items():
        np.testing.assert_allclose(
            jnp.sum(got.contributions[name], 0), g, rtol=1e-4, atol=1e-6
        )
        np.testing.assert_allclose(jnp.sum(got.share[name]), 1.0, rtol=1e-5)
