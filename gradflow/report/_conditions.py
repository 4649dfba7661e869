"""One short section per condition: memory horizon and fixed points, in words."""

from __future__ import annotations

import math
from typing import Any

from gradflow import plots
from gradflow.plots import num
from gradflow.report import _select as s
from gradflow.results import Results

#: Most conditions given a section of their own.
MAX_SECTIONS = 24


def _median(record: dict[str, Any], name: str) -> float:
    raw = record.get("metrics", {}).get(name)
    if raw is None:
        return math.nan
    return plots.finite_median(raw if isinstance(raw, list) else [raw])


def _all_null(record: dict[str, Any], name: str) -> bool:
    raw = record.get("metrics", {}).get(name)
    vals = raw if isinstance(raw, list) else [raw]
    return raw is not None and all(v is None for v in vals)


def _n(value: float) -> str:
    return num(value, 2)


def measured_norm(config: dict[str, Any]) -> str:
    """The norm a run's gradient profile is of: ``‖∂L/∂s_t‖`` (the whole state)
    where ``[measure] grad_norms`` has ``of = "state"``, else ``‖∂L/∂h_t‖``."""
    grad_norms = config.get("measure", {}).get("grad_norms", {})
    of = grad_norms.get("of") if isinstance(grad_norms, dict) else None
    return "‖∂L/∂s_t‖" if of == "state" else "‖∂L/∂h_t‖"


def memory_sentence(record: dict[str, Any], norm: str = "‖∂L/∂h_t‖") -> str | None:
    """``"Forgets a signal within 23 steps ..."`` from ``memory_horizon``; ``norm``
    names the measured gradient (:func:`measured_norm`)."""
    if "memory_horizon" not in record.get("metrics", {}):
        return None
    horizon = _median(record, "memory_horizon")
    steps = record.get("coords", {}).get("length")
    span = f"the {steps} steps measured" if steps else "the sequence"
    if math.isfinite(horizon):
        return (
            f"Forgets a signal within {horizon:.0f} steps: by then {norm} has "
            "fallen 10⁷ below its largest value, and float32 no longer adds "
            "that step's contribution to the gradient."
        )
    if _all_null(record, "memory_horizon"):
        rate = _median(record, "decay_rate")
        if _all_null(record, "decay_rate"):
            # NaN or inf norms: no horizon and no fit (too few finite steps).
            return (
                f"No memory horizon: {norm} is not finite (NaN or inf) over "
                f"{span} in every seed, so neither a horizon nor a decay rate can "
                "be read from it."
            )
        if math.isfinite(rate) and rate < 0:
            return (
                f"The gradient grows back in time (explodes, {_n(-rate)} nats per "
                f"step): it never falls 10⁷ below its largest value within {span}."
            )
        return (
            f"Keeps a signal beyond {span}: {norm} stays within 10⁷ of its "
            "largest value throughout."
        )
    return None


def fixed_point_sentence(record: dict[str, Any], norm: str = "‖∂L/∂h_t‖") -> str | None:
    """Fixed points found and the forgetting they predict, against the measured."""
    if "fixed_points" not in record.get("metrics", {}):
        return None
    count = _median(record, "fixed_points")
    stable = _median(record, "stable_fixed_points")
    if not math.isfinite(count):
        return "No fixed point of the input-free map was found."
    text = (
        f"{count:.0f} fixed point{'s' if count != 1 else ''} of the input-free map "
        f"({stable:.0f} attracting, median over seeds)."
    )
    rate = _median(record, "fixed_point_decay_rate")
    attracts = _median(record, "fixed_point_attracts")
    if not math.isfinite(rate):
        return text
    where = (
        "the attracting point"
        if attracts >= 0.5
        else "the most visited point (which repels)"
    )
    text += f" At {where}, −ln|λ₁| = {_n(rate)} nats per step"
    measured = []
    decay = _median(record, "decay_rate")
    if math.isfinite(decay):
        measured.append(f"the measured decay rate of {norm} is {_n(decay)}")
    lam = _median(record, "lambda_max")
    if math.isfinite(lam):
        measured.append(f"−λ_max is {_n(-lam)}")
    text += "; " + " and ".join(measured) + "." if measured else "."
    return text


def sections(results: Results) -> list[tuple[str, list[str]]]:
    """``[(title, sentences)]`` for conditions with a memory or fixed-point metric."""
    recs = results.records
    keys = list(s.varying(recs))
    norm = measured_norm(results.config)
    out = []
    for rec in recs:
        said = [
            t
            for t in (memory_sentence(rec, norm), fixed_point_sentence(rec, norm))
            if t
        ]
        if not said:
            continue
        title = ", ".join(s.coord_text(k, rec["coords"].get(k)) for k in keys)
        out.append(
            (title or results.config.get("experiment", {}).get("name", ""), said)
        )
        if len(out) == MAX_SECTIONS:
            break
    return out
