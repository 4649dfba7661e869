"""Training on long-memory tasks, with clipping transforms and monitors.

The clipping study (a sweep of training runs) is an experiment kind of
``gradflow.sweep``; this package holds the loop, the clip transforms and the
optimisers it uses.
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
