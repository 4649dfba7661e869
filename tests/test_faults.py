"""Faults at the edges of a run: interrupts, kills, two runs at once, damaged files.

The subprocess tests run the real command line (``python -m gradflow.cli``) and
send real signals; the others drive :func:`gradflow.sweep.run` in-process.
"""

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CLI_WITH_CTRL_C, all_arrays

from gradflow import results, sweep
from gradflow.sweep._lock import DirectoryLocked, directory_lock

ROOT = Path(__file__).resolve().parent.parent
GAINS = [0.5, 1.0, 1.5, 2.0]


def tiny(**grid):
    """A 4-point linear-RNN grid whose points take milliseconds."""
    return sweep.validate(
        {
            "experiment": {"name": "tiny", "quick": True},
            "grid": {
                "cell": "rnn",
                "hidden_size": 3,
                "init": "orthogonal",
                "gain": GAINS,
                "length": 6,
                "input": "zeros",
                "seeds": 2,
                **grid,
            },
            "cell": {"activation": "linear", "bias_init": "zeros"},
            "input": {"size": 1},
            "measure": {"grad_norms": {"loss": "last_linear"}},
        },
        "tiny",
    )


@pytest.fixture(scope="module")
def compiled():
    return {}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, compiled):
    out = tmp_path_factory.mktemp("reference")
    sweep.run(tiny(), out, progress="none", cache=compiled)
    return all_arrays(out)


def assert_same_results(out, reference):
    res = results.load(out)
    assert sorted(r["id"] for r in res.records) == sorted(reference)
    for pid, arrays in reference.items():
        got = res.arrays(pid)
        assert got.keys() == arrays.keys()
        for name, value in arrays.items():
            np.testing.assert_array_equal(got[name], value)


class Stop(Exception):
    pass


def run_until(out, compiled, n_points):
    """Run ``tiny()`` into ``out`` and stop it after ``n_points`` new points."""
    seen = []

    def on_point(pid):
        seen.append(pid)
        if len(seen) == n_points:
            raise Stop

    with pytest.raises(Stop):
        sweep.run(tiny(), out, progress="none", cache=compiled, on_point=on_point)


def test_damaged_point_files_are_redone(tmp_path, compiled, reference):
    run_until(tmp_path, compiled, 3)
    files = sorted((tmp_path / "points").glob("*.npz"))
    assert len(files) == 3
    files[0].write_bytes(files[0].read_bytes()[:100])  # truncated
    results.save_point(tmp_path, files[1].stem, {"other": np.zeros(2)})  # wrong arrays
    # What a SIGKILL in the middle of atomic writes leaves behind.
    (tmp_path / "points" / f".{files[2].name}.abc.tmp").write_bytes(b"half")
    (tmp_path / ".metrics.jsonl.x.tmp").write_text("half")
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"id": "torn')  # a killed append: no newline
    seen = []
    with pytest.warns(UserWarning, match="2 damaged point file") as caught:
        sweep.run(
            tiny(), tmp_path, progress="none", cache=compiled, on_point=seen.append
        )
    (message,) = [str(w.message) for w in caught if "damaged" in str(w.message)]
    assert "does not load" in message and "missing log10_grad_norms" in message
    assert sorted(seen) == sorted(
        [files[0].stem, files[1].stem, *set(reference) - {f.stem for f in files}]
    )
    assert not list(tmp_path.rglob("*.tmp"))
    assert (tmp_path / "metrics.jsonl").read_text().endswith("}\n")
    assert_same_results(tmp_path, reference)


def test_point_files_of_the_wrong_shape_are_redone(tmp_path, compiled, reference):
    """log10_grad_norms (2, 3) where the config makes (2, 6): not drawn, redone."""
    run_until(tmp_path, compiled, 2)
    pid = sorted(p.stem for p in (tmp_path / "points").glob("*.npz"))[0]
    results.save_point(tmp_path, pid, {"log10_grad_norms": np.zeros((2, 3))})
    seen = []
    with pytest.warns(UserWarning, match="1 point file.* wrong shape") as caught:
        sweep.run(
            tiny(), tmp_path, progress="none", cache=compiled, on_point=seen.append
        )
    (message,) = [str(w.message) for w in caught if "wrong shape" in str(w.message)]
    assert f"{pid} (log10_grad_norms has shape (3,) per seed, expected (6,))" in (
        message
    )
    assert pid in seen and len(seen) == len(reference) - 1
    assert_same_results(tmp_path, reference)


