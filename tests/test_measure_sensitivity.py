"""gf.param_sensitivity against the curse-of-memory closed forms and jacfwd."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf


def _linear(normalise):
    """``h_t = λ h_{t−1} + γ x_t``; ``γ = sqrt(1 − λ²)`` (a function of λ) or 1."""

    def step(p, h, x):
        lam = p["lam"]
        gamma = jnp.sqrt(1 - lam**2) if normalise else 1.0
        h = lam * h + gamma * x
        return h, h

    return gf.cells.custom(step, jnp.zeros(1), input_size=1)


@pytest.mark.parametrize("normalise", [False, True])
def test_curse_of_memory_closed_forms(normalise):
    """E[(∂h_t/∂λ)²] → (1+λ²)/(1−λ²)³, and 1/(1−λ²)² with γ = sqrt(1−λ²).

    ∂h_t/∂λ = Σ_k (γ' λ^k + γ k λ^{k−1}) x_{t−k}, so its variance is
    Σ_k (γ' λ^k + γ k λ^{k−1})²: Σ k² q^{k−1} = (1+q)/(1−q)³ (q = λ²) for
    γ = 1; adding γ'² q/(1−q) ... terms, q/(1−q)² − 2q/(1−q)² + (1+q)/(1−q)²
    = 1/(1−q)² for γ = sqrt(1−q). At T = 1000 the missing tail (k ≥ T) is
    below 1e-4 of the sum for λ ≤ 0.99 (checked below), far under the
    Monte-Carlo error.
    """
    lams = np.array([0.5, 0.9, 0.99])
    steps, batch = 1000, 8192
    q = lams**2
    want = 1 / (1 - q) ** 2 if normalise else (1 + q) / (1 - q) ** 3
    k = np.arange(1, 200_000)
    tail = [np.sum(k[k >= steps] ** 2 * qi ** (k[k >= steps] - 1)) for qi in q]
    assert np.all(np.asarray(tail) / ((1 + q) / (1 - q) ** 3) < 1e-4)
    cell = _linear(normalise)
    xs = jax.random.normal(jax.random.key(7), (steps, batch, 1))
    run = jax.jit(
        jax.vmap(lambda lam: gf.param_sensitivity(cell, {"lam": lam}, xs).sq_norms)
    )
    sq = np.asarray(run(jnp.asarray(lams, jnp.float32)), np.float64)
    assert sq.shape == (3, steps, batch)
    last = sq[:, -1]  # one independent sample per sequence
    mean = last.mean(axis=1)
    stderr = last.std(axis=1, ddof=1) / np.sqrt(batch)
    assert np.all(np.abs(mean - want) < 4 * stderr), (mean, want, stderr)
    # the two closed forms differ by far more than that at every λ
    other = (1 + q) / (1 - q) ** 3 if normalise else 1 / (1 - q) ** 2
    assert np.all(np.abs(other - want) > 10 * stderr)


def _brute(cell, params, xs, wrt):
    def hs(p):  # a plain scan of cell.step (the fused LSTM has no forward mode)
        c0 = cell.initial_carry(xs.shape[1:-1])
        return jax.lax.scan(lambda c, x: cell.step(p, c, x), c0, xs)[1]

    jac = jax.jacfwd(hs)(params)
    steps, batch = xs.shape[0], xs.shape[1:-1]
    total = 0.0
    for j, m in zip(
        jax.tree_util.tree_leaves(jac), jax.tree_util.tree_leaves(wrt), strict=True
    ):
        if m:
            total = total + jnp.sum(j.reshape(steps, *batch, -1) ** 2, axis=-1)
    return total


def _diag_step(p, h, x):
    h = jnp.tanh(p["lam"] * h + p["b"] * x)
    return h, h


def _blocks_step(p, h, x):
    # two independent 2-unit blocks: pairs of W's columns conflict within a block
    a = jnp.tanh(p["W"][:2, :2] @ h[:2] + x[:2])
    b = jnp.tanh(p["W"][2:, 2:] @ h[2:] + x[2:])
    h = jnp.concatenate([a, b])
    return h, h


@pytest.mark.parametrize(
    "name, want_jvps",
    [("rnn", 3 * 3 + 3 * 2 + 6), ("lstm", 4 * 2 * 2), ("diag", 1), ("blocks", 4)],
)
def test_exact_equals_jacfwd(name, want_jvps):
    key = jax.random.key(3)
    if name == "rnn":
        cell = gf.cells.rnn(3, "tanh")
        params = cell.init(key, 2)
        wrt = jax.tree_util.tree_map(lambda _: True, params)
    elif name == "lstm":
        cell = gf.cells.lstm(2)
        params = cell.init(key, 2)
        wrt = {k: k == "W_hh" for k in params}
    elif name == "diag":
        cell = gf.cells.custom(_diag_step, jnp.zeros(4), input_size=4)
        params = {"lam": jnp.linspace(0.5, 1.2, 4), "b": jnp.ones(4)}
        wrt = {"lam": True, "b": False}
    else:
        cell = gf.cells.custom(_blocks_step, jnp.zeros(4), input_size=4)
        params = {"W": 0.9 * jax.random.normal(key, (4, 4))}
        wrt = {"W": True}
    size = cell.input_size(params) if name in ("rnn", "lstm") else 4
    xs = jax.random.normal(jax.random.key(4), (15, 2, size))
    sens = jax.jit(lambda p, x: gf.param_sensitivity(cell, p, x, wrt=wrt))(params, xs)
    assert sens.sq_norms.shape == (15, 2)
    assert bool(sens.exact) and int(sens.jvps) == want_jvps
    ref = _brute(cell, params, xs, wrt)
    np.testing.assert_allclose(sens.sq_norms, ref, rtol=2e-5, atol=1e-6 * ref.max())
    np.testing.assert_array_equal(sens.stderr, 0.0)


def test_hutchinson_is_unbiased_with_its_stderr():
    cell = gf.cells.rnn(5, "tanh")
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (15, 3, 2))
    exact = gf.param_sensitivity(cell, params, xs)
    assert int(exact.jvps) == 5 * 5 + 5 * 2 + 10
    est = gf.param_sensitivity(cell, params, xs, probes=32, key=jax.random.key(5))
    assert not bool(est.exact) and int(est.jvps) == 32
    z = (est.sq_norms - exact.sq_norms)[1:] / est.stderr[1:]
    assert np.all(est.stderr[1:] > 0)
    assert np.mean(np.abs(z) < 3) > 0.9
    assert abs(float(np.mean(z))) < 0.5
    # a one-probe estimate has no error estimate
    one = gf.param_sensitivity(cell, params, xs, probes=1)
    assert np.all(np.isnan(one.stderr))


def test_diagonal_structure_is_exact_with_few_probes():
    cell = gf.cells.custom(_diag_step, jnp.zeros(5), input_size=5)
    params = {"lam": jnp.linspace(0.3, 0.99, 5), "b": jnp.ones(5)}
    xs = jax.random.normal(jax.random.key(2), (40, 5))
    # λ_i and b_i both act on unit i only: two directions for ten scalars
    sens = gf.param_sensitivity(cell, params, xs, probes=2)
    assert bool(sens.exact) and int(sens.jvps) == 2
    assert not bool(gf.param_sensitivity(cell, params, xs, probes=1).exact)
    ref = gf.param_sensitivity(cell, params, xs)  # the same directions
    np.testing.assert_allclose(sens.sq_norms, ref.sq_norms, rtol=1e-6)


def test_bad_input():
    cell = gf.cells.rnn(3)
    params = cell.init(jax.random.key(0), 2)
    xs = jnp.zeros((5, 2))
    with pytest.raises(ValueError, match="wrt must be a pytree of bools"):
        gf.param_sensitivity(cell, params, xs, wrt={"W_hh": True})
    with pytest.raises(TypeError, match="wrt must hold Python bools"):
        gf.param_sensitivity(cell, params, xs, wrt={k: 1 for k in params})
    with pytest.raises(ValueError, match="wrt must select at least one"):
        gf.param_sensitivity(cell, params, xs, wrt={k: False for k in params})
    with pytest.raises(ValueError, match="probes"):
        gf.param_sensitivity(cell, params, xs, probes=0)
