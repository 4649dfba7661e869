"""Provenance: what produced a results directory, and on what."""

from __future__ import annotations

import datetime
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gradflow._version import __version__

#: The ``gradflow`` package folder.
_PACKAGE = Path(__file__).resolve().parents[1]


def git_commit() -> str | None:
    """The commit of the gradflow checkout in use, or ``None`` (not a git tree)."""
    here = _PACKAGE
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def processes(devices: list[Any]) -> list[dict[str, Any]]:
    """Each process's index and devices (``"cpu:0"``...), in process order."""
    by_process: dict[int, list[str]] = {}
    for d in devices:
        by_process.setdefault(int(d.process_index), []).append(f"{d.platform}:{d.id}")
    return [{"process": i, "devices": by_process[i]} for i in sorted(by_process)]


def provenance(seeds: list[int], devices: list[Any] | None = None) -> dict[str, Any]:
    """``provenance.json`` at the start of a run (``wall_time_s`` filled in later)."""
    import jax

    devices = list(devices) if devices is not None else jax.devices()
    return {
        "gradflow": __version__,
        "jax": jax.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "processes": processes(devices),
        "git_commit": git_commit(),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "wall_time_s": 0.0,
        "seeds": list(seeds),
    }
