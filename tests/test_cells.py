"""Cells: closed forms, batching, the record's contract and every bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf

KINDS = ["rnn", "lstm", "gru"]


def _run(cell, params, xs, carry=None):
    return jax.jit(lambda p, x, c: gf.unroll(cell, p, x, c))(params, xs, carry)


def test_linear_rnn_closed_form(x64):
    """h_t = Σ_{k<t} W_hh^k (W_ih x_{t-k} + b): every step, by hand in numpy."""
    t, d, n = 15, 3, 6
    cell = gf.cells.rnn(n, "linear", recurrent_init="gaussian", gain=0.9)
    params = cell.init(jax.random.key(0), d, jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (t, d), jnp.float64)
    h0 = np.linspace(-1.0, 1.0, n)
    carry, hs = _run(cell, params, xs, gf.cells.RNNCarry(jnp.asarray(h0)))

    w = np.asarray(params["W_hh"])
    u = np.asarray(params["W_ih"])
    b = np.asarray(params["b_ih"] + params["b_hh"])
    x = np.asarray(xs)
    for step in range(t):
        ref = np.linalg.matrix_power(w, step + 1) @ h0
        for k in range(step + 1):
            ref += np.linalg.matrix_power(w, k) @ (u @ x[step - k] + b)
        np.testing.assert_allclose(hs[step], ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(carry.h, hs[-1], rtol=0, atol=0)


def test_lstm_one_step_by_hand():
    n, d = 4, 3
    cell = gf.cells.lstm(n)
    p = jax.tree_util.tree_map(np.asarray, cell.init(jax.random.key(2), d))
    x = np.linspace(-1, 1, d).astype(np.float32)
    h = np.linspace(0.5, -0.5, n).astype(np.float32)
    c = np.linspace(-0.3, 0.3, n).astype(np.float32)
    (h1, c1), out = jax.jit(cell.step)(p, gf.cells.LSTMCarry(h, c), x)

    def sig(a):
        return 1 / (1 + np.exp(-a))

    z = p["W_ih"] @ x + p["b_ih"] + p["W_hh"] @ h + p["b_hh"]
    i, f, g, o = np.split(z, 4)
    c_ref = sig(f) * c + sig(i) * np.tanh(g)
    np.testing.assert_allclose(c1, c_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h1, sig(o) * np.tanh(c_ref), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out, h1)


def test_gru_one_step_by_hand():
    n, d = 4, 3
    cell = gf.cells.gru(n)
    p = jax.tree_util.tree_map(np.asarray, cell.init(jax.random.key(3), d))
    x = np.linspace(-1, 1, d).astype(np.float32)
    h = np.linspace(0.5, -0.5, n).astype(np.float32)
    (h1,), _ = jax.jit(cell.step)(p, gf.cells.GRUCarry(h), x)

    def sig(a):
        return 1 / (1 + np.exp(-a))

    gi = np.split(p["W_ih"] @ x + p["b_ih"], 3)
    gh = np.split(p["W_hh"] @ h + p["b_hh"], 3)
    r, z = sig(gi[0] + gh[0]), sig(gi[1] + gh[1])
    new = np.tanh(gi[2] + r * gh[2])
    np.testing.assert_allclose(h1, (1 - z) * new + z * h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_batch_shapes_agree_with_single_sequences(kind):
    cell = gf.cells.make(kind, 5)
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (6, 2, 3, 3))
    carry, hs = _run(cell, params, xs)
    assert hs.shape == (6, 2, 3, 5)
    for a in range(2):
        for b in range(3):
            c1, h1 = _run(cell, params, xs[:, a, b])
            np.testing.assert_allclose(hs[:, a, b], h1, rtol=1e-6, atol=1e-6)
            for leaf, leaf1 in zip(
                jax.tree_util.tree_leaves(carry),
                jax.tree_util.tree_leaves(c1),
                strict=True,
            ):
                np.testing.assert_allclose(leaf[a, b], leaf1, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_record_contract(kind):
    cell = gf.cells.make(kind, 8)
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    params = cell.init(jax.random.key(0), input_size=3)
    assert {k: v.shape for k, v in params.items()} == {
        "W_ih": (gates * 8, 3),
        "W_hh": (gates * 8, 8),
        "b_ih": (gates * 8,),
        "b_hh": (gates * 8,),
    }
    assert cell.input_size(params) == 3 and cell.hidden_size == 8
    carry = cell.initial_carry((2,))
    assert all(leaf.shape == (2, 8) for leaf in jax.tree_util.tree_leaves(carry))
    assert all(not leaf.any() for leaf in jax.tree_util.tree_leaves(carry))
    x = jnp.ones((2, 3))
    _, h1 = cell.step(params, carry, x)
    _, h2 = cell.recur(params, carry, cell.project(params, x))
    np.testing.assert_array_equal(h1, h2)
    with pytest.raises(AttributeError):
        cell.hidden_size = 3  # immutable record


def test_activations():
    xs = jnp.asarray(np.linspace(-2, 2, 8, dtype=np.float32).reshape(8, 1))
    for act, fn in [("tanh", np.tanh), ("relu", lambda a: np.maximum(a, 0)),
                    ("linear", lambda a: a)]:  # fmt: skip
        cell = gf.cells.rnn(1, act, recurrent_init="zeros", bias_init="zeros")
        p = {**cell.init(jax.random.key(0), 1), "W_ih": jnp.ones((1, 1))}
        _, hs = _run(cell, p, xs)
        np.testing.assert_allclose(hs, fn(np.asarray(xs)), rtol=1e-6)


def test_make_by_name():
    assert gf.cells.make("gru", 4).kind == "gru"
    assert gf.cells.make("rnn", 4, activation="relu").kind == "rnn"
    assert gf.cells.CELL_KINDS[:3] == ("rnn", "lstm", "gru")
    assert "mlstm" in gf.cells.CELL_KINDS
    assert {"lru", "min_gru", "min_lstm", "selective_ssm"} <= set(gf.cells.CELL_KINDS)


# --- bad input: a ValueError/TypeError naming the argument, before tracing ---


@pytest.fixture
def rnn():
    cell = gf.cells.rnn(4)
    return cell, cell.init(jax.random.key(0), 3)


def test_wrong_input_width(rnn):
    cell, params = rnn
    with pytest.raises(
        ValueError, match=r"xs must have last axis input_size=3.*\(5, 2\)"
    ):
        gf.unroll(cell, params, jnp.ones((5, 2)))


def test_wrong_rank(rnn):
    cell, params = rnn
    with pytest.raises(ValueError, match=r"xs must have shape \(T, \*batch, 3\)"):
        gf.unroll(cell, params, jnp.ones((3,)))


def test_int_dtype(rnn):
    cell, params = rnn
    with pytest.raises(TypeError, match="xs must have a floating dtype, got int32"):
        gf.unroll(cell, params, jnp.ones((5, 3), jnp.int32))


def test_not_an_array(rnn):
    cell, params = rnn
    with pytest.raises(TypeError, match="xs must be an array"):
        gf.unroll(cell, params, [[1.0, 2.0, 3.0]])


def test_empty_sequence(rnn):
    cell, params = rnn
    with pytest.raises(ValueError, match="xs must have at least one time step"):
        gf.unroll(cell, params, jnp.ones((0, 3)))


@pytest.mark.parametrize(
    "measure",
    [
        lambda c, p, x: gf.hidden_grad_norms(c, p, x, lambda hs: jnp.sum(hs)),
        lambda c, p, x: gf.jacobian_norms(c, p, x),
        lambda c, p, x: gf.param_grad_by_step(c, p, x, lambda hs: jnp.sum(hs)),
    ],
    ids=["hidden_grad_norms", "jacobian_norms", "param_grad_by_step"],
)
def test_empty_batch_axis(rnn, measure):
    # Was a ZeroDivisionError (hidden_grad_norms) or an IndexError (jacobian_norms).
    cell, params = rnn
    with pytest.raises(
        ValueError, match=r"one sequence on every batch axis .*\(5, 0, 3\)"
    ):
        measure(cell, params, jnp.ones((5, 0, 3)))


def test_nan_in_xs(rnn):
    cell, params = rnn
    xs = jnp.ones((5, 2, 3)).at[2, 1, 0].set(jnp.nan)
    with pytest.raises(
        ValueError, match=r"xs contains NaN or inf \(first at index \(2, 1, 0\)"
    ):
        gf.unroll(cell, params, xs)


def test_checks_run_before_tracing_under_jit(rnn):
    cell, params = rnn
    with pytest.raises(ValueError, match="xs must have last axis input_size=3"):
        jax.jit(lambda p, x: gf.unroll(cell, p, x))(params, jnp.ones((5, 7)))


def test_unknown_activation():
    with pytest.raises(ValueError, match=r"activation must be one of \('tanh'"):
        gf.cells.rnn(4, activation="gelu")
    with pytest.raises(TypeError, match="activation must be one of"):
        gf.cells.rnn(4, activation=None)


def test_unknown_cell_kind():
    with pytest.raises(
        ValueError, match=r"cell kind must be one of .*got 'transformer'"
    ):
        gf.cells.make("transformer", 4)


@pytest.mark.parametrize("kind", KINDS)
def test_negative_or_bad_size(kind):
    with pytest.raises(ValueError, match="hidden_size must be an int >= 1, got -3"):
        gf.cells.make(kind, -3)
    with pytest.raises(TypeError, match="hidden_size must be an int, got float"):
        gf.cells.make(kind, 4.0)
    with pytest.raises(ValueError, match="input_size must be an int >= 1, got 0"):
        gf.cells.make(kind, 4).init(jax.random.key(0), 0)


def test_bad_init_options():
    with pytest.raises(ValueError, match="bias_init must be one of"):
        gf.cells.rnn(4, bias_init="ones")
    with pytest.raises(ValueError, match="initializer must be one of"):
        gf.cells.lstm(4, recurrent_init="he")
    with pytest.raises(ValueError, match="at most one of forget_bias and chrono_tmax"):
        gf.cells.lstm(4, forget_bias=1.0, chrono_tmax=10)
    with pytest.raises(ValueError, match="chrono_tmax must be > 2"):
        gf.cells.lstm(4, chrono_tmax=1.5)


def test_bad_carry(rnn):
    cell, params = rnn
    xs = jnp.ones((5, 2, 3))
    with pytest.raises(
        TypeError, match=r"carry must be shaped like .*RNNCarry\(h=\(2, 4\)\)"
    ):
        gf.unroll(cell, params, xs, jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"carry must have leaf shapes \[\(2, 4\)\]"):
        gf.unroll(cell, params, xs, gf.cells.RNNCarry(jnp.zeros((3, 4))))
    with pytest.raises(TypeError, match="carry must be shaped like"):
        gf.unroll(
            cell, params, xs, gf.cells.LSTMCarry(jnp.zeros((2, 4)), jnp.zeros((2, 4)))
        )
    with pytest.raises(TypeError, match="carry must have the dtype of xs, float32"):
        gf.unroll(cell, params, xs, gf.cells.RNNCarry(jnp.zeros((2, 4), jnp.int32)))
    with pytest.raises(TypeError, match="carry must be a pytree of arrays"):
        gf.unroll(cell, params, xs, "zeros")


def test_not_a_cell(rnn):
    _, params = rnn
    with pytest.raises(TypeError, match="cell must be a gradflow Cell"):
        gf.unroll("lstm", params, jnp.ones((5, 3)))


def test_bad_stack():
    with pytest.raises(ValueError, match="stack needs at least one cell"):
        gf.cells.stack([])
    with pytest.raises(TypeError, match=r"cells\[1\] must be a Cell"):
        gf.cells.stack([gf.cells.rnn(3), "gru"])
    inner = gf.cells.stack([gf.cells.rnn(3), gf.cells.gru(2)])
    with pytest.raises(ValueError, match=r"cells\[1\] is itself a stack; pass its"):
        gf.cells.stack([gf.cells.rnn(3), inner])


def test_bad_remat(rnn):
    cell, params = rnn
    with pytest.raises(ValueError, match="remat must be an int >= 1, got 0"):
        gf.unroll(cell, params, jnp.ones((5, 3)), remat=0)