def test_metrics_are_appended_and_the_last_record_wins(tmp_path, compiled):
    run_until(tmp_path, compiled, 2)
    before = (tmp_path / "metrics.jsonl").read_bytes()
    first = results.read_metrics(tmp_path)[0]
    results.point_path(tmp_path, first["id"]).unlink()  # lost: recomputed
    sweep.run(tiny(), tmp_path, progress="none", cache=compiled)
    after = (tmp_path / "metrics.jsonl").read_bytes()
    assert after.startswith(before)  # appended, never rewritten
    lines = after.decode().splitlines()
    assert len(lines) == len(GAINS) + 1  # the redone point's record twice
    records = results.read_metrics(tmp_path)
    assert records[0]["id"] == first["id"]
    assert len(records) == len(GAINS)


@pytest.mark.parametrize(
    ("name", "damage", "expected"),
    [
        ("metrics.jsonl", '{"id": "x\n', "line 3 is not valid JSON"),
        ("metrics.jsonl", "[1, 2]\n", "line 3 is not a record with an id"),
        ("config.toml", "[[[\n", "not valid TOML"),
        ("provenance.json", "}\n", "not valid JSON"),
    ],
)
def test_damaged_files_are_named(tmp_path, compiled, name, damage, expected):
    run_until(tmp_path, compiled, 2)
    with (tmp_path / name).open("a") as f:
        f.write(damage)
    for action in (
        lambda: results.load(tmp_path),
        lambda: sweep.run(tiny(), tmp_path, progress="none", cache=compiled),
    ):
        with pytest.raises(results.DamagedFileError) as err:
            action()
        text = str(err.value)
        assert str(tmp_path / name) in text and expected in text
        assert "delete" in text or "restore" in text
    if name == "config.toml":  # as its message says, --force starts over
        sweep.run(tiny(), tmp_path, progress="none", force=True, cache=compiled)
        assert len(results.read_metrics(tmp_path)) == len(GAINS)


def test_a_run_that_computed_nothing_is_replaced_by_the_corrected_config(
    tmp_path, compiled, reference
):
    """An error in the first point left config.toml, axes.json and provenance:
    fixing the config must not need --force (there is nothing to lose)."""
    from gradflow.sweep._runner import claim_directory

    failed = tiny(length=7)
    claim_directory(tmp_path, failed, force=False)  # what the failed run wrote
    (tmp_path / "axes.json").write_text("{}")
    (tmp_path / "provenance.json").write_text("{}")
    sweep.run(tiny(), tmp_path, progress="none", cache=compiled)
    assert_same_results(tmp_path, reference)
    # With a point computed, another config is refused as before.
    with pytest.raises(ValueError, match="different config"):
        sweep.run(failed, tmp_path, progress="none")


def test_wall_time_of_every_segment_is_kept(tmp_path, compiled):
    run_until(tmp_path, compiled, 1)
    first = results.load(tmp_path).provenance
    assert first["segments"] == [first["wall_time_s"]] and first["wall_time_s"] > 0
    assert first["points_total"] == len(GAINS)
    run_until(tmp_path, compiled, 1)
    sweep.run(tiny(), tmp_path, progress="none", cache=compiled)
    prov = results.load(tmp_path).provenance
    segments = prov["segments"]
    assert len(segments) == 3 and segments[0] == first["wall_time_s"]
    assert prov["wall_time_s"] == round(math.fsum(segments), 3)
    assert prov["started"] == first["started"]


def test_a_locked_directory_is_refused(tmp_path, compiled):
    locked = pytest.raises(DirectoryLocked, match=f"pid {os.getpid()} on ")
    with directory_lock(tmp_path), locked:
        sweep.run(tiny(), tmp_path, progress="none", cache=compiled)
    assert not (tmp_path / "metrics.jsonl").exists()
    sweep.run(tiny(), tmp_path, progress="none", cache=compiled)  # released


def test_force_clears_the_old_figures_and_report(tmp_path, compiled):
    sweep.run(tiny(gain=[0.5]), tmp_path, progress="none", cache=compiled)
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "old.png").write_bytes(b"png")
    (tmp_path / "report.html").write_text("old")
    (tmp_path / "notes.txt").write_text("mine")
    sweep.run(tiny(gain=[1.0]), tmp_path, progress="none", force=True, cache=compiled)
    assert not (tmp_path / "figures").exists()
    assert not (tmp_path / "report.html").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert [r["coords"]["gain"] for r in results.read_metrics(tmp_path)] == [1.0]


