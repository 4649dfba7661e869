"""gf.unroll: remat, stacks, vmap and grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf


def _loss(cell, remat):
    def loss(params, xs):
        carry, hs = gf.unroll(cell, params, xs, remat=remat)
        last = sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree_util.tree_leaves(carry))
        return jnp.sum(hs**2) + last

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


@pytest.mark.parametrize(
    ("kind", "remat"),
    [("rnn", True), ("lstm", 4), ("gru", 100)],
)
def test_remat_same_outputs_and_gradients(kind, remat):
    """T = 23: √T chunks of 5 with a tail of 3, chunks of 4 with 3, one chunk.

    (The stack test below runs √T chunks through an LSTM and a GRU.)
    """
    cell = gf.cells.make(kind, 6)
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (23, 2, 3))
    ref_v, ref_g = _loss(cell, False)(params, xs)
    v, g = _loss(cell, remat)(params, xs)
    np.testing.assert_allclose(v, ref_v, rtol=1e-6)
    for a, b in zip(
        jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ref_g), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_remat_stack_same_gradients():
    cell = gf.cells.stack([gf.cells.gru(5), gf.cells.lstm(4)])
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (17, 3))
    ref_v, ref_g = _loss(cell, False)(params, xs)
    v, g = _loss(cell, True)(params, xs)
    np.testing.assert_allclose(v, ref_v, rtol=1e-6)
    for a, b in zip(
        jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ref_g), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_remat_memory_grows_sublinearly():
    """Backward-pass scratch memory: O(T) states without remat, O(√T) with it."""
    cell = gf.cells.lstm(64)
    params = cell.init(jax.random.key(0), 2)

    def temp_bytes(steps, remat):
        xs = jnp.ones((steps, 8, 2))

        def loss(p):
            carry, _ = gf.unroll(cell, p, xs, remat=remat)
            return jnp.sum(carry.h) + jnp.sum(carry.c)

        stats = jax.jit(jax.grad(loss)).lower(params).compile().memory_analysis()
        if stats is None:
            pytest.skip("this backend reports no memory analysis")
        return stats.temp_size_in_bytes

    def state_bytes(steps):  # one (T, batch, N) float32 sequence
        return steps * 8 * 64 * 4

    # without remat the gates, c and h of every step are kept
    full = temp_bytes(1000, False)
    assert full > 8 * state_bytes(1000)
    small, large = temp_bytes(1000, True), temp_bytes(4000, True)
    assert small < full / 10
    # 4× the steps, about 2× the memory (√4), far from 4×
    assert large < 2.5 * small


def test_stack_equals_layer_by_layer_and_joint_stepping():
    layers = [gf.cells.lstm(5), gf.cells.rnn(4, "relu"), gf.cells.gru(3)]
    cell = gf.cells.stack(layers)
    params = cell.init(jax.random.key(0), 2)
    assert cell.hidden_size == 3 and cell.input_size(params) == 2
    xs = jax.random.normal(jax.random.key(1), (9, 2, 2))
    carry, hs = jax.jit(lambda p, x: gf.unroll(cell, p, x))(params, xs)

    # layer by layer, by hand
    x, carries = xs, []
    for layer, p in zip(layers, params, strict=True):
        c, x = gf.unroll(layer, p, x)
        carries.append(c)
    np.testing.assert_allclose(hs, x, rtol=1e-6, atol=1e-6)
    for a, b in zip(
        jax.tree_util.tree_leaves(carry),
        jax.tree_util.tree_leaves(carries),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)

    # all layers stepped together (the stack's own step) in one scan
    step = jax.jit(lambda p, c, x: jax.lax.scan(lambda c, x: cell.step(p, c, x), c, x))
    carry2, hs2 = step(params, cell.initial_carry((2,)), xs)
    np.testing.assert_allclose(hs2, hs, rtol=1e-6, atol=1e-6)
    for a, b in zip(
        jax.tree_util.tree_leaves(carry2), jax.tree_util.tree_leaves(carry), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_stack_params_and_carry_layout():
    cell = gf.cells.stack([gf.cells.lstm(5), gf.cells.lstm(5)])
    params = cell.init(jax.random.key(0), 2)
    assert isinstance(params, tuple) and len(params) == 2
    assert params[1]["W_ih"].shape == (20, 5)
    carry = cell.initial_carry((3,))
    assert isinstance(carry[0], gf.cells.LSTMCarry) and carry[1].c.shape == (3, 5)
    # layers get independent keys
    assert not np.array_equal(params[0]["W_hh"], params[1]["W_hh"])


def test_vmap_over_params_and_sequences():
    cell = gf.cells.gru(4)
    keys = jax.random.split(jax.random.key(0), 3)
    params = jax.vmap(lambda k: cell.init(k, 2))(keys)
    xs = jax.random.normal(jax.random.key(1), (3, 6, 2))
    _, hs = jax.jit(jax.vmap(lambda p, x: gf.unroll(cell, p, x)))(params, xs)
    for s in range(3):
        p = jax.tree_util.tree_map(lambda a, s=s: a[s], params)
        np.testing.assert_allclose(
            hs[s], gf.unroll(cell, p, xs[s])[1], rtol=1e-6, atol=1e-6
        )


def test_grad_against_finite_differences(x64):
    cell = gf.cells.lstm(3)
    params = cell.init(jax.random.key(0), 2, jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (8, 2), jnp.float64)

    def loss(p):
        return jnp.sum(gf.unroll(cell, p, xs)[1] ** 2)

    g = jax.jit(jax.grad(loss))(params)
    eps = 1e-6
    for i, j in [(0, 0), (5, 1), (11, 2)]:
        bump = jnp.zeros_like(params["W_hh"]).at[i, j].set(eps)
        up = loss({**params, "W_hh": params["W_hh"] + bump})
        down = loss({**params, "W_hh": params["W_hh"] - bump})
        np.testing.assert_allclose(g["W_hh"][i, j], (up - down) / (2 * eps), rtol=1e-6)


def test_explicit_carry_continues_a_sequence():
    """Unrolling [a; b] equals unrolling a, then b from a's final carry."""
    cell = gf.cells.lstm(4)
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (10, 2))
    c_all, h_all = gf.unroll(cell, params, xs)
    c_a, h_a = gf.unroll(cell, params, xs[:6])
    c_b, h_b = jax.jit(lambda p, x, c: gf.unroll(cell, p, x, c))(params, xs[6:], c_a)
    np.testing.assert_allclose(jnp.concatenate([h_a, h_b]), h_all, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(c_b.c, c_all.c, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("remat", [False, True, 4])
@pytest.mark.parametrize("kind", ["lstm", "stack"])
def test_forward_and_reverse_states_visit_the_carry_entering_each_step(kind, remat):
    """T = 11: no remat, chunks of 4 (√11 → 4, tail 3) and chunks of 4 again.

    Against a Python loop over ``cell.step``: the forward pass's outputs and
    final carry, the carry ``along`` sees at step t, and the carry the reverse
    scan hands its body at step t (recomputed per chunk with remat) are all the
    carry *entering* step t, visited in reverse order.
    """
    from gradflow._unroll import forward_states, reverse_states

    cell = (
        gf.cells.lstm(3)
        if kind == "lstm"
        else gf.cells.stack([gf.cells.gru(2), gf.cells.lstm(3)])
    )
    params = cell.init(jax.random.key(0), 2)
    steps = 11
    xs = jax.random.normal(jax.random.key(1), (steps, 2, 2))
    carry = cell.initial_carry((2,))
    entering, hs = [], []
    c = carry
    for t in range(steps):
        entering.append(c)
        c, h = cell.step(params, c, xs[t])
        hs.append(h)
    want = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *entering)

    def along(n, inp):
        return n + 1, (inp[0], n)

    def backwards(order, inp):
        c_t, xw_t, x_t = inp
        xw_want = cell.project(params, x_t)
        return order + 1, (c_t, order, jnp.max(jnp.abs(xw_t - xw_want)))

    @jax.jit
    def run(params, xs):
        fwd = forward_states(cell, params, xs, carry, remat=remat, along=(along, 0))
        back = reverse_states(
            cell, params, xs, fwd.saved, backwards, 0, xs, remat=remat
        )
        return fwd, back

    fwd, (count, (seen, order, xw_err)) = run(params, xs)
    np.testing.assert_allclose(fwd.hs, jnp.stack(hs), rtol=1e-6, atol=1e-7)
    for a, b in zip(
        jax.tree_util.tree_leaves(fwd.carry), jax.tree_util.tree_leaves(c), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for got in (fwd.along[1][0], seen):
        for a, b in zip(
            jax.tree_util.tree_leaves(got),
            jax.tree_util.tree_leaves(want),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(fwd.along[1][1], np.arange(steps))
    assert int(count) == steps
    np.testing.assert_array_equal(order, np.arange(steps)[::-1])
    assert float(jnp.max(xw_err)) < 1e-6
    chunks = {False: steps, True: 3, 4: 3}[remat]
    assert jax.tree_util.tree_leaves(fwd.saved)[0].shape[0] == chunks


def _param_cases():
    rnn, lstm = gf.cells.rnn(4), gf.cells.lstm(4)
    p = rnn.init(jax.random.key(0), 3)
    stack = gf.cells.stack([gf.cells.gru(4), gf.cells.rnn(4)])
    ps = stack.init(jax.random.key(0), 3)
    without = {k: v for k, v in p.items() if k != "W_hh"}
    return [
        # issue 10: each of these surfaced as raw JAX/KeyError text
        (rnn, lstm.init(jax.random.key(0), 3), ValueError,
         r"params\['W_hh'\] must have shape \(4, 4\) for a rnn cell.*got \(16, 4\)"
         r" \(params of another cell kind\?\)"),
        (rnn, without, TypeError, r"missing params\['W_hh'\]"),
        (rnn, {**p, "W_hh": jnp.ones((4, 5))}, ValueError,
         r"params\['W_hh'\] must have shape \(4, 4\).*got \(4, 5\)"),
        (rnn, {**p, 0: jnp.ones(3)}, TypeError, "cannot be flattened"),
        (rnn, {**p, "W_hh": jnp.ones((4, 4), jnp.int32)}, TypeError,
         r"params\['W_hh'\] must be floating, got dtype int32"),
        (rnn, {**p, "extra": jnp.ones(3)}, TypeError, r"unexpected params\['extra'\]"),
        (stack, (ps[0], {**ps[1], "b_hh": jnp.ones(5)}), ValueError,
         r"params\[1\]\['b_hh'\] must have shape \(4,\).*got \(5,\)"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(7))
def test_params_of_the_wrong_structure_are_named_eagerly(case):
    cell, params, error, match = _param_cases()[case]
    xs = jnp.ones((5, 2, 3))
    for call in (
        lambda: gf.unroll(cell, params, xs),
        lambda: gf.jacobian_norms(cell, params, xs),
        lambda: gf.hidden_grad_norms(cell, params, xs, jnp.sum),
    ):
        with pytest.raises(error, match=match):
            call()


def test_init_and_lyapunov_refuse_an_int_key():
    cell = gf.cells.rnn(3)
    with pytest.raises(TypeError, match=r"key must be a jax\.random\.key"):
        cell.init(0, 2)
    params = cell.init(jax.random.PRNGKey(0), 2)  # a raw uint32 key is a key too
    with pytest.raises(TypeError, match=r"key must be a jax\.random\.key"):
        gf.lyapunov_spectrum(cell, params, jnp.ones((5, 2)), key=1)
