"""gf.from_equinox and gf.from_flax against the frameworks' own modules.

equinox and flax are in the [test] extra: imported plainly, never skipped.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import gradflow as gf

T, D, N = 8, 3, 5
KEY = jax.random.key(0)


class EqxMGU(eqx.Module):
    """A user module: a minimal gated unit (Zhou et al. 2016), Equinox's convention."""

    wf: jax.Array
    wh: jax.Array
    uf: jax.Array
    uh: jax.Array
    bias: jax.Array
    scale: float = eqx.field(static=True, default=1.0)

    def __init__(self, d, n, key):
        k = jax.random.split(key, 4)
        self.wf = jax.random.normal(k[0], (n, d)) / np.sqrt(d)
        self.wh = jax.random.normal(k[1], (n, d)) / np.sqrt(d)
        self.uf = jax.random.normal(k[2], (n, n)) / np.sqrt(n)
        self.uh = jax.random.normal(k[3], (n, n)) / np.sqrt(n)
        self.bias = jnp.ones(n)

    def __call__(self, x, h):
        f = jax.nn.sigmoid(self.wf @ x + self.uf @ h + self.bias)
        cand = jnp.tanh(self.wh @ x + self.uh @ (f * h))
        return self.scale * ((1 - f) * h + f * cand)


class NnxMGU(nnx.Module):
    """The same unit as an NNX module, Flax's convention, with initialize_carry."""

    def __init__(self, d, n, rngs):
        self.i = nnx.Linear(d, 2 * n, rngs=rngs)
        self.h = nnx.Linear(n, n, use_bias=False, rngs=rngs)
        self.hf = nnx.Linear(n, n, use_bias=False, rngs=rngs)
        self.n = n

    def initialize_carry(self, input_shape, rngs=None):
        return jnp.zeros((*input_shape[:-1], self.n))

    def __call__(self, h, x):
        xf, xh = jnp.split(self.i(x), 2, axis=-1)
        f = nnx.sigmoid(xf + self.hf(h))
        h = (1 - f) * h + f * jnp.tanh(xh + self.h(f * h))
        return h, h


def _eqx_loop(module, xs, carry):
    """The module's own Python loop; ``h`` is the carry or its first element."""
    hs = []
    for x in xs:
        carry = jax.vmap(module)(x, carry) if x.ndim == 2 else module(x, carry)
        hs.append(carry[0] if isinstance(carry, tuple) else carry)
    return carry, jnp.stack(hs)


def _eqx_zero(module, batch):
    z = jnp.zeros((*batch, N))
    return (z, z) if isinstance(module, eqx.nn.LSTMCell) else z


EQX = {
    "GRUCell": lambda: eqx.nn.GRUCell(D, N, key=KEY),
    "LSTMCell": lambda: eqx.nn.LSTMCell(D, N, key=KEY),
    "GRUCell-nobias": lambda: eqx.nn.GRUCell(D, N, use_bias=False, key=KEY),
}


