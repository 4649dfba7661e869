"""Synthetic long-memory tasks (adding, copy, temporal order, sentiment).

Each task is generated on the fly from a ``jax.random`` key at any length and
documents its chance-level loss and accuracy (``task.chance_loss``,
``task.chance_accuracy``).
"""

from ._generators import (
    ADDING_TOLERANCE,
    BUILDERS,
    TASK_NAMES,
    adding,
    copy,
    make,
    sentiment,
    temporal_order,
)
from ._task import Batch, Task, binary_cross_entropy

__all__ = [
    "ADDING_TOLERANCE",
    "BUILDERS",
    "TASK_NAMES",
    "Batch",
    "Task",
    "adding",
    "binary_cross_entropy",
    "copy",
    "make",
    "sentiment",
    "temporal_order",
]
