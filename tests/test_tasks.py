"""Task generators: shapes, labels recomputed by hand, documented chance levels."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf


def _sample(task, key, batch):
    return jax.device_get(
        jax.jit(task.sample, static_argnums=1)(jax.random.key(key), batch)
    )


def test_adding_markers_targets_and_chance():
    task = gf.tasks.adding(50)
    b = _sample(task, 0, 4000)
    assert b.xs.shape == (50, 4000, 2) and b.targets.shape == (4000,)
    assert b.mask is None
    values, markers = b.xs[..., 0], b.xs[..., 1]
    assert np.all((values >= -1) & (values <= 1))
    assert np.all(markers.sum(0) == 2)
    pos = np.sort(np.argwhere(markers.T == 1)[:, 1].reshape(-1, 2), axis=1)
    assert pos[:, 0].min() >= 0 and pos[:, 0].max() < 10
    assert pos[:, 1].min() >= 10 and pos[:, 1].max() < 25
    idx = np.arange(4000)
    want = 0.5 + (values[pos[:, 0], idx] + values[pos[:, 1], idx]) / 4
    np.testing.assert_allclose(b.targets, want, rtol=1e-6)
    # the best constant predictor (0.5) sits at the documented chance level
    const = jnp.full((4000, 1), 0.5)
    loss = float(jax.jit(task.loss)(const, b))
    acc = float(jax.jit(task.accuracy)(const, b))
    assert task.chance_loss == pytest.approx(1 / 24)
    assert loss == pytest.approx(task.chance_loss, rel=0.05)
    assert acc == pytest.approx(task.chance_accuracy, abs=0.02)
    # a perfect prediction is accurate
    assert float(task.accuracy(b.targets[:, None], b)) == 1.0


def test_copy_layout_and_memoryless_baseline():
    delay = 7
    task = gf.tasks.copy(delay)
    assert task.steps == delay + 20
    b = _sample(task, 1, 2000)
    assert b.xs.shape == (27, 2000, 10) and b.targets.shape == (27, 2000)
    ids = b.xs.argmax(-1)
    assert np.all(b.xs.sum(-1) == 1)
    assert np.all((ids[:10] >= 1) & (ids[:10] <= 8))
    assert np.all(ids[10 : 10 + delay - 1] == 0)
    assert np.all(ids[10 + delay - 1] == 9)
    assert np.all(ids[10 + delay :] == 0)
    assert np.all(b.targets[: delay + 10] == 0)
    np.testing.assert_array_equal(b.targets[delay + 10 :], ids[:10])
    assert b.mask.sum() == 10 * 2000 and np.all(b.mask[delay + 10 :])
    # memoryless: blank until the delimiter, then uniform over the 8 symbols
    logits = np.full((27, 2000, 9), -1e9, np.float32)
    logits[: delay + 10, :, 0] = 0.0
    logits[delay + 10 :, :, 1:] = 0.0
    loss = float(jax.jit(task.loss)(jnp.asarray(logits), b))
    assert task.chance_loss == pytest.approx(10 * math.log(8) / (delay + 20))
    assert loss == pytest.approx(task.chance_loss, rel=1e-5)
    acc = float(jax.jit(task.accuracy)(jnp.asarray(logits), b))
    assert acc == pytest.approx(1 / 8, abs=0.02)


def test_temporal_order_positions_and_classes():
    task = gf.tasks.temporal_order(60)
    b = _sample(task, 2, 4000)
    assert b.xs.shape == (60, 4000, 6) and b.targets.shape == (4000,)
    ids = b.xs.argmax(-1)
    relevant = ids < 2
    assert np.all(relevant.sum(0) == 2)
    pos = np.sort(np.argwhere(relevant.T)[:, 1].reshape(-1, 2), axis=1)
    assert pos[:, 0].min() >= 6 and pos[:, 0].max() < 12
    assert pos[:, 1].min() >= 30 and pos[:, 1].max() < 36
    idx = np.arange(4000)
    want = ids[pos[:, 0], idx] + 2 * ids[pos[:, 1], idx]
    np.testing.assert_array_equal(b.targets, want)
    np.testing.assert_allclose(
        np.bincount(b.targets, minlength=4) / 4000, 0.25, atol=0.03
    )
    loss = float(task.loss(jnp.zeros((4000, 4)), b))
    assert loss == pytest.approx(task.chance_loss, rel=1e-6)
    assert task.chance_loss == pytest.approx(math.log(4))


def test_sentiment_tokens_labels_and_chance():
    task = gf.tasks.sentiment(40, vocab_size=30, words=4, cues=3)
    b = _sample(task, 3, 3000)
    assert b.xs.shape == (40, 3000) and b.xs.dtype == np.int32
    assert b.xs.min() >= 1 and b.xs.max() < 30
    positive = (b.xs >= 1) & (b.xs <= 4)
    negative = (b.xs >= 5) & (b.xs <= 8)
    cues = positive | negative
    assert np.all(cues.sum(0) == 3) and not cues[20:].any()
    label = b.targets.astype(bool)
    assert np.all(positive.sum(0)[label] == 3) and np.all(negative.sum(0)[~label] == 3)
    assert abs(label.mean() - 0.5) < 0.03
    assert float(task.loss(jnp.zeros((3000, 1)), b)) == pytest.approx(
        math.log(2), rel=1e-6
    )
    assert task.tokens and task.chance_accuracy == 0.5


def test_same_key_same_batch_and_make():
    task = gf.tasks.make("adding", 20)
    a, b = _sample(task, 5, 3), _sample(task, 5, 3)
    np.testing.assert_array_equal(a.xs, b.xs)
    assert not np.array_equal(a.xs, _sample(task, 6, 3).xs)
    assert set(gf.tasks.TASK_NAMES) == {"adding", "copy", "temporal_order", "sentiment"}


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: gf.tasks.make("addition", 10), "task must be one of"),
        (lambda: gf.tasks.adding(3), "length must be an int >= 4"),
        (lambda: gf.tasks.temporal_order(9), "length must be an int >= 10"),
        (lambda: gf.tasks.copy(0), "delay must be an int >= 1"),
        (lambda: gf.tasks.sentiment(10, cues=6), "cues must be at most"),
        (lambda: gf.tasks.sentiment(10, vocab_size=5), "vocab_size"),
        (lambda: gf.tasks.adding(10).sample(jax.random.key(0), 0), "batch_size"),
    ],
)
def test_bad_input(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_type():
    with pytest.raises(TypeError, match="length must be an int"):
        gf.tasks.adding(10.0)
