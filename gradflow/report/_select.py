"""Which records a figure shows: lines by the main coordinates, the rest fixed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradflow import _names
from gradflow.results import Results, clip_label, threshold_label

# Coordinates worth a line of their own, most telling first. Others (sequence
# length, learning rate, ...) get lines only when none of these varies.
LINE_KEYS = ("cell", "clip", "threshold", "gain", "init", "hidden_size", "layers")
MAX_LINES = 7
# Cells are what a reader compares first: up to this many get lines of their
# own (e.g. LSTM, GRU, three LRUs, minGRU, minLSTM and the selective SSM).
MAX_CELL_LINES = 8

_MISSING = object()

_SYMBOLS = {"gain": "g", "length": "T", "hidden_size": "N", "lr": "lr"}


def varying(records: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Coordinates that take more than one value, with their values in order."""
    values: dict[str, list[Any]] = {}
    for r in records:
        for k, v in r["coords"].items():
            seen = values.setdefault(k, [])
            if v not in seen:
                seen.append(v)
    return {k: v for k, v in values.items() if len(v) > 1}


def representative(key: str, values: Sequence[Any]) -> Any:
    """The value a figure fixes a coordinate at when it cannot show them all."""
    nums = [v for v in values if _is_num(v)]
    if key == "length" and nums:
        return max(nums)
    if key == "gain" and nums:
        return min(nums, key=lambda v: abs(math.log(v) if v > 0 else math.inf))
    if key in ("threshold", "clip"):
        return values[0]
    if nums and len(nums) == len(values):
        return sorted(nums)[(len(nums) - 1) // 2]
    return values[0]


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def coord_text(key: str, value: Any) -> str:
    """``cell=lstm`` as ``LSTM``, ``gain=1.5`` as ``g = 1.5``, etc."""
    if key == "cell":
        # a kind with options of its own: LRU(r_min=0.9)
        kind, paren, rest = str(value).partition("(")
        entry = _names.CELLS.get(kind)
        label = entry.label if entry is not None and entry.label else kind.upper()
        return label + paren + rest
    if key == "clip":
        return f"clip = {value}"
    if key == "threshold":
        return f"threshold = {threshold_label(value)}"
    if _is_num(value):
        value = f"{value:g}"
    sym = _SYMBOLS.get(key, key.replace("_", " "))
    return f"{sym} = {value}"


def with_data(results: Results, name: str) -> list[dict[str, Any]]:
    """Records that have metric or array ``name`` (arrays: per ``axes.json``)."""
    if name in results.axes:
        return list(results.records)
    return [r for r in results.records if name in r.get("metrics", {})]


def pick(
    records: Sequence[dict[str, Any]],
    *,
    keep: Sequence[str] = (),
    prefer: Sequence[str] = LINE_KEYS,
    max_lines: int = MAX_LINES,
    at: dict[str, Any] | None = None,
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """Split records into labelled lines, fixing the coordinates that don't fit.

    Args:
        records: candidate records.
        keep: coordinates that stay free (the x axis of the figure).
        prefer: coordinates to give lines, in order, while there are at most
            ``max_lines`` lines.
        max_lines: most lines.
        at: values to fix coordinates at, instead of :func:`representative`.

    Returns:
        ``[(label, record)]`` and ``{coordinate: value}`` for those fixed.
    """
    vary = varying(records)
    line_keys: list[str] = []
    for k in prefer:
        limit = max(max_lines, MAX_CELL_LINES) if k == "cell" else max_lines
        if k in vary and k not in keep and _combos(records, [*line_keys, k]) <= limit:
            line_keys.append(k)
    if not line_keys:
        for k in vary:
            if k not in keep and _combos(records, [*line_keys, k]) <= max_lines:
                line_keys.append(k)
    at = at or {}
    # Fix one coordinate at a time among the records still in play, so that a
    # key only some conditions have (a threshold where clip = "none") is fixed
    # only if a remaining record has it.
    fixed: dict[str, Any] = {}
    chosen = list(records)
    for k in sorted(vary, key=lambda k: k not in at):  # ``at`` first
        if k in line_keys or k in keep:
            continue
        values = []
        for r in chosen:
            v = r["coords"].get(k, _MISSING)
            if v is not _MISSING and v not in values:
                values.append(v)
        if not values:
            continue
        fixed[k] = at[k] if k in at and at[k] in values else representative(k, values)
        chosen = [r for r in chosen if r["coords"].get(k, _MISSING) == fixed[k]]
    return [(line_label(r["coords"], line_keys, records), r) for r in chosen], fixed


def _combos(records: Sequence[dict[str, Any]], keys: Sequence[str]) -> int:
    """How many distinct value combinations of ``keys`` the records hold."""
    return len({tuple(repr(r["coords"].get(k)) for k in keys) for r in records})


def line_label(
    coords: dict[str, Any], keys: Sequence[str], records: Sequence[dict[str, Any]]
) -> str:
    """A line's legend label; clipping conditions read ``none``,
    ``global_norm 1``, ``autoclip p10`` (as the clipping study names them)."""
    parts = []
    if "clip" in keys or "threshold" in keys:
        parts.append(clip_label(coords))
    rest = [k for k in keys if k not in ("clip", "threshold", "percentile")]
    parts += [coord_text(k, coords.get(k)) for k in rest]
    return ", ".join(parts)


def fixed_text(fixed: dict[str, Any]) -> str:
    """``" Shown at g = 1, T = 200."`` (empty when nothing was fixed)."""
    if not fixed:
        return ""
    return " Shown at " + ", ".join(coord_text(k, v) for k, v in fixed.items()) + "."


def metric_values(record: dict[str, Any], name: str) -> np.ndarray:
    """One metric's per-seed values; ``null`` (non-finite when written) is NaN."""
    raw = record.get("metrics", {}).get(name)
    if raw is None:
        return np.array([np.nan])
    raw = raw if isinstance(raw, list) else [raw]
    return np.array([np.nan if v is None else v for v in raw], dtype=np.float64)


def stack_ragged(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Rows of per-seed values as ``(n, seeds)``; short rows padded with NaN."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out
