"""``read_log``: a training log from a path or ``mlflow:RUN_ID``, by its format.

The CSV/JSON/npz/results readers are in ``_logs``; the optional formats each in
their own module, imported only when such a log is read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gradflow._checks import check_int
from gradflow.report import _logs
from gradflow.report._logs import TrainingLog


def read_log(
    path: str | os.PathLike,
    *,
    point: str | None = None,
    seed: int = 0,
    key: str | None = None,
    loss_key: str | None = None,
    tracking_uri: str | None = None,
) -> TrainingLog:
    """Read a per-step gradient-norm log.

    Accepted inputs:

    * CSV with a header (W&B's CSV download included): a norm column (one of
      :data:`_logs.NORM_KEYS`, or ``key``), optionally a step column (``step``,
      ``_step``, ``Step``, ``global_step``, ...; else the record's index),
      ``loss``, ``clipped`` (true/false or 1/0; ``fired`` as
      ``gf.train.monitor`` names it) and per-group norms ``<norm>/<name>``;
    * JSONL: one object per line with the same keys (records without a norm,
      such as evaluation records, are skipped); JSON: a list of such objects
      or one object of equal-length lists (e.g. a ``gf.train.TrainLog``);
    * ``.npz`` with those arrays (``(seeds, steps)`` arrays take ``seed``);
    * ``.parquet`` (W&B's history export; extra ``[wandb]``, needs pyarrow);
    * a TensorBoard event file or run directory (extra ``[tensorboard]``);
    * ``mlflow:RUN_ID`` (extra ``[mlflow]``) in the store ``tracking_uri``
      (default: ``MLFLOW_TRACKING_URI``, then MLflow's own default);
    * a gradflow results directory of a clipping study: the point ``point``
      (default: the first) and its seed index ``seed``.

    Of a step logged twice the last record wins and unsorted steps are
    sorted; both are said in ``notes``. In CSV, JSONL and Parquet an empty
    cell (or ``null``) means "not logged at this step"; ``nan`` is a NaN.

    Args:
        path: the file, directory or ``mlflow:RUN_ID``.
        point: a results directory's point id.
        seed: which seed (row) of a results directory or ``.npz``.
        key: the gradient-norm series (default: the first of :data:`_logs.NORM_KEYS`).
        loss_key: the loss series (default: the first of :data:`_logs.LOSS_KEYS`).
        tracking_uri: MLflow's tracking URI.

    Returns:
        A :class:`TrainingLog`, sorted by step.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no norm series, values that are not numbers (naming the
            file and the line or record), a compressed or binary file.
    """
    seed = check_int("seed", seed, minimum=0)
    if isinstance(path, str) and path.startswith("mlflow:"):
        from gradflow.report import _logs_mlflow

        return _logs_mlflow.read(
            path[len("mlflow:") :], tracking_uri, key=key, loss_key=loss_key
        )
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_dir():
        from gradflow.report import _logs_tensorboard

        if _logs_tensorboard.event_files(path):
            return _logs_tensorboard.read(path, key=key, loss_key=loss_key)
        return _logs.from_results(path, point, seed)
    with open(path, "rb") as f:
        head = f.read(8)
    kind = _logs.sniff(path, head)
    if kind == "tensorboard":
        from gradflow.report import _logs_tensorboard

        return _logs_tensorboard.read(path, key=key, loss_key=loss_key)
    if kind == "parquet" or path.suffix.lower() == ".parquet":
        from gradflow.report import _logs_wandb

        return _logs_wandb.read(path, key=key, loss_key=loss_key)
    if path.suffix.lower() == ".npz":
        with np.load(path) as z:
            return _logs.from_arrays(
                {k: z[k] for k in z.files}, str(path), seed, key=key, loss_key=loss_key
            )
    return _logs.read_text(path, seed, key=key, loss_key=loss_key)
