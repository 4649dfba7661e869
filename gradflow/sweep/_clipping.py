"""The clipping study, a sweep kind: which threshold keeps training stable, and what
it costs.

A config with ``[experiment] kind = "clipping"`` has a ``[clipping]`` section
(checked by :func:`validate_clipping_section`) that names one set-up (task,
length, cell, optimiser, steps) and the conditions to compare: every entry of
``thresholds`` × every learning rate in ``lrs``. :data:`CLIPPING` is the
kind's ``gradflow.sweep.ExperimentKind``; :func:`clipping_grid` lists the
conditions' coordinates, :func:`run_clipping_point` trains all seeds of one
condition, and :func:`summarize_clipping` turns every condition's metrics into
the ``summary.json`` content.

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
from ._kind import ExperimentKind, Grid, Point
from ._success import (
    comparison_sentence,
    rank,
    steps_to_success,
    success_fields,
)

#: Clip kinds a single-method ``clip = "..."`` may name (their level is the
#: ``thresholds`` entry): every kind with a numeric threshold or z-score.
CLIP_KINDS = tuple(
    k for k, v in _names.CLIPS.items() if v in ("threshold", "zscore", "relative")
)
#: Every method a list-valued ``clip`` may name, and each one's default levels
#: (``none`` has none; ``autoclip``'s are percentiles, ``zclip``'s z-scores).
METHODS = tuple(_names.CLIPS)
DEFAULT_LEVELS: dict[str, list[float]] = {
    "global_norm": [1.0],
    "value": [0.1],
    "agc": [0.05],
    "autoclip": [10.0],
    "zclip": [2.5],
    "adagc": [1.05],
}
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
    "levels": {},
    "autoclip_percentile": 10.0,
    "success_accuracy": 0.99,
    "lengths": [],
    "record_every": 50,
    "eval_batch_size": 256,
    "divergence_factor": 100.0,
    "grad_divergence_factor": 1e6,
    "flossing": {},
    "task_options": {},
}

#: ``[clipping.flossing]``: gradient flossing (``gf.train.flossing``); when
#: given (with ``k``), every condition runs without it and with it (the
#: ``flossing`` coordinate, ``"off"``/``"on"``).
FLOSSING_KEYS = {"k": None, "weight": 1.0, "every": 1, "before": 0, "examples": 0}

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
    methods = _methods(section, out, where)
    for key, choices in (
        ("task", tuple(_names.TASKS)),
        ("cell", tuple(_names.CELLS)),
        ("activation", _names.ACTIVATIONS),
        ("init", _names.INITS),
        ("optimizer", tuple(_names.OPTIMIZERS)),
        *([] if methods else [("clip", CLIP_KINDS)]),
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
    out["flossing"] = _flossing(out["flossing"], out["hidden_size"], where)
    opts = out["task_options"]
    if not isinstance(opts, Mapping) or not all(
        isinstance(k, str) and _is_int(v) and v >= 1 for k, v in opts.items()
    ):
        raise _bad(
            where,
            "task_options",
            "a table of the task's integer options (e.g. copy: symbols, recall)",
            opts,
        )
    out["task_options"] = {k: int(v) for k, v in opts.items()}
    lrs = out["lrs"] if isinstance(out["lrs"], list) else [out["lrs"]]
    if not lrs or not all(_finite(v) and v > 0 for v in lrs):
        raise _bad(where, "lrs", "a list of learning rates > 0", out["lrs"])
    out["lrs"] = [float(v) for v in lrs]
    if len(set(out["lrs"])) != len(lrs):  # each would be trained twice
        raise _bad(where, "lrs", "distinct learning rates", out["lrs"])
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
    acc = out["success_accuracy"]
    if not _finite(acc) or not 0 < acc <= 1:
        raise _bad(where, "success_accuracy", "a number in (0, 1]", acc)
    out["success_accuracy"] = float(acc)
    lengths = out["lengths"]
    if not isinstance(lengths, list) or not all(
        _is_int(t) and t >= minimum for t in lengths
    ):
        raise _bad(
            where,
            "lengths",
            f"a list of integers >= {minimum} (empty: only `length`)",
            lengths,
        )
    if len(set(lengths)) != len(lengths):
        raise _bad(where, "lengths", "distinct entries", lengths)
    out["lengths"] = [int(t) for t in lengths]
    if methods:
        out["clip"] = methods
        out["levels"] = _levels(out["levels"], methods, where)
    elif out["levels"]:
        raise _bad(
            where, "levels", "no [clipping.levels] unless clip is a list", out["levels"]
        )
    return out


def _flossing(table: Any, hidden_size: int, where: str) -> dict[str, Any]:
    """The checked ``[clipping.flossing]`` table (``{}``: no flossing)."""
    if not isinstance(table, Mapping):
        raise _bad(where, "flossing", "a table (k, weight, every, before)", table)
    if not table:
        return {}
    extra = [k for k in table if k not in FLOSSING_KEYS]
    if extra:
        raise _bad(
            where,
            f"flossing.{extra[0]}",
            f"one of {', '.join(FLOSSING_KEYS)}",
            extra[0],
        )
    out = {**FLOSSING_KEYS, **table}
    k = out["k"]
    if not _is_int(k) or not 1 <= k <= hidden_size:
        raise _bad(where, "flossing.k", f"an integer in [1, {hidden_size}]", k)
    for key in ("every", "before", "examples"):
        if not _is_int(out[key]) or out[key] < 0:
            raise _bad(where, f"flossing.{key}", "an integer >= 0", out[key])
    if not _finite(out["weight"]) or out["weight"] < 0:
        raise _bad(where, "flossing.weight", "a number >= 0", out["weight"])
    return {
        "k": int(k),
        "weight": float(out["weight"]),
        "every": int(out["every"]),
        "before": int(out["before"]),
        "examples": int(out["examples"]),
    }


def _methods(section: Mapping[str, Any], out: dict, where: str) -> list[str] | None:
    """The list form of ``clip`` (``None`` for one method name), checked."""
    clip = out["clip"]
    if not isinstance(clip, list):
        return None
    if not clip or not all(isinstance(m, str) and m in METHODS for m in clip):
        raise _bad(where, "clip", f"a method or a list of {', '.join(METHODS)}", clip)
    if len(set(clip)) != len(clip):
        raise _bad(where, "clip", "distinct methods", clip)
    if section.get("thresholds", out["thresholds"]) != CLIPPING_DEFAULTS["thresholds"]:
        raise _bad(
            where,
            "thresholds",
            "no thresholds with a list of clip methods (give each method's levels "
            "in [clipping.levels])",
            section["thresholds"],
        )
    return list(clip)


def _levels(levels: Any, methods: list[str], where: str) -> dict[str, list[float]]:
    if not isinstance(levels, Mapping):
        raise _bad(where, "levels", "a table method = [levels]", levels)
    extra = [k for k in levels if k not in methods or k == "none"]
    if extra:
        raise _bad(
            where,
            f"levels.{extra[0]}",
            f"levels only for the listed methods ({', '.join(methods)}; none has none)",
            levels[extra[0]],
        )
    out = {}
    for m in methods:
        if m == "none":
            continue
        v = levels.get(m, DEFAULT_LEVELS[m])
        v = v if isinstance(v, list) else [v]
        top = 100.0 if m == "autoclip" else math.inf
        if not v or not all(_finite(x) and 0 < x <= top for x in v):
            raise _bad(
                where,
                f"levels.{m}",
                "a list of percentiles in (0, 100]"
                if m == "autoclip"
                else "a list of numbers > 0",
                v,
            )
        if len(set(v)) != len(v):
            raise _bad(where, f"levels.{m}", "distinct entries", v)
        out[m] = [float(x) for x in v]
    return out


def quick_section(section: Mapping[str, Any]) -> dict:
    """Shrink a resolved section for ``gradflow run --quick`` (seconds, not minutes).

    Keeps 2 seeds, the first learning rate, "none" plus the first numeric
    threshold and "autoclip" (those present) or "none" and the first other
    listed method at its first level, the first length, 60 steps and
    ``T <= 30``. Each method compiles its own training program, and compiling
    dominates a quick run: six methods took 44 s on 2 cores, two take 15 s.
    """
    out = copy.deepcopy(dict(section))
    out["seeds"] = list(out["seeds"])[:2]
    out["lrs"] = list(out["lrs"])[:1]
    if isinstance(out["clip"], list):
        others = [m for m in out["clip"] if m != "none"][:1]
        out["clip"] = [m for m in out["clip"] if m == "none" or m in others]
        out["levels"] = {m: v[:1] for m, v in out["levels"].items() if m in others}
    else:
        numeric = [t for t in out["thresholds"] if not isinstance(t, str)]
        keep = {"none", "autoclip", *numeric[:1]}
        out["thresholds"] = [t for t in out["thresholds"] if t in keep]
    out["lengths"] = [min(t, 30) for t in out["lengths"][:1]]
    out["steps"] = min(out["steps"], 60)
    out["length"] = min(out["length"], 30)
    out["hidden_size"] = min(out["hidden_size"], 16)
    out["record_every"] = min(out["record_every"], 20)
    out["eval_batch_size"] = min(out["eval_batch_size"], 64)
    return out


def clipping_grid(section: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The conditions of a resolved section, as coordinate dicts (see module doc).

    Lengths (if ``lengths`` is given) vary slowest, then learning rates, then
    thresholds (or methods and their levels) in the section's order.
    """
    grid = []
    flossing = [{}]
    if section.get("flossing"):
        flossing = [{"flossing": "off"}, {"flossing": "on"}]
    for length in section.get("lengths") or [None]:
        at = {} if length is None else {"length": length}
        for lr in section["lrs"]:
            for c in _conditions(section):
                for f in flossing:
                    grid.append({**c, **f, "lr": lr, **at})
    return grid


