"""The training loop: learning, divergence stops, NaN batches, profiles, seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow as gf

# small programs: compile time dominates, and -O0 compiles several times faster
FAST = {"xla_backend_optimization_level": 0}


def test_lstm_learns_adding_past_chance():
    task = gf.tasks.adding(50)
    cell = gf.cells.lstm(32, chrono_tmax=50.0)
    _, log = gf.train.train(
        cell,
        task,
        "adam",
        key=jax.random.key(0),
        steps=300,
        learning_rate=1e-2,
        batch_size=32,
        clip=gf.train.clipper("global_norm", 1.0),
    )
    assert not bool(log.diverged)
    late = float(np.mean(log.loss[-30:]))
    assert late < task.chance_loss / 4
    assert float(np.mean(log.accuracy[-30:])) > 3 * task.chance_accuracy


def test_divergence_stops_the_run_and_masks_the_rest():
    task = gf.tasks.adding(12)
    cell = gf.cells.rnn(8, activation="relu", recurrent_init="gaussian", gain=1.5)
    params, log = gf.train.train(
        cell,
        task,
        "sgd",
        key=jax.random.key(1),
        steps=40,
        learning_rate=50.0,
        batch_size=8,
        compiler_options=FAST,
        param_divergence_factor=None,  # the loss and non-finite tests alone
    )
    assert bool(log.diverged)
    at = int(log.diverged_at)
    assert 0 < at < 40
    assert np.all(np.isfinite(log.loss[:at])) and np.all(np.isnan(log.loss[at:]))
    assert np.all(np.isnan(log.grad_norm[at:])) and not log.clipped[at:].any()
    # the step that blew up: non-finite, or past 100x the first loss
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(params))
    assert int(log.bad_input_at) == -1


def test_nan_batch_is_reported_with_its_step_and_skipped():
    task = gf.tasks.adding(10)
    steps = 6
    batch = jax.vmap(lambda k: task.sample(k, 4))(
        jax.random.split(jax.random.key(2), steps)
    )
    batch = batch._replace(xs=batch.xs.at[3, 5, 1, 0].set(jnp.nan))
    _, log = gf.train.train(
        gf.cells.rnn(4),
        task,
        "sgd",
        key=jax.random.key(0),
        steps=steps,
        learning_rate=0.01,
        batches=batch,
    )
    assert int(log.bad_input_at) == 3
    assert np.isnan(log.loss[3]) and np.all(np.isfinite(np.delete(log.loss, 3)))
    assert not bool(log.diverged) and int(log.diverged_at) == -1


def test_monitor_norm_and_profile_match_direct_computation():
    task = gf.tasks.adding(15)
    cell = gf.cells.rnn(6)
    key = jax.random.key(3)
    _, log = gf.train.train(
        cell,
        task,
        "sgd",
        key=key,
        steps=4,
        learning_rate=0.1,
        batch_size=5,
        clip=gf.train.clipper("global_norm", 1e-3),
        record_every=2,
        compiler_options=FAST,
    )
    net = gf.train.model_for(cell, task)
    k_init, k_data, k_prof = jax.random.split(key, 3)
    params = net.init(k_init)
    batch = task.sample(jax.random.fold_in(k_data, 0), 5)
    grads = jax.jit(jax.grad(lambda p: task.loss(net.logits(p, batch.xs), batch)))(
        params
    )
    assert float(log.grad_norm[0]) == pytest.approx(
        float(optax.tree.norm(grads)), rel=1e-5
    )
    np.testing.assert_allclose(log.clipped_norm, 1e-3, rtol=1e-4)
    assert log.clipped.all()
    np.testing.assert_array_equal(log.profile_steps, [0, 2, 4])
    prof = task.sample(k_prof, 5)

    def loss_hs(hs):
        return task.loss(net.head(params, hs), prof) * 5

    direct = jax.jit(
        lambda p: gf.hidden_grad_norms(cell, p["cell"], prof.xs, loss_hs).norms
    )(params)
    np.testing.assert_allclose(
        log.profile[0], np.mean(np.log10(direct), axis=1), rtol=1e-4, atol=1e-5
    )


def test_sentiment_classifier_learns_and_vmap_equals_a_python_loop():
    task = gf.tasks.sentiment(20, vocab_size=32)
    keys = jax.random.split(jax.random.key(4), 2)
    kw = dict(steps=120, learning_rate=1e-2, batch_size=32, record_every=60)
    kw.update(compiler_options=FAST)
    # Embedding(32, 8) → LSTM(16) → Dense(1, sigmoid), BCE on its logit
    model = gf.models.sentiment_classifier(32, 8, 16, chrono_tmax=20.0)
    a = gf.train.train(model, task, "adam", key=keys, vmap_seeds=True, **kw)
    b = gf.train.train(model, task, "adam", key=keys, vmap_seeds=False, **kw)
    assert a.log.loss.shape == (2, 120) and a.log.profile.shape == (2, 3, 20)
    # the same numbers either way (early steps: later ones amplify rounding)
    np.testing.assert_allclose(a.log.loss[:, :5], b.log.loss[:, :5], rtol=1e-4)
    np.testing.assert_allclose(a.log.profile[:, 0], b.log.profile[:, 0], rtol=1e-4)
    for log in (a.log, b.log):
        assert np.all(np.mean(log.accuracy[:, -20:], axis=1) > 0.9)
        assert np.all(np.mean(log.loss[:, -20:], axis=1) < task.chance_loss / 4)


def test_optimizer_names():
    for name in gf.train.OPTIMIZER_NAMES:
        assert isinstance(gf.train.optimizer(name, 0.1), optax.GradientTransformation)
    sgd = optax.sgd(1.0)
    assert gf.train.optimizer(sgd) is sgd


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(optimizer="adamax"), ValueError, "optimizer must be one of"),
        (dict(learning_rate=-1.0), ValueError, "learning_rate must be > 0"),
        (dict(steps=0), ValueError, "steps must be an int >= 1"),
        (dict(divergence_factor=1.0), ValueError, "divergence_factor must be > 1"),
        (dict(clip="global_norm"), TypeError, "clip must be an optax"),
        (dict(key=0), TypeError, "key must be a jax.random key"),
        (dict(task="adding"), TypeError, "task must be a gradflow.tasks.Task"),
        (dict(model="rnn"), TypeError, "model must be a gradflow Cell"),
        (
            dict(model=gf.models.seq2seq(gf.cells.rnn(4), 1, input_size=2)),
            ValueError,
            "readout must be 'last'",
        ),
    ],
)
def test_bad_input(kwargs, err, match):
    args = dict(
        model=gf.cells.rnn(4),
        task=gf.tasks.adding(10),
        optimizer="sgd",
        key=jax.random.key(0),
        steps=2,
    )
    args.update(kwargs)
    with pytest.raises(err, match=match):
        gf.train.train(
            args.pop("model"), args.pop("task"), args.pop("optimizer"), **args
        )


def test_a_parameter_norm_jump_is_divergence():
    # Issue 10's case: an unclipped tanh RNN at gain 3 under SGD takes one step
    # with a gradient norm ~1e6 into deep saturation; its loss stays flat.
    task = gf.tasks.temporal_order(50)
    cell = gf.cells.rnn(50, recurrent_init="gaussian", gain=3.0)

    def one_step(**kwargs):
        return gf.train.train(
            cell,
            task,
            "sgd",
            key=jax.random.key(0),
            steps=1,
            learning_rate=0.01,
            compiler_options=FAST,
            **kwargs,
        )

    after, log_off = one_step(param_divergence_factor=None)
    before, log_on = one_step()  # diverged: frozen at the params before the step
    assert float(log_off.grad_norm[0]) > 1e5 and not bool(log_off.diverged)
    ratio = float(optax.tree.norm(after) / optax.tree.norm(before))
    assert ratio > 10  # the jump the default factor 10 must catch
    assert float(jnp.linalg.norm(after["cell"]["W_hh"])) > 1000
    assert bool(log_on.diverged) and int(log_on.diverged_at) == 0
    assert gf.train.DIVERGENCE_REASONS[int(log_on.diverged_by)] == "param_jump"
    assert np.isnan(log_on.loss[0])
    # The criterion is exactly "norm grew by more than the factor".
    assert not bool(one_step(param_divergence_factor=ratio * 1.01)[1].diverged)
    assert bool(one_step(param_divergence_factor=ratio * 0.99)[1].diverged)


def test_inf_in_targets_is_bad_input_not_divergence():
    task = gf.tasks.adding(10)
    steps = 5
    batch = jax.vmap(lambda k: task.sample(k, 4))(
        jax.random.split(jax.random.key(3), steps)
    )
    batch = batch._replace(targets=batch.targets.at[2, 1].set(jnp.inf))
    _, log = gf.train.train(
        gf.cells.rnn(4),
        task,
        "sgd",
        key=jax.random.key(0),
        steps=steps,
        learning_rate=0.01,
        batches=batch,
        compiler_options=FAST,
    )
    assert int(log.bad_input_at) == 2
    assert not bool(log.diverged) and int(log.diverged_by) == 0
    assert np.isnan(log.loss[2]) and np.all(np.isfinite(np.delete(log.loss, 2)))
