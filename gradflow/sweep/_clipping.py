"""The clipping study, a sweep kind: which threshold keeps training stable, and what
it costs.

A config with ``[experiment] kind = "clipping"`` has a ``[clipping]`` section
(checked by :func:`validate_clipping_section`) that names one set-up (task,
length, cell, optimiser, steps) and the conditions to compare: every entry of
``thresholds`` × every learning rate in ``lrs``. As every experiment kind, this
module gives the sweep runner ``validate``, ``quick``, ``points``, ``axes``,
``runner`` and ``summary``; :func:`clipping_grid` lists a condition's
coordinates, :func:`run_clipping_point` trains all seeds of one condition, and
:func:`summarize_clipping` turns every condition's metrics into the
``summary.json`` content.

Coordinates (one dict per condition, keys in this order):

* ``{"clip": "none", "lr": 0.01}``: no clipping;
* ``{"clip": "global_norm", "threshold": 1.0, "lr": 0.01}``: a numeric entry of
  ``thresholds``, applied by the section's ``clip`` transform
  (``global_norm``, ``value`` or ``agc``);
* ``{"clip": "autoclip", "percentile": 10.0, "lr": 0.01}``: the ``"autoclip"``
  entry, AutoClip at the section's ``autoclip_percentile``.

A coordinate may also override any scalar key of the section (e.g. ``"gain"``).
``gain`` is the scale of ``W_hh`` for every init, as in a ``measure`` sweep
(``gradflow.cells.initializer``).

This module imports no jax until a point runs.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradflow import _names, results
from gradflow._checks import check_choice

from ._config import _check_keys, _fail, _is_int, _is_real, _seeds
from ._grid import Point

GRAD_PERCENTILES = (50, 90, 99)

#: The default ``[clipping]`` section: Pascanu et al. (2013)'s setting made to
#: explode, a tanh RNN with a large Gaussian recurrent gain trained by plain SGD.
CLIPPING_DEFAULTS: dict[str, Any] = {
    "task": "adding",
    "length": 100,
    "cell": "rnn",
    "activation": "tanh",
    "hidden_size": 32,
    "init": "gaussian",
    "gain": 1.5,
    "optimizer": "sgd",
    "lrs": [0.05, 0.2],
    "batch_size": 20,
    "steps": 400,
    "seeds": [0, 1, 2, 3, 4, 5, 6, 7],
    "clip": "global_norm",
    "thresholds": ["none", 0.25, 1.0, 4.0, 16.0, "autoclip"],
    "autoclip_percentile": 10.0,
    "record_every": 50,
    "eval_batch_size": 256,
    "divergence_factor": 100.0,
    "grad_divergence_factor": 1e6,
}

_INT_KEYS = ("length", "hidden_size", "batch_size", "steps", "eval_batch_size")
_POSITIVE_KEYS = ("gain", "autoclip_percentile")


def _bad(where: str, key: str, expected: str, got: Any) -> ValueError:
    return _fail(where, f"[clipping] {key}", expected, got)


def _finite(v: Any) -> bool:
    return _is_real(v) and math.isfinite(v)


def validate_clipping_section(section: Mapping[str, Any], where: str) -> dict:
    """Check a ``[clipping]`` table and fill in defaults.

    Args:
        section: the table as read from TOML (keys of :data:`CLIPPING_DEFAULTS`).
        where: the file (or other origin) errors should name.

    Returns:
        The resolved section: every key present, ``seeds`` a list of ints,
        ``lrs`` and ``thresholds`` lists, numbers as floats.

    Raises:
        ValueError: an unknown key, a wrong type or an impossible value (a
            negative threshold, a percentile outside (0, 100], an unknown
            task/cell/optimizer/clip name), naming ``where``, the key, what was
            expected and what came.
    """
    _check_keys(where, "clipping", section, tuple(CLIPPING_DEFAULTS))
    out = copy.deepcopy(CLIPPING_DEFAULTS)
    out.update(copy.deepcopy(dict(section)))
    for key, choices in (
        ("task", tuple(_names.TASKS)),
        ("cell", tuple(_names.CELLS)),
        ("activation", _names.ACTIVATIONS),
        ("init", _names.INITS),
        ("optimizer", tuple(_names.OPTIMIZERS)),
        ("clip", _names.THRESHOLD_CLIPS),
    ):
        if not isinstance(out[key], str) or out[key] not in choices:
            raise _bad(where, key, f"one of {', '.join(choices)}", out[key])
    for key in _INT_KEYS:
        if not _is_int(out[key]) or out[key] < 1:
            raise _bad(where, key, "an integer >= 1", out[key])
        out[key] = int(out[key])
    if not _is_int(out["record_every"]) or out["record_every"] < 0:
        raise _bad(
            where, "record_every", "an integer >= 0 (0: never)", out["record_every"]
        )
    for key in _POSITIVE_KEYS:
        if not _finite(out[key]) or out[key] <= 0:
            raise _bad(where, key, "a number > 0", out[key])
        out[key] = float(out[key])
    p = out["autoclip_percentile"]
    if p > 100:
        raise _bad(where, "autoclip_percentile", "a percentile in (0, 100]", p)
    for key in ("divergence_factor", "grad_divergence_factor"):
        if not _finite(out[key]) or out[key] <= 1:
            raise _bad(where, key, "a number > 1", out[key])
        out[key] = float(out[key])
    minimum = _names.TASKS[out["task"]].min_length
    if out["length"] < minimum:
        raise _bad(
            where,
            "length",
            f"an integer >= {minimum} for task {out['task']!r}",
            out["length"],
        )
    out["seeds"] = _seeds(where, out["seeds"], "[clipping] seeds")
    lrs = out["lrs"] if isinstance(out["lrs"], list) else [out["lrs"]]
    if not lrs or not all(_finite(v) and v > 0 for v in lrs):
        raise _bad(where, "lrs", "a list of learning rates > 0", out["lrs"])
    out["lrs"] = [float(v) for v in lrs]
    thresholds = out["thresholds"]
    if not isinstance(thresholds, list) or not thresholds:
        raise _bad(where, "thresholds", "a non-empty list", thresholds)
    resolved = []
    for i, t in enumerate(thresholds):
        if isinstance(t, str) and t in ("none", "autoclip"):
            resolved.append(t)
        elif _finite(t) and t > 0:
            resolved.append(float(t))
        else:
            raise _bad(
                where, f"thresholds[{i}]", 'a number > 0, "none" or "autoclip"', t
            )
    if len(set(map(str, resolved))) != len(resolved):
        raise _bad(where, "thresholds", "distinct entries", thresholds)
    out["thresholds"] = resolved
    return out


def quick_section(section: Mapping[str, Any]) -> dict:
    """Shrink a resolved section for ``gradflow run --quick`` (seconds, not minutes).

    Keeps 2 seeds, the first learning rate, "none" plus the first numeric
    threshold and "autoclip" (those present), 60 steps and ``T <= 30``.
    """
    out = copy.deepcopy(dict(section))
    out["seeds"] = list(out["seeds"])[:2]
    out["lrs"] = list(out["lrs"])[:1]
    numeric = [t for t in out["thresholds"] if not isinstance(t, str)]
    keep = {"none", "autoclip", *numeric[:1]}
    out["thresholds"] = [t for t in out["thresholds"] if t in keep]
    out["steps"] = min(out["steps"], 60)
    out["length"] = min(out["length"], 30)
    out["hidden_size"] = min(out["hidden_size"], 16)
    out["record_every"] = min(out["record_every"], 20)
    out["eval_batch_size"] = min(out["eval_batch_size"], 64)
    return out


def clipping_grid(section: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The conditions of a resolved section, as coordinate dicts (see module doc).

    Learning rates vary slowest, then thresholds in the section's order.
    """
    grid = []
    for lr in section["lrs"]:
        for t in section["thresholds"]:
            if t == "none":
                grid.append({"clip": "none", "lr": lr})
            elif t == "autoclip":
                grid.append(
                    {
                        "clip": "autoclip",
                        "percentile": section["autoclip_percentile"],
                        "lr": lr,
                    }
                )
            else:
                grid.append({"clip": section["clip"], "threshold": t, "lr": lr})
    return grid