def _conditions(section: Mapping[str, Any]) -> list[dict[str, Any]]:
    if isinstance(section["clip"], list):
        out: list[dict[str, Any]] = []
        for m in section["clip"]:
            if m == "none":
                out.append({"clip": "none"})
            elif m == "autoclip":
                out += [{"clip": m, "percentile": p} for p in section["levels"][m]]
            else:
                out += [{"clip": m, "threshold": t} for t in section["levels"][m]]
        return out
    out = []
    for t in section["thresholds"]:
        if t == "none":
            out.append({"clip": "none"})
        elif t == "autoclip":
            out.append(
                {"clip": "autoclip", "percentile": section["autoclip_percentile"]}
            )
        else:
            out.append({"clip": section["clip"], "threshold": t})
    return out


def _resolve_point(section: Mapping[str, Any], coords: Mapping[str, Any]) -> dict:
    if not isinstance(coords, Mapping):
        raise TypeError(f"coords must be a dict, got {type(coords).__name__}")
    known = {"clip", "threshold", "percentile", "lr", "flossing"}
    scalars = {k for k, v in CLIPPING_DEFAULTS.items() if not isinstance(v, list)} - {
        "clip",
        "flossing",  # a coordinate ("off"/"on"), its table stays the section's
        "task_options",
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
        ``chance_accuracy`` (the task's, repeated per seed), ``success``
        (0/1: ``final_accuracy >= success_accuracy``, see
        :mod:`gradflow.sweep._success`) and ``steps_to_success`` (NaN unless
        it succeeded).
    """
    import jax
    import jax.numpy as jnp

    from gradflow import cells, tasks
    from gradflow.train import clipper, flossing, model_for, train

    cfg = _resolve_point(section, coords)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed, got []")
    task = tasks.make(cfg["task"], cfg["length"], **cfg["task_options"])
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
    floss = None
    if coords.get("flossing", "off") == "on":
        if not cfg["flossing"]:
            raise ValueError("coords: flossing 'on' needs a [clipping.flossing] table")
        f = cfg["flossing"]
        floss = flossing(
            f["k"],
            weight=f["weight"],
            every=f["every"],
            before=f["before"],
            examples=f["examples"] or None,
        )
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
        flossing=floss,
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
    level = cfg["success_accuracy"]
    success = ~diverged & (np.asarray(final_acc, float) >= level)
    reached = steps_to_success(np.asarray(log.accuracy, float), level)
    metrics = {
        "success": success.astype(float),
        "steps_to_success": np.where(success, reached, never),
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
        ``None``. When every seed of every condition diverged, ``recommended``
        is ``None`` and ``nothing_learned`` says so.

        When the metrics hold ``success`` (studies run since success was
        measured) each entry also has ``success_rate``, ``success_interval``
        (Wilson 95% over seeds), ``successes``, ``steps_to_success`` (median
        over the seeds that succeeded) and ``final_loss_ratio`` (median final
        loss over chance), and ``length`` when T is a grid axis; then
        ``recommended`` is the most successful condition (ties broken by
        median final loss, then by clip fraction), its ``range`` the levels of
        the same method and lr whose success interval overlaps the best's,
        its ``reason`` says whether the lead over the ``runner_up`` (an id) is
        within the intervals, and the summary adds ``success_criterion`` and
        ``working_region`` (method -> ``[lr, level(, T)]`` with success rate
        >= 0.5).
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
        if "length" in coords:
            entry["length"] = coords["length"]
        if "success" in m:
            entry.update(success_fields(m, _median_or_none(_values(m, "chance_loss"))))
        entries.append(entry)
    chance = [_median_or_none(_values(r["metrics"], "chance_loss")) for r in records]
    chance_loss = next((c for c in chance if c is not None), None)
    learned = all("success_rate" in e for e in entries)
    out = {
        "chance_loss": chance_loss,
        "thresholds": entries,
        "recommended": (
            _recommend_success(entries, chance_loss)
            if learned
            else _recommend(entries, chance_loss)
        ),
    }
    if all(e["seeds"] and e["diverged_seeds"] == e["seeds"] for e in entries):
        # No final loss or accuracy exists to rank by: nothing to recommend.
        out["recommended"] = None
        out["nothing_learned"] = NOTHING_LEARNED.format(n=len(entries))
    if learned:
        out["success_criterion"] = SUCCESS_CRITERION
        out["working_region"] = {
            m: [
                [e["lr"], e["threshold"] if m != "autoclip" else e["percentile"]]
                + ([e["length"]] if "length" in e else [])
                for e in entries
                if e["clip"] == m and e["success_rate"] >= WORKS
            ]
            for m in dict.fromkeys(e["clip"] for e in entries)
        }
    return out


#: The summary's ``nothing_learned`` when every seed of every condition diverged.
NOTHING_LEARNED = (
    "Nothing learned: every seed of all {n} conditions diverged, so no clipping "
    "is recommended; try smaller learning rates"
)

#: A condition "works" (the region drawn in the heat map) from this success rate.
WORKS = 0.5
SUCCESS_CRITERION = (
    "a seed succeeds when the task's accuracy on eval_batch_size fresh sequences "
    "after training is at least success_accuracy (temporal order: the share "
    "classified correctly; adding: the share within 0.04 of the target); steps to "
    "success: the first step where the mean training-batch accuracy over the last "
    "25 steps reached that level"
)


def _recommend_success(
    entries: list[dict[str, Any]], chance_loss: float | None
) -> dict[str, Any]:
    """The most successful condition; ties by final loss, then clip fraction."""
    ranked = rank(entries)
    best = ranked[0]
    runner = ranked[1] if len(ranked) > 1 else None
    same = [
        e
        for e in entries
        if e["clip"] == best["clip"]
        and e["lr"] == best["lr"]
        and e.get("length") == best.get("length")
        and not isinstance(e["threshold"], str)
        and _overlap(e["success_interval"], best["success_interval"])
    ]
    levels = [e["threshold"] for e in same]
    rng = [min(levels), max(levels)] if levels else None
    lr = f" at lr {best['lr']:g}" if best["lr"] is not None else ""
    where = f" (T = {best['length']})" if "length" in best else ""
    loss = (
        f"median final loss {_median_loss(best):.4g}"
        if best["final_loss"]
        else "no seed that finished"
    )
    if best["final_loss"] and chance_loss:
        loss += f", {_median_loss(best) / chance_loss:.2g}x chance"
    steps = (
        f", reaching it in a median {best['steps_to_success']:.0f} steps"
        if best.get("steps_to_success") is not None
        else ""
    )
    none = [
        e
        for e in entries
        if e["clip"] == "none"
        and e["lr"] == best["lr"]
        and e.get("length") == best.get("length")
    ]
    tail = (
        f" Without clipping at the same lr {none[0]['successes']} of "
        f"{none[0]['seeds']} seeds succeeded and {none[0]['diverged_seeds']} "
        f"diverged."
        if none and best["clip"] != "none"
        else ""
    )
    reason = (
        f"{best['label']}{lr}{where} succeeded on {best['successes']} of "
        f"{best['seeds']} seeds ({loss}{steps}). "
        f"{comparison_sentence(best, runner)}{tail}"
    )
    out = {
        **_chosen(best, rng, reason),
        "success_rate": best["success_rate"],
        "success_interval": best["success_interval"],
        "runner_up": None if runner is None else runner["id"],
    }
    if "length" in best:
        out["length"] = best["length"]
    return out


def _overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


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
    return _chosen(best, rng, reason)


def _chosen(best: Mapping[str, Any], rng: Any, reason: str) -> dict[str, Any]:
    """The fields every ``recommended`` has."""
    keys = ("id", "label", "clip", "threshold", "lr")
    return {**{k: best[k] for k in keys}, "range": rng, "reason": reason}


# -- the experiment kind ------------------------------------------------------------


def validate(where: str, raw: Mapping[str, Any], exp: dict[str, Any]) -> dict:
    """A whole ``kind = "clipping"`` config, resolved."""
    _check_keys(where, "<top level>", raw, ("experiment", "clipping"))
    section = validate_clipping_section(raw.get("clipping", {}), where)
    return {"experiment": exp, "clipping": section}


def quick(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with its section shrunk by :func:`quick_section`."""
    return {**config, "clipping": quick_section(config["clipping"])}


def grid(config: Mapping[str, Any]) -> Grid:
    """One point per condition of :func:`clipping_grid`, with every seed."""
    seeds = list(config["clipping"]["seeds"])
    points = [
        Point(results.point_id(c), dict(c), tuple(seeds))
        for c in clipping_grid(config["clipping"])
    ]
    return Grid(points, seeds, {k: list(v) for k, v in CLIPPING_AXES.items()})


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


CLIPPING = ExperimentKind(
    validate=validate,
    quick=quick,
    grid=grid,
    runner=runner,
    summary=summarize_clipping,
)
