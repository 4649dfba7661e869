"""The LSTM's and GRU's fused whole-sequence backward pass (gradflow/cells/_fused.py).

References: the same cell stepped by ``lax.scan`` and differentiated by JAX
(``fused=False``), in float64; torch autograd; float64 for saturated units.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import tol

import gradflow as gf

KINDS = ["lstm", "gru"]


def _pair(kind, n=5, **options):
    return gf.cells.make(kind, n, **options), gf.cells.make(kind, n, fused=False)


def _loss(cell):
    """Touches every output: the hidden sequence and the final carry."""

    def loss(params, xs, carry):
        last, hs = gf.unroll(cell, params, xs, carry)
        weights = jnp.linspace(-1.0, 2.0, hs.shape[-1], dtype=hs.dtype)
        leaves = jax.tree_util.tree_leaves(last)
        weighted = jnp.sin(hs) * jnp.broadcast_to(weights, hs.shape)
        return jnp.sum(weighted) + sum(jnp.sum(a**2) for a in leaves)

    return loss


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch", [(), (2, 3)])
def test_gradients_equal_autodiff_of_the_scan(x64, kind, batch):
    fused, plain = _pair(kind)
    assert fused.sequence is not None and plain.sequence is None
    params = fused.init(jax.random.key(0), 4, jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (7, *batch, 4), jnp.float64)
    carry = jax.tree_util.tree_map(
        lambda a: 0.5 * jnp.ones_like(a), fused.initial_carry(batch, jnp.float64)
    )
    got = jax.jit(jax.grad(_loss(fused), argnums=(0, 1, 2)))(params, xs, carry)
    want = jax.jit(jax.grad(_loss(plain), argnums=(0, 1, 2)))(params, xs, carry)
    for g, w in zip(*map(jax.tree_util.tree_leaves, (got, want)), strict=True):
        np.testing.assert_allclose(g, w, rtol=tol(jnp.float64), atol=1e-12)
    out_f = gf.unroll(fused, params, xs, carry)
    out_p = gf.unroll(plain, params, xs, carry)
    # the same sums, in another order (the fused forward's dot takes W_hhᵀ)
    for a, b in zip(*map(jax.tree_util.tree_leaves, (out_f, out_p)), strict=True):
        np.testing.assert_allclose(a, b, rtol=tol(jnp.float64), atol=1e-15)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_torch_autograd(kind):
    torch.manual_seed(3)
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](4, 6)
    x = torch.randn(20, 3, 4)
    out, _ = module(x)
    (out**2).sum().backward()
    cell, params = gf.from_torch(module)
    assert cell.sequence is not None

    def loss(p, xs):
        return jnp.sum(gf.unroll(cell, p, xs)[1] ** 2)

    grads = jax.jit(jax.grad(loss))(params, jnp.asarray(x.numpy()))
    names = {"W_ih": "weight_ih", "W_hh": "weight_hh", "b_ih": "bias_ih"}
    names["b_hh"] = "bias_hh"
    for k, v in grads.items():
        ref = getattr(module, f"{names[k]}_l0").grad.numpy()
        scale = np.max(np.abs(ref))
        np.testing.assert_allclose(v, ref, rtol=0, atol=tol(np.float32) * scale)


@pytest.mark.parametrize("kind, scale", [("lstm", 60.0), ("gru", 150.0)])
def test_saturated_gates_keep_exact_gradients(kind, scale):
    """Inputs drive the gates to |pre-activation| ≈ 10-40, where a float32
    ``1 − tanh²`` is exactly 0: the fused backward keeps the tiny, finite
    gradients that the per-step autodiff (exact ``sech²``, checked against
    float64 in test_activations.py) gives."""
    fused, plain = _pair(kind, n=3)
    params = fused.init(jax.random.key(2), 2)
    params = {**params, "W_ih": params["W_ih"] * scale}
    xs = 0.5 + jax.random.uniform(jax.random.key(3), (6, 2))

    def dxs(cell):
        loss = lambda x: jnp.sum(gf.unroll(cell, params, x)[1][-1])  # noqa: E731
        return np.asarray(jax.jit(jax.grad(loss))(xs))

    got, want = dxs(fused), dxs(plain)
    assert np.all(want != 0.0) and np.any(np.abs(want) < 1e-7)
    np.testing.assert_allclose(got, want, rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_vmap_over_params_equals_one_at_a_time(kind):
    fused, _ = _pair(kind)
    keys = jax.random.split(jax.random.key(4), 3)
    params = jax.vmap(lambda k: fused.init(k, 4))(keys)
    xs = jax.random.normal(jax.random.key(5), (6, 2, 4))
    grad = jax.grad(lambda p: jnp.sum(gf.unroll(fused, p, xs)[1] ** 2))
    got = jax.jit(jax.vmap(grad))(params)
    for s in range(3):
        one = grad(jax.tree_util.tree_map(lambda a, s=s: a[s], params))
        for k in one:
            np.testing.assert_allclose(got[k][s], one[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_forward_mode_needs_fused_false(kind):
    fused, plain = _pair(kind)
    params = plain.init(jax.random.key(6), 4)
    xs = jnp.ones((5, 4))

    def f(cell):
        return lambda x: gf.unroll(cell, params, x)[1]

    _, tangent = jax.jvp(f(plain), (xs,), (xs,))
    want = jax.jacrev(f(fused))(xs)  # reverse mode through the fused rule
    np.testing.assert_allclose(
        tangent, jnp.einsum("tnsd,sd->tn", want, xs), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(f(fused), (xs,), (xs,))


@pytest.mark.parametrize("steps", [1, 2, 7])
def test_reading_ahead_is_the_same_scan(steps):
    """Each step gets its own input, in order, and the same outputs bit for bit."""
    from gradflow.cells._fused import _scan_reading_ahead

    xs = jax.random.normal(jax.random.key(2), (steps, 3, 6))

    def body(carry, x):
        # not commutative in the inputs: a step fed x[t±1] changes the result
        carry = jnp.tanh(carry * 0.9 + x[..., :2] * x[..., 4:])
        return carry, (carry, x[..., 2:4] + carry)

    init = jnp.full((3, 2), 0.25)
    run = jax.jit(lambda f: f(body, init, xs), static_argnums=0)
    got, want = run(_scan_reading_ahead), run(jax.lax.scan)
    for a, b in zip(*map(jax.tree_util.tree_leaves, (got, want)), strict=True):
        np.testing.assert_array_equal(a, b)
