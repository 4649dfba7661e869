"""The runner: every grid point once, sharded over devices, resumable."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import tomllib
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import tomli_w

from gradflow import results

from ._interrupt import StopRequest, deferred_interrupt
from ._kind import ExperimentKind, Grid, Point
from ._kinds import kind_of, load_config
from ._kinds import quick as quick_config
from ._lock import directory_lock
from ._progress import Progress

#: XLA options for ``--quick`` runs on CPU: about half the compile time.
QUICK_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}

#: The longest refusal message process 0 sends the others (bytes of UTF-8).
CLAIM_MESSAGE_BYTES = 4096

#: What ``force=True`` deletes from a directory that holds another config's
#: results (then ``config.toml`` is replaced). Other files are left alone.
FORCE_DELETES = (
    results.POINTS,
    results.METRICS,
    results.AXES,
    results.PROVENANCE,
    results.SUMMARY,
    "figures",
    "report.html",
    "report.md",
)


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


def _nothing_computed(out: Path) -> bool:
    """Whether ``out`` holds no point, metric, summary or figure: nothing to lose."""
    metrics = out / results.METRICS
    return (
        # gradflow's own marks: a config.toml alone may be anyone's file
        ((out / results.AXES).exists() or (out / results.PROVENANCE).exists())
        and not any((out / results.POINTS).glob("*"))
        and not (metrics.exists() and metrics.stat().st_size)
        and not (out / results.SUMMARY).exists()
        and not (out / "figures").exists()
    )


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
        try:
            existing = results.read_config(out)
        except results.DamagedFileError:
            if not force:
                raise
            existing = {}  # replaced below, like any other config's results
        if existing == resolved:
            return
        # A run that stopped before its first point (an error in it) left its
        # config and nothing computed: the corrected config just replaces it.
        force = force or ("experiment" in existing and _nothing_computed(out))
        if not force:
            diffs = _differences(existing, resolved)
            shown = "; ".join(diffs[:5]) + (" ..." if len(diffs) > 5 else "")
            raise ValueError(
                f"{out} already holds results of a different config ({shown}). "
                f"Refusing to mix them: choose another --out directory, delete "
                f"{out}, or pass --force to replace its results."
            )
        # Everything a run or a report wrote: figures of the old config included.
        for name in FORCE_DELETES:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
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


def _share_claim(out: Path, error: BaseException | None) -> None:
    """Process 0 tells the others whether it claimed ``out``; they wait for it.

    Process 0 reaches this whether it claimed ``out`` or refused it, and
    broadcasts its answer (the refusal's message, or nothing) to every process:
    a plain barrier would leave the others waiting forever when it refuses. A
    process 0 that never gets here has died, and the others stop at the
    heartbeat timeout.

    Raises:
        ValueError: (other processes) process 0 refused the directory.
    """
    import jax

    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    # int32 codes: what every collective backend (gloo on CPU too) can sum
    message = np.zeros(CLAIM_MESSAGE_BYTES, np.int32)
    if error is not None:
        text = (str(error) or type(error).__name__).encode()[:CLAIM_MESSAGE_BYTES]
        message[: len(text)] = np.frombuffer(text, np.uint8)
    answer = np.asarray(multihost_utils.broadcast_one_to_all(message))
    if not _is_writer() and answer.any():
        text = answer.astype(np.uint8).tobytes().rstrip(b"\0")
        raise ValueError(f"process 0 refused {out}: {text.decode(errors='replace')}")


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
    max_points: int | None = None,
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
        config: a resolved config (:func:`load_config`) or a TOML file's path.
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
        max_points: refuse a grid of more points than this (``None``: any),
            before anything is written.

    Returns:
        ``out`` as a ``Path``.

    Raises:
        ConfigError: an invalid config file, or one the compute layer refuses
            (e.g. a user's cell that cannot be built).
        GridTooLarge: the grid has more than ``max_points`` points.
        ValueError: ``out`` holds results of a different config.
    """
    if isinstance(config, str | Path):
        config = load_config(config, quick=quick)
    elif quick:
        config = quick_config(config)
    kind = kind_of(config)
    grid = kind.grid(config)  # the one expansion of this run's grid
    size = f"{len(grid.points):,} points x {len(grid.seeds)} seeds"
    if max_points is not None and len(grid.points) > max_points:
        raise GridTooLarge(f"the grid has {size}, more than the {max_points:,} allowed")
    # Absolute before the user's code runs: a factory may change the directory.
    out = check_out(out).absolute()
    kind.check(config)  # e.g. imports and builds users' cells before any file is made
    reporter = progress if isinstance(progress, Progress) else Progress(progress)
    reporter.announce(config["experiment"]["name"], size)
    with contextlib.ExitStack() as stack:
        stop = stack.enter_context(deferred_interrupt())
        error = None
        if _is_writer():
            try:
                stack.enter_context(directory_lock(out))
                claim_directory(out, config, force=force)
                _tidy(out, grid)
            except BaseException as err:
                error = err
        _share_claim(out, error)  # every process then sees the same finished points
        if error is not None:
            raise error
        compiler_options = None
        if config["experiment"]["quick"] and _platform(devices) == "cpu":
            # A quick run is a smoke test of tiny shapes: compile time dominates.
            compiler_options = dict(QUICK_COMPILER_OPTIONS)
        from gradflow._measure import single_threaded_lapack

        # XLA parallelises each point itself; a threaded OpenBLAS under its
        # per-step LAPACK calls (QR, SVD) only steals its cores (10-100x slower).
        stack.enter_context(single_threaded_lapack())
        return _run(
            config,
            kind,
            grid,
            out,
            reporter,
            devices,
            on_point,
            batching,
            compiler_options,
            {} if cache is None else cache,
            stop,
        )


def check_out(out: str | os.PathLike) -> Path:
    """``out`` as a ``Path``, refused where it cannot be a results directory.

    Raises:
        ValueError: ``out`` is empty or names something that is not a directory.
    """
    if not isinstance(out, str | os.PathLike) or not os.fspath(out).strip():
        raise ValueError(
            f"out must name a results directory, got {out!r} (use '.' to mean the "
            f"current directory)"
        )
    path = Path(out)
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            inside = "" if parent == path else f", so {path} cannot be made in it"
            raise ValueError(
                f"{parent} is a file, not a results directory{inside}; choose "
                f"another out directory"
            )
    return path


class GridTooLarge(ValueError):
    """A grid of more points than ``run(..., max_points=)`` allows."""


def grid_points(config: Mapping[str, Any]) -> tuple[list[Point], list[int]]:
    """Every point of a config's grid and its seeds (any experiment kind)."""
    grid = kind_of(config).grid(config)
    return grid.points, grid.seeds


def _tidy(out: Path, grid: Grid) -> None:
    """Under the lock: clear what a killed run left and check finished points.

    Removes temporary files (a write cut short), cuts a torn last line off
    ``metrics.jsonl``, writes ``axes.json``, and deletes every point file that
    does not load or lacks an expected array (it is recomputed), with a warning.
    """
    for tmp in [*out.glob(".*.tmp"), *(out / results.POINTS).glob(".*.tmp")]:
        tmp.unlink(missing_ok=True)
    results.repair_metrics(out)
    axes = grid.axes
    n_seeds = len(grid.seeds)
    results.atomic_write_json(out / results.AXES, axes)
    bad = []
    for record in results.read_metrics(out):
        pid = record["id"]
        if results.point_done(out, pid):
            problem = _point_problem(out, pid, axes, n_seeds)
            if problem:
                bad.append(f"{pid} ({problem})")
                results.point_path(out, pid).unlink()
    if bad:
        shown = "; ".join(bad[:3]) + (
            f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
        )
        warnings.warn(
            f"{out}: {len(bad)} damaged point file(s) deleted and recomputed: {shown}",
            stacklevel=3,
        )


def _point_problem(out: Path, pid: str, axes: Mapping[str, list[str]], n: int) -> str:
    """Why a point file is unusable ("" when it is fine)."""
    try:
        arrays = results.load_point(out, pid)
    except Exception as err:  # a torn zip raises zipfile/ValueError/EOF/OSError
        return f"does not load: {type(err).__name__}: {err}"
    missing = sorted(set(axes) - set(arrays))
    if missing:
        return f"missing {', '.join(missing)}"
    for name, named in axes.items():
        a = arrays[name]
        if a.ndim != len(named) or a.shape[0] != n:
            return (
                f"{name} has shape {a.shape}, expected {len(named)} axes and {n} seeds"
            )
    return ""


def _platform(devices) -> str:
    import jax

    return (list(devices) if devices is not None else jax.devices())[0].platform


def _wrong_shapes(out: Path, finished: list[Point], shapes) -> set[str]:
    """Finished points whose arrays have other shapes than this config makes.

    Their files are deleted (by the writer) and they are recomputed, with a
    warning: a file from another version, or edited, is not drawn as if valid.
    """
    wrong = {}
    for point in finished:
        try:
            arrays = results.load_point(out, point.id)
        except Exception as err:  # deleted by the writer meanwhile, or torn
            wrong[point.id] = f"does not load: {type(err).__name__}"
            continue
        for name, shape in shapes(point).items():
            got = arrays[name].shape[1:] if name in arrays else None
            if got != shape:
                wrong[point.id] = f"{name} has shape {got} per seed, expected {shape}"
                break
    if wrong and _is_writer():
        for pid in wrong:
            results.point_path(out, pid).unlink(missing_ok=True)
        shown = "; ".join(f"{k} ({v})" for k, v in list(wrong.items())[:3])
        warnings.warn(
            f"{out}: {len(wrong)} point file(s) with arrays of the wrong shape "
            f"deleted and recomputed: {shown}",
            stacklevel=4,
        )
    return set(wrong)


def _finished(out: Path) -> set[str]:
    """Points whose arrays and metrics are both written."""
    with_metrics = {r["id"] for r in results.read_metrics(out)}
    return {pid for pid in with_metrics if results.point_done(out, pid)}


def _start_provenance(
    out: Path, seeds: list[int], devices, total: int
) -> tuple[dict, float]:
    """Provenance for this run; a resumed run keeps the earlier segments' time.

    ``wall_time_s`` is the sum of ``segments`` (one wall time per run that
    wrote into the directory, in order).
    """
    from ._provenance import provenance

    prov = provenance(seeds, devices)
    prov["points_total"] = total
    old = results.read_json(out / results.PROVENANCE) or {}
    segments = [float(w) for w in old.get("segments", [])]
    if old and not segments and old.get("wall_time_s"):
        segments = [float(old["wall_time_s"])]  # written before segments existed
    if old:
        prov["started"] = old.get("started", prov["started"])
    prov["segments"] = segments
    spent = sum(segments)
    prov["wall_time_s"] = spent
    if _is_writer():
        results.atomic_write_json(out / results.PROVENANCE, prov)
    return prov, spent


class RunContext(NamedTuple):
    """What a kind's point runner may use: the mesh, batching, compile cache.

    Attributes:
        devices: the devices seeds are sharded over.
        sharding: a ``NamedSharding`` over a 1-D ``("seed",)`` mesh of them.
        padded_seeds: the seeds, padded to a multiple of the device count.
        seed_array: ``padded_seeds`` as a global array sharded over the mesh.
        batching: ``"auto"``, ``"vmap"`` or ``"map"``.
        compiler_options: for ``jax.jit`` (``None``: XLA's defaults).
        cache: compiled functions kept across runs in one process.
    """

    devices: list[Any]
    sharding: Any
    padded_seeds: np.ndarray
    seed_array: Any
    batching: str
    compiler_options: dict[str, Any] | None
    cache: dict

    def to_global(self, x: np.ndarray) -> Any:
        return _to_global(x, self.sharding)

    def to_host(self, tree: Any) -> Any:
        return _to_host(tree)

    def cache_key(self, shaping: Any, sig: Any) -> str:
        """Everything that shapes a compiled function, as one string."""
        return json.dumps(
            [
                shaping,
                sig,
                [str(d) for d in self.devices],
                self.batching,
                self.compiler_options,
            ],
            sort_keys=True,
        )


def _run(
    config,
    kind: ExperimentKind,
    grid: Grid,
    out,
    reporter,
    devices,
    on_point,
    batching,
    compiler_options,
    cache,
    stop: StopRequest,
) -> Path:
    """The one loop of every experiment kind: each unfinished point once."""
    import jax

    t0 = time.perf_counter()
    devices = list(devices) if devices is not None else jax.devices()
    seeds, points = grid.seeds, grid.points
    prov, spent = _start_provenance(out, seeds, devices, len(points))
    done = _finished(out)
    todo = [p for p in points if p.id not in done]
    if batching == "auto" and len(devices) > 1 and _platform(devices) == "cpu":
        # jaxlib 0.10's batched LAPACK kernels (SVD, QR, eig) wait for helpers
        # on the CPU thread pool that also runs each device's program: with a
        # device per core, init_scale deadlocked in 4 of 4 runs, every thread
        # idle. lax.map over each device's seeds calls them one matrix at a time.
        batching = "map"
    sharding = _mesh_sharding(devices)
    padded = _pad(seeds, len(devices))
    ctx = RunContext(
        devices,
        sharding,
        padded,
        _to_global(padded, sharding),
        batching,
        compiler_options,
        cache,
    )
    run_point = kind.runner(config, ctx)
    shapes = getattr(run_point, "shapes", None)
    if shapes is not None and len(todo) < len(points):
        wrong = _wrong_shapes(out, [p for p in points if p.id in done], shapes)
        todo = [p for p in points if p.id not in done or p.id in wrong]
    todo = getattr(run_point, "order", list)(todo)
    with _reporting(out, config, reporter, prov, spent, t0, len(points), len(todo)):
        for point in todo:
            _check_stop(stop)
            t_point = time.perf_counter()
            arrays, metrics = run_point(point)
            _write_point(out, point, arrays, metrics)
            _point_finished(reporter, point, t_point, on_point)
    if _is_writer():
        summary = kind.summary(results.read_metrics(out))
        if summary is not None:
            results.atomic_write_json(out / results.SUMMARY, summary)
    return out


@contextlib.contextmanager
def _reporting(out, config, reporter, prov, spent, t0, total, remaining):
    """Progress around a run's loop; provenance written however the loop ends."""
    reporter.start(config["experiment"]["name"], total, total - remaining)
    finished = False
    try:
        yield
        finished = True
    finally:
        reporter.close(finished=finished)
        prov["segments"].append(round(time.perf_counter() - t0, 3))
        prov["wall_time_s"] = round(spent + prov["segments"][-1], 3)
        if _is_writer():
            results.atomic_write_json(out / results.PROVENANCE, prov)


def _check_stop(stop: StopRequest) -> None:
    if stop.requested:
        raise KeyboardInterrupt


def _point_finished(reporter, point: Point, t_point: float, on_point) -> None:
    reporter.advance(point.id, time.perf_counter() - t_point)
    if on_point is not None:
        on_point(point.id)


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
