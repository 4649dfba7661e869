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

import csv
import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradflow._checks import check_float, check_int

NORM_KEYS = (
    "grad_norm",
    "norm_before",
    "norm_before_clip",
    "grad_norm_before",
    "total_norm",
    "norm",
)
STEP_KEYS = ("step", "iteration", "iter", "global_step")
LOSS_KEYS = ("loss", "train_loss")
CLIPPED_KEYS = ("clipped", "fired")

#: The keys ``audit`` always returns, in order (the ``--json`` contract).
AUDIT_KEYS = (
    "clip_fraction",
    "threshold_percentile",
    "spikes",
    "recommended_range",
)


@dataclass(frozen=True)
class TrainingLog:
    """Per-step records of one training run.

    Attributes:
        step: ``(n,)`` int64 step numbers.
        grad_norm: ``(n,)`` float64 global gradient norm before clipping.
        loss: ``(n,)`` float64 or ``None``.
        clipped: ``(n,)`` bool (whether the run's own clipping fired) or ``None``.
        source: where it was read from (a path, plus point and seed for a
            results directory).
    """

    step: np.ndarray
    grad_norm: np.ndarray
    loss: np.ndarray | None = None
    clipped: np.ndarray | None = None
    source: str = ""


def _pick(keys: Sequence[str], names: Sequence[str]) -> str | None:
    return next((k for k in names if k in keys), None)


def _as_float(value: Any, where: str) -> float:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return math.nan
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: expected a number, got {value!r}") from err


def _as_bool(value: Any, where: str) -> bool:
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("true", "1", "yes", "1.0"):
            return True
        if v in ("false", "0", "no", "0.0", ""):
            return False
        raise ValueError(f"{where}: expected true/false or 1/0, got {value!r}")
    return bool(value)


def _from_rows(rows: list[Mapping[str, Any]], source: str) -> TrainingLog:
    keys: set[str] = set()
    for r in rows:
        keys.update(r)
    norm_key = _pick(sorted(keys), NORM_KEYS)
    if norm_key is None:
        raise ValueError(
            f"{source}: no gradient-norm column; expected one of "
            f"{', '.join(NORM_KEYS)}, got columns {sorted(keys)}"
        )
    rows = [r for r in rows if norm_key in r]
    step_key = _pick(sorted(keys), STEP_KEYS)
    loss_key = _pick(sorted(keys), LOSS_KEYS)
    clip_key = _pick(sorted(keys), CLIPPED_KEYS)
    where = lambda i, k: f"{source}: row {i + 1}, {k}"  # noqa: E731
    norms = np.array(
        [_as_float(r[norm_key], where(i, norm_key)) for i, r in enumerate(rows)]
    )
    if step_key:
        steps = [
            _as_float(r.get(step_key), where(i, step_key)) for i, r in enumerate(rows)
        ]
        if not all(math.isfinite(s) and s == int(s) for s in steps):
            raise ValueError(f"{source}: {step_key} must hold integers in every row")
        step = np.array(steps, np.int64)
    else:
        step = np.arange(len(rows), dtype=np.int64)
    loss = (
        np.array(
            [_as_float(r.get(loss_key), where(i, loss_key)) for i, r in enumerate(rows)]
        )
        if loss_key
        else None
    )
    clipped = (
        np.array(
            [
                _as_bool(r.get(clip_key, False), where(i, clip_key))
                for i, r in enumerate(rows)
            ]
        )
        if clip_key
        else None
    )
    return _checked(TrainingLog(step, norms, loss, clipped, source))


def _checked(log: TrainingLog) -> TrainingLog:
    if log.grad_norm.ndim != 1 or log.grad_norm.size == 0:
        raise ValueError(
            f"{log.source}: expected a non-empty 1-D series of gradient norms, got "
            f"shape {log.grad_norm.shape}"
        )
    if np.any(log.grad_norm[np.isfinite(log.grad_norm)] < 0):
        raise ValueError(f"{log.source}: gradient norms must be >= 0")
    order = np.argsort(log.step, kind="stable")
    if np.any(order != np.arange(order.size)):
        pick = lambda a: None if a is None else a[order]  # noqa: E731
        log = TrainingLog(
            log.step[order],
            log.grad_norm[order],
            pick(log.loss),
            pick(log.clipped),
            log.source,
        )
    return log


