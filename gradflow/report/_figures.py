"""The report's figures: ``f(results) -> Figure | None`` (None: no data).

Which figures exist, their captions and which measurement or experiment kind
they belong to is said once, in ``gradflow._specs``; this module holds the
function that draws each (:data:`FIGURES`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gradflow import plots
from gradflow.report import _select as s
from gradflow.report import _study
from gradflow.results import Results, clip_label, threshold_label


def _arrays(results: Results, record: dict[str, Any], name: str) -> np.ndarray | None:
    try:
        arrays = results.arrays(record["id"])
    except (FileNotFoundError, OSError, ValueError, KeyError):
        return None
    return arrays.get(name)


def _axes(results: Results, name: str) -> list[str]:
    return list(results.axes.get(name, []))


def _lines_of(
    results: Results, name: str, *, axes: list[str] | None = None, **kw: Any
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``label -> array`` of one array name over the picked records."""
    if name not in results.axes or (axes and _axes(results, name) != axes):
        return {}, {}
    lines, fixed = s.pick(results.records, **kw)
    out = {}
    for label, rec in lines:
        arr = _arrays(results, rec, name)
        if arr is not None and arr.size:
            out[label] = arr
    return out, fixed


def _shown_at(fig: Figure | None, fixed: dict[str, Any]) -> Figure | None:
    """Note on the figure (its label) which coordinates it holds fixed."""
    if fig is not None:
        fig.set_label(s.fixed_text(fixed).strip())
    return fig


def grad_norm_profile(results: Results) -> Figure | None:
    data, fixed = _lines_of(results, "log10_grad_norms", axes=["seed", "step"])
    if not data:
        return None
    opts = results.config.get("measure", {}).get("grad_norms", {})
    if isinstance(opts, dict) and opts.get("of") == "state":
        # of = "state": the whole carry entering step t (hidden_grad_norms)
        fig = plots.grad_norm_profile(
            data, ylabel=r"$\log_{10}\,\|\partial L/\partial s_t\|$"
        )
    else:
        fig = plots.grad_norm_profile(data)
    return _shown_at(fig, fixed)


def jacobian_norm_profile(results: Results) -> Figure | None:
    data, fixed = _lines_of(results, "jacobian_log10_norms", axes=["seed", "step"])
    if not data:
        return None
    # Entry t of log10 ‖∂s_T/∂s_t‖ spans T − t steps.
    lags = {k: np.arange(v.shape[-1], 0, -1, dtype=np.float64) for k, v in data.items()}
    fig = plots.grad_norm_profile(
        data, lags=lags, ylabel=r"$\log_{10}\,\|\partial s_T/\partial s_t\|_2$"
    )
    return _shown_at(fig, fixed)


def param_grad_share(results: Results) -> Figure | None:
    data, fixed = _lines_of(results, "param_grad_share", axes=["seed", "step"])
    return _shown_at(plots.param_grad_share(data), fixed) if data else None


def _one_record(results: Results) -> dict[str, Any]:
    lines, _ = s.pick(results.records, max_lines=1, at=_clip_at(results))
    return lines[0][1]


def _one(results: Results, name: str) -> tuple[np.ndarray | None, dict[str, Any]]:
    """One record's array: every varying coordinate fixed (clipping: the
    recommended learning rate)."""
    if name not in results.axes or not results.records:
        return None, {}
    lines, fixed = s.pick(results.records, max_lines=1, at=_clip_at(results))
    return (_arrays(results, lines[0][1], name) if lines else None), fixed


def grad_norm_heatmap(results: Results) -> Figure | None:
    arr, fixed = _one(results, "profile_log10_grad_norms")
    if arr is None or arr.ndim != 3:
        return None
    iters = None
    steps = _arrays(results, _one_record(results), "profile_iteration")
    if steps is not None and steps.ndim == 2 and steps.shape[1] == arr.shape[1]:
        iters = np.asarray(steps[0], np.float64)
    else:
        every = _find_int(results.config, ("profile_every", "record_every"))
        iters = np.arange(arr.shape[1]) * every if every else None
    return _shown_at(plots.grad_norm_heatmap(arr, iterations=iters), fixed)


def _find_int(config: Any, keys: tuple[str, ...]) -> int | None:
    if isinstance(config, dict):
        for k, v in config.items():
            if k in keys and isinstance(v, int) and not isinstance(v, bool):
                return v
            found = _find_int(v, keys)
            if found:
                return found
    return None