def _resolve_point(section: Mapping[str, Any], coords: Mapping[str, Any]) -> dict:
    if not isinstance(coords, Mapping):
        raise TypeError(f"coords must be a dict, got {type(coords).__name__}")
    known = {"clip", "threshold", "percentile", "lr"}
    scalars = {k for k, v in CLIPPING_DEFAULTS.items() if not isinstance(v, list)} - {
        "clip"
    }
    unknown = [k for k in coords if k not in known | scalars]
    if unknown:
        raise ValueError(
            f"coords: unknown key {unknown[0]!r}; expected clip, threshold, "
            f"percentile, lr or a scalar key of the section"
        )
    overrides = {k: v for k, v in coords.items() if k in scalars}
    sec = validate_clipping_section({**section, **overrides}, "coords")
    clip = check_choice(
        "coords['clip']", coords.get("clip", "none"), tuple(_names.CLIPS)
    )
    if "lr" not in coords:
        raise ValueError("coords: missing 'lr' (the learning rate of this condition)")
    lr = coords["lr"]
    if not _finite(lr) or lr <= 0:
        raise ValueError(f"coords['lr'] must be a learning rate > 0, got {lr!r}")
    level = None
    if clip == "autoclip":
        level = coords.get("percentile", sec["autoclip_percentile"])
    elif clip != "none":
        if "threshold" not in coords:
            raise ValueError(f"coords: clip {clip!r} needs a 'threshold'")
        level = coords["threshold"]
    return {**sec, "clip": clip, "level": level, "lr": float(lr)}