def read_log(
    path: str | os.PathLike, *, point: str | None = None, seed: int = 0
) -> TrainingLog:
    """Read a per-step gradient-norm log.

    Accepted inputs:

    * CSV with a header: a norm column (``grad_norm``, or ``norm_before``,
      ``norm_before_clip``, ``grad_norm_before``, ``total_norm``, ``norm``),
      optionally ``step`` (else the row index), ``loss`` and ``clipped``
      (true/false or 1/0; ``fired`` as ``gf.train.monitor`` names it);
    * JSONL: one object per line with the same keys (lines without a norm, such
      as evaluation records, are skipped); JSON: a list of such objects or one
      object of equal-length lists (e.g. a ``gf.train.TrainLog`` as lists);
    * ``.npz`` with those arrays (``(seeds, steps)`` arrays take ``seed``);
    * a gradflow results directory of a clipping study: the point ``point``
      (default: the first) and its seed index ``seed``.

    Args:
        path: the file or directory.
        point: a results directory's point id.
        seed: which seed (row) of a results directory or ``.npz``.

    Returns:
        A :class:`TrainingLog`, sorted by step.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no norm column, or values that are not numbers.
    """
    path = Path(path)
    seed = check_int("seed", seed, minimum=0)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_dir():
        return _from_results(path, point, seed)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path) as z:
            return _from_arrays({k: z[k] for k in z.files}, str(path), seed)
    text = path.read_text()
    if suffix == ".csv" or (
        suffix not in (".json", ".jsonl")
        and "," in text.split("\n", 1)[0]
        and not text.lstrip().startswith("{")
    ):
        rows = list(csv.DictReader(text.splitlines()))
        rows = [{k.strip(): v for k, v in r.items() if k is not None} for r in rows]
        return _from_rows(rows, str(path))
    stripped = text.strip()
    if suffix == ".json" or stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        if isinstance(data, Mapping):
            return _from_arrays(data, str(path), seed)
        if isinstance(data, list) and all(isinstance(r, Mapping) for r in data):
            return _from_rows(data, str(path))
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
            raise ValueError(f"{path}: line {i + 1} is not JSON ({err})") from err
        if not isinstance(obj, Mapping):
            raise ValueError(f"{path}: line {i + 1} must be a JSON object, got {obj!r}")
        rows.append(obj)
    return _from_rows(rows, str(path))


def _from_arrays(data: Mapping[str, Any], source: str, seed: int) -> TrainingLog:
    norm_key = _pick(list(data), NORM_KEYS)
    if norm_key is None:
        raise ValueError(
            f"{source}: no gradient-norm array; expected one of "
            f"{', '.join(NORM_KEYS)}, got {sorted(data)}"
        )

    def row(key: str | None, dtype) -> np.ndarray | None:
        if key is None:
            return None
        a = np.asarray(data[key])
        if dtype is float and a.dtype == object:  # JSON lists may hold null
            a = np.asarray(
                np.where(np.equal(a, None), np.nan, a).tolist(), dtype=np.float64
            )
        if a.ndim == 2:
            if seed >= a.shape[0]:
                raise ValueError(
                    f"{source}: seed must be < {a.shape[0]} (the seeds in {key}), "
                    f"got {seed}"
                )
            a = a[seed]
        if a.ndim != 1:
            raise ValueError(
                f"{source}: {key} must be (steps,) or (seeds, steps), got shape "
                f"{a.shape}"
            )
        return a.astype(dtype)

    norms = row(norm_key, float)
    step_key = _pick(list(data), STEP_KEYS)
    step = (
        row(step_key, np.int64) if step_key else np.arange(norms.size, dtype=np.int64)
    )
    loss = row(_pick(list(data), LOSS_KEYS), float)
    clipped = row(_pick(list(data), CLIPPED_KEYS), bool)
    for name, a in (("step", step), ("loss", loss), ("clipped", clipped)):
        if a is not None and a.shape != norms.shape:
            raise ValueError(
                f"{source}: {name} must have the shape of {norm_key} {norms.shape}, "
                f"got {a.shape}"
            )
    return _checked(TrainingLog(step, norms, loss, clipped, source))