def layer_heatmap(results: Results) -> Figure | None:
    # the deepest stack of a layers axis: the one with the most to show
    depths = [r["coords"].get("layers", 1) for r in results.records]
    at = {"layers": max(depths)} if len(set(depths)) > 1 else {}
    for name, axes in results.axes.items():
        if axes == ["seed", "layer", "step"] and name in results.axes:
            lines, fixed = s.pick(results.records, max_lines=1, at=at)
            arr = _arrays(results, lines[0][1], name) if lines else None
            if arr is not None and arr.ndim == 3:
                return _shown_at(plots.layer_heatmap(arr), fixed)
    return None


def jacobian_singular_values(results: Results) -> Figure | None:
    arr, fixed = _one(results, "jacobian_log10_singular_values")
    if arr is None or arr.ndim != 3:
        return None
    # Rows follow t = 0..T−1, as for the Jacobian norms: row t spans T − t steps.
    lags = np.arange(arr.shape[1], 0, -1, dtype=np.float64)
    return _shown_at(plots.jacobian_singular_values(arr, lags=lags), fixed)


def lyapunov_spectrum(results: Results) -> Figure | None:
    data, fixed = _lines_of(results, "lyapunov_exponents", axes=["seed", "k"])
    if not data:
        return None
    running, _ = _lines_of(results, "lyapunov_running", axes=["seed", "step", "k"])
    running = {k: v for k, v in running.items() if k in data and v.ndim == 3} or None
    resolved, _ = _lines_of(results, "lyapunov_resolved", axes=["seed", "k"])
    resolved = {
        k: np.asarray(v, bool)
        for k, v in resolved.items()
        if k in data and np.shape(v) == np.shape(data[k])
    }
    fig = plots.lyapunov_spectrum(data, running=running, resolved=resolved or None)
    fig = _shown_at(fig, fixed)
    lost = sum(int((~v).any(axis=0).sum()) for v in resolved.values())
    if lost:
        # the caption says it too, not only the legend's markers
        total = sum(v.shape[-1] for v in resolved.values())
        fig.set_label(
            f"{fig.get_label()} {lost} of {total} exponents (v markers) are upper "
            "bounds: the working precision cannot resolve them (rerun in float64)."
        )
    return fig


def _against(results: Results, metric: str, key: str):
    """``x (n,)``, ``label -> (n, seeds)``, fixed coords; None without data."""
    recs = s.with_data(results, metric)
    xs = [v for v in s.varying(recs).get(key, []) if s._is_num(v)]
    if len(xs) < 2:
        return None
    lines, fixed = s.pick(recs, keep=(key,))
    groups: dict[str, dict[Any, np.ndarray]] = {}
    for label, rec in lines:
        groups.setdefault(label, {})[rec["coords"].get(key)] = s.metric_values(
            rec, metric
        )
    x = np.array(sorted(xs), dtype=np.float64)
    values = {}
    for label, by_x in groups.items():
        rows = [by_x.get(v, np.array([np.nan])) for v in sorted(xs)]
        values[label] = s.stack_ragged(rows)
    return x, values, fixed


def lambda_max_vs_gain(results: Results) -> Figure | None:
    got = _against(results, "lambda_max", "gain")
    return _shown_at(plots.lambda_max_vs_gain(got[0], got[1]), got[2]) if got else None


def decay_rate_vs_gain(results: Results) -> Figure | None:
    got = _against(results, "decay_rate", "gain")
    if not got:
        return None
    fig = plots.metric_against(
        got[0],
        got[1],
        xlabel=r"gain $g$",
        ylabel=f"gradient decay rate ({plots.RATE})",
        zero_label="neither vanishing nor exploding",
        crossing=None,
    )
    return _shown_at(fig, got[2])


def grad_norm_vs_length(results: Results) -> Figure | None:
    got = _against(results, "log10_grad_norm_step0", "length")
    if not got:
        return None
    fig = plots.metric_against(
        got[0],
        got[1],
        xlabel=r"sequence length $T$",
        ylabel=r"$\log_{10}\,\|\partial L/\partial h_0\|$",
        zero_label=r"$\|\partial L/\partial h_0\| = 1$",
    )
    return _shown_at(fig, got[2])


