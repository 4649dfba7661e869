"""Training logs for ``gradflow audit``: named series of per-step scalars.

Every reader ends in :func:`from_series`: a mapping of series names (columns,
TensorBoard tags, MLflow metric keys) to ``(steps, values)``, from which it
picks the gradient norm (``key``, or the first of :data:`NORM_KEYS`), the loss
(``loss_key`` or :data:`LOSS_KEYS`), a ``clipped`` flag and per-group norms
(``<norm key>/<name>``), and aligns them on the norm's steps. The readers of
optional formats live in their own modules and import their package lazily:
TensorBoard (``_logs_tensorboard``), MLflow (``_logs_mlflow``), Parquet
(``_logs_wandb``); ``_read.read_log`` picks the reader. numpy only here.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Gradient-norm series names recognised without ``--key``, in order of preference.
NORM_KEYS = (
    "grad_norm",
    "gradient_norm",
    "train/grad_norm",
    "train/gradient_norm",
    "optimizer/grad_norm",
    "grad_norm_total",
    "grad_2.0_norm_total",
    "global_grad_norm",
    "norm_before",
    "norm_before_clip",
    "grad_norm_before",
    "total_norm",
    "norm",
)
STEP_KEYS = ("step", "_step", "Step", "global_step", "trainer/global_step", "iter")
STEP_KEYS += ("iteration",)
LOSS_KEYS = ("loss", "train_loss", "train/loss", "training_loss", "loss/train")
CLIPPED_KEYS = ("clipped", "fired")
#: How many series names an error lists before "...".
_SHOWN = 40


@dataclass(frozen=True)
class TrainingLog:
    """Per-step records of one training run.

    Attributes:
        step: ``(n,)`` int64 step numbers, increasing.
        grad_norm: ``(n,)`` float64 global gradient norm before clipping.
        loss: ``(n,)`` float64 (NaN where no loss was logged) or ``None``.
        clipped: ``(n,)`` bool (whether the run's own clipping fired) or ``None``.
        source: where it was read from.
        groups: per-group norms, name -> ``(n,)`` float64 aligned on ``step``
            (NaN where the group was not logged), or ``None``.
        notes: what reading changed (duplicate or unsorted steps, a global norm
            computed from groups), one sentence each.
    """

    step: np.ndarray
    grad_norm: np.ndarray
    loss: np.ndarray | None = None
    clipped: np.ndarray | None = None
    source: str = ""
    groups: Mapping[str, np.ndarray] | None = None
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Selection:
    """Which series of a log hold the norm, loss, clip flag and groups."""

    norm: str | None
    loss: str | None
    clipped: str | None
    groups: tuple[str, ...]

    def names(self) -> list[str]:
        picked = [self.norm, self.loss, self.clipped, *self.groups]
        return [n for n in picked if n is not None]


def _shown(names: Sequence[str]) -> str:
    names = sorted(names)
    more = f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(map(repr, names[:_SHOWN])) + more


def _find(names: Sequence[str], wanted: Sequence[str]) -> str | None:
    # a W&B panel export names its columns "<run> - <metric>"
    for k in wanted:
        hits = [n for n in names if n == k or n.endswith(f" - {k}")]
        if hits:
            return hits[0]
    return None


def select(
    names: Sequence[str],
    source: str,
    *,
    key: str | None = None,
    loss_key: str | None = None,
) -> Selection:
    """Pick the series of ``names`` to read (see the module doc).

    Raises:
        ValueError: ``key``/``loss_key`` is not among ``names``, or no norm
            series is found (the message lists the series there are).
    """
    names = [n for n in names if not n.endswith(("__MIN", "__MAX"))]
    for arg, value in (("key", key), ("loss_key", loss_key)):
        if value is not None and value not in names:
            raise ValueError(
                f"{source}: {arg} {value!r} is not a series of this log; it holds "
                f"{_shown(names) or 'no series'}"
            )
    norm = key if key is not None else _find(names, NORM_KEYS)
    prefix = "grad_norm/" if norm is None else norm + "/"
    groups = tuple(n for n in names if n.startswith(prefix) and n != norm)
    if norm is None and not groups:
        raise ValueError(
            f"{source}: no gradient-norm series; expected one of "
            f"{', '.join(NORM_KEYS)} (or pass --key NAME); the log holds "
            f"{_shown(names) or 'no series (an empty run?)'}"
        )
    return Selection(
        norm=norm,
        loss=loss_key if loss_key is not None else _find(names, LOSS_KEYS),
        clipped=_find(names, CLIPPED_KEYS),
        groups=groups,
    )


def _dedup(
    steps: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Sort by step; of repeated steps keep the last record. Returns the count."""
    unsorted = bool(np.any(np.diff(steps) < 0))
    order = np.argsort(steps, kind="stable")
    s, v = steps[order], values[order]
    last = np.ones(s.size, bool)
    last[:-1] = s[1:] != s[:-1]
    return s[last], v[last], int(s.size - last.sum()), unsorted


def from_series(
    series: Mapping[str, tuple[Any, Any]], selection: Selection, source: str
) -> TrainingLog:
    """Assemble a :class:`TrainingLog` from ``name -> (steps, values)``.

    Steps are sorted; of a step recorded twice (a resumed run) the last record
    wins, with a note. Loss, clip flag and groups are aligned on the norm's steps.
    """
    notes: list[str] = []
    clean: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in selection.names():
        steps, values = series[name]
        s = np.asarray(steps, np.int64).reshape(-1)
        v = np.asarray(values, np.float64).reshape(-1)
        s, v, dups, unsorted = _dedup(s, v)
        if dups and name in (selection.norm, selection.loss):
            notes.append(
                f"{name}: {dups} duplicate step record(s) (a resumed run?); the last "
                f"record of each step is used"
            )
        if unsorted and name == selection.norm:
            notes.append(f"{name}: steps were not in order; sorted by step")
        clean[name] = (s, v)
    if selection.norm is not None:
        step, norm = clean[selection.norm]
    else:
        # the global norm of a partition of the parameters from its parts
        common = None
        for g in selection.groups:
            common = (
                clean[g][0] if common is None else np.intersect1d(common, clean[g][0])
            )
        step = common
        sq = sum(_align(step, *clean[g]) ** 2 for g in selection.groups)
        norm = np.sqrt(sq)
        notes.append(
            f"no global norm logged: computed as the root sum of squares of the "
            f"{len(selection.groups)} grad_norm/<name> series (true if they "
            f"partition the parameters)"
        )

    def aligned(name: str | None) -> np.ndarray | None:
        return None if name is None else _align(step, *clean[name])

    clipped = aligned(selection.clipped)
    log = TrainingLog(
        step=step,
        grad_norm=norm,
        loss=aligned(selection.loss),
        clipped=None if clipped is None else np.nan_to_num(clipped) != 0,
        source=source,
        groups={g[len(_prefix(selection)) :]: aligned(g) for g in selection.groups}
        or None,
        notes=tuple(notes),
    )
    return check_log(log)


def _prefix(selection: Selection) -> str:
    return "grad_norm/" if selection.norm is None else selection.norm + "/"


def _align(step: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    out = np.full(step.shape, np.nan)
    idx = np.searchsorted(s, step)
    ok = idx < s.size
    ok[ok] = s[idx[ok]] == step[ok]
    out[ok] = v[idx[ok]]
    return out


def check_log(log: TrainingLog) -> TrainingLog:
    """Refuse an empty log or negative norms; sort by step if needed."""
    if log.grad_norm.ndim != 1 or log.grad_norm.size == 0:
        raise ValueError(
            f"{log.source}: expected a non-empty 1-D series of gradient norms, got "
            f"shape {log.grad_norm.shape} (an empty run?)"
        )
    if np.any(log.grad_norm[np.isfinite(log.grad_norm)] < 0):
        i = int(np.flatnonzero(log.grad_norm < 0)[0])
        raise ValueError(
            f"{log.source}: gradient norms must be >= 0, got {log.grad_norm[i]} at "
            f"step {log.step[i]}"
        )
    order = np.argsort(log.step, kind="stable")
    if np.any(order != np.arange(order.size)):
        pick = lambda a: None if a is None else a[order]  # noqa: E731
        log = TrainingLog(
            log.step[order],
            log.grad_norm[order],
            pick(log.loss),
            pick(log.clipped),
            log.source,
            None
            if log.groups is None
            else {k: v[order] for k, v in log.groups.items()},
            (*log.notes, "steps were not in order; sorted by step"),
        )
    return log


def _as_float(value: Any, where: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return float(value.strip().lower() == "true")
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: expected a number, got {value!r}") from err


def _missing(value: Any) -> bool:
    # a wide log (W&B, JSONL with evaluation records) leaves a cell empty at the
    # steps where that metric was not logged
    return value is None or (isinstance(value, str) and value.strip() == "")


def from_rows(
    rows: Sequence[tuple[str, Mapping[str, Any]]],
    source: str,
    *,
    key: str | None = None,
    loss_key: str | None = None,
) -> TrainingLog:
    """A log from records ``(where, {column: value})`` (CSV rows, JSONL lines).

    Empty cells (and JSON ``null``) are "not logged at this step"; without a
    step column a record's step is the number of records with a norm before it.
    """
    columns: dict[str, None] = {}
    for _, r in rows:
        columns.update(dict.fromkeys(r))
    names = [str(c) for c in columns]
    sel = select(names, source, key=key, loss_key=loss_key)
    step_key = _find(names, STEP_KEYS)
    series: dict[str, tuple[list[int], list[float]]] = {
        n: ([], []) for n in sel.names()
    }
    anchor = sel.norm if sel.norm is not None else sel.groups[0]
    count = 0
    for where, r in rows:
        if step_key is not None:
            raw = r.get(step_key)
            if _missing(raw):
                continue
            s = _as_float(raw, f"{where}, column {step_key!r}")
            if not (math.isfinite(s) and s == int(s)):
                raise ValueError(
                    f"{where}, column {step_key!r}: expected an integer step, got "
                    f"{raw!r}"
                )
            step = int(s)
        else:
            step = count
            count += not _missing(r.get(anchor))
        for name in series:
            value = r.get(name)
            if not _missing(value):
                series[name][0].append(step)
                series[name][1].append(_as_float(value, f"{where}, column {name!r}"))
    if not series[anchor][0]:
        raise ValueError(f"{source}: column {anchor!r} holds no value (an empty run?)")
    return from_series(series, sel, source)


def sniff(path: Path, head: bytes) -> str | None:
    """A format recognised by its first bytes, or ``None`` for text."""
    if head.startswith(b"\x1f\x8b"):
        raise ValueError(
            f"{path}: gzip-compressed; decompress it first (gunzip -k {path}) and "
            f"audit the uncompressed file"
        )
    if head.startswith(b"PK\x03\x04") and path.suffix.lower() != ".npz":
        raise ValueError(f"{path}: a zip archive; extract the log from it first")
    if head.startswith(b"PAR1"):
        return "parquet"
    if "tfevents" in path.name:
        return "tensorboard"
    return None


def read_text(path: Path, seed: int, **keys: str | None) -> TrainingLog:
    """A CSV, JSONL or JSON log (```_read.read_log` has the formats)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}: not a text log (byte {data[err.start]:#04x} at offset "
            f"{err.start} is not UTF-8); audit reads CSV, JSONL, JSON, .npz, "
            f".parquet, TensorBoard event files and mlflow:RUN_ID"
        ) from None
    if not text.strip():
        raise ValueError(f"{path}: the file is empty (an empty run?)")
    suffix = path.suffix.lower()
    stripped = text.strip()
    if suffix == ".csv" or (
        suffix not in (".json", ".jsonl")
        and "," in text.split("\n", 1)[0]
        and not stripped.startswith(("{", "["))
    ):
        reader = csv.DictReader(text.splitlines())
        rows = []
        for r in reader:
            where = f"{path}, line {reader.line_num}"
            rows.append((where, {k.strip(): v for k, v in r.items() if k is not None}))
        return from_rows(rows, str(path), **keys)
    if suffix == ".json" or stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        if isinstance(data, Mapping):
            return from_arrays(data, str(path), seed, **keys)
        if isinstance(data, list) and all(isinstance(r, Mapping) for r in data):
            rows = [(f"{path}, record {i + 1}", r) for i, r in enumerate(data)]
            return from_rows(rows, str(path), **keys)
        raise ValueError(
            f"{path}: expected a JSON object of lists or a list of objects"
        )
    rows = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {i + 1}: not JSON ({err})") from err
        if not isinstance(obj, Mapping):
            raise ValueError(
                f"{path}, line {i + 1}: expected a JSON object, got {obj!r}"
            )
        rows.append((f"{path}, line {i + 1}", obj))
    return from_rows(rows, str(path), **keys)


def from_arrays(
    data: Mapping[str, Any],
    source: str,
    seed: int,
    *,
    key: str | None = None,
    loss_key: str | None = None,
) -> TrainingLog:
    """A log from equal-length arrays (``.npz``, a JSON object of lists)."""
    sel = select(list(data), source, key=key, loss_key=loss_key)
    norm_key = sel.norm
    if norm_key is None:
        raise ValueError(
            f"{source}: no gradient-norm array; expected one of "
            f"{', '.join(NORM_KEYS)}, got {sorted(data)}"
        )

    def row(name: str | None, dtype) -> np.ndarray | None:
        if name is None:
            return None
        a = np.asarray(data[name])
        if dtype is float and a.dtype == object:  # JSON lists may hold null
            try:
                a = np.asarray(
                    np.where(np.equal(a, None), np.nan, a).tolist(), dtype=np.float64
                )
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"{source}: {name} must hold numbers ({err})"
                ) from None
        if a.ndim == 2:
            if seed >= a.shape[0]:
                raise ValueError(
                    f"{source}: seed must be < {a.shape[0]} (the seeds in {name}), "
                    f"got {seed}"
                )
            a = a[seed]
        if a.ndim != 1:
            raise ValueError(
                f"{source}: {name} must be (steps,) or (seeds, steps), got shape "
                f"{a.shape}"
            )
        try:
            return a.astype(dtype)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {name} must hold numbers ({err})") from None

    norms = row(norm_key, float)
    step_key = _find(list(data), STEP_KEYS)
    step = (
        row(step_key, np.int64) if step_key else np.arange(norms.size, dtype=np.int64)
    )
    loss = row(sel.loss, float)
    clipped = row(sel.clipped, bool)
    groups = {g[len(norm_key) + 1 :]: row(g, float) for g in sel.groups}
    for name, a in (("step", step), ("loss", loss), ("clipped", clipped)):
        if a is not None and a.shape != norms.shape:
            raise ValueError(
                f"{source}: {name} must have the shape of {norm_key} {norms.shape}, "
                f"got {a.shape}"
            )
    notes = ()
    if np.unique(step).size != step.size:
        dups = int(step.size - np.unique(step).size)
        keep = _last_index(step)
        step, norms = step[keep], norms[keep]
        loss = None if loss is None else loss[keep]
        clipped = None if clipped is None else clipped[keep]
        groups = {k: v[keep] for k, v in groups.items()}
        notes = (
            f"{norm_key}: {dups} duplicate step record(s) (a resumed run?); the "
            f"last record of each step is used",
        )
    return check_log(
        TrainingLog(step, norms, loss, clipped, source, groups or None, notes)
    )


def _last_index(step: np.ndarray) -> np.ndarray:
    """Indices of the last record of each step, in step order."""
    order = np.argsort(step, kind="stable")
    s = step[order]
    last = np.ones(s.size, bool)
    last[:-1] = s[1:] != s[:-1]
    return order[last]


def from_results(directory: Path, point: str | None, seed: int) -> TrainingLog:
    from gradflow import results

    if not (directory / "config.toml").exists():
        raise ValueError(
            f"{directory}: a directory that is neither a TensorBoard run (no "
            f"*tfevents* file inside) nor a gradflow results directory (no "
            f"config.toml)"
        )
    res = results.load(directory)
    ids = [r["id"] for r in res.records]
    if not ids:
        raise ValueError(f"{directory}: the results directory holds no finished point")
    pid = ids[0] if point is None else point
    if pid not in ids:
        raise ValueError(f"point must be one of {ids}, got {point!r}")
    arrays = res.arrays(pid)
    if "grad_norm" not in arrays:
        raise ValueError(
            f"{directory}: point {pid} has no grad_norm array (audit reads clipping "
            f"studies), got {sorted(arrays)}"
        )
    keep = {k: arrays[k] for k in ("grad_norm", "loss", "clipped") if k in arrays}
    log = from_arrays(keep, f"{directory} (point {pid}, seed {seed})", seed)
    # a diverged run's later steps are absent (NaN in every field), not data
    absent = ~np.isfinite(log.grad_norm) & (
        ~np.isfinite(log.loss) if log.loss is not None else True
    )
    if absent.any():
        keep_ = ~absent
        log = TrainingLog(
            log.step[keep_],
            log.grad_norm[keep_],
            None if log.loss is None else log.loss[keep_],
            None if log.clipped is None else log.clipped[keep_],
            log.source,
        )
    return log
