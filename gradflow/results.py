"""The results directory: atomic writes and jax-free reading.

Layout (see ``docs/results-format.md``)::

    DIR/config.toml  DIR/provenance.json  DIR/axes.json
    DIR/points/<id>.npz   DIR/metrics.jsonl   [DIR/summary.json]

Everything here is numpy + the standard library, so ``gradflow report`` and
``gradflow.plots`` can read results in a process that never imports jax.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CONFIG = "config.toml"
PROVENANCE = "provenance.json"
AXES = "axes.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
POINTS = "points"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the new, never half.

    The bytes go to a temporary file in the same folder, are flushed to disk,
    and the temporary file is renamed over ``path`` (atomic on POSIX).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file owner-only; results are meant to be shared.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(value: Any) -> Any:
    """Numpy scalars/arrays to Python; NaN and ±inf to ``None`` (JSON has neither)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(
        path, json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n"
    )


def point_id(coords: Mapping[str, Any]) -> str:
    """A stable, filename-safe id for a grid point: ``cell=lstm,gain=1.5,...``.

    Keys keep their given order (the config's axis order), so the id is the same
    on every run of the same config.
    """
    parts = []
    for key, value in coords.items():
        text = repr(value) if isinstance(value, float) else str(value)
        parts.append(f"{key}={text}")
    return re.sub(r"[^A-Za-z0-9=,._+-]", "_", ",".join(parts))


def point_path(directory: str | os.PathLike, pid: str) -> Path:
    return Path(directory) / POINTS / f"{pid}.npz"


