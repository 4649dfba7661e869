"""Run the curated mutants: plant each bug in a copy of the repository, run its tests.

Each entry of ``mutants/mutants.toml`` names a file, a snippet that occurs in it
exactly once, its replacement (a small plausible bug) and the test files that
should catch it. For every mutant this script copies the repository into a
temporary folder, applies that one change, and runs ``pytest -x`` on those test
files there. A failing run means the mutant was *caught*; a passing run means
it *survived* (a blind spot in the tests). A snippet that no longer occurs
exactly once is *stale*: the code moved on and the entry needs updating. A run
that ends in anything but test failures (a collection error, say) is an *error*,
not a catch; a run past ``--timeout`` is a *timeout* (no verdict).

Usage::

    python mutants/run.py              # every mutant (make mutants)
    python mutants/run.py NAME ...     # only these
    python mutants/run.py --list       # names and what each plants

Exit status 0 when every mutant was caught, 1 otherwise. The unmutated tests
are run first: if they fail, nothing else is meaningful and the script stops.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = Path(__file__).resolve().with_name("mutants.toml")
# what a test run needs from the repository (no .git, venvs, results, figures)
COPY = ("gradflow", "tests", "experiments", "pyproject.toml", "README.md")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def load(path: Path = MUTANTS) -> list[dict]:
    """The mutant entries, each checked for the keys it needs."""
    entries = tomllib.loads(path.read_text())["mutant"]
    keys = {"name", "file", "find", "replace", "tests", "why"}
    for e in entries:
        missing = keys - set(e)
        if missing:
            raise ValueError(f"{path}: mutant {e.get('name')!r} lacks {missing}")
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: mutant names must be unique")
    return entries


def _copy_repo(target: Path) -> None:
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, target / name, ignore=IGNORE)
        elif src.exists():
            shutil.copy2(src, target / name)


def _pytest(where: Path, tests: list[str], timeout: float) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=str(where), OPENBLAS_NUM_THREADS="1")
    env.pop("COV_CORE_SOURCE", None)  # never measure coverage of a mutant run
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    cmd += ["-p", "no:randomly", *tests]
    try:
        proc = subprocess.run(
            cmd, cwd=where, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return -1, "timed out"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    # the test that caught it, else pytest's closing line
    failed = [ln for ln in lines if ln.startswith(("FAILED ", "ERROR "))]
    return proc.returncode, (failed or lines or [""])[0 if failed else -1]


def run_mutant(entry: dict, clean: Path, timeout: float) -> tuple[str, str]:
    """``(verdict, detail)``: caught, survived, stale, invalid, error or timeout."""
    source = (clean / entry["file"]).read_text()
    if source.count(entry["find"]) != 1:
        return "stale", f"snippet found {source.count(entry['find'])} times"
    tests = [t for t in entry["tests"] if (clean / t).exists()]
    if not tests:
        return "stale", f"none of its tests exist: {entry['tests']}"
    mutated = source.replace(entry["find"], entry["replace"])
    with tempfile.TemporaryDirectory(prefix="gradflow-mutant-") as tmp:
        where = Path(tmp)
        _copy_repo(where)
        (where / entry["file"]).write_text(mutated)
        try:
            compile(mutated, entry["file"], "exec")
        except SyntaxError as err:
            return "invalid", f"does not compile: {err}"
        code, last = _pytest(where, tests, timeout)
    if code == 0:
        return "survived", last
    if code == -1:
        # a slow machine is not a failing test: say so, and let a rerun decide
        return "timeout", f"no verdict within {timeout:.0f} s (rerun with --timeout)"
    if code != 1:
        # pytest: 2 interrupted or collection error, 3 internal, 4 usage, 5 no tests
        return "error", f"pytest exit {code}, not a test failure: {last}"
    return "caught", last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="only these mutants (default: all)")
    parser.add_argument("--list", action="store_true", help="list them and exit")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds per mutant's test run"
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the unmutated run (only right after the suite passed on this tree)",
    )
    args = parser.parse_args(argv)
    entries = load()
    if args.list:
        for e in entries:
            print(f"{e['name']}: {e['file']}\n    {e['why']}")
        return 0
    if args.names:
        unknown = set(args.names) - {e["name"] for e in entries}
        if unknown:
            parser.error(f"unknown mutants: {sorted(unknown)}")
        entries = [e for e in entries if e["name"] in args.names]

    every_test = sorted({t for e in entries for t in e["tests"]})
    with tempfile.TemporaryDirectory(prefix="gradflow-clean-") as tmp:
        clean = Path(tmp)
        _copy_repo(clean)
        present = [t for t in every_test if (clean / t).exists()]
        if not args.no_baseline:
            t0 = time.perf_counter()
            code, last = _pytest(clean, present, args.timeout * 4)
            took = time.perf_counter() - t0
            print(f"baseline ({len(present)} test files): {last} [{took:.0f} s]")
            if code != 0:
                print("the unmutated tests fail: fix them before counting mutants")
                return 2
        verdicts: dict[str, list[str]] = {}
        for e in entries:
            t0 = time.perf_counter()
            verdict, detail = run_mutant(e, clean, args.timeout)
            verdicts.setdefault(verdict, []).append(e["name"])
            took = time.perf_counter() - t0
            print(f"{verdict:>8}  {e['name']}  [{took:.0f} s]  {detail}", flush=True)
    kinds = ("caught", "survived", "stale", "invalid", "error", "timeout")
    counts = ", ".join(f"{len(verdicts.get(v, []))} {v}" for v in kinds)
    print(f"\n{len(entries)} mutants: {counts}")
    for v in kinds[1:]:
        if verdicts.get(v):
            print(f"{v}: {', '.join(verdicts[v])}")
    return 0 if len(verdicts.get("caught", [])) == len(entries) else 1


if __name__ == "__main__":
    sys.exit(main())
