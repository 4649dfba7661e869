"""gf.cells.custom: any step function as a cell; its contract checked at trace time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf

T, D, N = 7, 3, 5


def _params(key=0):
    k1, k2 = jax.random.split(jax.random.key(key))
    return {
        "W": jax.random.normal(k1, (N, N)) / np.sqrt(N),
        "V": jax.random.normal(k2, (N, D)),
    }


def antisymmetric(p, h, x):
    """One example: ``h (N,)``, ``x (D,)`` (Chang et al. 2019's AntisymmetricRNN)."""
    a = p["W"] - p["W"].T - 0.1 * jnp.eye(N)
    h = h + 0.5 * jnp.tanh(a @ h + p["V"] @ x)
    return h, h


def antisymmetric_batched(p, h, x):
    """The same map on one leading batch axis: ``h (B, N)``, ``x (B, D)``."""
    a = p["W"] - p["W"].T - 0.1 * jnp.eye(N)
    h = h + 0.5 * jnp.tanh(h @ a.T + x @ p["V"].T)
    return h, h


def _loop(p, xs, h):
    """The reference: a Python loop over time, vmapped over one batch axis."""
    out = []
    for x in xs:
        h, y = (
            jax.vmap(antisymmetric, (None, 0, 0)) if h.ndim == 2 else antisymmetric
        )(p, h, x)
        out.append(y)
    return h, jnp.stack(out)


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_unroll_equals_python_loop(batched, batch):
    step = antisymmetric_batched if batched else antisymmetric
    cell = gf.cells.custom(step, jnp.zeros(N), input_size=D, batched=batched)
    p = _params()
    xs = jax.random.normal(jax.random.key(1), (T, *batch, D))
    carry, hs = jax.jit(lambda p, xs: gf.unroll(cell, p, xs))(p, xs)
    assert hs.shape == (T, *batch, N)
    flat = xs.reshape(T, -1, D) if batch else xs
    h0 = jnp.zeros((flat.shape[1], N)) if batch else jnp.zeros(N)
    h_ref, hs_ref = _loop(p, flat, h0)
    np.testing.assert_allclose(hs, hs_ref.reshape(hs.shape), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry, h_ref.reshape(carry.shape), rtol=1e-5, atol=1e-6)


def test_pytree_carry_and_params_and_remat():
    """A dict carry with two leaves of different shapes; nested params; remat."""

    def step(p, c, x):
        v = 0.9 * c["v"] + p["in"]["V"] @ x
        s = jnp.tanh(p["rec"] @ c["s"] + v[:N])
        return {"s": s, "v": v}, s

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        return {
            "s": jnp.zeros((*batch_shape, N), dtype),
            "v": jnp.zeros((*batch_shape, N + 2), dtype),
        }

    p = {"rec": jnp.eye(N) * 0.5, "in": {"V": jnp.ones((N + 2, D)) * 0.1}}
    cell = gf.cells.custom(step, initial_carry)
    xs = jax.random.normal(jax.random.key(2), (T, 2, D))
    carry, hs = gf.unroll(cell, p, xs)
    _, hs_r = gf.unroll(cell, p, xs, remat=3)
    np.testing.assert_allclose(hs, hs_r, rtol=1e-6)
    c = initial_carry((), jnp.float32)
    for t in range(T):
        c, y = step(p, c, xs[t, 1])
        np.testing.assert_allclose(hs[t, 1], y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry["v"][1], c["v"], rtol=1e-5, atol=1e-6)
    assert cell.kind == "custom" and cell.name == "custom"
    assert cell.input_size(p) is None  # any input width


def test_float64(x64):
    cell = gf.cells.custom(antisymmetric, jnp.zeros(N), input_size=D)
    p = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), _params())
    xs = jax.random.normal(jax.random.key(1), (T, 2, D), jnp.float64)
    carry, hs = gf.unroll(cell, p, xs)
    assert hs.dtype == carry.dtype == jnp.float64


