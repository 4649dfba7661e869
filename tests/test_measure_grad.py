"""gf.hidden_grad_norms and gf.param_grad_by_step against closed forms and jax.grad."""

import warnings

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

    res = jax.jit(lambda p, x: gf.hidden_grad_norms(cell, p, x, loss, log10=log10))(
        params, xs
    )
    out = res.log10_norms if log10 else res.norms
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
    ("log10", "remat"), [(False, False), (True, False), (False, 7), (True, 7)]
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

    res = jax.jit(
        lambda p, x: gf.hidden_grad_norms(cell, p, x, loss, log10=log10, remat=remat)
    )(params, xs)
    out = res.log10_norms if log10 else res.norms
    lags = steps - np.arange(steps)
    want = np.linalg.norm(c) * (1 - rho**lags) / (1 - rho)
    got = 10.0 ** np.asarray(out) if log10 else np.asarray(out)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def orthogonal_rnn_last_step(rho, steps):
    """Linear RNN with ``W = ρQ``: ``‖∂L/∂h_t‖ = ρ^(T−1−t)`` for ``L = e₁ᵀh_{T−1}``."""
    n = 4
    cell, params = linear_rnn(jnp.asarray(rho * rand_orthogonal(n, dtype=np.float32)))
    xs = jnp.ones((steps, 1), jnp.float32)
    e1 = jnp.asarray([1.0, 0.0, 0.0, 0.0])

    def loss(hs):
        return jnp.sum(hs[-1] * e1)

    want = (steps - 1 - np.arange(steps)) * np.log10(rho)
    return cell, params, xs, loss, want


def test_log10_mode_survives_float32_underflow():
    """ρ = 0.5 over 400 steps: log10 stays exact, plain norms read 0 and say so."""
    cell, params, xs, loss, want = orthogonal_rnn_last_step(0.5, 400)
    out = jax.jit(lambda p, x: gf.hidden_grad_norms(cell, p, x, loss, log10=True))(
        params, xs
    )
    assert out.norms is None
    assert np.all(np.isfinite(out.log10_norms))
    np.testing.assert_allclose(out.log10_norms, want, atol=1e-3)
    with pytest.warns(gf.GradNormRangeWarning, match="underflowed") as record:
        plain = jax.block_until_ready(gf.hidden_grad_norms(cell, params, xs, loss))
    assert len(record) == 1
    below = want < np.log10(np.finfo(np.float32).tiny)
    assert int(plain.underflow) == int(below.sum()) > 0
    assert int(plain.overflow) == 0
    np.testing.assert_array_equal(np.asarray(plain.norms)[below], 0.0)


def test_plain_mode_overflow_reads_inf_with_one_warning():
    """Issue 10: W = 1.2·Q, T = 1000 read 0.0 for 523 steps whose truth is
    10^37 to 10^79. Past float32's range the plain norm is inf (counted, one
    warning); inside it equals the exact value to 1e-3."""
    cell, params, xs, loss, want = orthogonal_rnn_last_step(1.2, 1000)
    with pytest.warns(gf.GradNormRangeWarning, match="log10=True") as record:
        out = jax.block_until_ready(
            jax.jit(lambda p, x: gf.hidden_grad_norms(cell, p, x, loss))(params, xs)
        )
    assert len(record) == 1
    assert "overflowed" in str(record[0].message)
    np.testing.assert_allclose(out.log10_norms, want, rtol=1e-5)
    norms = np.asarray(out.norms, np.float64)
    above = want > np.log10(np.finfo(np.float32).max)
    assert int(out.overflow) == int(above.sum()) > 500
    assert int(out.underflow) == 0
    assert np.all(np.isposinf(norms[above]))
    assert not np.any(norms == 0.0)
    np.testing.assert_allclose(norms[~above], 10.0 ** want[~above], rtol=1e-3)


