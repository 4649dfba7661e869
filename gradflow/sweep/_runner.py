"""The runner: every grid point once, sharded over devices, resumable."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from gradflow import results

from ._config import load_config
from ._config import quick as quick_config
from ._grid import Point, expand_grid
from ._progress import Progress

#: XLA options for ``--quick`` runs on CPU: about half the compile time.
QUICK_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    return [
        f"{k}: {a.get(k, '<missing>')!r} there, {b.get(k, '<missing>')!r} here"
        for k in sorted(set(a) | set(b))
        if a.get(k, "<missing>") != b.get(k, "<missing>")
    ]


def claim_directory(out: Path, config: Mapping[str, Any], *, force: bool) -> None:
    """Write ``config.toml`` into ``out``, or check that it is the same config.

    Raises:
        ValueError: ``out`` holds results of a different config (and not
            ``force``), or holds files that are not a results directory.
    """
    text = tomli_w.dumps(config)
    resolved = tomllib.loads(text)
    cfg_path = out / results.CONFIG
    if cfg_path.exists():
        existing = tomllib.loads(cfg_path.read_text())
        if existing == resolved:
            return
        if not force:
            diffs = _differences(existing, resolved)
            shown = "; ".join(diffs[:5]) + (" ..." if len(diffs) > 5 else "")
            raise ValueError(
                f"{out} already holds results of a different config ({shown}). "
                f"Refusing to mix them: choose another --out directory, delete "
                f"{out}, or pass --force to replace its results."
            )
        for name in (results.POINTS,):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (
            results.METRICS,
            results.AXES,
            results.PROVENANCE,
            results.SUMMARY,
        ):
            (out / name).unlink(missing_ok=True)
    elif out.exists() and any(
        (out / n).exists() for n in (results.POINTS, results.METRICS)
    ):
        raise ValueError(
            f"{out} holds points or metrics but no {results.CONFIG}; refusing to "
            f"write into it: choose another --out directory or delete it."
        )
    results.atomic_write_text(cfg_path, text)


def _mesh_sharding(devices: Sequence[Any]):
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.asarray(list(devices)), ("seed",))
    return NamedSharding(mesh, PartitionSpec("seed"))


def _to_global(x: np.ndarray, sharding) -> Any:
    """A host array as one array sharded over all (possibly remote) devices."""
    import jax

    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    # Every process holds the same host value; each fills its own shards.
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _to_host(tree: Any) -> Any:
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        tree = multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree_util.tree_map(np.asarray, tree)


def _barrier(name: str) -> None:
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _is_writer() -> bool:
    import jax

    return jax.process_index() == 0


def run(
    config: Mapping[str, Any] | str | Path,
    out: str | Path,
    *,
    quick: bool = False,
    progress: str | Progress = "auto",
    force: bool = False,
    devices: Sequence[Any] | None = None,
    on_point: Callable[[str], None] | None = None,
    batching: str = "auto",
    cache: dict | None = None,
) -> Path:
    """Run every point of an experiment into a results directory.

    Each point (one condition, all its seeds) is one call of a function compiled
    once per shape signature (points differing only in gain share it); its
    seeds are batched (``vmap``/``lax.map``) and sharded over a 1-D device mesh
    (padded to a multiple of the device count). A point's arrays
    go to ``out/points/<id>.npz`` atomically and its metrics to
    ``metrics.jsonl``; points already there are skipped, so re-running an
    interrupted command finishes it with the same numbers. While it runs,
    SciPy's OpenBLAS (the LAPACK behind jax's CPU ``qr``/``svd``/``eigh``) is
    held at one thread: XLA already uses every core, and a threaded OpenBLAS
    beside it made points 10-100x slower (benchmarks/README.md, "Sweep").

    Across hosts: call ``jax.distributed.initialize()`` first on every host and
    run the same config with the same ``out`` (a shared file system). The mesh
    then spans every global device; each host feeds its own devices' seeds,
    the results are gathered, and process 0 alone writes the directory.

    Args:
        config: a resolved config (:func:`load_config`) or a TOML path.
        out: the results directory (created).
        quick: shrink the grid first (:func:`quick`), for smoke tests.
        progress: ``"auto"``, ``"bar"``, ``"lines"``, ``"none"`` or a
            :class:`Progress`.
        force: replace the results of a *different* config in ``out``.
        devices: the devices to shard seeds over (default: all JAX sees,
            across hosts after ``jax.distributed.initialize()``).
        on_point: called with each finished point's id (after it is written).
        batching: how seeds are batched: ``"auto"`` (default: ``vmap`` or
            ``lax.map`` per measurement, whichever the CPU benchmark found
            faster), ``"vmap"`` or ``"map"``.
        cache: a dict to keep compiled point functions in; pass the same dict
            to several runs in one process (e.g. a run and its resumption) and
            they compile each shape once. ``None``: a fresh one per call.

    Returns:
        ``out`` as a ``Path``.

    Raises:
        ConfigError: an invalid config file.
        ValueError: ``out`` holds results of a different config.
    """
    if isinstance(config, str | Path):
        config = load_config(config)
    if quick:
        config = quick_config(config)
    out = Path(out)
    reporter = progress if isinstance(progress, Progress) else Progress(progress)
    if _is_writer():
        claim_directory(out, config, force=force)
    _barrier("gradflow-claim")  # every host then sees the same finished points
    compiler_options = None
    if config["experiment"]["quick"] and _platform(devices) == "cpu":
        # A quick run is a smoke test of tiny shapes: compile time dominates.
        compiler_options = dict(QUICK_COMPILER_OPTIONS)
    from .._measure._lapack import single_threaded_lapack

    # XLA parallelises each point itself; a threaded OpenBLAS under its
    # per-step LAPACK calls (QR, SVD) only steals its cores (10-100x slower).
    with single_threaded_lapack():
        if config["experiment"]["kind"] == "clipping":
            return _run_clipping(config, out, reporter, on_point, compiler_options)
        return _run_measure(
            config,
            out,
            reporter,
            devices,
            on_point,
            batching,
            compiler_options,
            {} if cache is None else cache,
        )


def _platform(devices) -> str:
    import jax

    return (list(devices) if devices is not None else jax.devices())[0].platform


def _finished(out: Path) -> set[str]:
    """Points whose arrays and metrics are both written."""
    with_metrics = {r["id"] for r in results.read_metrics(out)}
    return {pid for pid in with_metrics if results.point_done(out, pid)}


def _start_provenance(out: Path, seeds: list[int], devices) -> tuple[dict, float]:
    from ._provenance import provenance

    prov = provenance(seeds, devices)
    old = results._read_json(out / results.PROVENANCE)
    spent = 0.0
    if old:
        prov["started"] = old.get("started", prov["started"])
        spent = float(old.get("wall_time_s") or 0.0)
    prov["wall_time_s"] = spent
    if _is_writer():
        results.atomic_write_json(out / results.PROVENANCE, prov)
    return prov, spent


def _run_measure(
    config, out, reporter, devices, on_point, batching, compiler_options, cache
) -> Path:
    import jax

    from ._point import (
        HOST_INITS,
        array_axes,
        build_cell,
        host_params,
        input_size,
        point_function,
        signature,
    )

    t0 = time.perf_counter()
    devices = list(devices) if devices is not None else jax.devices()
    sharding = _mesh_sharding(devices)
    points = expand_grid(config)
    seeds = list(config["grid"]["seeds"])
    prov, spent = _start_provenance(out, seeds, devices)
    if _is_writer():
        results.atomic_write_json(out / results.AXES, array_axes(config["measure"]))
    done = _finished(out)
    todo = [p for p in points if p.id not in done]
    # Points of one shape signature run back to back: each compiles once and
    # only one signature's host-made params are held at a time.
    order = {}
    for p in todo:
        order.setdefault(signature(config, p.coords), len(order))
    todo.sort(key=lambda p: order[signature(config, p.coords)])
    padded = _pad(seeds, len(devices))
    seed_array = _to_global(padded, sharding)
    current, fn, params = None, None, None
    with _reporting(out, config, reporter, prov, spent, t0, len(points), len(todo)):
        for point in todo:
            t_point = time.perf_counter()
            sig = signature(config, point.coords)
            if sig != current:
                current = sig
                key = _cache_key(config, sig, devices, batching, compiler_options)
                if key not in cache:
                    cache[key] = point_function(
                        config,
                        point.coords,
                        sharding=sharding,
                        batching=batching,
                        compiler_options=compiler_options,
                    )
                fn = cache[key]
                params = None
                if point.coords["init"] in HOST_INITS:
                    cell = build_cell(config, point.coords)
                    size = input_size(config, point.coords)
                    rows = host_params(cell, size, padded, None)
                    params = jax.tree_util.tree_map(
                        lambda a: _to_global(np.asarray(a), sharding), rows
                    )
            # The gain is an argument, not a constant: one compile per signature.
            arrays, metrics = fn(seed_array, params, np.float32(point.coords["gain"]))
            arrays, metrics = _to_host((arrays, metrics))
            n = len(seeds)
            _write_point(
                out,
                point,
                {k: v[:n] for k, v in arrays.items()},
                {k: v[:n] for k, v in metrics.items()},
            )
            _point_finished(reporter, point, t_point, on_point)
    return out


@contextlib.contextmanager
def _reporting(out, config, reporter, prov, spent, t0, total, remaining):
    """Progress around a run's loop; provenance written however the loop ends."""
    reporter.start(config["experiment"]["name"], total, total - remaining)
    try:
        yield
    finally:
        reporter.close()
        prov["wall_time_s"] = round(spent + time.perf_counter() - t0, 3)
        if _is_writer():
            results.atomic_write_json(out / results.PROVENANCE, prov)


