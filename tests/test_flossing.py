"""gf.train.flossing: the differentiable QR pass, its peer, and what flossing does."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow as gf


def _chaotic(n=24):
    """A tanh RNN at gain 2 (chaotic: λ_1 ≈ 0.07 under small input noise)."""
    cell = gf.cells.rnn(n, "tanh", bias_init="zeros")
    params = cell.init(jax.random.key(0), 1)
    w = 2.0 * jax.random.normal(jax.random.key(1), (n, n)) / np.sqrt(n)
    return cell, {**params, "W_hh": w}


def test_exponents_equal_the_measurement():
    cell, params = _chaotic(8)
    xs = 0.1 * jax.random.normal(jax.random.key(2), (30, 2, 1))
    got = jax.jit(lambda p: gf.train.flossing(3).exponents(cell, p, xs))(params)
    want = gf.lyapunov_spectrum(cell, params, xs, k=3).exponents
    # the same frame and warm-up: the same numbers, up to the column order
    np.testing.assert_allclose(-np.sort(-got, axis=-1), want, atol=1e-5)


@pytest.mark.usefixtures("x64")
def test_flossing_loss_gradient_matches_finite_differences():
    cell, params = _chaotic(4)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
    xs = 0.1 * jax.random.normal(jax.random.key(3), (20, 2, 1), jnp.float64)
    floss = gf.train.flossing(2)

    def loss(w):
        return floss.loss(cell, {**params, "W_hh": w}, xs)

    d = jax.random.normal(jax.random.key(4), (4, 4), jnp.float64)
    w = params["W_hh"]
    eps = 1e-6
    fd = (loss(w + eps * d) - loss(w - eps * d)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(jax.grad(loss)(w), d), fd, rtol=1e-5)


def test_flossing_brings_the_first_exponents_to_zero():
    cell, params = _chaotic()
    k, steps = 2, 120
    xs = 0.1 * jax.random.normal(jax.random.key(5), (100, 1, 1))
    fresh = 0.1 * jax.random.normal(jax.random.key(6), (2000, 4, 1))
    before = gf.lyapunov_spectrum(cell, params, fresh, k=k).exponents
    assert np.all(before[:, 0] > 0.05)  # chaotic
    floss = gf.train.flossing(k)
    opt = optax.adam(1e-3)

    @jax.jit
    def run(p):
        def one(c, _):
            p, state = c
            grads = jax.grad(lambda q: floss.loss(cell, q, xs))(p)
            updates, state = opt.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), None

        return jax.lax.scan(one, (p, opt.init(p)), None, length=steps)[0][0]

    flossed = run(params)
    # on its own inputs (the measurement's QR pass, not flossing's)
    on_train = gf.lyapunov_spectrum(cell, flossed, xs, k=k).exponents[0]
    assert np.all(np.abs(on_train) < 0.02), on_train
    # and on fresh inputs over 2000 steps: no longer chaotic, near zero
    after = gf.lyapunov_spectrum(cell, flossed, fresh, k=k).exponents
    assert np.all(np.abs(after) < 0.05), after


def test_preflossing_in_train():
    task = gf.tasks.adding(10)
    cell = gf.cells.rnn(8, gain=2.0)
    key = jax.random.key(0)
    floss = gf.train.flossing(2, before=30, every=1, weight=0.5)
    flossed = gf.train.train(
        cell,
        task,
        key=key,
        steps=1,
        learning_rate=1e-3,
        batch_size=4,
        flossing=floss,
        compiler_options={"xla_backend_optimization_level": 0},
    )
    assert np.all(np.isfinite(flossed.log.loss))
    net = gf.train.model_for(cell, task)
    start = net.init(jax.random.split(key, 3)[0])  # what train starts from
    batch = task.sample(jax.random.key(9), 8)

    def floss_of(params):
        xs = net.inputs(params, batch.xs)
        return float(floss.loss(cell, params["cell"], xs))

    # 30 flossing steps and one task step at lr 1e-3 move the exponents
    assert floss_of(flossed.params) < 0.5 * floss_of(start)


def test_bad_input():
    cell, params = _chaotic(4)
    xs = jnp.zeros((10, 1))
    with pytest.raises(ValueError, match="k must be <= the state size 4"):
        gf.train.flossing(5).loss(cell, params, xs)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        gf.train.flossing(2, weight=-0.1)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        gf.train.flossing(0)
    with pytest.raises(ValueError, match="flossing k must be <= the state size 3"):
        gf.train.train(
            gf.cells.rnn(3),
            gf.tasks.adding(5),
            key=jax.random.key(0),
            steps=1,
            flossing=gf.train.flossing(4),
        )
    with pytest.raises(TypeError, match="flossing must be"):
        gf.train.train(
            gf.cells.rnn(3),
            gf.tasks.adding(5),
            key=jax.random.key(0),
            steps=1,
            flossing=2,
        )
