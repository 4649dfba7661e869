"""The task record: a synthetic long-memory task as a bundle of pure functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class Batch(NamedTuple):
    """One minibatch, time-major.

    Attributes:
        xs: ``(T, B, input_size)`` floats, or ``(T, B)`` int32 token ids for a
            token task (``Task.tokens``).
        targets: ``(B,)`` (a regression value or a class id) or ``(T, B)`` class
            ids for a sequence-to-sequence task.
        mask: ``(T, B)`` bool, the steps that accuracy grades (sequence tasks
            only), else ``None``.
    """

    xs: jax.Array
    targets: jax.Array
    mask: jax.Array | None = None


class Task(NamedTuple):
    """A task generated on the fly from a key, at any length.

    Attributes:
        name: ``"adding"``, ``"copy"``, ``"temporal_order"`` or ``"sentiment"``.
        length: the ``T`` the task was built with.
        steps: the number of time steps in ``xs`` (``T`` except for the copy
            task, whose sequences are ``T + 20`` long).
        input_size: features per step, or the vocabulary size of a token task.
        output_size: readout width (1 for regression and binary tasks).
        tokens: whether ``xs`` holds int token ids (feed an embedding first).
        readout: ``"last"`` (one prediction from the last hidden state,
            outputs ``(B, output_size)``) or ``"all"`` (one per step, outputs
            ``(T, B, output_size)``).
        sample: ``sample(key, batch_size) -> Batch``.
        loss: ``loss(outputs, batch) -> ()``; ``outputs`` are raw readout values
            (logits for classification tasks).
        accuracy: ``accuracy(outputs, batch) -> ()``, a share in [0, 1].
        chance_loss: the loss of the task's baseline predictor, one that
            ignores what must be remembered (each generator documents it).
        chance_accuracy: that predictor's expected accuracy.
    """

    name: str
    length: int
    steps: int
    input_size: int
    output_size: int
    tokens: bool
    readout: str
    sample: Callable[[jax.Array, int], Batch]
    loss: Callable[[jax.Array, Batch], jax.Array]
    accuracy: Callable[[jax.Array, Batch], jax.Array]
    chance_loss: float
    chance_accuracy: float


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of int ``labels (...)`` under ``logits (..., K)`` (nats)."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def argmax_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype))


def binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean binary cross-entropy from logits (nats), stable for any logit size.

    The one binary cross-entropy of gradflow: the sentiment task's loss and
    ``gradflow.models.binary_cross_entropy``.

    Args:
        logits: ``(*batch, 1)`` or ``(*batch,)``.
        labels: in ``[0, 1]``, shaped like ``logits`` or ``(*batch,)`` when the
            logits have a trailing axis of 1.

    Returns:
        A scalar: ``mean(-y log σ(z) - (1 - y) log(1 - σ(z)))``.
    """
    logits_shape = tuple(jnp.shape(logits))
    labels_shape = tuple(jnp.shape(labels))
    if not jnp.issubdtype(jnp.result_type(logits), jnp.floating):
        raise TypeError(
            f"logits must have a floating dtype, got {jnp.result_type(logits)}"
        )
    if labels_shape != logits_shape:
        if logits_shape[-1:] == (1,) and labels_shape == logits_shape[:-1]:
            labels = jnp.asarray(labels)[..., None]
        else:
            raise ValueError(
                f"labels must have shape {logits_shape} (or {logits_shape[:-1]} "
                f"when the logits end in 1), got {labels_shape}"
            )
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