def _point_finished(reporter, point: Point, t_point: float, on_point) -> None:
    reporter.advance(point.id, time.perf_counter() - t_point)
    if on_point is not None:
        on_point(point.id)


def _cache_key(config, sig, devices, batching, compiler_options) -> str:
    """Everything that shapes a point's compiled function, as one string."""
    shaping = {k: config[k] for k in ("cell", "input", "measure")}
    return json.dumps(
        [shaping, sig, [str(d) for d in devices], batching, compiler_options],
        sort_keys=True,
    )


def _pad(seeds: list[int], multiple: int) -> np.ndarray:
    """Seeds padded (repeating the last) to a multiple of the device count."""
    n = -(-len(seeds) // multiple) * multiple
    return np.asarray(seeds + [seeds[-1]] * (n - len(seeds)), dtype=np.uint32)


def _write_point(out: Path, point: Point, arrays: dict, metrics: dict) -> None:
    if not _is_writer():
        return
    results.save_point(out, point.id, arrays)
    results.write_metrics(
        out,
        {
            "id": point.id,
            "coords": point.coords,
            "seeds": list(point.seeds),
            "metrics": {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()},
        },
    )


def _run_clipping(config, out, reporter, on_point, compiler_options) -> Path:
    """A clipping study: one training run per condition, all seeds vmapped.

    Conditions come from ``gradflow.train.clipping_grid``; ``summary.json`` is
    written once every condition is done. (Training batches its seeds with
    ``vmap`` on the default device; it is not sharded over a mesh.)
    """
    from gradflow import train

    t0 = time.perf_counter()
    section = config["clipping"]
    seeds = list(section["seeds"])
    prov, spent = _start_provenance(out, seeds, None)
    if _is_writer():
        results.atomic_write_json(out / results.AXES, dict(train.CLIPPING_AXES))
    points = [
        Point(results.point_id(c), dict(c), tuple(seeds))
        for c in train.clipping_grid(section)
    ]
    done = _finished(out)
    todo = [p for p in points if p.id not in done]
    with _reporting(out, config, reporter, prov, spent, t0, len(points), len(todo)):
        for point in todo:
            t_point = time.perf_counter()
            arrays, metrics = train.run_clipping_point(
                section, point.coords, seeds, compiler_options=compiler_options
            )
            _write_point(out, point, arrays, metrics)
            _point_finished(reporter, point, t_point, on_point)
    if _is_writer():
        summary = train.summarize_clipping(results.read_metrics(out))
        results.atomic_write_json(out / results.SUMMARY, summary)
    return out