def test_in_range_plain_norms_give_no_warning():
    cell, params, xs, loss, want = orthogonal_rnn_last_step(0.9, 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = jax.block_until_ready(gf.hidden_grad_norms(cell, params, xs, loss))
    np.testing.assert_allclose(out.norms, 10.0**want, rtol=1e-4)
    assert int(out.overflow) == int(out.underflow) == 0


def tanh_rnn(n=5, seed=0):
    cell = gf.cells.rnn(n)
    return cell, cell.init(jax.random.key(seed), input_size=3)


def test_nan_in_gives_nan_out_everywhere():
    """Issue 10: a NaN in W_hh, a NaN loss or a NaN input under jit gave norms
    of 0.0 (and param_grad_by_step shares of 0 beside a NaN grad)."""
    cell, params = tanh_rnn()
    xs = jax.random.normal(jax.random.key(1), (12, 2, 3))

    def loss(hs):
        return jnp.sum(hs[-1] ** 2)

    bad_w = {**params, "W_hh": params["W_hh"].at[1, 2].set(jnp.nan)}
    bad_xs = xs.at[5, 0, 1].set(jnp.nan)  # sequence 0 only
    cases = {
        "W_hh": (bad_w, xs, loss, (slice(None), slice(None))),
        "loss": (params, xs, lambda hs: jnp.nan * loss(hs), (slice(None),) * 2),
        "xs": (params, bad_xs, loss, (slice(None), 0)),
    }
    measure = jax.jit(
        lambda p, x, f: gf.hidden_grad_norms(cell, p, x, f), static_argnums=2
    )
    by_step = jax.jit(
        lambda p, x, f: gf.param_grad_by_step(cell, p, x, f), static_argnums=2
    )
    for name, (p, x, f, where) in cases.items():
        out = measure(p, x, f)
        assert np.all(np.isnan(np.asarray(out.norms)[where])), name
        assert np.all(np.isnan(np.asarray(out.log10_norms)[where])), name
        if name != "xs":
            steps = by_step(p, x, f)
            for leaf in ("norms", "share", "alignment", "grad"):
                vals = np.asarray(getattr(steps, leaf)["W_hh"])
                assert np.all(np.isnan(vals)), (name, leaf)
    # the clean sequence next to the NaN one is unaffected
    clean = measure(params, bad_xs, loss).norms[:, 1]
    np.testing.assert_allclose(clean, measure(params, xs, loss).norms[:, 1])
    assert np.all(np.isfinite(clean))


def brute_force_norms(cell, params, xs, loss):
    """``‖∂L/∂h_t‖`` by plain autodiff: a perturbation ``e_t`` added to ``h_t``.

    An independent re-implementation (plain ``lax.scan`` over ``cell.step``),
    valid while the norms stay inside float32's range.
    """

    def loss_of(eps):
        def body(c, inp):
            x_t, e_t = inp
            c, h = cell.step(params, c, x_t)
            if cell.layers:
                c = (*c[:-1], c[-1]._replace(h=c[-1].h + e_t))
            else:
                c = c._replace(h=c.h + e_t)
            return c, h + e_t

        carry = cell.initial_carry(xs.shape[1:-1], xs.dtype)
        return loss(jax.lax.scan(body, carry, (xs, eps))[1])

    eps = jnp.zeros((*xs.shape[:-1], cell.hidden_size), xs.dtype)
    return jnp.linalg.norm(jax.grad(loss_of)(eps), axis=-1)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "stack"])
@pytest.mark.parametrize("remat", [False, 3])
def test_matches_brute_force_total_derivative(kind, remat):
    """Nonlinear cells driven by a nonzero input, every step: the reverse scan
    must take each step's Jacobian at the carry entering that step."""
    cell = mixed_cells()[kind]
    params = cell.init(jax.random.key(3), input_size=3)
    steps = 8
    xs = 2.0 * jax.random.normal(jax.random.key(4), (steps, 2, 3))

    def loss(hs):
        return jnp.sum(jnp.sin(hs) * jnp.linspace(0.5, 1.5, steps)[:, None, None])

    out = jax.jit(lambda p, x: gf.hidden_grad_norms(cell, p, x, loss, remat=remat))(
        params, xs
    )
    want = jax.jit(lambda p, x: brute_force_norms(cell, p, x, loss))(params, xs)
    np.testing.assert_allclose(out.norms, want, rtol=1e-4)
    np.testing.assert_allclose(out.log10_norms, np.log10(want), atol=1e-4)


def test_matches_brute_force_split_at_one_step():
    """A stack: grad of L through an explicit split of the sequence at step t."""
    cell = mixed_cells()["stack"]
    params = cell.init(jax.random.key(3), input_size=3)
    steps = 8
    xs = jax.random.normal(jax.random.key(4), (steps, 2, 3))

    def loss(hs):
        return jnp.sum(jnp.sin(hs) * jnp.linspace(0.5, 1.5, steps)[:, None, None])

    out = jax.jit(lambda p, x: gf.hidden_grad_norms(cell, p, x, loss).norms)(params, xs)
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


