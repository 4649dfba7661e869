"""Training on long-memory tasks, with clipping transforms and monitors.

The clipping study (a sweep of training runs) is an experiment kind of
``gradflow.sweep``; this package holds the loop, the clip transforms and the
optimisers it uses.
"""

from ._clip import (
    CLIP_NAMES,
    AdaGCState,
    MonitorState,
    PercentileClipState,
    ZClipState,
    adagc,
    adaptive_grad_clip,
    clipper,
    monitor,
    percentile_clip,
    zclip,
)
from ._floss import Flossing, flossing
from ._loop import DIVERGENCE_REASONS, TrainLog, TrainResult, train
from ._network import model_for
from ._optim import OPTIMIZER_NAMES, optimizer

__all__ = [
    "CLIP_NAMES",
    "DIVERGENCE_REASONS",
    "OPTIMIZER_NAMES",
    "AdaGCState",
    "Flossing",
    "MonitorState",
    "PercentileClipState",
    "TrainLog",
    "TrainResult",
    "ZClipState",
    "adagc",
    "adaptive_grad_clip",
    "clipper",
    "flossing",
    "model_for",
    "monitor",
    "optimizer",
    "percentile_clip",
    "train",
    "zclip",
]
