"""The cells' tanh keeps an exact derivative where tanh(x) has rounded to ±1."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow.cells._activations import tanh


@pytest.mark.parametrize("x", [-30.0, -12.0, -0.3, 0.0, 1e-4, 2.0, 9.5, 20.0, 40.0])
def test_derivative_is_sech_squared_to_float32_precision(x):
    got = float(jax.jit(jax.grad(tanh))(jnp.float32(x)))
    want = 1.0 / np.cosh(np.float64(x)) ** 2
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert float(tanh(jnp.float32(x))) == float(jnp.tanh(jnp.float32(x)))


def test_plain_autodiff_of_tanh_loses_it():
    # why the custom rule exists: 1 - tanh(x)^2 cancels to 0 in float32
    assert float(jax.grad(jnp.tanh)(jnp.float32(12.0))) == 0.0
    assert float(jax.grad(tanh)(jnp.float32(12.0))) > 1e-11


def test_saturated_rnn_gradient_matches_float64():
    cell = gf.cells.rnn(6, recurrent_init="gaussian", gain=1.0)
    params = cell.init(jax.random.key(0), input_size=3)
    params = {**params, "W_ih": params["W_ih"] * 40.0}  # drive units into saturation
    xs = jax.random.normal(jax.random.key(1), (12, 3))

    def loss(hs):
        return jnp.sum(hs[-1])

    got = jax.jit(lambda p, x: gf.hidden_grad_norms(cell, p, x, loss, log10=True))(
        params, xs
    ).log10_norms
    jax.config.update("jax_enable_x64", True)
    try:
        p64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
        want = gf.hidden_grad_norms(
            cell, p64, np.asarray(xs, np.float64), loss, log10=True
        ).log10_norms
    finally:
        jax.config.update("jax_enable_x64", False)
    want = np.asarray(want)
    assert np.all(np.isfinite(np.asarray(got)))
    assert want.min() < -8  # deep in saturation: a float32 1 - tanh² would be 0
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-3)