@pytest.mark.parametrize("bad", ["", "  "])
def test_empty_out_is_refused(bad):
    with pytest.raises(ValueError, match="out must name a results directory"):
        sweep.run(tiny(), bad, progress="none")


# --- the command line in real processes: signals, kills, two runs at once ---

SLOW_GAINS = [round(0.5 + 0.01 * i, 2) for i in range(150)]


def slow():
    """150 points of a few milliseconds each: a run that lasts about a second."""
    return tiny(gain=SLOW_GAINS, length=400)


def cli(out, config_path, *extra):
    """Start ``gradflow run`` in its own process group, as a shell's job."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, "-c", CLI_WITH_CTRL_C, "run", str(config_path)]
    return subprocess.Popen(
        [*command, "--out", str(out), *extra],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        process_group=0,
    )


def wait_for_line(proc, start: str) -> list[str]:
    """Lines of stderr up to and including the first that starts with ``start``."""
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith(start):
            return lines
    raise AssertionError(f"no line starting {start!r}: {''.join(lines)}")


def finish(proc, timeout=60) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@pytest.fixture(scope="module")
def slow_config(tmp_path_factory):
    import tomli_w

    path = tmp_path_factory.mktemp("configs") / "slow.toml"
    path.write_text(tomli_w.dumps(slow()))
    return path


@pytest.fixture(scope="module")
def slow_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("slow_reference")
    sweep.run(slow(), out, progress="none")
    return all_arrays(out)


def test_ctrl_c_during_compilation_and_between_points(
    tmp_path, slow_config, slow_reference
):
    # During compilation: the grid line is printed before the first compile.
    proc = cli(tmp_path, slow_config)
    wait_for_line(proc, "tiny: 150 points")
    os.killpg(proc.pid, signal.SIGINT)
    status, err = finish(proc)
    assert status == 130, err
    assert "Traceback" not in err and "run the same command again to resume" in err
    assert len(results.read_metrics(tmp_path)) <= 1

    # Between points: the run stops after the point in flight, exit 130.
    proc = cli(tmp_path, slow_config)
    wait_for_line(proc, "[")
    os.killpg(proc.pid, signal.SIGINT)
    status, err = finish(proc)
    assert status == 130, err
    assert "stopping after the current point" in err and "Traceback" not in err
    done = len(results.read_metrics(tmp_path))
    assert 1 <= done < len(SLOW_GAINS)
    assert len(list((tmp_path / "points").glob("*.npz"))) == done
    # Not "done" before "interrupted": the progress says where it stopped.
    assert "done in" not in err, err
    assert f"tiny: stopped after {done} of {len(SLOW_GAINS)} points" in err

    status, err = finish(cli(tmp_path, slow_config))  # resume
    assert status == 0, err
    assert f"{done} already done" in err
    assert_same_results(tmp_path, slow_reference)


def test_sigkill_then_resume(tmp_path, slow_config, slow_reference):
    proc = cli(tmp_path, slow_config)
    wait_for_line(proc, "[")
    os.killpg(proc.pid, signal.SIGKILL)
    assert finish(proc)[0] == -signal.SIGKILL
    # What a kill inside a write leaves: a temporary file and a torn record.
    (tmp_path / "points" / ".x.npz.123.tmp").write_bytes(b"half")
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"id": "cut sh')
    status, err = finish(cli(tmp_path, slow_config))
    assert status == 0, err
    assert not list(tmp_path.rglob("*.tmp"))
    assert_same_results(tmp_path, slow_reference)


def test_two_runs_at_once(tmp_path, slow_config, slow_reference):
    first, second = cli(tmp_path, slow_config), cli(tmp_path, slow_config)
    (s1, e1), (s2, e2) = finish(first), finish(second)
    assert sorted([s1, s2]) == [0, 2], (e1, e2)
    loser, winner = (second, first) if s1 == 0 else (first, second)
    message = e2 if loser is second else e1
    assert f"is in use by another gradflow run (pid {winner.pid} on " in message
    assert "Traceback" not in message
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(SLOW_GAINS)  # every record once, none lost
    assert_same_results(tmp_path, slow_reference)
