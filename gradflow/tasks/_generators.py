"""Synthetic long-memory tasks, generated on the fly from a key at any length.

Every generator returns a :class:`Task`; ``task.sample(key, batch_size)`` is a
pure function (same key, same batch) that ``jit``/``vmap`` can trace.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .. import _names
from .._checks import check_int
from ._task import (
    Batch,
    Task,
    argmax_accuracy,
    binary_cross_entropy,
    softmax_cross_entropy,
)

ADDING_TOLERANCE = 0.04


def _batch_size(batch_size) -> int:
    return check_int("batch_size", batch_size)


def adding(length: int) -> Task:
    """The adding problem (Hochreiter & Schmidhuber 1997, as in DESIGN.md).

    Each step carries ``(value, marker)`` with ``value ~ U[-1, 1]``. One marker is
    in the first 10 steps (``[0, min(10, T//2 - 1))``), the other after it and
    before ``T/2``; the target is ``0.5 + (X1 + X2) / 4`` for the two marked
    values. A prediction is correct when its absolute error is under 0.04.

    Chance level (the best constant prediction, 0.5): mean squared error
    ``E[((X1 + X2)/4)²] = 1/24 ≈ 0.0417``; accuracy
    ``P(|X1 + X2| < 0.16) = 1 − 1.84²/4 = 0.1536``.

    Args:
        length: ``T >= 4``.

    Returns:
        A task with ``xs (T, B, 2)``, ``targets (B,)`` and readout ``"last"``
        (outputs ``(B, 1)``, loss: mean squared error).
    """
    steps = check_int("length", length, minimum=4)
    half = steps // 2
    first_end = min(10, half - 1)

    def sample(key: jax.Array, batch_size: int) -> Batch:
        b = _batch_size(batch_size)
        k_val, k_first, k_second = jax.random.split(key, 3)
        values = jax.random.uniform(k_val, (steps, b), minval=-1.0, maxval=1.0)
        first = jax.random.randint(k_first, (b,), 0, first_end)
        second = jax.random.randint(k_second, (b,), first_end, half)
        t = jnp.arange(steps)[:, None]
        marked = (t == first[None, :]) | (t == second[None, :])
        markers = marked.astype(values.dtype)
        xs = jnp.stack([values, markers], axis=-1)
        targets = 0.5 + jnp.sum(values * markers, axis=0) / 4.0
        return Batch(xs, targets)

    def loss(outputs, batch):
        return jnp.mean((outputs[:, 0] - batch.targets) ** 2)

    def accuracy(outputs, batch):
        err = jnp.abs(outputs[:, 0] - batch.targets)
        return jnp.mean((err < ADDING_TOLERANCE).astype(outputs.dtype))

    return Task(
        name="adding",
        length=steps,
        steps=steps,
        input_size=2,
        output_size=1,
        tokens=False,
        readout="last",
        sample=sample,
        loss=loss,
        accuracy=accuracy,
        chance_loss=1.0 / 24.0,
        chance_accuracy=1.0 - (2.0 - 4 * ADDING_TOLERANCE) ** 2 / 4.0,
    )


def copy(delay: int, *, symbols: int = 8, recall: int = 10) -> Task:
    """The copy (memory) task in the uRNN/expRNN convention.

    The input is ``recall`` symbols drawn from ``symbols`` classes (ids
    ``1..symbols``), then ``delay − 1`` blanks (id 0), a delimiter (id
    ``symbols + 1``) and ``recall`` blanks, one-hot encoded: ``T + 2·recall``
    steps in all. The target is blank everywhere except the last ``recall``
    steps, which must repeat the symbols. The loss is the cross-entropy averaged
    over every step; accuracy grades only the recalled steps.

    Chance level (the memoryless baseline: blank until the delimiter, then
    uniform over the symbols): cross-entropy ``recall·log(symbols)/(T + 2·recall)``
    (``10·log 8/(T + 20)`` by default); accuracy ``1/symbols``.

    Args:
        delay: ``T >= 1``.
        symbols: alphabet size (8).
        recall: how many symbols to remember (10).

    Returns:
        A task with ``xs (T + 2·recall, B, symbols + 2)``, ``targets`` and
        ``mask`` ``(T + 2·recall, B)`` and readout ``"all"`` (outputs
        ``(T + 2·recall, B, symbols + 1)`` logits).
    """
    delay = check_int("delay", delay)
    symbols = check_int("symbols", symbols, minimum=2)
    recall = check_int("recall", recall)
    steps = delay + 2 * recall
    n_in = symbols + 2

    def sample(key: jax.Array, batch_size: int) -> Batch:
        b = _batch_size(batch_size)
        seq = jax.random.randint(key, (recall, b), 1, symbols + 1)
        blanks = jnp.zeros((delay - 1, b), seq.dtype)
        marker = jnp.full((1, b), symbols + 1, seq.dtype)
        tail = jnp.zeros((recall, b), seq.dtype)
        ids = jnp.concatenate([seq, blanks, marker, tail], axis=0)
        targets = jnp.concatenate([jnp.zeros((delay + recall, b), seq.dtype), seq])
        mask = jnp.broadcast_to(
            (jnp.arange(steps) >= delay + recall)[:, None], ids.shape
        )
        return Batch(jax.nn.one_hot(ids, n_in), targets, mask)

    def loss(outputs, batch):
        return softmax_cross_entropy(outputs, batch.targets)

    def accuracy(outputs, batch):
        hit = (jnp.argmax(outputs, axis=-1) == batch.targets) & batch.mask
        return jnp.sum(hit) / jnp.sum(batch.mask)

    return Task(
        name="copy",
        length=delay,
        steps=steps,
        input_size=n_in,
        output_size=symbols + 1,
        tokens=False,
        readout="all",
        sample=sample,
        loss=loss,
        accuracy=accuracy,
        chance_loss=recall * math.log(symbols) / steps,
        chance_accuracy=1.0 / symbols,
    )


def temporal_order(length: int) -> Task:
    """The temporal order problem as set up by Pascanu, Mikolov & Bengio (2013).

    Six one-hot symbols: ``A``, ``B`` (ids 0, 1) and distractors ``c..f`` (ids
    2..5). ``A`` or ``B`` appears at one position in ``[T/10, 2T/10)`` and again at
    one in ``[5T/10, 6T/10)``; every other step is a random distractor. The class
    of the sequence is the order seen: ``AA, BA, AB, BB`` = ``v0 + 2·v1``
    (their ``tempOrder.py``), predicted at the last step.

    Chance level: cross-entropy ``log 4 ≈ 1.386``; accuracy ``1/4``.

    Args:
        length: ``T >= 10``.

    Returns:
        A task with ``xs (T, B, 6)``, ``targets (B,)`` class ids and readout
        ``"last"`` (outputs ``(B, 4)`` logits).
    """
    steps = check_int("length", length, minimum=10)
    tenth = int(steps * 0.1)

    def sample(key: jax.Array, batch_size: int) -> Batch:
        b = _batch_size(batch_size)
        k_noise, k_p0, k_p1, k_v0, k_v1 = jax.random.split(key, 5)
        ids = jax.random.randint(k_noise, (steps, b), 2, 6)
        p0 = jax.random.randint(k_p0, (b,), tenth, 2 * tenth)
        p1 = jax.random.randint(k_p1, (b,), int(steps * 0.5), int(steps * 0.5) + tenth)
        v0 = jax.random.randint(k_v0, (b,), 0, 2)
        v1 = jax.random.randint(k_v1, (b,), 0, 2)
        t = jnp.arange(steps)[:, None]
        ids = jnp.where(t == p0[None, :], v0[None, :], ids)
        ids = jnp.where(t == p1[None, :], v1[None, :], ids)
        return Batch(jax.nn.one_hot(ids, 6), v0 + 2 * v1)

    def loss(outputs, batch):
        return softmax_cross_entropy(outputs, batch.targets)

    def accuracy(outputs, batch):
        return argmax_accuracy(outputs, batch.targets)

    return Task(
        name="temporal_order",
        length=steps,
        steps=steps,
        input_size=6,
        output_size=4,
        tokens=False,
        readout="last",
        sample=sample,
        loss=loss,
        accuracy=accuracy,
        chance_loss=math.log(4.0),
        chance_accuracy=0.25,
    )


def sentiment(
    length: int, *, vocab_size: int = 32, words: int = 4, cues: int = 1
) -> Task:
    """A synthetic sentiment task with token inputs: a verdict lost in long filler.

    Token ids: 0 is padding (never drawn), ``1..words`` are positive words,
    ``words+1..2·words`` negative words, the rest neutral filler. A sequence is
    filler with ``cues`` sentiment words, all of one polarity, at distinct
    random positions in its first half; the label is 1 for positive, 0 for
    negative (balanced). Trained as text classification:
    ``Embedding → LSTM → Dense(1)`` with binary cross-entropy on the logit.

    Chance level: cross-entropy ``log 2 ≈ 0.693``; accuracy ``1/2``.

    Args:
        length: ``T >= 2``.
        vocab_size: number of token ids (at least ``2·words + 2``).
        words: sentiment words per polarity.
        cues: sentiment words per sequence (at most ``T // 2``).

    Returns:
        A task with int32 ``xs (T, B)``, float ``targets (B,)`` in {0, 1} and
        readout ``"last"`` (outputs ``(B, 1)`` logits).
    """
    steps = check_int("length", length, minimum=2)
    words = check_int("words", words)
    vocab_size = check_int("vocab_size", vocab_size, minimum=2 * words + 2)
    cues = check_int("cues", cues)
    half = steps // 2
    if cues > half:
        raise ValueError(f"cues must be at most length // 2 = {half}, got {cues}")

    def sample(key: jax.Array, batch_size: int) -> Batch:
        b = _batch_size(batch_size)
        k_fill, k_pos, k_word, k_label = jax.random.split(key, 4)
        ids = jax.random.randint(k_fill, (steps, b), 2 * words + 1, vocab_size)
        label = jax.random.bernoulli(k_label, 0.5, (b,))
        # ranks of iid uniforms pick ``cues`` distinct positions in the first half
        scores = jax.random.uniform(k_pos, (half, b))
        rank = jnp.argsort(jnp.argsort(scores, axis=0), axis=0)
        cue_at = jnp.concatenate(
            [rank < cues, jnp.zeros((steps - half, b), bool)], axis=0
        )
        word = jax.random.randint(k_word, (steps, b), 1, words + 1)
        word = word + jnp.where(label, 0, words)[None, :]
        ids = jnp.where(cue_at, word, ids).astype(jnp.int32)
        return Batch(ids, label.astype(jnp.float32))

    def loss(outputs, batch):
        return binary_cross_entropy(outputs[:, 0], batch.targets)

    def accuracy(outputs, batch):
        pred = (outputs[:, 0] > 0).astype(batch.targets.dtype)
        return jnp.mean((pred == batch.targets).astype(outputs.dtype))

    return Task(
        name="sentiment",
        length=steps,
        steps=steps,
        input_size=vocab_size,
        output_size=1,
        tokens=True,
        readout="last",
        sample=sample,
        loss=loss,
        accuracy=accuracy,
        chance_loss=math.log(2.0),
        chance_accuracy=0.5,
    )


#: The built-in tasks (the registry, ``gradflow._names.TASKS``, may hold more).
TASK_NAMES = tuple(_names.TASKS)

#: Task name -> ``builder(length, **options) -> Task`` (the names of
#: ``gradflow._names.TASKS``).
BUILDERS = {
    "adding": adding,
    "copy": copy,
    "temporal_order": temporal_order,
    "sentiment": sentiment,
}


def make(name: str, length: int, **options) -> Task:
    """Build a task by name, as a config file names it: ``make("adding", 100)``."""
    _names.lookup("task", _names.TASKS, name)
    return BUILDERS[name](length, **options)