@pytest.mark.parametrize("name", list(EQX))
@pytest.mark.parametrize("batch", [(), (4,)])
def test_equinox_unroll_equals_its_own_loop(name, batch):
    module = EQX[name]()
    cell, params = gf.from_equinox(module)
    assert cell.hidden_size == N and cell.input_size(params) == D
    xs = jax.random.normal(jax.random.key(1), (T, *batch, D))
    carry, hs = jax.jit(lambda p, xs: gf.unroll(cell, p, xs))(params, xs)
    ref_carry, ref_hs = _eqx_loop(module, xs, _eqx_zero(module, batch))
    np.testing.assert_allclose(hs, ref_hs, rtol=1e-5, atol=1e-5)
    for a, b in zip(
        jax.tree_util.tree_leaves(carry),
        jax.tree_util.tree_leaves(ref_carry),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_equinox_user_module_and_params_are_its_own_tree():
    module = EqxMGU(D, N, KEY)
    cell, params = gf.from_equinox(module, initial_carry=jnp.zeros(N), input_size=D)
    # params are the module's own pytree: its fields, arrays only
    assert isinstance(params, EqxMGU) and params.uf.shape == (N, N)
    xs = jax.random.normal(jax.random.key(1), (T, 2, D))
    _, hs = gf.unroll(cell, params, xs)
    np.testing.assert_allclose(
        hs, _eqx_loop(module, xs, jnp.zeros((2, N)))[1], rtol=1e-5, atol=1e-5
    )


def test_equinox_init_draws_a_module_per_key():
    module = eqx.nn.GRUCell(D, N, key=KEY)
    cell, params = gf.from_equinox(
        module, init=lambda key, d, dtype: eqx.nn.GRUCell(d, N, key=key)
    )
    again = cell.init(KEY, D)
    np.testing.assert_array_equal(again.weight_hh, params.weight_hh)
    other = cell.init(jax.random.key(9), D)
    assert not np.allclose(other.weight_hh, params.weight_hh)
    bad, _ = gf.from_equinox(
        module, init=lambda key, d, dtype: eqx.nn.Linear(d, N, key=key)
    )
    with pytest.raises(TypeError, match=r"init must return a GRUCell, got Linear"):
        bad.init(KEY, D)


FLAX = {
    "LSTMCell": lambda: nnx.LSTMCell(D, N, rngs=nnx.Rngs(0)),
    "OptimizedLSTMCell": lambda: nnx.OptimizedLSTMCell(D, N, rngs=nnx.Rngs(0)),
    "GRUCell": lambda: nnx.GRUCell(D, N, rngs=nnx.Rngs(0)),
    "SimpleCell": lambda: nnx.SimpleCell(D, N, rngs=nnx.Rngs(0)),
    "user MGU": lambda: NnxMGU(D, N, nnx.Rngs(0)),
}


@pytest.mark.parametrize("name", list(FLAX))
@pytest.mark.parametrize("batch", [(), (4,)])
def test_flax_unroll_equals_its_own_loop(name, batch):
    module = FLAX[name]()
    kwargs = {"input_size": D} if name == "user MGU" else {}
    cell, params = gf.from_flax(module, **kwargs)
    xs = jax.random.normal(jax.random.key(1), (T, *batch, D))
    carry, hs = jax.jit(lambda p, xs: gf.unroll(cell, p, xs))(params, xs)
    ref = module.initialize_carry((*batch, D), rngs=nnx.Rngs(0))
    ref_hs = []
    for x in xs:
        ref, y = module(ref, x)
        ref_hs.append(y)
    np.testing.assert_allclose(hs, jnp.stack(ref_hs), rtol=1e-5, atol=1e-5)
    for a, b in zip(
        jax.tree_util.tree_leaves(carry), jax.tree_util.tree_leaves(ref), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_flax_params_are_the_param_state():
    module = nnx.LSTMCell(D, N, rngs=nnx.Rngs(0))
    cell, params = gf.from_flax(module)
    assert isinstance(params, nnx.State)
    assert params["hi"]["kernel"].shape == (N, N)
    assert cell.name == "LSTMCell" and cell.hidden_size == N


# --- bad input ---------------------------------------------------------------


def test_equinox_unsupported_kind():
    # Feed-forward modules: refused here, not at the first unroll.
    for module in (eqx.nn.Linear(D, N, key=KEY), eqx.nn.MLP(D, N, 8, 2, key=KEY)):
        kind = type(module).__name__
        for carry in (None, jnp.zeros(N)):
            with pytest.raises(
                TypeError,
                match=rf"must be recurrent, called as module\(x, carry\).*"
                rf"{kind} is called as {kind}\(x, \*, key=None\)",
            ):
                gf.from_equinox(module, initial_carry=carry)
    with pytest.raises(TypeError, match=r"must be an equinox Module"):
        gf.from_equinox(nnx.GRUCell(D, N, rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match=r"hidden must be a callable"):
        gf.from_equinox(eqx.nn.GRUCell(D, N, key=KEY), hidden="h")
    with pytest.raises(TypeError, match=r"init must be a callable \(key, input_size"):
        gf.from_equinox(eqx.nn.GRUCell(D, N, key=KEY), init=3)


def test_equinox_dict_carry_needs_hidden():
    """The default h is the carry or its first element; a dict carry says so."""

    class DictCell(eqx.Module):
        w: jax.Array

        def __call__(self, x, carry):
            return {"h": jnp.tanh(self.w @ carry["h"] + x[0])}

    module = DictCell(0.5 * jnp.eye(N))
    cell, params = gf.from_equinox(module, initial_carry={"h": jnp.zeros(N)})
    with pytest.raises(TypeError, match=r"carry of DictCell must be an array or a"):
        gf.unroll(cell, params, jnp.ones((T, D)))
    cell, params = gf.from_equinox(
        module, initial_carry={"h": jnp.zeros(N)}, hidden=lambda c: c["h"]
    )
    _, hs = gf.unroll(cell, params, jnp.ones((2, D)))
    h1 = np.tanh(np.ones(N))
    np.testing.assert_allclose(hs[1], np.tanh(0.5 * h1 + 1.0), rtol=1e-6)


def test_equinox_module_of_the_wrong_convention():
    """A Flax-convention module behind from_equinox: the pair check catches it."""

    class Wrong(eqx.Module):
        w: jax.Array

        def __call__(self, x, h):
            return h, self.w @ h  # (carry, y): not Equinox's convention

    cell, params = gf.from_equinox(
        Wrong(jnp.eye(N)), initial_carry=jnp.zeros(N), hidden=lambda c: c
    )
    with pytest.raises(TypeError, match=r"carry of the structure it was given"):
        gf.unroll(cell, params, jnp.ones((T, D)))


def test_flax_unsupported_kind():
    import flax.linen as nn

    with pytest.raises(
        TypeError, match=r"Linen cell is measured through gf.cells.custom"
    ):
        gf.from_flax(nn.LSTMCell(features=N))
    with pytest.raises(
        TypeError, match=r"Linear needs initial_carry=.*initialize_carry"
    ):
        gf.from_flax(nnx.Linear(D, N, rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match="pass input_size="):
        gf.from_flax(NnxMGU(D, N, nnx.Rngs(0)))
    with pytest.raises(TypeError, match=r"must be a flax.nnx Module"):
        gf.from_flax(eqx.nn.GRUCell(D, N, key=KEY))


@pytest.mark.parametrize("layer", ["dropout", "batchnorm"])
def test_flax_module_that_updates_its_state(layer):
    class Noisy(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(0.5 * jnp.eye(N))
            self.drop = nnx.Dropout(0.5, rngs=nnx.Rngs(0))
            self.norm = nnx.BatchNorm(N, rngs=nnx.Rngs(0))

        def __call__(self, h, x):
            h = jnp.tanh(self.w[...] @ h + jnp.sum(x))
            h = self.drop(h) if layer == "dropout" else self.norm(h[None])[0]
            return h, h

    module = Noisy()
    with pytest.raises(TypeError, match=r"module Noisy changes its own state .*eval"):
        gf.from_flax(module, initial_carry=jnp.zeros(N), input_size=D)
    module.eval()  # what the message advises: then it is a pure step
    cell, params = gf.from_flax(module, initial_carry=jnp.zeros(N), input_size=D)
    _, hs = gf.unroll(cell, params, jnp.ones((T, 2, D)))
    assert hs.shape == (T, 2, N) and np.all(np.isfinite(hs))


def test_flax_module_returning_only_a_carry():
    class Bare(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.eye(N))

        def __call__(self, h, x):
            return jnp.tanh(self.w[...] @ h)

    cell, params = gf.from_flax(Bare(), initial_carry=jnp.zeros(N))
    with pytest.raises(TypeError, match=r"step of cell 'Bare' must return a pair"):
        gf.unroll(cell, params, jnp.ones((T, D)))


def test_flax_linen_through_custom():
    """The recipe in from_flax's docstring, checked against Linen's own loop."""
    import flax.linen as nn

    lin = nn.LSTMCell(features=N)
    carry0 = lin.initialize_carry(KEY, (D,))
    variables = lin.init(KEY, carry0, jnp.ones(D))
    cell = gf.cells.custom(
        lambda v, carry, x: lin.apply(v, carry, x), carry0, input_size=D
    )
    xs = jax.random.normal(jax.random.key(1), (T, 2, D))
    _, hs = gf.unroll(cell, variables, xs)
    c = lin.initialize_carry(KEY, (2, D))
    for t in range(T):
        c, y = lin.apply(variables, c, xs[t])
        np.testing.assert_allclose(hs[t], y, rtol=1e-5, atol=1e-5)