@pytest.mark.parametrize(
    ("kind", "remat"), [("rnn", False), ("gru", 4), ("stack", True)]
)
def test_param_grad_by_step_sums_to_jax_grad(kind, remat):
    """``remat=4``: chunks of 4 and a tail of 2; ``True``: chunks of 4 (√10)."""
    cell = mixed_cells()[kind]
    params = cell.init(jax.random.key(5), input_size=3)
    steps = 10
    xs = jax.random.normal(jax.random.key(6), (steps, 2, 3))

    def loss(hs):
        return jnp.mean(hs**2) + jnp.sum(hs[-1])

    res = jax.jit(
        lambda p, x: gf.param_grad_by_step(
            cell, p, x, loss, contributions=True, remat=remat
        )
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
    # ∂L/∂h_t by hand: h_t = W h_{t−1} + W_ih x_t, so
    # ∂L/∂h_t = (Wᵀ)^(T−1−t) 2h_{T−1} + [t ≤ 3] (Wᵀ)^(3−t) 1.
    w_ih = np.asarray(params["W_ih"])
    x = np.asarray(xs)
    h, hs = np.zeros(n), []
    for t in range(steps):
        h = w @ h + w_ih @ x[t]
        hs.append(h)
    g, g3 = 2.0 * hs[-1], np.ones(n)
    grads = np.empty((steps, n))
    for t in range(steps - 1, -1, -1):
        grads[t] = g + (g3 if t <= 3 else 0.0)
        g = w.T @ g
        if t <= 3:
            g3 = w.T @ g3
    want = np.linalg.norm(grads, axis=1) * np.linalg.norm(x, axis=-1)
    np.testing.assert_allclose(by_step.norms["W_ih"], want, rtol=1e-10)
    # h_{-1} = 0, so W_hh h_{-1} adds nothing to ∂L/∂W_hh at step 0.
    assert float(by_step.norms["W_hh"][0]) == 0.0
    assert np.all(np.asarray(by_step.norms["W_hh"][1:]) > 0)
    np.testing.assert_allclose(jnp.sum(by_step.share["W_hh"]), 1.0, rtol=1e-12)


def test_h_outside_the_carry_warns_and_measures_its_own_term():
    """h = 2 c is no carry leaf: no later step reads it, so dL/dh_t is the loss's
    own term, w, at every step (the carry's gradient through time is not added),
    and a warning says to return the carry's leaf instead."""
    w = jnp.asarray([3.0, -4.0])  # ||w|| = 5
    cell = gf.cells.custom(
        lambda p, c, x: (0.5 * c + x, 2.0 * (0.5 * c + x)), jnp.zeros(2), name="dbl"
    )
    xs = jnp.ones((6, 2))
    with pytest.warns(UserWarning, match=r"output h of cell 'dbl' \(layer\(s\) \[0\]"):
        got = gf.hidden_grad_norms(cell, {}, xs, lambda hs: jnp.sum(hs @ w))
    np.testing.assert_allclose(got.norms, np.full(6, 5.0), rtol=1e-6)


def test_param_grad_by_step_overflow_warns_as_hidden_grad_norms_does():
    """W = 1.2·Q over 1000 steps: the early steps' contributions pass 10^38."""
    cell, params, xs, loss, _ = orthogonal_rnn_last_step(1.2, 1000)
    by_step = jax.jit(lambda p, x: gf.param_grad_by_step(cell, p, x, loss))
    with pytest.warns(gf.GradNormRangeWarning, match="float32 overflowed") as record:
        out = jax.block_until_ready(by_step(params, xs))
    assert len(record) == 1
    bad = int(np.sum(~np.isfinite(np.asarray(out.norms["W_ih"]))))
    assert bad > 500 and f"['W_ih'] at {bad} of 1000 steps" in str(record[0].message)
    # Inside float32's range: no warning.
    cell, params, xs, loss, _ = orthogonal_rnn_last_step(0.9, 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error", gf.GradNormRangeWarning)
        jax.block_until_ready(gf.param_grad_by_step(cell, params, xs, loss))
