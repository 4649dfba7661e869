"""``gradflow audit``: is a clipping threshold right for a training run's norms?

Reads a log of per-step global gradient norms from any framework and says how
often a threshold ``T`` clips, where ``T`` sits in the norm distribution, which
steps were spikes, how the norm trended, and a recommended range. numpy (and
matplotlib for ``write_audit``'s figures) only, never jax.

The recommended range reconciles the two rules of thumb in the literature:

* AutoClip (Seetharaman et al. 2020) clips at a low percentile of the norms
  seen (the 10th by default): the band from the 10th to the 90th percentile
  holds every threshold that clips between 10% and 90% of steps;
* Pascanu, Mikolov & Bengio (2013) put the threshold around the average norm
  and saw training converge from 0.5x to 10x of it (here the median: robust to
  the very spikes clipping is for).

The range is their intersection, ``[max(p10, 0.5 median), min(p90, 10 median)]``.
It always holds the median (``p10 <= median <= p90``): below it a threshold
clips nearly every step or halves typical ones (then it acts as a smaller
learning rate); above it, it clips fewer than 10% of steps or only norms far
beyond anything typical (then it only catches spikes, if those).

Spikes are defined as ZClip (Kumar et al. 2025) defines them: after a warm-up
of ``warmup_steps`` finite norms whose mean and variance start an EMA, a step is
a spike when ``z = (g - mean) / (std + eps) > z_thresh``; the EMA then takes
ZClip's clipped value (``mean + z_thresh * std / (z / z_thresh)``) instead of
``g``, so one spike does not hide the next. Non-finite norms are counted apart
and skip the statistics (``gf.train.zclip`` does the same).
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradflow._checks import check_float, check_int
from gradflow.report._logs import TrainingLog
from gradflow.report._replay import replay_summary, zclip_levels

#: The keys ``audit`` always returns, in order (the ``--json`` contract).
AUDIT_KEYS = (
    "clip_fraction",
    "threshold_percentile",
    "spikes",
    "recommended_range",
)


def zscore_spikes(
    grad_norm: Any,
    *,
    alpha: float = 0.97,
    z_thresh: float = 2.5,
    warmup_steps: int = 25,
    eps: float = 1e-6,
) -> np.ndarray:
    """ZClip's spike test over a series of norms (``zscore`` mode, adaptive scaling).

    Args:
        grad_norm: ``(n,)`` norms in step order.
        alpha: EMA factor in (0, 1).
        z_thresh: z-score threshold, > 0.
        warmup_steps: finite norms that start the EMA, >= 1.
        eps: added to the standard deviation.

    Returns:
        ``(n,)`` bool: the steps ``gf.train.zclip`` (and ``zclip.ZClip``) would
        clip as spikes.
    """
    g = np.asarray(grad_norm, np.float64)
    alpha = check_float("alpha", alpha, minimum=0.0, strict=True)
    if alpha >= 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    z_thresh = check_float("z_thresh", z_thresh, minimum=0.0, strict=True)
    warmup = check_int("warmup_steps", warmup_steps)
    return zclip_levels(
        g, alpha=alpha, z_thresh=z_thresh, warmup_steps=warmup, eps=eps
    )[0]


def _percentile_rank(values: np.ndarray, t: float) -> float:
    # the share of norms at or below T, so that it and the clip fraction add to 100%
    return float(100.0 * np.count_nonzero(values <= t) / values.size)


def _trend(step: np.ndarray, g: np.ndarray) -> dict[str, Any]:
    ok = np.isfinite(g) & (g > 0)
    s, lg = step[ok].astype(np.float64), np.log10(g[ok])
    if s.size < 8 or np.ptp(s) == 0:
        return {
            "direction": "unknown",
            "slope_log10_per_1000_steps": None,
            "first_quarter_median": None,
            "last_quarter_median": None,
            "ratio": None,
        }
    slope = float(np.polyfit(s, lg, 1)[0] * 1000.0)
    q = max(s.size // 4, 1)
    first, last = float(np.median(g[ok][:q])), float(np.median(g[ok][-q:]))
    ratio = last / first
    direction = "rising" if ratio > 1.5 else "falling" if ratio < 1 / 1.5 else "flat"
    return {
        "direction": direction,
        "slope_log10_per_1000_steps": slope,
        "first_quarter_median": first,
        "last_quarter_median": last,
        "ratio": ratio,
    }


def _range(finite: np.ndarray) -> dict[str, Any]:
    """The recommended range and the two rules it reconciles (module doc)."""
    p10, p50, p90, p99 = (float(v) for v in np.percentile(finite, [10, 50, 90, 99]))
    band = [p10, p90]
    rule = [0.5 * p50, 10.0 * p50]
    # with a median norm of 0 both rules collapse to [0, 0]: no range exists
    rng = None if p50 == 0 else [max(band[0], rule[0]), min(band[1], rule[1])]
    pct = {"p10": p10, "p50": p50, "p90": p90, "p99": p99, "max": float(finite.max())}
    return {"range": rng, "band": band, "rule": rule, "percentiles": pct}


def _zero_verdict(t: float, finite: np.ndarray, clip_fraction: float) -> str:
    zeros = int(np.count_nonzero(finite == 0))
    if zeros == finite.size:
        return (
            f"Every finite gradient norm ({zeros}) is exactly 0: the parameters got "
            f"no gradient (is the loss connected to them?), so no threshold clips "
            f"anything and there is no range to recommend."
        )
    return (
        f"{zeros} of the {finite.size} finite gradient norms are exactly 0 (the "
        f"median is 0), so there is no range to recommend relative to a typical "
        f"norm; T = {t:.3g} clips {clip_fraction:.0%} of steps."
    )


def _group_audit(
    log: TrainingLog, t: float, spike_test: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    out, masks = {}, {}
    for name, g in (log.groups or {}).items():
        finite = g[np.isfinite(g)]
        masks[name] = zscore_spikes(g, **spike_test)
        if finite.size == 0:
            out[name] = {"steps": 0, "clip_fraction": None, "spikes": []}
            continue
        r = _range(finite)
        out[name] = {
            "steps": int(finite.size),
            "clip_fraction": float(np.mean(finite > t)),
            "spikes": [int(s) for s in log.step[masks[name]]],
            "recommended_range": r["range"],
            "grad_norm": r["percentiles"],
        }
    return out, masks


def _spike_records(
    log: TrainingLog,
    mask: np.ndarray,
    loss_mask: np.ndarray | None,
    group_masks: Mapping[str, np.ndarray],
    window: int,
) -> list[dict[str, Any]]:
    loss_steps = None if loss_mask is None else log.step[loss_mask]
    records = []
    for i in np.flatnonzero(mask):
        s = int(log.step[i])
        rec: dict[str, Any] = {
            "step": s,
            "grad_norm": float(log.grad_norm[i]),
            "loss_spike_after": None,
            "lag": None,
        }
        if loss_steps is not None:
            after = loss_steps[(loss_steps >= s) & (loss_steps <= s + window)]
            rec["loss_spike_after"] = bool(after.size)
            rec["lag"] = int(after[0] - s) if after.size else None
        if log.groups:
            rec["groups"] = [n for n, m in group_masks.items() if m[i]]
            ratios = {
                n: float(g[i] / np.nanmedian(g))
                for n, g in log.groups.items()
                if np.isfinite(g[i]) and np.nanmedian(g) > 0
            }
            rec["largest_jump"] = max(ratios, key=ratios.get) if ratios else None
        records.append(rec)
    return records


def audit(
    log: TrainingLog,
    threshold: float,
    *,
    z_thresh: float = 2.5,
    alpha: float = 0.97,
    warmup_steps: int = 25,
    window: int = 10,
    replays: Sequence[str] = (),
) -> dict[str, Any]:
    """Audit a clipping threshold against a run's gradient norms.

    Args:
        log: from :func:`read_log` (or built by hand).
        threshold: the global-norm clipping threshold ``T`` to judge, > 0
            (``inf``: no clipping).
        z_thresh, alpha, warmup_steps: the spike test (:func:`zscore_spikes`),
            applied to the norm, the loss and each group's norm.
        window: a loss spike at most ``window`` steps after a norm spike (the
            same step included) counts as following it, >= 0.
        replays: clipping methods to replay over the logged norms, e.g.
            ``("global_norm:1.0", "autoclip:10", "zclip:2.5", "adagc")``
            (``gradflow.report._replay``).

    Returns:
        A dict (non-finite floats stay floats; :func:`to_json` makes it JSON).
        First :data:`AUDIT_KEYS`: ``clip_fraction`` (share of finite norms
        above ``T``), ``threshold_percentile`` (``T``'s percentile rank: the
        percentage of finite norms at or below ``T``, so that it is
        ``100 * (1 - clip_fraction)``), ``spikes`` (one record per spike:
        ``step``, ``grad_norm``, ``loss_spike_after`` (whether the loss spiked
        within ``window`` steps; ``None`` without a loss) and its ``lag`` in
        steps (or ``None``); with groups ``groups``, those that
        spiked at that step by their own test, and ``largest_jump``, the group
        furthest above its median), ``recommended_range`` (``[lo, hi]``, see
        the module doc, or ``None`` when the median norm is 0). Then:
        ``threshold``, ``position`` (``"below"``, ``"inside"``, ``"above"`` the
        range or ``"undefined"``), ``verdict`` (one sentence), ``steps``,
        ``nonfinite_steps``, ``grad_norm`` percentiles (``p10``, ``p50``,
        ``p90``, ``p99``, ``max``), ``autoclip_band`` and ``median_rule``
        (the two ranges reconciled), ``spike_test`` (its parameters and
        ``window``), ``trend`` (``direction`` rising/falling/flat by the ratio
        of the last quarter's median norm to the first's beyond 1.5x, that
        ratio, and the least-squares slope of log10 norm per 1000 steps),
        ``logged_clip_fraction`` (from the log's ``clipped`` column, or
        ``None``), ``loss`` (first, last, min, or ``None``), ``loss_spikes``
        (steps, or ``None`` without a loss), ``groups`` (name -> its
        ``clip_fraction`` at ``T``, ``spikes``, ``recommended_range``,
        ``grad_norm`` percentiles; ``None`` without groups), ``replays`` (one
        per method: ``clipped_steps``, ``factors``, ``clip_fraction``),
        ``notes`` (how the log was read: duplicates, order) and ``source``.

    Raises:
        ValueError: ``threshold`` not > 0, no finite norm in the log, a bad
            ``window`` or replay.
    """
    from gradflow.report._replay import parse_replay

    if not isinstance(log, TrainingLog):
        raise TypeError(
            f"log must be a TrainingLog (read_log), got {type(log).__name__}"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise TypeError(
            f"threshold must be a number > 0, got {type(threshold).__name__} "
            f"{threshold!r}"
        )
    t = float(threshold)
    if not t > 0:
        raise ValueError(f"threshold must be > 0 (inf: no clipping), got {threshold}")
    window = check_int("window", window, minimum=0)
    for spec in replays:
        parse_replay(spec)
    g = log.grad_norm
    finite = g[np.isfinite(g)]
    if finite.size == 0:
        raise ValueError(f"{log.source}: no finite gradient norm in {g.size} steps")
    r = _range(finite)
    rng = r["range"]
    spike_test = {"alpha": alpha, "z_thresh": z_thresh, "warmup_steps": warmup_steps}
    spikes = zscore_spikes(g, **spike_test)
    loss_mask = None
    if log.loss is not None and np.isfinite(log.loss).any():
        loss_mask = zscore_spikes(log.loss, **spike_test)
    groups, group_masks = _group_audit(log, t, spike_test)
    clip_fraction = float(np.mean(finite > t))
    pct = _percentile_rank(finite, t)
    fmt = lambda v: f"{v:.3g}"  # noqa: E731
    if rng is None:
        position = "undefined"
        verdict = _zero_verdict(t, finite, clip_fraction)
    else:
        lo, hi = rng
        position = "below" if t < lo else "above" if t > hi else "inside"
        where = f"[{fmt(lo)}, {fmt(hi)}]"
        verdict = {
            "below": (
                f"T = {fmt(t)} is below the recommended range {where}: it clips "
                f"{clip_fraction:.0%} of steps, so clipping acts as a smaller "
                f"learning rate on most of them."
            ),
            "inside": (
                f"T = {fmt(t)} is inside the recommended range {where}: it clips "
                f"{clip_fraction:.0%} of steps."
            ),
            "above": (
                f"T = {fmt(t)} is above the recommended range {where}: it clips "
                f"{clip_fraction:.0%} of steps"
                + (
                    f" and {int(np.sum(spikes & (g > t)))} of the "
                    f"{int(spikes.sum())} spikes."
                    if spikes.any()
                    else "."
                )
            ),
        }[position]
        if math.isinf(t):
            verdict = (
                f"T = inf clips nothing (no clipping); the recommended range is "
                f"{where}"
                + (
                    f" and {int(spikes.sum())} steps were spikes."
                    if spikes.any()
                    else "."
                )
            )
    loss = None
    if loss_mask is not None:
        fl = log.loss[np.isfinite(log.loss)]
        loss = {"first": float(fl[0]), "last": float(fl[-1]), "min": float(fl.min())}
    zclip_settings = {"alpha": alpha, "warmup_steps": warmup_steps}
    return {
        "clip_fraction": clip_fraction,
        "threshold_percentile": pct,
        "spikes": _spike_records(log, spikes, loss_mask, group_masks, window),
        "recommended_range": rng,
        "threshold": t,
        "position": position,
        "verdict": verdict,
        "steps": int(g.size),
        "nonfinite_steps": [int(s) for s in log.step[~np.isfinite(g)]],
        "grad_norm": r["percentiles"],
        "autoclip_band": r["band"],
        "median_rule": r["rule"],
        "spike_test": {**spike_test, "window": window},
        "trend": _trend(log.step, g),
        "logged_clip_fraction": (
            float(np.mean(log.clipped)) if log.clipped is not None else None
        ),
        "loss": loss,
        "loss_spikes": None
        if loss_mask is None
        else [int(s) for s in log.step[loss_mask]],
        "groups": groups or None,
        "replays": [
            replay_summary(log.step, g, spec, groups=log.groups, zclip=zclip_settings)
            for spec in replays
        ],
        "notes": list(log.notes),
        "source": log.source,
    }


def to_json(result: Mapping[str, Any]) -> str:
    """An :func:`audit` result as JSON text: non-finite numbers (``T = inf``) as
    ``null``."""
    import json

    from gradflow.results import to_jsonable

    return json.dumps(to_jsonable(result), indent=2, allow_nan=False)


def write_audit(
    log: TrainingLog, result: Mapping[str, Any], out: str | os.PathLike
) -> Path:
    """Write ``audit.json``, figures and ``audit.md``/``audit.html`` into ``out``.

    Figures: ``audit_grad_norm`` (the norm over steps, log scale, with the
    threshold, the recommended range shaded and spikes marked),
    ``audit_histogram`` (the norms' histogram with the range shaded and the
    threshold drawn) and, with replays, ``audit_replay`` (each method's clip
    factor over steps), each as PDF, SVG and PNG.

    Returns:
        The path of ``audit.html``.
    """
    import matplotlib.pyplot as plt

    from gradflow import plots
    from gradflow.results import atomic_write_text

    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "audit.json", to_json(result) + "\n")
    shade = result["recommended_range"]
    t = result["threshold"]
    spiked = np.asarray([s["step"] for s in result["spikes"]], np.int64)
    figures = {
        "audit_grad_norm": plots.grad_norm_trace(
            log.grad_norm,
            steps=log.step,
            threshold=t,
            spikes=np.isin(log.step, spiked),
            shade=shade,
        ),
        "audit_histogram": plots.grad_norm_histogram(
            log.grad_norm, thresholds={"T": t} if math.isfinite(t) else {}, shade=shade
        ),
    }
    if result["replays"]:
        figures["audit_replay"] = plots.clip_replay(log.step, result["replays"])
    for stem, fig in figures.items():
        plots.save(fig, out / "figures" / stem)
        plt.close(fig)
    alt = {
        "audit_grad_norm": "gradient norm over training",
        "audit_histogram": "histogram of gradient norms",
        "audit_replay": "clip factor of each replayed method over training",
    }
    rows = audit_rows(result)
    md = [
        "# Clipping audit",
        "",
        f"Log: `{result['source']}` ({result['steps']} steps).",
        "",
        result["verdict"],
        "",
        *[f"Note: {n}\n" for n in result["notes"]],
        "| quantity | value |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
        *[f"![{alt[stem]}](figures/{stem}.png)\n" for stem in figures],
        _RANGE_NOTE,
        "",
    ]
    atomic_write_text(out / "audit.md", "\n".join(md))
    body = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows
    )
    notes = "".join(f"<p>Note: {html.escape(n)}</p>" for n in result["notes"])
    imgs = "".join(
        f"<p><img src='figures/{stem}.svg' alt='{alt[stem]}'></p>" for stem in figures
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Clipping audit"
        "</title><style>body{font-family:serif;max-width:52em;margin:2em auto}"
        "td{padding:0.2em 0.8em;border-bottom:1px solid #ddd}img{max-width:100%}"
        "</style></head><body><h1>Clipping audit</h1>"
        f"<p>Log: <code>{html.escape(result['source'])}</code> "
        f"({result['steps']} steps).</p><p>{html.escape(result['verdict'])}</p>"
        f"{notes}<table>{body}</table>{imgs}"
        f"<p>{html.escape(_RANGE_NOTE)}</p></body></html>"
    )
    atomic_write_text(out / "audit.html", page)
    return out / "audit.html"


_RANGE_NOTE = (
    "Recommended range: the thresholds inside both AutoClip's band (10th to 90th "
    "percentile of the norms: clips between 10% and 90% of steps) and Pascanu et "
    "al.'s 0.5x to 10x the typical (median) norm. Spikes: ZClip's z-score test "
    "against an EMA of the norm's mean and variance. Replays run each method's "
    "rule and state over the norms as logged (not a re-run of training)."
)


def _steps_text(steps: Sequence[int], limit: int = 12) -> str:
    return ", ".join(map(str, steps[:limit])) + (" …" if len(steps) > limit else "")


def audit_rows(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(quantity, value)`` text pairs of an :func:`audit` result, for tables."""
    g = result["grad_norm"]
    rng = result["recommended_range"]
    tr = result["trend"]
    spikes = result["spikes"]
    shown = _steps_text([s["step"] for s in spikes])
    rows = [
        ("threshold T", f"{result['threshold']:.4g}"),
        ("clip fraction at T", f"{result['clip_fraction']:.3f}"),
        ("T's percentile", f"{result['threshold_percentile']:.1f}"),
        (
            "recommended range",
            "none (median norm 0)"
            if rng is None
            else f"[{rng[0]:.4g}, {rng[1]:.4g}] (T is {result['position']})",
        ),
        ("AutoClip band p10–p90", "[{:.4g}, {:.4g}]".format(*result["autoclip_band"])),
        ("0.5–10× median", "[{:.4g}, {:.4g}]".format(*result["median_rule"])),
        (
            "norm p10 / p50 / p90 / p99 / max",
            " / ".join(f"{g[k]:.4g}" for k in ("p10", "p50", "p90", "p99", "max")),
        ),
        ("spikes", f"{len(spikes)}" + (f" (steps {shown})" if spikes else "")),
        (
            "trend",
            tr["direction"]
            + (
                f" (last/first quarter median {tr['ratio']:.3g})"
                if tr["ratio"] is not None
                else ""
            ),
        ),
        ("non-finite norms", str(len(result["nonfinite_steps"]))),
    ]
    followed = [s for s in spikes if s.get("loss_spike_after")]
    if result["loss_spikes"] is not None and spikes:
        lags = _steps_text([s["lag"] for s in followed])
        window = result["spike_test"]["window"]
        rows.append(
            (
                f"spikes followed by a loss spike within {window} steps",
                f"{len(followed)} of {len(spikes)}"
                + (f" (lags {lags})" if followed else ""),
            )
        )
    for name, grp in (result["groups"] or {}).items():
        if grp["clip_fraction"] is None:
            rows.append((f"group {name}", "no finite norm"))
            continue
        gr = grp["recommended_range"]
        rows.append(
            (
                f"group {name}",
                f"clips {grp['clip_fraction']:.3f} at T, {len(grp['spikes'])} spikes"
                + (f" (steps {_steps_text(grp['spikes'])})" if grp["spikes"] else "")
                + ("" if gr is None else f", range [{gr[0]:.4g}, {gr[1]:.4g}]"),
            )
        )
    for rep in result["replays"]:
        steps = rep["clipped_steps"]
        rows.append(
            (
                f"replay {rep['method']}:{rep['value']:g}",
                f"clips {rep['clip_fraction']:.3f} of steps"
                + (
                    f" (steps {_steps_text(steps, 8)}), smallest factor "
                    f"{min(rep['factors']):.3g}"
                    if steps
                    else ""
                ),
            )
        )
    if result["logged_clip_fraction"] is not None:
        rows.append(
            ("clip fraction in the log", f"{result['logged_clip_fraction']:.3f}")
        )
    if result["loss"] is not None:
        lv = result["loss"]
        rows.append(
            (
                "loss first / last / min",
                f"{lv['first']:.4g} / {lv['last']:.4g} / {lv['min']:.4g}",
            )
        )
    return rows