def test_vmap_over_params():
    cell = gf.cells.custom(antisymmetric, jnp.zeros(N), input_size=D)
    ps = jax.vmap(_params)(jnp.arange(3))
    xs = jax.random.normal(jax.random.key(1), (T, 2, D))
    _, hs = jax.vmap(lambda p: gf.unroll(cell, p, xs))(ps)
    for i in range(3):
        p = jax.tree_util.tree_map(lambda a, i=i: a[i], ps)
        np.testing.assert_allclose(
            hs[i], gf.unroll(cell, p, xs)[1], rtol=1e-5, atol=1e-6
        )


def test_init_is_optional_and_says_so():
    cell = gf.cells.custom(antisymmetric, jnp.zeros(N), input_size=D)
    with pytest.raises(TypeError, match=r"has no init.*init="):
        cell.init(jax.random.key(0), D)
    cell = gf.cells.custom(
        antisymmetric, jnp.zeros(N), input_size=D, init=lambda k, d, dt=None: _params()
    )
    assert set(cell.init(jax.random.key(0), D)) == {"W", "V"}


# --- bad input: every error names what was expected -------------------------


def _run(step, initial=None, batched=False, batch=(2,), **kw):
    cell = gf.cells.custom(
        step, jnp.zeros(N) if initial is None else initial, batched=batched, **kw
    )
    xs = jnp.ones((T, *batch, D))
    return gf.unroll(cell, _params(), xs)


def test_step_returning_a_single_value():
    with pytest.raises(TypeError, match=r"must return a pair \(carry, h\)"):
        _run(lambda p, h, x: antisymmetric(p, h, x)[0])


def test_step_returning_a_triple():
    with pytest.raises(TypeError, match=r"pair.*of length 3"):
        _run(lambda p, h, x: (h, h, h))


def test_step_changing_the_carry_structure():
    with pytest.raises(TypeError, match=r"carry of the structure it was given"):
        _run(lambda p, h, x: ((h, h), h))


def test_step_changing_the_carry_shape():
    with pytest.raises(ValueError, match=r"may not change between steps"):
        _run(lambda p, h, x: (jnp.concatenate([h, x]), h))


def test_step_changing_the_carry_dtype():
    with pytest.raises(TypeError, match=r"keep the carry's dtype float32"):
        _run(lambda p, h, x: (h.astype(jnp.bfloat16), h))


def test_h_of_the_wrong_rank_or_width():
    with pytest.raises(ValueError, match=r"h of shape \(N,\)"):
        _run(lambda p, h, x: (h, jnp.sum(h)))
    with pytest.raises(ValueError, match=r"hidden_size=4"):
        _run(antisymmetric, hidden_size=4)


def test_batched_step_dropping_the_batch_axis():
    with pytest.raises(ValueError, match=r"must keep the batch axis"):
        _run(lambda p, h, x: (h, h[0:1]), initial=jnp.zeros(N), batched=True)


def test_per_example_step_given_a_batch_step():
    """A batch step declared per-example sees 1-D inputs: its own error surfaces."""

    def step(p, h, x):
        if h.ndim != 2:
            raise ValueError("this step wants (B, N)")
        return antisymmetric_batched(p, h, x)

    with pytest.raises(ValueError, match=r"wants \(B, N\)"):
        _run(step)
    _run(step, batched=True)  # declared right, it runs


def test_initial_carry_ignoring_batch_shape():
    def initial(batch_shape=(), dtype=jnp.float32):
        return jnp.zeros(N, dtype)

    with pytest.raises(ValueError, match=r"must honour batch_shape.*\[\(2, 5\)\]"):
        _run(antisymmetric, initial=initial)


