"""Reports from a results directory: figures, ``report.html`` and ``report.md``.

numpy + matplotlib only, never jax: ``gradflow report DIR`` runs in a process
that does no computation. ``FIGURES`` is the registry of figure names that an
experiment's ``[experiment] figures = [...]`` may list.
"""

from gradflow.report._audit import (
    AUDIT_KEYS,
    TrainingLog,
    audit,
    read_log,
    write_audit,
    zscore_spikes,
)
from gradflow.report._figures import CAPTIONS, FIGURES
from gradflow.report._write import write_report

__all__ = [
    "AUDIT_KEYS",
    "CAPTIONS",
    "FIGURES",
    "TrainingLog",
    "audit",
    "read_log",
    "write_audit",
    "write_report",
    "zscore_spikes",
]