def phase_diagram(results: Results) -> Figure | None:
    recs = s.with_data(results, "log10_grad_norm_step0")
    vary = s.varying(recs)
    gains = [v for v in vary.get("gain", []) if s._is_num(v)]
    lengths = [v for v in vary.get("length", []) if s._is_num(v)]
    if len(gains) < 2 or len(lengths) < 2:
        return None
    lines, fixed = s.pick(recs, keep=("gain", "length"), max_lines=1)
    gains, lengths = sorted(gains), sorted(lengths)
    z = np.full((len(gains), len(lengths)), np.nan)
    for _, rec in lines:
        c = rec["coords"]
        if c.get("gain") in gains and c.get("length") in lengths:
            v = s.metric_values(rec, "log10_grad_norm_step0")
            med = np.nanmedian(v) if np.isfinite(v).any() else np.nan
            z[gains.index(c["gain"]), lengths.index(c["length"])] = med
    return _shown_at(plots.phase_diagram(gains, lengths, z), fixed)


def pascanu_bound(results: Results) -> Figure | None:
    recs = [
        r
        for r in s.with_data(results, "sigma_max_whh")
        if "decay_rate" in r.get("metrics", {})
        and r["coords"].get("cell", "rnn") == "rnn"
    ]
    sigmas = {
        round(plots.finite_median(s.metric_values(r, "sigma_max_whh")), 6) for r in recs
    }
    if len(sigmas) < 2:
        return None  # one σ_max is a point, not a comparison with the bound
    vary = s.varying(recs)
    key = next((k for k in ("init", "hidden_size", "length") if k in vary), None)
    sig: dict[str, list[float]] = {}
    dec: dict[str, list[np.ndarray]] = {}
    gam: dict[str, list[float]] = {}
    for r in recs:
        label = s.coord_text(key, r["coords"].get(key)) if key else ""
        sig.setdefault(label, []).append(
            float(np.nanmedian(s.metric_values(r, "sigma_max_whh")))
        )
        dec.setdefault(label, []).append(s.metric_values(r, "decay_rate"))
        bound = s.metric_values(r, "pascanu_bound")
        if np.isfinite(bound).any() and np.nanmedian(bound) > 0:
            gam.setdefault(label, []).append(1.0 / float(np.nanmedian(bound)))
    gamma = {k: float(np.median(v)) for k, v in gam.items()}
    return plots.pascanu_bound(
        {k: np.array(v) for k, v in sig.items()},
        {k: s.stack_ragged(v) for k, v in dec.items()},
        gamma={k: gamma.get(k, 1.0) for k in sig},
    )


def _clip_at(results: Results) -> dict[str, Any]:
    """Coordinates a clipping figure is drawn at: the recommended learning rate."""
    rec = (results.summary or {}).get("recommended")
    if isinstance(rec, dict) and rec.get("lr") is not None:
        return {"lr": rec["lr"]}
    return {}


def loss_curves(results: Results) -> Figure | None:
    # a study of several methods: the recommended one's thresholds and no clipping
    shown, method = _study.recommended_method(results)
    data, fixed = _lines_of(
        shown,
        "loss",
        axes=["seed", "iteration"],
        prefer=("clip", "threshold", "percentile"),
        at=_clip_at(results),
    )
    if method:
        fixed = {"clip": f"{method} and none", **fixed}
    return _shown_at(plots.loss_curves(data), fixed) if data else None


def clipping_summary(results: Results) -> Figure | None:
    rows = clip_rows(results)
    if not rows or all(math.isnan(r["divergence_rate"]) for r in rows):
        return None
    lrs = {r["lr"] for r in rows}
    fixed = {}
    if len(lrs) > 1:  # one learning rate per figure: the recommended one
        lr = _clip_at(results).get("lr")
        lr = lr if lr in lrs else s.representative("lr", sorted(lrs, key=repr))
        rows = [r for r in rows if r["lr"] == lr]
        fixed = {"lr": lr}
    rng = np.array([[r["final_loss_lo"], r["final_loss_hi"]] for r in rows])
    star = next((r["label"] for r in rows if r["recommended"]), None)
    fig = plots.clipping_summary(
        [r["label"] for r in rows],
        [r["divergence_rate"] for r in rows],
        [r["final_loss"] for r in rows],
        final_loss_range=rng,
        recommended=star,
    )
    return _shown_at(fig, fixed)


