"""Two processes on one machine run one sweep (``gradflow run --distributed``).

Real processes joined by ``jax.distributed`` on localhost, CPU collectives
through gloo: every point written once by process 0 alone, equal to a
one-process run; a killed process stops the other and a restart resumes; a
refused directory stops every process at once instead of leaving one waiting.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from conftest import all_arrays

from gradflow import results, sweep

ROOT = Path(__file__).resolve().parent.parent


def config(seeds=4):
    return sweep.validate(
        {
            "experiment": {"name": "dist", "quick": True},
            "grid": {
                "cell": "rnn",
                "hidden_size": 4,
                "init": "orthogonal",
                "gain": [round(0.5 + 0.1 * i, 1) for i in range(30)],
                "length": 8,
                "input": "gaussian",
                "seeds": seeds,
            },
            "input": {"size": 2},
            "measure": {"grad_norms": {"loss": "last_linear"}},
        },
        "dist",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(path, out, *, umasks=(0o022, 0o077)):
    """Processes 0 and 1 of one run; each writes files with its own umask."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    procs = []
    for pid, umask in enumerate(umasks):
        # The umask is set by a shell in between: no fork of this (jax) process.
        command = ["sh", "-c", f'umask {umask:03o} && exec "$0" "$@"']
        command += [sys.executable, "-m", "gradflow.cli", "run", str(path)]
        command += ["--out", str(out), "--quiet", "--distributed"]
        command += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
        command += ["--process-id", str(pid), "--heartbeat-timeout", "5"]
        procs.append(
            subprocess.Popen(
                command,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def finish(procs, timeout=120):
    outs = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"process {procs.index(p)} hung") from None
        outs.append((p.returncode, err))
    return outs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("one_process")
    sweep.run(config(), out, progress="none")
    return all_arrays(out)


def test_two_processes_kill_resume_and_refusal(tmp_path, reference):
    path = tmp_path / "dist.toml"
    path.write_text(tomli_w.dumps(config()))
    out = tmp_path / "out"

    # Process 1 killed mid-run: process 0 stops by itself (heartbeat timeout).
    procs = launch(path, out)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.stat().st_size):
        assert time.monotonic() < deadline and procs[1].poll() is None
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    (s0, e0), (s1, _) = finish(procs, timeout=60)
    assert s1 == -signal.SIGKILL and s0 != 0, e0[-2000:]
    assert 1 <= len(results.read_metrics(out)) < len(reference)

    # Restarted, both resume; every point once, equal to one process's run.
    (s0, e0), (s1, e1) = finish(launch(path, out))
    assert s0 == 0 and s1 == 0, (e0[-2000:], e1[-2000:])
    lines = metrics.read_text().splitlines()
    assert len(lines) == len(reference)
    res = results.load(out)
    assert sorted(r["id"] for r in res.records) == sorted(reference)
    for pid, arrays in reference.items():
        for name, value in arrays.items():
            np.testing.assert_array_equal(res.arrays(pid)[name], value)
    # Only process 0 wrote: process 1's umask (077) would leave 0600 files.
    for f in [*out.rglob("*"), *out.rglob(".*")]:
        if f.is_file():
            assert f.stat().st_mode & 0o077 == 0o044, f
    prov = res.provenance
    assert prov["process_count"] == 2 and prov["device_count"] == 2
    assert [p["process"] for p in prov["processes"]] == [0, 1]
    assert all(len(p["devices"]) == 1 for p in prov["processes"])

    # A different config: refused by process 0, and process 1 is told so.
    other = tmp_path / "other.toml"
    other.write_text(tomli_w.dumps(config(seeds=3)))
    before = metrics.read_bytes()
    t0 = time.monotonic()
    (s0, e0), (s1, e1) = finish(launch(other, out), timeout=90)
    assert s0 == 2 and "already holds results of a different config" in e0
    assert s1 == 2 and f"process 0 refused {out}: {out} already holds" in e1
    assert "Traceback" not in e0 + e1
    assert time.monotonic() - t0 < 90
    assert metrics.read_bytes() == before
