"""Training on long-memory tasks, with clipping transforms, monitors and studies."""

from ._clip import (
    CLIP_NAMES,
    MonitorState,
    PercentileClipState,
    clipper,
    monitor,
    percentile_clip,
)
from ._loop import TrainLog, TrainResult, train
from ._network import Network, network
from ._optim import OPTIMIZER_NAMES, optimizer

__all__ = [
    "CLIP_NAMES",
    "OPTIMIZER_NAMES",
    "MonitorState",
    "Network",
    "PercentileClipState",
    "TrainLog",
    "TrainResult",
    "clipper",
    "monitor",
    "network",
    "optimizer",
    "percentile_clip",
    "train",
]