def _is_unclipped(coords: dict[str, Any]) -> bool:
    return str(coords.get("clip", "")).lower() in ("none", "off") or (
        "clip" not in coords and threshold_label(coords.get("threshold")) == "none"
    )


def grad_norm_histogram(results: Results) -> Figure | None:
    if "grad_norm" not in results.axes or not results.records:
        return None
    lines, fixed = s.pick(
        results.records, prefer=("clip", "threshold"), at=_clip_at(results)
    )
    recs = [r for _, r in lines]
    unclipped = [r for r in recs if _is_unclipped(r["coords"])]
    arrays = [
        a
        for r in (unclipped or recs)
        if (a := _arrays(results, r, "grad_norm")) is not None
    ]
    if not arrays:
        return None
    shown = {}
    for r in recs:
        t = r["coords"].get("threshold")
        if s._is_num(t) and math.isfinite(t) and t > 0:
            shown[threshold_label(t)] = float(t)
    fig = plots.grad_norm_histogram(
        np.concatenate([np.ravel(a) for a in arrays]), thresholds=shown
    )
    if unclipped:
        fixed = {**fixed, "clip": "none"}
    return _shown_at(fig, fixed)


# -- the clipping summary, from summary.json or else from metrics.jsonl ------------
# summary.json is what gradflow.sweep.summarize_clipping writes: "thresholds"
# (one entry per condition, spreads as min/q10/q25/median/q75/q90/max) and
# "recommended" (a dict with its id, label, lr, range and reason).


def _num(v: Any) -> float:
    """A number, or the median of a spread; NaN for ``None``/absent."""
    if isinstance(v, dict):
        return _num(v.get("median"))
    if v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return math.nan
    return float(v)


def _spread(v: Any, med: float) -> tuple[float, float]:
    """The 10-90% range of a spread (the median twice for a bare number)."""
    if isinstance(v, dict) and "q10" in v and "q90" in v:
        return _num(v["q10"]), _num(v["q90"])
    return med, med


def summary_entries(results: Results) -> list[dict[str, Any]]:
    """Per-condition entries of ``summary.json`` (``[]`` when there is none)."""
    per = (results.summary or {}).get("thresholds")
    return [e for e in per if isinstance(e, dict)] if isinstance(per, list) else []


def _entry_label(e: dict[str, Any]) -> str:
    return str(e["label"]) if e.get("label") is not None else clip_label(e)


def clip_rows(results: Results) -> list[dict[str, Any]]:
    """One row per clipping condition: ``label``, ``lr``, ``divergence_rate``,
    ``final_loss`` (median) with ``final_loss_lo``/``_hi`` (10-90%), and
    whether it is the ``recommended`` one."""
    rec = (results.summary or {}).get("recommended")
    rows = []
    for e in summary_entries(results):
        med = _num(e.get("final_loss"))
        lo, hi = _spread(e.get("final_loss"), med)
        label = _entry_label(e)
        is_rec = isinstance(rec, dict) and rec.get("id") == e.get("id")
        rows.append(
            {
                "label": label,
                "lr": e.get("lr"),
                "divergence_rate": _num(e.get("divergence_rate")),
                "final_loss": med,
                "final_loss_lo": lo,
                "final_loss_hi": hi,
                "recommended": bool(is_rec),
            }
        )
    if rows:
        return rows
    recs = [r for r in results.records if "diverged" in r.get("metrics", {})]
    if not recs or not ({"threshold", "clip"} & set(s.varying(recs))):
        return []
    lines, _ = s.pick(recs, prefer=("clip", "threshold"), max_lines=10**6)
    for _, r in lines:
        div = s.metric_values(r, "diverged")
        fl = s.metric_values(r, "final_loss")
        fin = fl[np.isfinite(fl)]
        rows.append(
            {
                "label": clip_label(r["coords"]),
                "lr": r["coords"].get("lr"),
                "divergence_rate": float(np.nanmean(div)) if div.size else math.nan,
                "final_loss": float(np.median(fin)) if fin.size else math.nan,
                "final_loss_lo": float(np.percentile(fin, 10))
                if fin.size
                else math.nan,
                "final_loss_hi": float(np.percentile(fin, 90))
                if fin.size
                else math.nan,
                "recommended": False,
            }
        )
    return rows


