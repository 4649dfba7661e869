"""gf.hidden_grad_norms and gf.param_grad_by_step against closed forms and jax.grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf


def linear_rnn(w, input_size=1):
    n = w.shape[0]
    cell = gf.cells.rnn(n, "linear", bias_init="zeros")
    params = cell.init(jax.random.key(0), input_size, dtype=w.dtype)
    return cell, {**params, "W_hh": w}


def rand_orthogonal(n, seed=0, dtype=np.float64):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return q.astype(dtype)


def mixed_cells():
    return {
        "rnn": gf.cells.rnn(5),
        "lstm": gf.cells.lstm(5),
        "gru": gf.cells.gru(5),
        "stack": gf.cells.stack([gf.cells.lstm(4), gf.cells.gru(5)]),
    }


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("log10", [False, True])
def test_linear_rnn_last_step_loss_matrix_powers(log10):
    """‖∂L/∂h_t‖ = ‖(Wᵀ)^(T−1−t) h_{T−1}‖ for L = ½‖h_{T−1}‖², per batch element."""
    n, steps = 6, 30
    w = 0.9 * np.random.default_rng(1).normal(size=(n, n)) / np.sqrt(n)
    cell, params = linear_rnn(jnp.asarray(w), input_size=2)
    xs = jax.random.normal(jax.random.key(2), (steps, 3, 2), jnp.float64)

    def loss(hs):
        return 0.5 * jnp.sum(hs[-1] ** 2)

    out = jax.jit(lambda p, x: gf.hidden_grad_norms(cell, p, x, loss, log10=log10))(
        params, xs
    )
    _, hs = gf.unroll(cell, params, xs)
    want = np.empty((steps, 3))
    for b in range(3):
        g = np.asarray(hs[-1, b])
        for t in range(steps - 1, -1, -1):
            want[t, b] = np.linalg.norm(g)
            g = w.T @ g
    assert out.shape == (steps, 3)
    got = 10.0 ** np.asarray(out) if log10 else np.asarray(out)
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    ("log10", "remat"), [(False, False), (True, False), (False, 7)]
)
def test_linear_rnn_sum_loss_geometric_sums(log10, remat):
    """W = ρI, L = Σ_t cᵀh_t: ∂L/∂h_t = c (1 − ρ^(T−t)) / (1 − ρ).

    ``remat=7``: 5 checkpointed chunks of 7 and a tail of 5.
    """
    n, steps, rho = 4, 40, 0.8
    cell, params = linear_rnn(rho * jnp.eye(n, dtype=jnp.float64))
    c = jnp.arange(1.0, n + 1.0, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.key(0), (steps, 1), jnp.float64)

    def loss(hs):
        return jnp.sum(hs @ c)

    out = jax.jit(
        lambda p, x: gf.hidden_grad_norms(cell, p, x, loss, log10=log10, remat=remat)
    )(params, xs)
    lags = steps - np.arange(steps)
    want = np.linalg.norm(c) * (1 - rho**lags) / (1 - rho)
    got = 10.0 ** np.asarray(out) if log10 else np.asarray(out)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_log10_mode_survives_float32_underflow():
    """ρ = 0.5 over 400 steps: the plain norms underflow, log10 stays exact."""
    n, steps, rho = 4, 400, 0.5
    cell, params = linear_rnn(jnp.asarray(rho * rand_orthogonal(n, dtype=np.float32)))
    xs = jnp.ones((steps, 1), jnp.float32)

    def loss(hs):
        return jnp.sum(hs[-1] * jnp.asarray([1.0, 0.0, 0.0, 0.0]))

    out = jax.jit(lambda p, x: gf.hidden_grad_norms(cell, p, x, loss, log10=True))(
        params, xs
    )
    want = (steps - 1 - np.arange(steps)) * np.log10(rho)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, want, atol=1e-3)
    plain = gf.hidden_grad_norms(cell, params, xs, loss)
    assert float(plain[0]) == 0.0  # what log10=True exists for


@pytest.mark.parametrize("kind", ["lstm", "stack"])
def test_matches_brute_force_total_derivative(kind):
    """Gated cells and stacks: grad of L through an explicit split at step t."""
    cell = mixed_cells()[kind]
    params = cell.init(jax.random.key(3), input_size=3)
    steps = 8
    xs = jax.random.normal(jax.random.key(4), (steps, 2, 3))

    def loss(hs):
        return jnp.sum(jnp.sin(hs) * jnp.linspace(0.5, 1.5, steps)[:, None, None])

    out = jax.jit(lambda p, x: gf.hidden_grad_norms(cell, p, x, loss))(params, xs)
    out_log = jax.jit(lambda p, x: gf.hidden_grad_norms(cell, p, x, loss, log10=True))(
        params, xs
    )
    np.testing.assert_allclose(out_log, np.log10(out), atol=1e-5)

    top = (lambda c: c[-1]) if cell.layers else (lambda c: c)
    t = 3

    @jax.jit
    def brute(params, xs):
        carry, head = gf.unroll(cell, params, xs[: t + 1])

        def loss_of_h(h):
            new_top = top(carry)._replace(h=h)
            new = (*carry[:-1], new_top) if cell.layers else new_top
            _, tail = gf.unroll(cell, params, xs[t + 1 :], new)
            return loss(jnp.concatenate([head[:t], h[None], tail], axis=0))

        return jnp.linalg.norm(jax.grad(loss_of_h)(head[t]), axis=-1)

    np.testing.assert_allclose(out[t], brute(params, xs), rtol=1e-4)


@pytest.mark.parametrize("kind", ["rnn", "gru", "stack"])
def test_param_grad_by_step_sums_to_jax_grad(kind):
    cell = mixed_cells()[kind]
    params = cell.init(jax.random.key(5), input_size=3)
    steps = 10
    xs = jax.random.normal(jax.random.key(6), (steps, 2, 3))

    def loss(hs):
        return jnp.mean(hs**2) + jnp.sum(hs[-1])

    res = jax.jit(
        lambda p, x: gf.param_grad_by_step(cell, p, x, loss, contributions=True)
    )(params, xs)
    want = jax.grad(lambda p: loss(gf.unroll(cell, p, xs)[1]))(params)
    leaves = jax.tree_util.tree_leaves
    for c, g, acc, n, s, a in zip(
        leaves(res.contributions),
        leaves(want),
        leaves(res.grad),
        leaves(res.norms),
        leaves(res.share),
        leaves(res.alignment),
        strict=True,
    ):
        assert c.shape == (steps, *g.shape)
        np.testing.assert_allclose(jnp.sum(c, axis=0), g, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(acc, g, rtol=1e-4, atol=1e-6)
        flat = np.asarray(c).reshape(steps, -1)
        np.testing.assert_allclose(n, np.linalg.norm(flat, axis=1), rtol=1e-5)
        np.testing.assert_allclose(np.sum(s), 1.0, rtol=1e-5)
        np.testing.assert_allclose(np.sum(a), 1.0, rtol=1e-4)
    assert jax.tree_util.tree_structure(res.norms) == jax.tree_util.tree_structure(
        params
    )


@pytest.mark.usefixtures("x64")
def test_param_grad_by_step_input_weight_closed_form():
    """Linear RNN, one sequence: step t's part of ∂L/∂W_ih is (∂L/∂h_t) x_tᵀ."""
    n, steps = 4, 15
    w = 0.7 * rand_orthogonal(n, seed=3)
    cell, params = linear_rnn(jnp.asarray(w), input_size=2)
    xs = jax.random.normal(jax.random.key(7), (steps, 2), jnp.float64)

    def loss(hs):
        return jnp.sum(hs[-1] ** 2) + jnp.sum(hs[3])

    by_step = jax.jit(lambda p, x: gf.param_grad_by_step(cell, p, x, loss))(params, xs)
    g = gf.hidden_grad_norms(cell, params, xs, loss)
    want = g * np.linalg.norm(np.asarray(xs), axis=-1)
    np.testing.assert_allclose(by_step.norms["W_ih"], want, rtol=1e-10)
    # h_{-1} = 0, so W_hh h_{-1} adds nothing to ∂L/∂W_hh at step 0.
    assert float(by_step.norms["W_hh"][0]) == 0.0
    assert np.all(np.asarray(by_step.norms["W_hh"][1:]) > 0)
    np.testing.assert_allclose(jnp.sum(by_step.share["W_hh"]), 1.0, rtol=1e-12)
