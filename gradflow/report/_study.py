"""Figures of a clipping study that learns: success over lr x threshold, and vs T.

Read from ``summary.json`` (``thresholds`` entries with ``success_rate``); a
study without success data draws neither.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gradflow import plots
from gradflow.results import Results


def _entries(results: Results) -> list[dict[str, Any]]:
    per = (results.summary or {}).get("thresholds")
    if not isinstance(per, list):
        return []
    return [e for e in per if isinstance(e, dict) and "success_rate" in e]


def _level(e: dict[str, Any]) -> Any:
    if e.get("clip") == "none":
        return "none"
    if e.get("clip") == "autoclip":
        return e.get("percentile")
    return e.get("threshold")


def recommended_method(results: Results) -> tuple[Results, str | None]:
    """The records of the recommended method (and no clipping) at its lr and T.

    A study of several methods has too many conditions for one loss plot;
    ``(results, None)`` when it compared one method only.
    """
    rec = (results.summary or {}).get("recommended")
    methods = {r["coords"].get("clip") for r in results.records} - {"none", None}
    if not isinstance(rec, dict) or len(methods) < 2 or rec.get("clip") == "none":
        return results, None
    keep = [
        r
        for r in results.records
        if r["coords"].get("clip") in (rec["clip"], "none")
        and r["coords"].get("lr") == rec.get("lr")
        and r["coords"].get("length") == rec.get("length")
    ]
    return dataclasses.replace(results, records=keep), rec["clip"]


def success_heatmap(results: Results) -> Figure | None:
    """One panel per clipping method: success rate over (lr, level), none first."""
    entries = [e for e in _entries(results) if "length" not in e]
    if not entries:
        return None
    lrs = sorted({e["lr"] for e in entries})
    methods = [m for m in dict.fromkeys(e["clip"] for e in entries) if m != "none"]
    none = {e["lr"]: e["success_rate"] for e in entries if e["clip"] == "none"}
    panels = {}
    for m in methods or ["none"]:
        levels = list(dict.fromkeys(_level(e) for e in entries if e["clip"] == m))
        levels = sorted(levels, key=lambda v: (isinstance(v, str), v))
        if m != "none" and none:
            levels = ["none", *levels]
        rate = np.full((len(lrs), len(levels)), np.nan)
        for e in entries:
            if e["clip"] == m or (e["clip"] == "none" and "none" in levels):
                i, j = lrs.index(e["lr"]), levels.index(_level(e))
                rate[i, j] = e["success_rate"]
        name = {
            "autoclip": "autoclip (percentile)",
            "zclip": "zclip (z-score)",
            "adagc": "adagc (× own EMA norm)",
        }
        panels[name.get(m, m)] = (levels, lrs, rate)
    return plots.success_heatmap(panels)


def success_vs_length(results: Results) -> Figure | None:
    """Success rate against T per condition (the lr with the most success)."""
    entries = [e for e in _entries(results) if "length" in e]
    if not entries:
        return None
    lengths = sorted({e["length"] for e in entries})
    rates: dict[str, np.ndarray] = {}
    intervals: dict[str, np.ndarray] = {}
    for e in entries:
        label = e["label"] + (
            f", lr {e['lr']:g}"
            if len({x["lr"] for x in entries}) > 1 and e.get("lr") is not None
            else ""
        )
        r = rates.setdefault(label, np.full(len(lengths), math.nan))
        iv = intervals.setdefault(label, np.full((len(lengths), 2), math.nan))
        k = lengths.index(e["length"])
        r[k] = e["success_rate"]
        iv[k] = e["success_interval"]
    return plots.success_vs(lengths, rates, intervals=intervals)