def _from_results(directory: Path, point: str | None, seed: int) -> TrainingLog:
    from gradflow import results

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
    log = _from_arrays(keep, f"{directory} (point {pid}, seed {seed})", seed)
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
    out = np.zeros(g.shape, bool)
    buf: list[float] = []
    mean = var = math.nan
    for i, x in enumerate(g):
        if not math.isfinite(x):
            continue
        if len(buf) < warmup:
            buf.append(float(x))
            if len(buf) == warmup:
                mean = sum(buf) / warmup
                var = sum((b - mean) ** 2 for b in buf) / warmup
            continue
        std = math.sqrt(var)
        z = (x - mean) / (std + eps)
        if z > z_thresh:
            out[i] = True
            x = mean + z_thresh * std / (z / z_thresh)
        mean = alpha * mean + (1 - alpha) * x
        var = alpha * var + (1 - alpha) * (x - mean) ** 2
    return out


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


def audit(
    log: TrainingLog,
    threshold: float,
    *,
    z_thresh: float = 2.5,
    alpha: float = 0.97,
    warmup_steps: int = 25,
) -> dict[str, Any]:
    """Audit a clipping threshold against a run's gradient norms.

    Args:
        log: from :func:`read_log` (or built by hand).
        threshold: the global-norm clipping threshold ``T`` to judge, > 0
            (``inf``: no clipping).
        z_thresh, alpha, warmup_steps: the spike test (:func:`zscore_spikes`).

    Returns:
        A JSON-ready dict. First :data:`AUDIT_KEYS`: ``clip_fraction`` (share of
        finite norms above ``T``), ``threshold_percentile`` (``T``'s percentile
        rank: the percentage of finite norms at or below ``T``, so that it is
        ``100 * (1 - clip_fraction)``), ``spikes`` (the steps
        that are spikes), ``recommended_range`` (``[lo, hi]``, see the module
        doc). Then: ``threshold``, ``position`` (``"below"``, ``"inside"`` or
        ``"above"`` the range), ``verdict`` (one sentence), ``steps``,
        ``nonfinite_steps``, ``grad_norm`` percentiles (``p10``, ``p50``,
        ``p90``, ``p99``, ``max``), ``autoclip_band`` and ``median_rule``
        (the two ranges reconciled), ``spike_test`` (its parameters),
        ``trend`` (``direction`` rising/falling/flat by the ratio of the last
        quarter's median norm to the first's beyond 1.5x, that ratio, and the
        least-squares slope of log10 norm per 1000 steps), ``logged_clip_fraction``
        (from the log's ``clipped`` column, or ``None``), ``loss`` (first, last,
        min, or ``None``) and ``source``.

    Raises:
        ValueError: ``threshold`` not > 0, or no finite norm in the log.
    """
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
    g = log.grad_norm
    finite = g[np.isfinite(g)]
    if finite.size == 0:
        raise ValueError(f"{log.source}: no finite gradient norm in {g.size} steps")
    p10, p50, p90, p99 = np.percentile(finite, [10, 50, 90, 99])
    band = [float(p10), float(p90)]
    rule = [0.5 * float(p50), 10.0 * float(p50)]
    lo, hi = max(band[0], rule[0]), min(band[1], rule[1])
    spikes = zscore_spikes(g, alpha=alpha, z_thresh=z_thresh, warmup_steps=warmup_steps)
    clip_fraction = float(np.mean(finite > t))
    pct = _percentile_rank(finite, t)
    position = "below" if t < lo else "above" if t > hi else "inside"
    fmt = lambda v: f"{v:.3g}"  # noqa: E731
    verdict = {
        "below": (
            f"T = {fmt(t)} is below the recommended range [{fmt(lo)}, {fmt(hi)}]: it "
            f"clips {clip_fraction:.0%} of steps, so clipping acts as a smaller "
            f"learning rate on most of them."
        ),
        "inside": (
            f"T = {fmt(t)} is inside the recommended range [{fmt(lo)}, {fmt(hi)}]: it "
            f"clips {clip_fraction:.0%} of steps."
        ),
        "above": (
            f"T = {fmt(t)} is above the recommended range [{fmt(lo)}, {fmt(hi)}]: it "
            f"clips {clip_fraction:.0%} of steps"
            + (
                f" and {int(np.sum(spikes & (g > t)))} of the {int(spikes.sum())} "
                f"spikes."
                if spikes.any()
                else "."
            )
        ),
    }[position]
    loss = None
    if log.loss is not None and np.isfinite(log.loss).any():
        fl = log.loss[np.isfinite(log.loss)]
        loss = {"first": float(fl[0]), "last": float(fl[-1]), "min": float(fl.min())}
    return {
        "clip_fraction": clip_fraction,
        "threshold_percentile": pct,
        "spikes": [int(s) for s in log.step[spikes]],
        "recommended_range": [lo, hi],
        "threshold": t,
        "position": position,
        "verdict": verdict,
        "steps": int(g.size),
        "nonfinite_steps": [int(s) for s in log.step[~np.isfinite(g)]],
        "grad_norm": {
            "p10": float(p10),
            "p50": float(p50),
            "p90": float(p90),
            "p99": float(p99),
            "max": float(finite.max()),
        },
        "autoclip_band": band,
        "median_rule": rule,
        "spike_test": {
            "z_thresh": z_thresh,
            "alpha": alpha,
            "warmup_steps": warmup_steps,
        },
        "trend": _trend(log.step, g),
        "logged_clip_fraction": (
            float(np.mean(log.clipped)) if log.clipped is not None else None
        ),
        "loss": loss,
        "source": log.source,
    }


