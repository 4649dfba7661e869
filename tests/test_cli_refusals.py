"""The command line refuses what would lose a user's files or crash: real processes.

Each case runs ``python -m gradflow.cli`` as a user would and checks the one
line it prints, its exit status, and that nothing of the user's was touched.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import gradflow as gradflow_package

TINY = """\
[experiment]
name = "tiny"
figures = ["grad_norm_profile"]
[grid]
cell = "rnn"
hidden_size = 3
gain = [0.5, 1.0]
length = 6
input = "zeros"
seeds = 2
[input]
size = 1
[measure]
grad_norms = { loss = "last_linear" }
"""


def _pythonpath():
    return [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]


def gradflow(*args, cwd, timeout=120):
    """``gradflow ARGS`` in ``cwd``; (exit status, stderr)."""
    # The gradflow this test imported, wherever the child starts.
    root = str(Path(gradflow_package.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, *_pythonpath()]))
    proc = subprocess.run(
        [sys.executable, "-m", "gradflow.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stderr


@pytest.fixture
def experiments(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "tiny.toml").write_text(TINY)
    return tmp_path / "experiments"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize("layout", ["out_is_results", "same_folder", "user_folder"])
def test_figures_never_deletes_what_a_user_made(tmp_path, experiments, layout):
    mine = tmp_path / "mine"
    (mine / "tiny-quick").mkdir(parents=True)
    (mine / "tiny-quick" / "chapter1.tex").write_text("x")
    (mine / "notes.txt").write_text("y")
    args = ["figures", "--quick", "--only", "tiny", "--experiments", experiments]
    args += {
        "out_is_results": ["--out", "results"],  # --results defaults to results
        "same_folder": ["--results", mine, "--out", mine],
        "user_folder": ["--out", mine, "--results", tmp_path / "r"],
    }[layout]
    if layout == "out_is_results":
        mine = tmp_path / "results"
        mine.mkdir()
        (mine / "notes.txt").write_text("y")
    before = _tree(mine)
    for force in ([], ["--force"]):
        rc, err = gradflow(*args, *force, cwd=tmp_path)
        assert rc == 2, err
        assert err.count("\n") == 1 and err.startswith("gradflow: error: ")
        assert "overlap" in err or "did not write" in err
        assert _tree(mine) == before


def test_figures_keeps_a_users_file_beside_its_own(tmp_path, experiments):
    from gradflow.cli import main

    out, res = tmp_path / "figs", tmp_path / "res"
    args = ["figures", "--quick", "--experiments", str(experiments), "--quiet"]
    args += ["--out", str(out), "--results", str(res)]
    assert main(args) == 0
    made = sorted(p.name for p in (out / "tiny-quick").iterdir())
    assert "grad_norm_profile.png" in made and ".gradflow-figures.json" in made
    (out / "tiny-quick" / "caption.tex").write_text("mine")
    (out / "tiny-quick" / "grad_norm_profile.svg").unlink()  # gradflow's: remade
    assert main(args) == 0  # the same config: gradflow's own files replaced
    assert (out / "tiny-quick" / "caption.tex").read_text() == "mine"
    assert sorted(p.name for p in (out / "tiny-quick").iterdir()) == sorted(
        [*made, "caption.tex"]
    )
    # Another config's figures are refused without --force, replaced with it;
    # the user's file stays either way.
    (experiments / "tiny.toml").write_text(TINY.replace("[0.5, 1.0]", "[0.5, 1.5]"))
    assert main(args) == 2
    assert main([*args, "--force"]) == 0
    assert (out / "tiny-quick" / "caption.tex").read_text() == "mine"


def test_figures_only_names_the_unknown_experiment(tmp_path, experiments):
    rc, err = gradflow(
        "figures", "--only", "bogus", "--experiments", experiments, cwd=tmp_path
    )
    assert rc == 2
    assert "--only bogus: no such experiment" in err and "(there: tiny)" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def test_distributed_flags_are_checked_before_jax(tmp_path, tiny):
    port = _free_port()
    run = ["run", tiny, "--out", tmp_path / "out", "--distributed"]
    two = ["--num-processes", "2", "--process-id", "0"]
    cases = [
        (["--coordinator", "localhost", *two], "expected HOST:PORT"),
        (["--coordinator", "127.0.0.1:abc", *two], "got 'abc'"),
        (["--coordinator", "127.0.0.1:70000", *two], "from 1 to 65535"),
        (
            [
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                "2",
            ],
            "--process-id must be from 0 to 1",
        ),
        (["--heartbeat-timeout", "0"], "--heartbeat-timeout must be a positive"),
        (["--heartbeat-timeout", "-5"], "got -5"),
    ]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        cases.append(
            (["--coordinator", f"127.0.0.1:{busy}", *two], f"port {busy} is in use")
        )
        for flags, expected in cases:
            rc, err = gradflow(*run, *flags, cwd=tmp_path)
            assert rc == 2 and expected in err, (flags, err)
            assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize("process", [0, 1])
def test_a_process_left_alone_says_what_it_awaits(tmp_path, tiny, process):
    flags = ["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2"]
    flags += ["--process-id", str(process), "--join-timeout", "1"]
    rc, err = gradflow(
        "run",
        tiny,
        "--out",
        tmp_path / "out",
        "--distributed",
        *flags,
        cwd=tmp_path,
        timeout=60,
    )
    assert rc == 3, err
    assert f"process {process} of 2: waiting up to 1 s for every process" in err
    assert "the other processes did not join at 127.0.0.1:" in err
    assert "within 1 s (--join-timeout)" in err and "Traceback" not in err


def test_config_files_that_are_empty_or_not_utf8(tmp_path):
    cases = {
        "empty.toml": (b"", "empty.toml: holds no settings"),
        "comments.toml": (b"# nothing yet\n", "comments.toml: holds no settings"),
        "latin1.toml": (
            TINY.replace('"tiny"', '"caf\xe9"').encode("latin-1"),
            "latin1.toml: not UTF-8 text (byte 0xe9 at line 2, column 12)",
        ),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        rc, err = gradflow("run", name, "--out", "out", cwd=tmp_path)
        assert rc == 2 and expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
    # A byte-order mark (some editors write one) is read past, not refused.
    (tmp_path / "bom.toml").write_bytes(b"\xef\xbb\xbf" + TINY.encode())
    rc, err = gradflow("run", "bom.toml", "--out", "out", "--quiet", cwd=tmp_path)
    assert rc == 0, err
    assert (tmp_path / "out" / "config.toml").exists()


def test_demo_into_another_runs_folder_does_not_advise_force(tmp_path):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "config.toml").write_text('[experiment]\nname = "tiny"\nquick = false\n')
    before = _tree(out)
    rc, err = gradflow("demo", "--quick", "--out", out, cwd=tmp_path)
    assert rc == 2 and err.count("\n") == 1, err
    assert "holds the results of 'tiny'; gradflow demo never replaces" in err
    assert "--force" not in err
    assert _tree(out) == before
