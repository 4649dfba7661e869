"""Wiring a cell to a task: the model (``gf.models``) a task's loss expects."""

from __future__ import annotations

from .._checks import check_int
from .._unroll import check_cell
from ..cells import Cell
from ..models import Model, seq2seq, seq2vec
from ..tasks import Task


def model_for(cell: Cell, task: Task, *, embed_size: int = 32) -> Model:
    """The :mod:`gradflow.models` model that fits ``task`` around ``cell``.

    ``seq2vec`` for tasks read out at the last step, ``seq2seq`` for per-step
    tasks; an ``Embedding(vocab, embed_size)`` front end for token tasks; a
    ``Dense(task.output_size)`` readout without activation (the task's loss
    takes logits).

    Example:
        >>> task = gf.tasks.temporal_order(100)
        >>> model = gf.train.model_for(gf.cells.rnn(50), task)
    """
    check_cell(cell)
    if not isinstance(task, Task):
        raise TypeError(
            f"task must be a gradflow.tasks.Task, got {type(task).__name__}"
        )
    build = seq2vec if task.readout == "last" else seq2seq
    if task.tokens:
        embed = (task.input_size, check_int("embed_size", embed_size))
        return build(cell, task.output_size, embedding=embed, name=task.name)
    return build(cell, task.output_size, input_size=task.input_size, name=task.name)


def check_fits(model: Model, task: Task) -> None:
    """A model whose readout, width and inputs match what ``task`` feeds and grades."""
    if model.readout != task.readout:
        raise ValueError(
            f"model readout must be {task.readout!r} for task {task.name!r} "
            f"(seq2vec is 'last', seq2seq 'all'), got {model.readout!r}"
        )
    if model.out_features != task.output_size:
        raise ValueError(
            f"model out_features must be {task.output_size} for task "
            f"{task.name!r}, got {model.out_features}"
        )
    if task.tokens and model.vocab_size != task.input_size:
        raise ValueError(
            f"model must embed token ids of vocab_size {task.input_size} for task "
            f"{task.name!r}, got vocab_size {model.vocab_size}"
        )
    if not task.tokens and (
        model.vocab_size is not None or model.input_size != task.input_size
    ):
        raise ValueError(
            f"model must take float inputs of size {task.input_size} for task "
            f"{task.name!r}, got input_size {model.input_size} and vocab_size "
            f"{model.vocab_size}"
        )