def recommended(results: Results) -> tuple[str | None, str]:
    """The recommended condition as text (with its lr and stable range) and why."""
    rec = (results.summary or {}).get("recommended")
    if not isinstance(rec, dict):
        return None, str((results.summary or {}).get("nothing_learned") or "")
    text = rec.get("label") or clip_label(rec)
    if s._is_num(rec.get("lr")):
        text += f" at lr {rec['lr']:g}"
    rng = rec.get("range")
    if isinstance(rng, list | tuple) and len(rng) == 2 and rng[0] != rng[1]:
        text += (
            f" (thresholds {threshold_label(rng[0])} to "
            f"{threshold_label(rng[1])} never diverged)"
        )
    return text, str(rec.get("reason", ""))


# -- fixed points -------------------------------------------------------------------


def _fixed_points_of(arrays: dict[str, np.ndarray], seed: int = 0):
    """Distinct fixed points of one seed: ``(states (M, S), eigenvalues (M, S))``."""
    keep = np.asarray(arrays["fixed_point_distinct"][seed], bool)
    return (
        np.asarray(arrays["fixed_point_states"][seed])[keep],
        np.asarray(arrays["fixed_point_eigenvalues"][seed])[keep],
    )


def fixed_point_eigenvalues(results: Results) -> Figure | None:
    if "fixed_point_eigenvalues" not in results.axes:
        return None
    # Up to a 3 x 3 grid of panels: e.g. three cells at three gains.
    lines, fixed = s.pick(results.records, max_lines=9)
    eig, ref = {}, {}
    for label, rec in lines:
        try:
            arrays = results.arrays(rec["id"])
        except (FileNotFoundError, OSError, ValueError, KeyError):
            continue
        if "fixed_point_eigenvalues" not in arrays:
            continue
        eig[label] = _fixed_points_of(arrays)[1]
        if "whh_eigenvalues" in arrays:
            ref[label] = arrays["whh_eigenvalues"][0]
    if not eig:
        return None
    fig = plots.fixed_point_eigenvalues(eig, reference=ref or None)
    return _shown_at(fig, fixed)


def forgetting_vs_gain(results: Results) -> Figure | None:
    recs = [
        r
        for r in s.with_data(results, "fixed_point_decay_rate")
        if r["coords"].get("cell", "rnn") == "rnn"
    ]
    gains = sorted({r["coords"].get("gain") for r in recs if "gain" in r["coords"]})
    if len(gains) < 2:
        return None
    lines, fixed = s.pick(recs, keep=("gain",), max_lines=1)
    by_gain = {rec["coords"]["gain"]: rec for _, rec in lines}
    metrics = {
        r"$-\ln|\lambda_1|$ at the fixed point": ("fixed_point_decay_rate", 1.0),
        r"decay rate of $\|\partial L/\partial h_t\|$": ("decay_rate", 1.0),
        r"$-\lambda_{\max}$": ("lambda_max", -1.0),
    }
    values = {}
    for label, (name, sign) in metrics.items():
        rows = [
            sign * s.metric_values(by_gain[g], name)
            if g in by_gain
            else np.array([np.nan])
            for g in gains
        ]
        if any(np.isfinite(r).any() for r in rows):
            values[label] = s.stack_ragged(rows)
    fig = plots.metric_against(
        np.asarray(gains, np.float64),
        values,
        xlabel=r"gain $g$",
        ylabel=f"forgetting rate ({plots.RATE})",
        zero_label="no forgetting",
    )
    if "cell" in s.varying(results.records):
        fixed = {"cell": "rnn", **fixed}
    return _shown_at(fig, fixed)


def fixed_point_pca(results: Results) -> Figure | None:
    if "fixed_point_trajectory" not in results.axes:
        return None
    lines, fixed = s.pick(results.records, max_lines=1)
    for _, rec in lines:
        arrays = _arrays(results, rec, "fixed_point_trajectory")
        if arrays is None:
            continue
        full = results.arrays(rec["id"])
        states, eig = _fixed_points_of(full)
        stable = np.max(np.abs(eig), axis=-1, initial=0.0) < 1.0
        traj = np.asarray(arrays[0])
        if traj.shape[-1] < 2:
            return None
        fig = plots.trajectories_pca(traj, fixed_points=states, stable=stable)
        return _shown_at(fig, fixed)
    return None


