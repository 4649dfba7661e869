"""Weights & Biases history exports as Parquet for ``gradflow audit`` (``[wandb]``).

A run's history table (``_step`` and one column per metric, empty where a
metric was not logged) read with ``pyarrow``, imported only when such a file is
read. W&B's CSV download needs nothing: ``_logs.read_log`` reads it as CSV.
"""

from __future__ import annotations

from pathlib import Path

from gradflow.report._logs import STEP_KEYS, TrainingLog, from_rows, select


def read(
    path: Path, *, key: str | None = None, loss_key: str | None = None
) -> TrainingLog:
    """Read a history Parquet file.

    Raises:
        ValueError: not a readable Parquet file, or no norm column.
    """
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ImportError(
            f"reading Parquet needs pyarrow (pip install 'gradflow-jax[wandb]'): {err}"
        ) from err
    try:
        names = pq.read_schema(path).names
    except Exception as err:  # pyarrow's ArrowInvalid and OSError subclasses
        raise ValueError(f"{path}: not a readable Parquet file ({err})") from None
    sel = select(names, str(path), key=key, loss_key=loss_key)
    wanted = set(sel.names()) | set(STEP_KEYS)
    table = pq.read_table(path, columns=[n for n in names if n in wanted])
    rows = [(f"{path}, row {i + 1}", r) for i, r in enumerate(table.to_pylist())]
    if not rows:
        raise ValueError(f"{path}: the table has no rows (an empty run?)")
    return from_rows(rows, str(path), key=key, loss_key=loss_key)
