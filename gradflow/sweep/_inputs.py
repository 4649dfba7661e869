"""What a ``measure`` point feeds its cell: noise, or a task's inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gradflow import _names, tasks


def input_size(config: Mapping[str, Any], coords: Mapping[str, Any]) -> int:
    """Features per step: ``[input] size`` for noise, the task's width otherwise.

    A cell whose inputs must be as wide as its state (``width_bound``: the LRU,
    the selective SSM) gets noise ``hidden_size`` wide.
    """
    cell = coords.get("cell")
    kind = _names.CELLS.get(_names.base_kind(cell)) if cell else None
    if kind is not None and kind.width_bound:
        return coords["hidden_size"]
    if coords["input"] in _names.task_inputs():
        return tasks.make(coords["input"], coords["length"]).input_size
    return config["input"]["size"]


def sample_input(kind: str, key: jax.Array, shape: tuple[int, ...], scale: float):
    """One input sequence ``(T', D)``: noise of ``shape``, or a task's inputs.

    A task's sequence has the task's own number of steps (``T + 20`` for copy).
    """
    if kind in _names.task_inputs():
        task = tasks.make(kind, shape[0])
        return task.sample(key, 1).xs[:, 0].astype(jnp.float32)
    if kind == "gaussian":
        return scale * jax.random.normal(key, shape)
    if kind == "uniform":
        return jax.random.uniform(key, shape, minval=-scale, maxval=scale)
    return jnp.zeros(shape)
