"""The ``gradflow`` command line: ``run``, ``demo``, ``report``, ``audit``, ``figures``.

Each sub-command imports what it needs when it runs, so ``gradflow report``
(which only reads saved results and draws) never imports jax.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

DEMO_CONFIG = Path(__file__).with_name("demo.toml")

_DESCRIPTION = """\
Measure how gradients vanish or explode through time in recurrent networks.

  gradflow demo                  RNN at 3 gains, LSTM, GRU: report in ./gradflow-demo/
  gradflow run CONFIG --out DIR  run an experiment (a TOML file or a shipped
                                 experiment's name) into a results directory
  gradflow run --list            the shipped experiments, with descriptions
  gradflow report DIR            figures + report.html from saved results
  gradflow audit LOG --threshold T   judge a clipping threshold on any run's norms
  gradflow figures               re-make figures/ from every experiments/*.toml

Run `gradflow <command> --help` for each command's options.
"""

_RUN_EPILOG = """\
The results directory holds config.toml (the resolved config), points/<id>.npz
(one file per grid point, leading axis = seed), metrics.jsonl, axes.json and
provenance.json. Interrupt a run and run the same command again: finished points
are skipped and the final arrays are the same as an uninterrupted run's. A
different config is refused rather than mixed into an existing DIR, and a second
run into a DIR that a run is writing is refused (DIR/.lock names that run).
Ctrl-C stops after the current point (exit status 130); a second Ctrl-C stops at
once. Grids of more than %(limit)s points need --yes.
"""

#: ``gradflow run`` refuses grids larger than this without ``--yes``: a typo in
#: a range (``num = 1000000``) should not start a run of weeks.
MAX_POINTS = 10_000


class _Failure(Exception):
    """An error to show as one line (``gradflow: error: ...``), exit status 2."""


def _progress(args: argparse.Namespace) -> str:
    return "none" if args.quiet else "auto"


def _add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print no progress (by default: a progress bar on a terminal, "
        "one line per finished point otherwise)",
    )


def _report_module():
    try:
        from gradflow import report
    except ImportError as err:  # pragma: no cover - report ships with gradflow
        raise _Failure(f"gradflow.report could not be imported: {err}") from err
    if not hasattr(report, "write_report"):
        raise _Failure(
            "gradflow.report.write_report is not available in this installation, "
            "so no figures or report can be written (the results are saved)"
        )
    return report


def _write_report(directory: Path, quiet: bool) -> Path:
    report = _report_module()
    path = Path(report.write_report(directory))
    from gradflow import results

    missing = results.unfinished(results.load(directory))
    if missing:
        # On the terminal too, whatever --quiet says: the report is incomplete.
        print(f"gradflow: warning: {directory} holds {missing}", file=sys.stderr)
    if not quiet:
        print(f"report: {path}", file=sys.stderr)
    return path


def _config_path(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        raise _Failure(
            f"CONFIG {path} is a directory; expected an experiment's TOML file"
        )
    return path


def _list_shipped() -> int:
    from gradflow._experiments import shipped, shipped_dir

    experiments = shipped()
    if not experiments:
        raise _Failure("no shipped experiments found in this installation")
    width = shutil.get_terminal_size((88, 24)).columns
    for e in experiments:
        print(e.name)
        for line in textwrap.wrap(e.description or "(no description)", width - 4):
            print(f"    {line}")
    print(f"\n({shipped_dir()}; run one with: gradflow run NAME --out DIR [--quick])")
    return 0


def _distributed_flags(args: argparse.Namespace) -> dict | None:
    """The ``--distributed`` flags, checked; None without ``--distributed``."""
    manual = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed:
        if any(v is not None for v in manual):
            raise _Failure(
                "--coordinator, --num-processes and --process-id need --distributed"
            )
        return None
    if any(v is None for v in manual) and any(v is not None for v in manual):
        raise _Failure(
            "give all of --coordinator, --num-processes and --process-id, or none "
            "(then jax.distributed.initialize() reads the cluster's environment)"
        )
    from . import _multiprocess as dist

    flags = {
        "coordinator": args.coordinator,
        "num_processes": args.num_processes,
        "process_id": args.process_id,
        "heartbeat_timeout": args.heartbeat_timeout,
        "join_timeout": args.join_timeout,
    }
    dist.check_flags(**flags)
    return flags


def _distributed(flags: dict | None) -> int:
    """Join a multi-process run (``--distributed``); this process's index."""
    if flags is None:
        return 0
    import jax

    from . import _multiprocess as dist

    # CPU devices of different processes talk through gloo (no-op elsewhere).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    dist.join(jax.distributed.initialize, **flags)
    return jax.process_index()


def _cmd_run(args: argparse.Namespace) -> int:
    if args.list:
        return _list_shipped()
    if args.config is None or args.out is None:
        raise _Failure(
            "run needs CONFIG (a TOML file or a shipped experiment's name, see "
            "`gradflow run --list`) and --out DIR"
        )
    flags = _distributed_flags(args)  # before jax or the user's code
    from gradflow import sweep
    from gradflow._experiments import resolve

    _cwd_importable()
    path = resolve(_config_path(args.config)).absolute()
    out = sweep.check_out(args.out).absolute()  # before the user's code runs
    if args.report:
        _report_module()  # before hours of running, not after
    if _distributed(flags) > 0:
        args.quiet, args.report = True, False  # process 0 speaks and writes
    try:
        # the file is read, checked and its grid expanded once, by the run
        out = sweep.run(
            path,
            out,
            quick=args.quick,
            progress=_progress(args),
            force=args.force,
            max_points=None if args.yes else MAX_POINTS,
        )
    except sweep.GridTooLarge as err:
        raise _Failure(
            f"{err} without --yes; check its ranges, or pass --yes to run it"
        ) from err
    if not args.quiet:
        print(f"results: {out}", file=sys.stderr)
    if args.report:
        _write_report(out, args.quiet)
    return 0


def _cwd_importable() -> None:
    """Let ``[grid] cell = "mycells:mgu"`` find ``mycells.py`` in the current folder.

    As ``python -m`` would; appended, so it never shadows an installed package.
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def _cmd_demo(args: argparse.Namespace) -> int:
    from gradflow import results, sweep

    if args.out is None:  # a quick demo never replaces a full one
        args.out = "gradflow-demo-quick" if args.quick else "gradflow-demo"
    out = sweep.check_out(args.out)
    config = sweep.load_config(DEMO_CONFIG)
    # Replacing an older demo of the same size in its own folder is fine (the
    # demo changed between versions); anything else is refused.
    there = results.read_config(out).get("experiment", {})
    force = there.get("name") == "demo" and there.get("quick") == args.quick
    if there and not force:
        # sweep.run's refusal advises --force, which demo does not take.
        size = "a quick demo" if there.get("quick") else "a full demo"
        what = size if there.get("name") == "demo" else f"{there.get('name')!r}"
        raise _Failure(
            f"{out} holds the results of {what}; gradflow demo never replaces "
            f"another run's results: choose another --out (or delete {out})"
        )
    sweep.run(config, out, quick=args.quick, progress=_progress(args), force=force)
    _write_report(out, args.quiet)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from gradflow import results

    try:
        results.load(args.dir)
    except FileNotFoundError as err:
        raise _Failure(str(err)) from err
    _write_report(Path(args.dir), quiet=False)
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    import warnings

    from gradflow import report

    try:
        log = report.read_log(
            args.log,
            point=args.point,
            seed=args.seed,
            key=args.key,
            loss_key=args.loss_key,
            tracking_uri=args.tracking_uri,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NaN slices of sparse groups
            result = report.audit(
                log, args.threshold, window=args.window, replays=args.replay or ()
            )
    except ImportError as err:  # an optional reader's package is missing
        raise _Failure(str(err)) from err
    for note in result["notes"]:
        print(f"gradflow: warning: {note}", file=sys.stderr)
    if args.out:
        page = report.write_audit(log, result, args.out)
        print(f"audit: {page}", file=sys.stderr)
    if args.json:
        print(report.to_json(result))
    else:
        print(result["verdict"])
        for name, value in report.audit_rows(result):
            print(f"  {name}: {value}")
    return 0


def _cmd_figures(args: argparse.Namespace) -> int:
    from gradflow import sweep
    from gradflow._experiments import shipped_dir

    from . import _figure_copies as copies

    folder = Path(args.experiments or shipped_dir() or "experiments")
    configs = sorted(folder.glob("*.toml"))
    if args.only:
        unknown = sorted(set(args.only) - {c.stem for c in configs})
        if unknown:
            known = ", ".join(c.stem for c in configs) or "none"
            raise _Failure(
                f"--only {' '.join(unknown)}: no such experiment in {folder} "
                f"(there: {known})"
            )
        configs = [c for c in configs if c.stem in args.only]
    if not configs:
        raise _Failure(f"no experiments (*.toml) found in {folder}")
    _cwd_importable()
    loaded = [sweep.load_config(c) for c in configs]  # all checked before any runs
    # Quick results and figures get their own folders: a smoke test never
    # replaces (or mixes into) the full results or the shipped figures.
    suffix = "-quick" if args.quick else ""
    # Absolute before any user's cell factory runs (it may change directory).
    out, results_dir = Path(args.out).absolute(), Path(args.results).absolute()
    copies.check_separate(out, results_dir)
    names = [config["experiment"]["name"] + suffix for config in loaded]
    for name in names:  # every folder, before any experiment runs
        copies.check_target(out / name, None, force=args.force)
    for path, config, name in zip(configs, loaded, names, strict=True):
        directory = results_dir / name
        if not args.quiet:
            print(f"== {path} -> {directory}", file=sys.stderr)
        sweep.run(
            config,
            directory,
            quick=args.quick,
            progress=_progress(args),
            force=args.force,
        )
        target = out / name
        digest = copies.config_digest(directory)
        copies.check_target(target, digest, force=args.force)
        _write_report(directory, args.quiet)
        copies.copy_figures(directory / "figures", target, name, digest)
        if not args.quiet:
            print(f"figures: {target}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``gradflow`` argument parser (every option documented in ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="gradflow",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from gradflow._version import __version__

    parser.add_argument(
        "--version", action="version", version=f"gradflow {__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "run",
        help="run an experiment config into a results directory",
        description="Run every grid point of an experiment (a TOML file, or a "
        "shipped experiment by name) and write its results into DIR.",
        epilog=_RUN_EPILOG % {"limit": f"{MAX_POINTS:,}"},
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config",
        metavar="CONFIG",
        nargs="?",
        help="the experiment: a TOML file, or the name of a shipped experiment "
        "(e.g. init_scale; see --list)",
    )
    p.add_argument(
        "--out", metavar="DIR", help="the results directory to write (required)"
    )
    p.add_argument(
        "--list",
        action="store_true",
        help="list the shipped experiments with their descriptions, and exit",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="shrink the grid (2 seeds, at most 2 values per axis, short sequences, "
        "narrow cells) so it finishes in seconds: a smoke test",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="if DIR holds results of a different config, delete them and start "
        "over (without it such a DIR is refused)",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="also write figures and report.html into DIR when the run finishes",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help=f"run a grid of more than {MAX_POINTS:,} points (refused without it)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="one of several processes running this sweep together: calls "
        "jax.distributed.initialize() (which reads SLURM's and the other "
        "cluster environments JAX knows; or give the three options below); "
        "process 0 writes DIR, which every process must see",
    )
    p.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="with --distributed: process 0's address, where the processes meet",
    )
    p.add_argument(
        "--num-processes",
        type=int,
        metavar="N",
        help="with --distributed: how many processes run the sweep",
    )
    p.add_argument(
        "--process-id",
        type=int,
        metavar="I",
        help="with --distributed: this process's index, 0 to N-1",
    )
    p.add_argument(
        "--heartbeat-timeout",
        type=int,
        default=100,
        metavar="S",
        help="with --distributed: seconds without word from a process before the "
        "others stop, as its points cannot finish without it (default: %(default)s)",
    )
    p.add_argument(
        "--join-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="with --distributed: seconds to wait for every process to join "
        "before giving up with a message (default: %(default)s)",
    )
    _add_progress(p)
    p.set_defaults(handler=_cmd_run)

    p = sub.add_parser(
        "demo",
        help="vanishing and exploding gradients: tanh RNN at three gains, LSTM, "
        "GRU; memory horizons, fixed points, report",
        description="A built-in experiment: a tanh RNN below, near and above the "
        "edge of chaos beside an LSTM and a GRU; gradient norm against distance "
        "back in time and the memory horizon it gives, Jacobian norms, Lyapunov "
        "spectra, and the fixed points whose eigenvalues predict the forgetting; "
        "then figures and report.html. About a minute of CPU time on 2 cores.",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where to write results and the report (default: gradflow-demo, or "
        "gradflow-demo-quick with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="a smaller demo (seconds)")
    _add_progress(p)
    p.set_defaults(handler=_cmd_demo)

    p = sub.add_parser(
        "report",
        help="re-make figures and report.html/report.md from a results directory",
        description="Draw figures and write DIR/report.html and DIR/report.md from "
        "saved results, without recomputing anything (and without importing jax).",
    )
    p.add_argument(
        "dir", metavar="DIR", help="a results directory (gradflow run --out)"
    )
    p.set_defaults(handler=_cmd_report)

    p = sub.add_parser(
        "audit",
        help="judge a clipping threshold against a training run's gradient norms",
        description="Read per-step global gradient norms (CSV or JSONL with step, "
        "grad_norm and optionally loss, clipped; JSON; .npz; W&B CSV or .parquet "
        "history; a TensorBoard event file or run directory; mlflow:RUN_ID; or a "
        "gradflow results directory) and report the clip fraction at T, T's "
        "percentile, spikes (ZClip's z-score test) and whether the loss spiked "
        "after them, the norm's trend, a recommended range (AutoClip's 10th-90th "
        "percentile band within 0.5-10x the median norm), per-group results for "
        "<key>/<name> series, and replays of other clipping methods.",
        epilog="A step logged twice counts once (the last record wins) and "
        "unsorted steps are sorted, with a warning; non-finite norms are counted "
        "apart. In --json, non-finite numbers (T = inf) are null.",
    )
    p.add_argument(
        "log",
        metavar="LOG",
        help="the log file or directory, or mlflow:RUN_ID",
    )
    p.add_argument(
        "--threshold",
        required=True,
        type=float,
        metavar="T",
        help="the global-norm clipping threshold to judge (inf: none)",
    )
    p.add_argument(
        "--key",
        metavar="NAME",
        help="the gradient-norm series (default: grad_norm, gradient_norm, "
        "train/grad_norm, optimizer/grad_norm, ...)",
    )
    p.add_argument(
        "--loss-key",
        metavar="NAME",
        help="the loss series (default: loss, train_loss, train/loss, ...)",
    )
    p.add_argument(
        "--window",
        type=int,
        default=10,
        metavar="N",
        help="a loss spike at most N steps after a norm spike follows it "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--replay",
        action="append",
        metavar="METHOD[:VALUE]",
        help="replay a clipping method over the logged norms (repeatable): "
        "global_norm:T, autoclip:PERCENTILE, zclip:Z, adagc[:LAMBDA_REL]",
    )
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI for mlflow:RUN_ID (default: $MLFLOW_TRACKING_URI)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the result as JSON (keys clip_fraction, threshold_percentile, "
        "spikes, recommended_range, and more)",
    )
    p.add_argument(
        "--out", metavar="DIR", help="also write figures, audit.md and audit.html"
    )
    p.add_argument(
        "--point", metavar="ID", help="a results directory's point (default: first)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed index in a results directory"
    )
    p.set_defaults(handler=_cmd_audit)

    p = sub.add_parser(
        "figures",
        help="run every shipped experiment and collect its figures",
        description="Run every experiments/*.toml into RESULTS/<name> (resuming what "
        "is there), write its report, and copy its figures to OUT/<name>/. With "
        "--quick, into RESULTS/<name>-quick and OUT/<name>-quick instead.",
    )
    p.add_argument(
        "--experiments",
        metavar="DIR",
        help="folder of experiment TOML files (default: the shipped experiments, "
        "experiments/ in a clone)",
    )
    p.add_argument(
        "--out",
        default="figures",
        metavar="DIR",
        help="where the figures go, one folder per experiment (default: %(default)s)",
    )
    p.add_argument(
        "--results",
        default="results",
        metavar="DIR",
        help="where the results directories go (default: %(default)s)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="only these experiments (file names without .toml)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="run each experiment with --quick, into RESULTS/<name>-quick and "
        "OUT/<name>-quick (full results and figures are never touched)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a RESULTS/<name> that holds results of a different config, "
        "and the figures gradflow copied to OUT/<name> from it (without it both "
        "are refused); files gradflow did not write are never replaced or deleted",
    )
    _add_progress(p)
    p.set_defaults(handler=_cmd_figures)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gradflow`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from gradflow.sweep import deferred_interrupt

    try:
        # Ctrl-C is honoured between points (and between experiments): raised
        # inside XLA it was swallowed or crashed the process.
        with deferred_interrupt(second="exit") as stop:
            status = args.handler(args)
            if stop.requested:
                raise KeyboardInterrupt
            return status
    except KeyboardInterrupt:
        print(
            "gradflow: interrupted; finished points are saved, run the same "
            "command again to resume",
            file=sys.stderr,
        )
        return 130
    except OSError as err:
        print(f"gradflow: error: {_os_error(err)}", file=sys.stderr)
        return 2
    except (_Failure, ValueError, RuntimeError) as err:
        print(f"gradflow: error: {err}", file=sys.stderr)
        return 2


def _os_error(err: OSError) -> str:
    """One line naming the path: ``/sys/x: Operation not permitted``."""
    if err.filename is None:
        return str(err)
    reason = err.strerror or str(err)
    return f"{err.filename}: {reason}"


__all__ = ["build_parser", "main"]