def sensitivity_vs_memory(results: Results) -> Figure | None:
    """``‖∂h_t/∂θ‖²`` per scalar and unit input power against ``1/(1 − g)``."""
    plain = _against(results, "log10_param_sensitivity", "gain")
    power = _against(results, "input_power", "gain")
    if not plain or not power:
        return None
    normed = _against(results, "log10_param_sensitivity_normalised", "gain")
    gains = plain[0]
    keep = gains < 1.0
    if keep.sum() < 2:
        return None
    memory = 1.0 / (1.0 - gains[keep])
    xs: dict[str, np.ndarray] = {}
    ys: dict[str, np.ndarray] = {}
    for label, vals in plain[1].items():
        scale = power[1].get(label)
        if scale is None:
            continue
        with np.errstate(all="ignore"):
            per = 10.0 ** np.asarray(vals, float) / np.asarray(scale, float)
            ys[label or "measured"] = np.nanmedian(per, axis=1)[keep]
            xs[label or "measured"] = memory
            if normed and label in normed[1]:
                n = 10.0 ** np.asarray(normed[1][label], float) / scale
                if np.any(np.isfinite(n)):
                    name = f"{label}, normalised" if label else "normalised"
                    ys[name] = np.nanmedian(n, axis=1)[keep]
                    xs[name] = memory
    cfg = results.config if isinstance(results.config, dict) else {}
    init = cfg.get("grid", {}).get("init")
    inits = init if isinstance(init, list) else [init]
    forms = {}
    if cfg.get("cell", {}).get("activation") == "linear" and inits == ["identity"]:
        g = np.linspace(gains[keep].min(), gains[keep].max(), 200)
        q = g**2
        forms = {
            "(1+g²)/(1−g²)³": (1 / (1 - g), (1 + q) / (1 - q) ** 3),
            "(1+g²)/(1−g²)²": (1 / (1 - g), (1 + q) / (1 - q) ** 2),
        }
    fig = plots.sensitivity_vs_memory(
        xs,
        ys,
        closed_forms=forms,
        xlabel=r"memory $1/(1-g)$",
        ylabel=r"$\|\partial h_t/\partial\theta\|^2$ per scalar / input power",
    )
    return _shown_at(fig, plain[2])


#: Figure name -> ``draw(results) -> Figure | None``: one function for every
#: figure of ``gradflow._specs`` (tests/test_names.py checks they match).
FIGURES: dict[str, Any] = {
    "grad_norm_profile": grad_norm_profile,
    "decay_rate_vs_gain": decay_rate_vs_gain,
    "grad_norm_vs_length": grad_norm_vs_length,
    "phase_diagram": phase_diagram,
    "pascanu_bound": pascanu_bound,
    "layer_heatmap": layer_heatmap,
    "jacobian_norm_profile": jacobian_norm_profile,
    "jacobian_singular_values": jacobian_singular_values,
    "lyapunov_spectrum": lyapunov_spectrum,
    "lambda_max_vs_gain": lambda_max_vs_gain,
    "fixed_point_eigenvalues": fixed_point_eigenvalues,
    "forgetting_vs_gain": forgetting_vs_gain,
    "fixed_point_pca": fixed_point_pca,
    "param_grad_share": param_grad_share,
    "sensitivity_vs_memory": sensitivity_vs_memory,
    "loss_curves": loss_curves,
    "clipping_summary": clipping_summary,
    "grad_norm_heatmap": grad_norm_heatmap,
    "grad_norm_histogram": grad_norm_histogram,
    "success_heatmap": _study.success_heatmap,
    "success_vs_length": _study.success_vs_length,
}


def register_figure(name: str, draw: Any) -> None:
    """Add the drawing function of a figure a registered spec declares.

    Args:
        name: the figure's name in its ``gradflow.sweep.Measurement``'s
            ``figures`` (where its caption is).
        draw: ``draw(results) -> matplotlib Figure | None`` (``None``: the
            results hold no data for it).

    Raises:
        ValueError: ``name`` already has a drawing function.
        TypeError: ``draw`` is not callable.
    """
    if not callable(draw):
        raise TypeError(
            f"draw of figure {name!r} must be callable, got {type(draw).__name__}"
        )
    if name in FIGURES:
        raise ValueError(f"figure {name!r} already has a drawing function")
    FIGURES[name] = draw