def test_initial_carry_ignoring_dtype(x64):
    def initial(batch_shape=(), dtype=jnp.float32):
        return jnp.zeros((*batch_shape, N), jnp.float32)

    cell = gf.cells.custom(antisymmetric, initial)
    with pytest.raises(TypeError, match=r"dtype it is given \(float64\), got float32"):
        gf.unroll(cell, _params(), jnp.ones((T, 2, D), jnp.float64))


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"step must be a callable"):
        gf.cells.custom("step", jnp.zeros(N))
    with pytest.raises(TypeError, match=r"initial_carry must be a callable"):
        gf.cells.custom(antisymmetric, [1, 2])
    with pytest.raises(TypeError, match=r"initial_carry must be a callable"):
        gf.cells.custom(antisymmetric, jnp.zeros(N, jnp.int32))
    with pytest.raises(TypeError, match=r"batched must be True or False"):
        gf.cells.custom(antisymmetric, jnp.zeros(N), batched="yes")
    with pytest.raises(ValueError, match=r"hidden_size must be an int >= 1"):
        gf.cells.custom(antisymmetric, jnp.zeros(N), hidden_size=0)
    with pytest.raises(TypeError, match=r"name must be a non-empty str"):
        gf.cells.custom(antisymmetric, jnp.zeros(N), name="")
    with pytest.raises(TypeError, match=r"init must be a callable"):
        gf.cells.custom(antisymmetric, jnp.zeros(N), init=3)
    cell = gf.cells.custom(antisymmetric, jnp.zeros(N), input_size=D)
    with pytest.raises(ValueError, match=r"last axis input_size=3"):
        gf.unroll(cell, _params(), jnp.ones((T, 2, D + 1)))


def test_given_carry_without_the_batch_axes():
    cell = gf.cells.custom(antisymmetric, jnp.zeros(N))
    with pytest.raises(ValueError, match=r"carry must have leaf shapes"):
        gf.unroll(cell, _params(), jnp.ones((T, 2, D)), jnp.zeros(N))
    # cell.step called directly (no unroll to check the carry first)
    with pytest.raises(ValueError, match=r"must have the batch shape \(2,\) of x"):
        cell.step(_params(), jnp.zeros(N), jnp.ones((2, D)))
    bare = gf.cells.custom(antisymmetric, lambda batch_shape=(), dtype=None: None)
    with pytest.raises(TypeError, match=r"'custom' must return a pytree of arrays"):
        bare.initial_carry((2,))


# --- where h sits in the carry ----------------------------------------------


def test_output_leaf_finds_the_returned_carry_leaf():
    def step(p, c, x):
        h = jnp.tanh(c["s"] + x[:N])
        return {"v": c["v"] * 0.5, "s": h}, h  # leaves sorted by key: s is 0

    cell = gf.cells.custom(step, {"v": jnp.zeros(2), "s": jnp.zeros(N)})
    carry = cell.initial_carry((4,))
    assert gf.cells.output_leaf(cell, {}, carry, jnp.zeros((4, N)), 1) == 0


def test_output_leaf_none_when_h_is_not_in_the_carry():
    cell = gf.cells.custom(lambda p, h, x: (h, 2.0 * h), jnp.zeros(N))
    assert gf.cells.output_leaf(cell, {}, jnp.zeros(N), jnp.zeros(D)) is None


@pytest.mark.parametrize("batched", [False, True])
def test_output_leaf_through_vmap_and_batch_folding(batched):
    step = antisymmetric_batched if batched else antisymmetric
    cell = gf.cells.custom(step, jnp.zeros(N), batched=batched)
    carry = cell.initial_carry((2, 3))
    got = jax.jit(
        lambda p: jnp.asarray(
            gf.cells.output_leaf(cell, p, carry, jnp.zeros((2, 3, D)), 2)
        )
    )(_params())
    assert int(got) == 0


def test_layer_output_leaves_of_a_mixed_stack():
    """LSTM (h, c) | custom with h absent from its carry | GRU: leaf offsets."""
    mid = gf.cells.custom(lambda p, h, x: (h + x[:3], 2.0 * h), jnp.zeros(3))
    stack = gf.cells.stack([gf.cells.lstm(5), mid, gf.cells.gru(4)])
    key = jax.random.key(0)
    params = (gf.cells.lstm(5).init(key, D), {}, gf.cells.gru(4).init(key, 3))
    carry = stack.initial_carry((2,))
    leaves = gf.cells.layer_output_leaves(stack, params, carry, jnp.zeros((2, D)), 1)
    assert leaves == (0, None, 3)
