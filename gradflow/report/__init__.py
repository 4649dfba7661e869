"""Reports from a results directory: figures, ``report.html`` and ``report.md``.

numpy + matplotlib only, never jax: ``gradflow report DIR`` runs in a process
that does no computation. The figures an experiment's ``[experiment] figures =
[...]`` may list and their captions are declared once, with the measurement or
experiment kind they belong to, in ``gradflow._specs`` (``CAPTIONS``, name ->
sentence, is a view of it); ``FIGURES`` maps each name to its drawing function
``f(results) -> Figure | None``, and :func:`register_figure` adds one.
"""

from __future__ import annotations

from typing import Any

from gradflow.report._audit import (
    AUDIT_KEYS,
    audit,
    audit_rows,
    to_json,
    write_audit,
    zscore_spikes,
)
from gradflow.report._figures import FIGURES, register_figure
from gradflow.report._logs import TrainingLog
from gradflow.report._read import read_log
from gradflow.report._write import write_report

__all__ = [
    "AUDIT_KEYS",
    "CAPTIONS",
    "FIGURES",
    "TrainingLog",
    "audit",
    "audit_rows",
    "read_log",
    "register_figure",
    "to_json",
    "write_audit",
    "write_report",
    "zscore_spikes",
]


def __getattr__(name: str) -> Any:
    from gradflow import _specs

    if name == "CAPTIONS":
        return {k: f.caption for k, f in _specs.figures().items()}
    raise AttributeError(f"module 'gradflow.report' has no attribute {name!r}")
