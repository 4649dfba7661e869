"""MLflow runs for ``gradflow audit`` (extra ``[mlflow]``): ``mlflow:RUN_ID``.

Read through MLflow's own client, imported only when such a log is read, so any
store its tracking URI names works: a sqlite database, a tracking server or a
``mlruns/`` file store. Of a step logged twice the latest timestamp wins.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gradflow.report._logs import TrainingLog, from_series, select


def _client(tracking_uri: str | None):
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    if uri and uri.startswith("sqlite:///"):
        # MLflow would create an empty database at a mistyped path
        db = Path(uri[len("sqlite:///") :])
        if not db.exists():
            raise FileNotFoundError(f"{db}: no such MLflow database ({uri})")
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError as err:
        raise ImportError(
            f"reading MLflow runs needs the mlflow package "
            f"(pip install 'gradflow-jax[mlflow]'): {err}"
        ) from err
    return MlflowClient(tracking_uri=uri), MlflowException, uri


def read(
    run_id: str,
    tracking_uri: str | None = None,
    *,
    key: str | None = None,
    loss_key: str | None = None,
) -> TrainingLog:
    """Read the metrics of MLflow run ``run_id``.

    Raises:
        ValueError: no such run in the store, or no norm metric.
    """
    source = f"mlflow:{run_id}"
    if not run_id:
        raise ValueError("mlflow:RUN_ID needs a run id, got an empty one")
    client, mlflow_error, uri = _client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except mlflow_error as err:
        where = uri or "MLflow's default store (set --tracking-uri)"
        raise ValueError(f"{source}: not found in {where}: {err.message}") from None
    sel = select(list(run.data.metrics), source, key=key, loss_key=loss_key)
    series = {}
    for name in sel.names():
        history = sorted(
            client.get_metric_history(run_id, name), key=lambda m: m.timestamp
        )
        series[name] = (
            np.array([m.step for m in history], np.int64),
            np.array([m.value for m in history], np.float64),
        )
    return from_series(series, sel, source)