def write_audit(
    log: TrainingLog, result: Mapping[str, Any], out: str | os.PathLike
) -> Path:
    """Write ``audit.json``, two figures and ``audit.md``/``audit.html`` into ``out``.

    Figures: ``audit_grad_norm`` (the norm over steps, log scale, with the
    threshold, the recommended range shaded and spikes marked) and
    ``audit_histogram`` (the norms' histogram with the range shaded and the
    threshold drawn), each as PDF, SVG and PNG.

    Returns:
        The path of ``audit.html``.
    """
    from gradflow import plots
    from gradflow.results import atomic_write_json, atomic_write_text

    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "audit.json", dict(result))
    lo, hi = result["recommended_range"]
    t = result["threshold"]
    spikes = np.isin(log.step, np.asarray(result["spikes"], np.int64))
    fig = plots.grad_norm_trace(
        log.grad_norm, steps=log.step, threshold=t, spikes=spikes, shade=(lo, hi)
    )
    plots.save(fig, out / "figures" / "audit_grad_norm")
    fig2 = plots.grad_norm_histogram(
        log.grad_norm, thresholds={"T": t} if math.isfinite(t) else {}, shade=(lo, hi)
    )
    plots.save(fig2, out / "figures" / "audit_histogram")
    import matplotlib.pyplot as plt

    plt.close(fig)
    plt.close(fig2)
    rows = audit_rows(result)
    md = [
        "# Clipping audit",
        "",
        f"Log: `{result['source']}` ({result['steps']} steps).",
        "",
        result["verdict"],
        "",
        "| quantity | value |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
        "![gradient norm over training](figures/audit_grad_norm.png)",
        "",
        "![histogram of gradient norms](figures/audit_histogram.png)",
        "",
        _RANGE_NOTE,
        "",
    ]
    atomic_write_text(out / "audit.md", "\n".join(md))
    body = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Clipping audit"
        "</title><style>body{font-family:serif;max-width:52em;margin:2em auto}"
        "td{padding:0.2em 0.8em;border-bottom:1px solid #ddd}img{max-width:100%}"
        "</style></head><body><h1>Clipping audit</h1>"
        f"<p>Log: <code>{html.escape(result['source'])}</code> "
        f"({result['steps']} steps).</p><p>{html.escape(result['verdict'])}</p>"
        f"<table>{body}</table>"
        "<p><img src='figures/audit_grad_norm.svg' alt='gradient norm over training'>"
        "</p><p><img src='figures/audit_histogram.svg' alt='histogram of gradient "
        f"norms'></p><p>{html.escape(_RANGE_NOTE)}</p></body></html>"
    )
    atomic_write_text(out / "audit.html", page)
    return out / "audit.html"


_RANGE_NOTE = (
    "Recommended range: the thresholds inside both AutoClip's band (10th to 90th "
    "percentile of the norms: clips between 10% and 90% of steps) and Pascanu et "
    "al.'s 0.5x to 10x the typical (median) norm. Spikes: ZClip's z-score test "
    "against an EMA of the norm's mean and variance."
)


def audit_rows(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(quantity, value)`` text pairs of an :func:`audit` result, for tables."""
    g = result["grad_norm"]
    lo, hi = result["recommended_range"]
    tr = result["trend"]
    spikes = result["spikes"]
    shown = ", ".join(map(str, spikes[:12])) + (" …" if len(spikes) > 12 else "")
    rows = [
        ("threshold T", f"{result['threshold']:.4g}"),
        ("clip fraction at T", f"{result['clip_fraction']:.3f}"),
        ("T's percentile", f"{result['threshold_percentile']:.1f}"),
        ("recommended range", f"[{lo:.4g}, {hi:.4g}] (T is {result['position']})"),
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
