"""Training on long-memory tasks, with clipping transforms, monitors and studies.

Names load on first use: the clipping-study config helpers
(``validate_clipping_section``, ``quick``, ``clipping_grid``,
``summarize_clipping``, ``CLIPPING_DEFAULTS``) never import jax, so a process
that only reads a results directory stays jax-free.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CLIP_NAMES": "_clip",
    "MonitorState": "_clip",
    "PercentileClipState": "_clip",
    "ZClipState": "_clip",
    "adaptive_grad_clip": "_clip",
    "zclip": "_clip",
    "clipper": "_clip",
    "monitor": "_clip",
    "percentile_clip": "_clip",
    "TrainLog": "_loop",
    "TrainResult": "_loop",
    "train": "_loop",
    "model_for": "_network",
    "OPTIMIZER_NAMES": "_optim",
    "optimizer": "_optim",
    "CLIPPING_AXES": "_study",
    "CLIPPING_DEFAULTS": "_study",
    "clipping_grid": "_study",
    "condition_label": "_study",
    "quick": "_study",
    "run_clipping_point": "_study",
    "summarize_clipping": "_study",
    "validate_clipping_section": "_study",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradflow.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