def run_clipping_point(
    section: Mapping[str, Any],
    coords: Mapping[str, Any],
    seeds: Sequence[int],
    *,
    compiler_options: dict[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, list[float]]]:
    """Train every seed of one condition (vmapped) and measure it.

    Args:
        section: a resolved ``[clipping]`` section.
        coords: the condition (see the module doc), e.g.
            ``{"clip": "global_norm", "threshold": 1.0, "lr": 0.01}``.
        seeds: the seeds; seed ``s`` uses ``jax.random.key(s)``.
        compiler_options: passed to ``jax.jit`` (see :func:`gradflow.train.train`).

    Returns:
        ``(arrays, metrics)``. ``arrays`` (numpy, leading axis seed):
        ``loss``, ``grad_norm`` (before clipping), ``clipped_grad_norm``,
        ``accuracy`` (all ``(seed, iteration)``, NaN = absent: from
        ``diverged_at`` on, or a NaN input), ``clipped`` ``(seed, iteration)``
        0/1, ``profile_log10_grad_norms`` ``(seed, record, step)`` and
        ``profile_iteration`` ``(seed, record)``. ``metrics`` (one float per
        seed, NaN = absent): ``diverged`` (0/1), ``diverged_at`` (the step;
        NaN if never), ``final_loss`` and ``final_accuracy`` (on
        ``eval_batch_size`` fresh sequences after training; NaN if diverged),
        ``clip_fraction`` (share of trained steps where clipping fired),
        ``grad_norm_p50``, ``grad_norm_p90``, ``grad_norm_p99`` (over trained
        steps), ``bad_input_at`` (NaN if never), ``chance_loss`` and
        ``chance_accuracy`` (the task's, repeated per seed).
    """
    import jax
    import jax.numpy as jnp

    from gradflow import cells, tasks
    from gradflow.train import clipper, model_for, train

    cfg = _resolve_point(section, coords)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed, got []")
    task = tasks.make(cfg["task"], cfg["length"])
    takes = _names.CELLS[cfg["cell"]].options
    options = {"activation": cfg["activation"]} if "activation" in takes else {}
    cell = cells.make(
        cfg["cell"],
        cfg["hidden_size"],
        recurrent_init=cfg["init"],
        gain=cfg["gain"],
        **options,
    )
    net = model_for(cell, task)
    clip = clipper(cfg["clip"], cfg["level"], history=cfg["steps"])
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    params, log = train(
        net,
        task,
        cfg["optimizer"],
        key=keys,
        steps=cfg["steps"],
        learning_rate=cfg["lr"],
        clip=clip,
        batch_size=cfg["batch_size"],
        record_every=cfg["record_every"],
        divergence_factor=cfg["divergence_factor"],
        grad_divergence_factor=cfg["grad_divergence_factor"],
        compiler_options=compiler_options,
    )

    @functools.partial(jax.jit, compiler_options=compiler_options)
    @jax.vmap
    def evaluate(p, k):
        batch = task.sample(jax.random.fold_in(k, 0x5EED), cfg["eval_batch_size"])
        out = net.logits(p, batch.xs)
        return task.loss(out, batch), task.accuracy(out, batch)

    eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    final_loss, final_acc = jax.device_get(evaluate(params, eval_keys))
    log = jax.device_get(log)
    n = len(seeds)
    diverged = np.asarray(log.diverged, bool)
    taken = np.isfinite(log.loss)
    gn = np.where(taken, log.grad_norm, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        pct = {q: np.nanpercentile(gn, q, axis=1) for q in GRAD_PERCENTILES}
    fired = np.asarray(log.clipped, bool) & taken
    n_taken = taken.sum(axis=1)
    bad_at = np.asarray(log.bad_input_at)
    for s, at in zip(seeds, bad_at, strict=True):
        if at >= 0:
            warnings.warn(
                f"seed {s}: NaN/inf in the input batch at step {int(at)} (skipped)",
                RuntimeWarning,
                stacklevel=2,
            )
    arrays = {
        "loss": np.asarray(log.loss, np.float32),
        "grad_norm": np.asarray(log.grad_norm, np.float32),
        "clipped_grad_norm": np.asarray(log.clipped_norm, np.float32),
        "clipped": fired.astype(np.int8),
        "accuracy": np.asarray(log.accuracy, np.float32),
        "profile_log10_grad_norms": np.asarray(log.profile, np.float32),
        "profile_iteration": np.asarray(log.profile_steps, np.int32),
    }
    never = np.full(n, np.nan)
    metrics = {
        "diverged": diverged.astype(float),
        "diverged_at": np.where(diverged, np.asarray(log.diverged_at, float), never),
        "final_loss": np.where(diverged, never, np.asarray(final_loss, float)),
        "final_accuracy": np.where(diverged, never, np.asarray(final_acc, float)),
        "clip_fraction": np.where(
            n_taken > 0, fired.sum(axis=1) / np.maximum(n_taken, 1), np.nan
        ),
        **{f"grad_norm_p{q}": np.asarray(v, float) for q, v in pct.items()},
        "bad_input_at": np.where(bad_at >= 0, bad_at.astype(float), never),
        # constant per seed; lets the summary compare losses with chance
        "chance_loss": np.full(n, task.chance_loss),
        "chance_accuracy": np.full(n, task.chance_accuracy),
    }
    return arrays, {k: [float(x) for x in v] for k, v in metrics.items()}


CLIPPING_AXES = {
    "loss": ["seed", "iteration"],
    "grad_norm": ["seed", "iteration"],
    "clipped_grad_norm": ["seed", "iteration"],
    "clipped": ["seed", "iteration"],
    "accuracy": ["seed", "iteration"],
    "profile_log10_grad_norms": ["seed", "record", "step"],
    "profile_iteration": ["seed", "record"],
}
"""The named axes of the arrays :func:`run_clipping_point` returns (``axes.json``)."""


def _values(metrics: Mapping[str, Any], name: str) -> np.ndarray:
    raw = metrics.get(name, [])
    return np.asarray([np.nan if v is None else float(v) for v in raw], float)


def _spread(v: np.ndarray) -> dict[str, float | None] | None:
    v = v[np.isfinite(v)]
    if not v.size:
        return None
    q = np.percentile(v, [0, 10, 25, 50, 75, 90, 100])
    keys = ("min", "q10", "q25", "median", "q75", "q90", "max")
    return {k: float(x) for k, x in zip(keys, q, strict=True)}


def summarize_clipping(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Build ``summary.json`` from the ``metrics.jsonl`` records of every condition.

    Args:
        records: ``{"id", "coords", "seeds", "metrics"}`` per condition, metrics
            as :func:`run_clipping_point` returns them (``None`` = NaN).

    Returns:
        ``{"chance_loss", "thresholds": [...], "recommended": {...}}``. Each
        entry of ``thresholds`` is one condition: ``id``, ``label``, ``clip``,
        ``threshold`` (the number, ``"none"`` or ``"autoclip"``), ``percentile``
        (AutoClip only), ``lr``, ``seeds``, ``divergence_rate``,
        ``diverged_seeds``, ``final_loss`` and ``final_accuracy`` (``min``,
        ``q10``, ``q25``, ``median``, ``q75``, ``q90``, ``max`` over the seeds
        that did not diverge, or ``None``), ``clip_fraction`` (``median``,
        ``mean``) and ``grad_norm_percentiles`` (``p50``, ``p90``, ``p99``: the
        median over seeds of each seed's percentile). ``recommended`` holds
        the ``id``, ``label``, ``clip``, ``threshold``, ``lr`` of the condition
        that never diverged with the lowest median final loss (or, if every
        condition diverged at least once, the lowest divergence rate), a
        ``range`` ``[low, high]`` of the numeric thresholds at the same
        learning rate that never diverged (or ``None``), and a one-sentence
        ``reason``.
        ``chance_loss`` is the task's chance-level loss (from the metrics), or
        ``None``.
    """
    if not records:
        raise ValueError("records must hold at least one condition, got none")
    entries = []
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping) or not {"coords", "metrics"} <= set(rec):
            raise ValueError(
                f"records[{i}] must be a metrics.jsonl object with 'coords' and "
                f"'metrics', got {rec!r}"
            )
        coords, m = rec["coords"], rec["metrics"]
        div = _values(m, "diverged")
        clip = coords.get("clip", "none")
        threshold: Any = (
            clip if clip in ("none", "autoclip") else coords.get("threshold")
        )
        frac = _values(m, "clip_fraction")
        frac = frac[np.isfinite(frac)]
        entry = {
            "id": rec.get("id"),
            "label": results.clip_label(coords),
            "clip": clip,
            "threshold": threshold,
            "lr": coords.get("lr"),
            "seeds": len(div),
            "divergence_rate": float(np.mean(div)) if div.size else None,
            "diverged_seeds": int(np.sum(div)),
            "final_loss": _spread(_values(m, "final_loss")),
            "final_accuracy": _spread(_values(m, "final_accuracy")),
            "clip_fraction": {
                "median": float(np.median(frac)) if frac.size else None,
                "mean": float(np.mean(frac)) if frac.size else None,
            },
            "grad_norm_percentiles": {
                f"p{q}": _median_or_none(_values(m, f"grad_norm_p{q}"))
                for q in GRAD_PERCENTILES
            },
        }
        if clip == "autoclip":
            entry["percentile"] = coords.get("percentile")
        entries.append(entry)
    chance = [_median_or_none(_values(r["metrics"], "chance_loss")) for r in records]
    chance_loss = next((c for c in chance if c is not None), None)
    return {
        "chance_loss": chance_loss,
        "thresholds": entries,
        "recommended": _recommend(entries, chance_loss),
    }


def _median_or_none(v: np.ndarray) -> float | None:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else None


def _median_loss(e: Mapping[str, Any]) -> float:
    return e["final_loss"]["median"] if e["final_loss"] else math.inf


def _recommend(
    entries: list[dict[str, Any]], chance_loss: float | None
) -> dict[str, Any]:
    stable = [e for e in entries if e["divergence_rate"] == 0 and e["final_loss"]]
    pool = stable or entries
    best = min(pool, key=lambda e: (e["divergence_rate"] or 0.0, _median_loss(e)))
    same = [
        e["threshold"]
        for e in stable
        if e["lr"] == best["lr"] and not isinstance(e["threshold"], str)
    ]
    rng = [min(same), max(same)] if same else None
    lr = f" at lr {best['lr']:g}" if best["lr"] is not None else ""
    loss = (
        f"median final loss {_median_loss(best):.4g}"
        if best["final_loss"]
        else "no seed that finished"
    )
    if best["final_loss"] and chance_loss is not None:
        loss += f" (chance level {chance_loss:.4g})"
    none = [e for e in entries if e["clip"] == "none" and e["lr"] == best["lr"]]
    tail = (
        f"; without clipping {none[0]['diverged_seeds']} of {none[0]['seeds']} seeds "
        f"diverged"
        if none and best["clip"] != "none"
        else ""
    )
    if stable:
        reason = (
            f"{best['label']}{lr} never diverged over {best['seeds']} seeds and had "
            f"the lowest {loss} among the {len(stable)} conditions that never "
            f"diverged{tail}."
        )
    else:
        reason = (
            f"every condition diverged at least once; {best['label']}{lr} diverged "
            f"least ({best['diverged_seeds']} of {best['seeds']} seeds) with {loss}."
        )
    return {
        "id": best["id"],
        "label": best["label"],
        "clip": best["clip"],
        "threshold": best["threshold"],
        "lr": best["lr"],
        "range": rng,
        "reason": reason,
    }


# -- the sweep-kind interface (see gradflow.sweep._measure_kind for the other) ------


def validate(where: str, raw: Mapping[str, Any], exp: dict[str, Any]) -> dict:
    """A whole ``kind = "clipping"`` config, resolved."""
    _check_keys(where, "<top level>", raw, ("experiment", "clipping"))
    section = validate_clipping_section(raw.get("clipping", {}), where)
    return {"experiment": exp, "clipping": section}


def quick(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with its section shrunk by :func:`quick_section`."""
    return {**config, "clipping": quick_section(config["clipping"])}


def seeds(config: Mapping[str, Any]) -> list[int]:
    return list(config["clipping"]["seeds"])


def points(config: Mapping[str, Any]) -> list[Point]:
    """One point per condition of :func:`clipping_grid`, with every seed."""
    s = tuple(seeds(config))
    return [
        Point(results.point_id(c), dict(c), s)
        for c in clipping_grid(config["clipping"])
    ]


def axes(config: Mapping[str, Any]) -> dict[str, list[str]]:
    return {k: list(v) for k, v in CLIPPING_AXES.items()}


def summary(recs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return summarize_clipping(recs)


def runner(config: Mapping[str, Any], ctx: Any):
    """The point runner: trains every seed of a condition (``vmap`` on the
    default device; training is not sharded over a mesh)."""
    section = config["clipping"]

    def run(point: Point) -> tuple[dict, dict]:
        return run_clipping_point(
            section,
            point.coords,
            list(point.seeds),
            compiler_options=ctx.compiler_options,
        )

    return run