def save_point(
    directory: str | os.PathLike, pid: str, arrays: Mapping[str, np.ndarray]
) -> None:
    """Write one grid point's arrays (leading axis = seed) atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(point_path(directory, pid), buf.getvalue())


def load_point(directory: str | os.PathLike, pid: str) -> dict[str, np.ndarray]:
    # Our own handle: np.load leaks its file when the zip is torn.
    with open(point_path(directory, pid), "rb") as f, np.load(f) as data:
        return {k: data[k] for k in data.files}


def point_done(directory: str | os.PathLike, pid: str) -> bool:
    return point_path(directory, pid).exists()


class DamagedFileError(ValueError):
    """A results file that cannot be parsed; the message names it and what to do."""


def read_metrics(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """The ``metrics.jsonl`` records, one per point (the last record of an id wins).

    Records keep the order in which their ids first appear. A last line without
    its newline is a write cut short (the process was killed): it is ignored,
    and its point is recomputed on resume.

    Raises:
        DamagedFileError: a complete line is not a JSON object with an ``id``.
    """
    path = Path(directory) / METRICS
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    lines.pop()  # after the last newline: "" or a torn write
    by_id: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise _damaged(path, f"line {number} is not valid JSON ({err})") from err
        if not isinstance(record, dict) or "id" not in record:
            raise _damaged(path, f"line {number} is not a record with an id")
        by_id[record["id"]] = record
    return list(by_id.values())


def _damaged(path: Path, what: str) -> DamagedFileError:
    fixes = {
        METRICS: "delete that line (its point is recomputed on the next run)",
        CONFIG: "restore it, or run again with --force to start the directory over",
        PROVENANCE: "delete it (the next run writes a new one)",
    }
    fix = fixes.get(path.name, "restore or delete it")
    return DamagedFileError(f"{path} is damaged: {what}; {fix}")


def repair_metrics(directory: str | os.PathLike) -> None:
    """Cut a torn last line (a killed write) off ``metrics.jsonl``, so appends
    start on a fresh line. Call only while holding the directory's lock."""
    path = Path(directory) / METRICS
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def write_metrics(directory: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append one record to ``metrics.jsonl`` (one ``write`` of one line, synced).

    A record for an id already there supersedes it (:func:`read_metrics`).
    """
    line = json.dumps(to_jsonable(dict(record)), sort_keys=True) + "\n"
    path = Path(directory) / METRICS
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / CONFIG
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise _damaged(path, f"not valid TOML ({err})") from err


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file of a results directory, or ``None`` when it is not there.

    Raises:
        DamagedFileError: the file is not valid JSON (the message names it).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _damaged(path, f"not valid JSON ({err})") from err


# -- labels: the one way every layer names a clipping condition ---------------------

_OFF = ("none", "off", None)


def threshold_label(value: Any) -> str:
    """A threshold as written on an axis: ``1``, ``0.25``, ``none``, ``autoclip``."""
    if value is None:
        return "none"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return "none" if not math.isfinite(value) else f"{value:g}"
    return str(value)


def clip_label(coords: Mapping[str, Any]) -> str:
    """A clipping condition's label: ``none``, ``global_norm 1``, ``autoclip p10``.

    ``coords`` are a condition's coordinates (``clip``, and ``threshold`` or
    ``percentile``); without ``clip``, the threshold alone.
    """
    # a condition trained with gradient flossing says so
    floss = " + flossing" if coords.get("flossing") == "on" else ""
    clip = coords.get("clip")
    if clip in _OFF:
        return "none" + floss
    pct = coords.get("percentile")
    if clip == "autoclip" or (pct is not None and "threshold" not in coords):
        shown = f" p{pct:g}" if isinstance(pct, int | float) else ""
        return f"{clip}{shown}{floss}"
    th = threshold_label(coords.get("threshold"))
    return (f"{clip} {th}" if clip else th) + floss


@dataclass(frozen=True)
class Results:
    """A results directory, read without jax.

    Attributes:
        directory: where it lives.
        config: the resolved config (``config.toml``).
        provenance: versions, devices, git commit, wall time.
        axes: the named axes of each array name in the point files.
        records: the ``metrics.jsonl`` records (``id``, ``coords``, ``seeds``,
            ``metrics``).
        summary: ``summary.json`` (clipping studies) or ``None``.
    """

    directory: Path
    config: dict[str, Any]
    provenance: dict[str, Any]
    axes: dict[str, list[str]]
    records: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None

    def arrays(self, pid: str) -> dict[str, np.ndarray]:
        """The arrays of one point (leading axis = seed)."""
        return load_point(self.directory, pid)

    def select(self, **coords: Any) -> Iterator[dict[str, Any]]:
        """Records whose coordinates match every given ``key=value``."""
        for r in self.records:
            if all(r["coords"].get(k) == v for k, v in coords.items()):
                yield r

    def coord_values(self, key: str) -> list[Any]:
        """The distinct values of one coordinate, in first-seen order."""
        seen: list[Any] = []
        for r in self.records:
            v = r["coords"].get(key)
            if v is not None and v not in seen:
                seen.append(v)
        return seen


def unfinished(res: Results) -> str:
    """``"12 of 24 conditions ..."`` for a run with points still to do, else ``""``.

    The grid's size is ``provenance.json``'s ``points_total`` (written when a
    run starts); directories written before it existed say nothing.
    """
    total = res.provenance.get("points_total")
    done = len(res.records)
    if not isinstance(total, int) or done >= total:
        return ""
    return (
        f"{done} of {total} conditions: the run is unfinished (run the same "
        f"`gradflow run` command again to finish it)"
    )


def load(directory: str | os.PathLike) -> Results:
    """Read a results directory written by ``gradflow run``.

    Raises:
        FileNotFoundError: ``directory`` holds no ``metrics.jsonl`` or
            ``config.toml`` (not a results directory).
    """
    directory = Path(directory)
    if not (directory / CONFIG).exists() and not (directory / METRICS).exists():
        raise FileNotFoundError(
            f"{directory} is not a gradflow results directory "
            f"(no {CONFIG} or {METRICS})"
        )
    return Results(
        directory=directory,
        config=read_config(directory),
        provenance=read_json(directory / PROVENANCE) or {},
        axes=read_json(directory / AXES) or {},
        records=read_metrics(directory),
        summary=read_json(directory / SUMMARY),
    )
