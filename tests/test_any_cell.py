"""Every measurement on Equinox, Flax NNX and custom cells, against brute force.

Each reference is written with the framework's own module in a plain Python
loop (no gradflow scan, no reverse scan): ``jax.grad`` with respect to
additive perturbations of every ``h_t``; ``jax.jacrev`` of the carry map;
``jax.grad`` of the loss for the parameter gradient; QR on ``jacrev``
Jacobians for Lyapunov exponents.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

import gradflow as gf

T, B, D, N = 7, 2, 3, 4
KEY = jax.random.key(0)


def _custom_mgu():
    """A minimal gated unit written for a batch (batched=True), dict params."""
    k = jax.random.split(KEY, 3)
    params = {
        "W": jax.random.normal(k[0], (D, 2 * N)),
        "U": jax.random.normal(k[1], (N, N)),
        "Uf": jax.random.normal(k[2], (N, N)),
    }

    def step(p, h, x):
        xf, xh = jnp.split(x @ p["W"], 2, axis=-1)
        f = jax.nn.sigmoid(xf + h @ p["Uf"])
        h = (1 - f) * h + f * jnp.tanh(xh + (f * h) @ p["U"])
        return h, h

    cell = gf.cells.custom(step, jnp.zeros(N), batched=True, name="mgu")
    own = step  # already batched: the reference loop calls it on (B, ...)
    return cell, params, own, lambda c, h: h


def _eqx(kind):
    module = getattr(eqx.nn, kind)(D, N, key=KEY)
    cell, params = gf.from_equinox(module)
    static = eqx.partition(module, eqx.is_inexact_array)[1]

    def own(p, c, x):
        new = jax.vmap(eqx.combine(p, static))(x, c)
        return new, new[0] if kind == "LSTMCell" else new

    def set_h(c, h):
        return (h, c[1]) if kind == "LSTMCell" else h

    return cell, params, own, set_h


def _flax(kind):
    module = getattr(nnx, kind)(D, N, rngs=nnx.Rngs(0))
    cell, params = gf.from_flax(module)
    graphdef, _, rest = nnx.split(module, nnx.Param, ...)

    def own(p, c, x):
        return nnx.merge(graphdef, p, rest)(c, x)  # Flax cells take a batch

    def set_h(c, h):
        return (c[0], h) if kind == "LSTMCell" else h  # carry (c, h)

    return cell, params, own, set_h


MODELS = {
    "eqx.GRUCell": lambda: _eqx("GRUCell"),
    "eqx.LSTMCell": lambda: _eqx("LSTMCell"),
    "nnx.LSTMCell": lambda: _flax("LSTMCell"),
    "nnx.GRUCell": lambda: _flax("GRUCell"),
    "custom MGU": _custom_mgu,
}


def _xs(scale=1.0):
    return scale * jax.random.normal(jax.random.key(1), (T, B, D))


def loss_fn(hs):
    return jnp.sum(hs[-1] ** 2) + 0.5 * jnp.sum(jnp.sin(hs[T // 2]))


def _zero_carry(cell):
    return cell.initial_carry((B,))


@pytest.mark.parametrize("name", list(MODELS))
def test_hidden_grad_norms_equal_brute_force(name):
    cell, params, own, set_h = MODELS[name]()
    xs = _xs()

    def perturbed_loss(eps):
        c, hs = _zero_carry(cell), []
        for t in range(T):
            c, h = own(params, c, xs[t])
            h = h + eps[t]
            c = set_h(c, h)
            hs.append(h)
        return loss_fn(jnp.stack(hs))

    ref = jnp.linalg.norm(
        jax.jit(jax.grad(perturbed_loss))(jnp.zeros((T, B, N))), axis=-1
    )
    got = jax.jit(lambda p, xs: gf.hidden_grad_norms(cell, p, xs, loss_fn))(params, xs)
    np.testing.assert_allclose(got.norms, ref, rtol=1e-5, atol=1e-7)


def _step_jacobians(cell, own, params, xs):
    """``J_t = ∂s_{t+1}/∂s_t`` ``(B, T, S, S)`` by ``jax.jacrev`` of the module's
    own step on the flattened carry of one example, and the states ``s_t``."""
    c0 = jax.tree_util.tree_map(lambda a: a[0], _zero_carry(cell))
    s0, unravel = ravel_pytree(c0)

    def f(s, x):
        c = jax.tree_util.tree_map(lambda a: a[None], unravel(s))
        new, _ = own(params, c, x[None])
        return ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], new))[0]

    def one(xs1):
        def body(s, x):
            return f(s, x), (jax.jacrev(f)(s, x), s)

        return jax.lax.scan(body, s0, xs1)[1]

    jacs, states = jax.jit(jax.vmap(one, in_axes=1))(xs)
    return np.asarray(jacs, np.float64), states


@pytest.mark.parametrize("name", list(MODELS))
def test_jacobian_norms_equal_jacrev(name):
    cell, params, own, _ = MODELS[name]()
    xs = _xs(2.0)
    got = jax.jit(lambda p, xs: gf.jacobian_norms(cell, p, xs).log10_norms)(params, xs)
    spec = gf.jacobian_singular_values(cell, params, xs, k=3)
    jacs, _ = _step_jacobians(cell, own, params, xs)
    for b in range(B):
        for t in (0, 3, T - 1):
            prod = np.eye(jacs.shape[-1])
            for u in range(t, T):  # ∂s_T/∂s_t = J_{T-1} ... J_t (chain rule)
                prod = jacs[b, u] @ prod
            ref = np.log10(np.linalg.norm(prod, 2))
            np.testing.assert_allclose(got[t, b], ref, atol=2e-3)
            sv = np.linalg.svd(prod, compute_uv=False)[:3]
            np.testing.assert_allclose(
                spec.log10_singular_values[t, b], np.log10(sv), atol=2e-3
            )


@pytest.mark.parametrize("name", list(MODELS))
def test_param_grad_by_step_sums_to_jax_grad(name):
    cell, params, own, _ = MODELS[name]()
    xs = _xs()

    def loss_of(p):
        c, hs = _zero_carry(cell), []
        for t in range(T):
            c, h = own(p, c, xs[t])
            hs.append(h)
        return loss_fn(jnp.stack(hs))

    ref = jax.jit(jax.grad(loss_of))(params)
    got = jax.jit(
        lambda p, xs: gf.param_grad_by_step(cell, p, xs, loss_fn, contributions=True)
    )(params, xs)
    summed = jax.tree_util.tree_map(lambda c: jnp.sum(c, axis=0), got.contributions)
    for a, b, g in zip(
        jax.tree_util.tree_leaves(summed),
        jax.tree_util.tree_leaves(ref),
        jax.tree_util.tree_leaves(got.grad),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(g, b, rtol=1e-4, atol=1e-6)
    # the shares come under the user's own tree: same structure as the params
    assert jax.tree_util.tree_structure(got.share) == jax.tree_util.tree_structure(
        params
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_lyapunov_equals_qr_on_jacrev(name):
    cell, params, own, _ = MODELS[name]()
    xs = _xs(2.0)
    size = 2 * N if "LSTM" in name else N
    got = jax.jit(
        lambda p, xs: gf.lyapunov_spectrum(cell, p, xs, k=size, warmup=0).exponents
    )(params, xs)
    frame = np.linalg.qr(
        np.asarray(jax.random.normal(jax.random.key(0), (size, size)), np.float64)
    )[0]
    jacs, _ = _step_jacobians(cell, own, params, xs)
    for b in range(B):
        q, logs = frame, []
        for t in range(T):
            q, r = np.linalg.qr(jacs[b, t] @ q)
            logs.append(np.log(np.abs(np.diagonal(r))))
        ref = -np.sort(-np.mean(logs, axis=0))
        np.testing.assert_allclose(got[b, 0], ref[0], atol=1e-4)  # λ₁
        # lower exponents rest on float32 QR of shrinking columns: looser
        np.testing.assert_allclose(got[b, : size // 2], ref[: size // 2], atol=1e-3)


# --- every layer of a stack ----------------------------------------------------


def _stack():
    layers = [gf.cells.lstm(N), gf.cells.gru(N + 1), gf.cells.rnn(N)]
    cell = gf.cells.stack(layers)
    return cell, cell.init(KEY, D)


def test_all_layers_equal_brute_force():
    cell, params = _stack()
    xs = _xs(2.0)

    def perturbed_loss(eps):
        carry, hs = list(cell.initial_carry((B,))), []
        for t in range(T):
            x = xs[t]
            for i, (layer, p) in enumerate(zip(cell.layers, params, strict=True)):
                c, h = layer.step(p, carry[i], x)
                h = h + eps[i][t]
                carry[i] = c._replace(h=h)
                x = h
            hs.append(x)
        return loss_fn(jnp.stack(hs))

    eps = [jnp.zeros((T, B, layer.hidden_size)) for layer in cell.layers]
    ref = [jnp.linalg.norm(g, axis=-1) for g in jax.jit(jax.grad(perturbed_loss))(eps)]
    got = jax.jit(
        lambda p, xs: gf.hidden_grad_norms(cell, p, xs, loss_fn, layers="all")
    )(params, xs)
    assert got.norms.shape == got.log10_norms.shape == (3, T, B)
    assert got.overflow.shape == (3, B)
    np.testing.assert_allclose(got.norms, jnp.stack(ref), rtol=1e-5, atol=1e-8)
    top = gf.hidden_grad_norms(cell, params, xs, loss_fn)
    np.testing.assert_allclose(got.norms[-1], top.norms, rtol=1e-6)


def test_all_layers_with_remat_and_log10_and_one_layer():
    cell, params = _stack()
    xs = _xs(2.0)
    a = gf.hidden_grad_norms(cell, params, xs, loss_fn, layers="all", log10=True)
    b = gf.hidden_grad_norms(cell, params, xs, loss_fn, layers="all", remat=3)
    assert a.norms is None
    np.testing.assert_allclose(a.log10_norms, b.log10_norms, atol=1e-5)
    single = gf.cells.lstm(N)
    p = single.init(KEY, D)
    one = gf.hidden_grad_norms(single, p, xs, loss_fn, layers="all")
    top = gf.hidden_grad_norms(single, p, xs, loss_fn)
    assert one.norms.shape == (1, T, B)
    np.testing.assert_allclose(one.norms[0], top.norms, rtol=1e-6)


def test_layers_must_be_top_or_all():
    cell, params = _stack()
    with pytest.raises(ValueError, match=r"layers must be one of \('top', 'all'\)"):
        gf.hidden_grad_norms(cell, params, _xs(), loss_fn, layers="every")


def test_vanishing_bound_needs_w_hh_for_custom_cells():
    module = eqx.nn.GRUCell(D, N, key=KEY)
    cell, params = gf.from_equinox(module)
    with pytest.raises(TypeError, match=r"'GRUCell' \(custom\) has no W_hh.*w_hh="):
        gf.vanishing_bound(cell, params)
    got = gf.vanishing_bound(cell, params, w_hh=params.weight_hh)
    sigma = np.linalg.norm(np.asarray(module.weight_hh, np.float64), 2)
    np.testing.assert_allclose(got.sigma_max, sigma, rtol=1e-5)
    assert not bool(got.exact)
    with pytest.raises(ValueError, match=r"w_hh must be a recurrent matrix"):
        gf.vanishing_bound(cell, params, w_hh=jnp.ones(N))
