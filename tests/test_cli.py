"""The ``gradflow`` command line: run --quick on every shipped config, report, help."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from gradflow import results, sweep
from gradflow.cli import build_parser, main

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
SHIPPED = sorted(EXPERIMENTS.glob("*.toml"))


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """``gradflow run CONFIG --out DIR --quick --quiet`` for every shipped config."""
    root = tmp_path_factory.mktemp("quick")
    outs = {}
    for path in SHIPPED:
        out = root / path.stem
        assert main(["run", str(path), "--out", str(out), "--quick", "--quiet"]) == 0
        outs[path.stem] = out
    return outs


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_run_quick_every_shipped_config(quick_runs, path):
    out = quick_runs[path.stem]
    res = results.load(out)
    config = sweep.load_config(path)
    assert res.config == sweep.quick(config)
    assert res.config["experiment"]["quick"] is True
    if config["experiment"]["kind"] == "measure":
        expected = {p.id for p in sweep.expand_grid(sweep.quick(config))}
        assert {r["id"] for r in res.records} == expected
        for r in res.records:
            arrays = res.arrays(r["id"])
            assert set(arrays) == set(res.axes)
            for name, value in arrays.items():
                assert value.shape[0] == len(r["seeds"]) == 2
                assert value.ndim == len(res.axes[name])
            for name in ("sigma_max_whh", "pascanu_bound", "decay_rate"):
                assert len(r["metrics"][name]) == 2
    else:
        assert res.records and res.summary is not None


def test_report_never_imports_jax(quick_runs):
    out = quick_runs["rnn_lstm_gru"]
    code = (
        "import sys; from gradflow.cli import main; "
        f"rc = main(['report', {str(out)!r}]); "
        "print(rc, 'jax' in sys.modules, 'jaxlib' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["0", "False", "False"], proc.stderr[-2000:]
    html = (out / "report.html").read_text()
    assert "rnn_lstm_gru" in html
    assert (out / "report.md").exists()
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "grad_norm_profile.png" in pngs


def test_run_reports_bad_config_and_refusal(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nhidden_size = -3\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradflow: error: ") and str(bad) in err
    assert "[grid] hidden_size" in err
    assert not (tmp_path / "out").exists()  # nothing runs before the check


def test_run_refuses_a_different_config(quick_runs, capsys):
    out = quick_runs["init_scale"]
    before = sorted(p.name for p in (out / "points").iterdir())
    path = EXPERIMENTS / "init_scale.toml"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2  # not --quick
    err = capsys.readouterr().err
    assert "different config" in err and "experiment.quick" in err
    assert sorted(p.name for p in (out / "points").iterdir()) == before


def test_report_on_a_missing_directory(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a gradflow results directory" in capsys.readouterr().err


def test_help_explains_every_option(capsys):
    parser = build_parser()
    commands = {
        "run": [
            "CONFIG",
            "--out",
            "--list",
            "--quick",
            "--force",
            "--report",
            "--yes",
            "--quiet",
        ],
        "demo": ["--out", "--quick", "--quiet"],
        "report": ["DIR"],
        "figures": [
            "--experiments",
            "--out",
            "--results",
            "--only",
            "--quick",
            "--force",
        ],
    }
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--help"])
    assert exit_.value.code == 0
    top = capsys.readouterr().out
    for command in commands:
        assert f"\n    {command} " in top, command  # listed with its summary
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, options in commands.items():
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        # whitespace dropped: argparse re-wraps help, even inside hyphenated words
        page = "".join(capsys.readouterr().out.split())
        actions = [
            a
            for a in sub.choices[command]._actions
            if not isinstance(a, argparse._HelpAction)
        ]
        names = {
            a.metavar if not a.option_strings else a.option_strings[0] for a in actions
        }
        assert set(options) <= names, (command, set(options) - names)
        # Every option, listed or added later, has a sentence of help, and the
        # page shows it (argparse's default is no help at all).
        for action in actions:
            assert action.help, (command, action.dest)
            helptext = action.help % {"default": action.default}
            assert len(helptext.split()) >= 3, (command, action.dest, helptext)
            assert "".join(helptext.split()) in page, (command, action.dest)


TINY = """\
[experiment]
name = "tiny"
figures = ["grad_norm_profile"]
[grid]
cell = "rnn"
hidden_size = 3
init = "orthogonal"
gain = [0.5, 1.0, 1.5, 2.0]
length = 6
input = "zeros"
seeds = 2
[cell]
activation = "linear"
bias_init = "zeros"
[input]
size = 1
[measure]
grad_norms = { loss = "last_linear" }
"""


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "experiments" / "tiny.toml"
    path.parent.mkdir()
    path.write_text(TINY)
    return path


def test_figures_quick_never_touches_full_results(tmp_path, tiny_config, capsys):
    results_dir, figures_dir = tmp_path / "results", tmp_path / "figures"
    full = results_dir / "tiny"
    assert main(["run", str(tiny_config), "--out", str(full), "--quiet"]) == 0
    before = (full / "metrics.jsonl").read_bytes()
    args = ["figures", "--experiments", str(tiny_config.parent)]
    args += ["--results", str(results_dir), "--out", str(figures_dir), "--quiet"]
    assert main([*args, "--quick"]) == 0
    assert (full / "metrics.jsonl").read_bytes() == before  # untouched
    assert len(results.read_metrics(results_dir / "tiny-quick")) == 2
    assert (figures_dir / "tiny-quick" / "grad_norm_profile.png").exists()
    assert not (figures_dir / "tiny").exists()
    assert main(args) == 0  # the full run: resumed (nothing to do), figures made
    assert (full / "metrics.jsonl").read_bytes() == before
    assert (figures_dir / "tiny" / "grad_norm_profile.png").exists()
    # A changed config is refused without --force, replaced with it.
    tiny_config.write_text(TINY.replace("seeds = 2", "seeds = 3"))
    capsys.readouterr()
    assert main(args) == 2
    assert "different config" in capsys.readouterr().err
    assert (full / "metrics.jsonl").read_bytes() == before
    assert main([*args, "--force"]) == 0
    assert results.read_metrics(full)[0]["seeds"] == [0, 1, 2]


def test_run_report_and_a_partial_run(
    tmp_path, tiny_config, capsys, monkeypatch, default_sigint
):
    import signal

    out = tmp_path / "out"
    advance = sweep.Progress.advance

    def ctrl_c_after_two(self, pid, seconds):
        advance(self, pid, seconds)
        if self._computed == 2:
            signal.raise_signal(signal.SIGINT)  # as a terminal's Ctrl-C

    monkeypatch.setattr(sweep.Progress, "advance", ctrl_c_after_two)
    assert main(["run", str(tiny_config), "--out", str(out), "--report"]) == 130
    err = capsys.readouterr().err
    assert "stopping after the current point" in err
    assert "run the same command again to resume" in err
    assert len(results.read_metrics(out)) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    monkeypatch.undo()

    assert main(["report", str(out)]) == 0
    err = capsys.readouterr().err
    assert "holds 2 of 4 conditions: the run is unfinished" in err
    assert "2 of 4 conditions" in (out / "report.html").read_text()
    assert "2 of 4 conditions" in (out / "report.md").read_text()

    assert main(["run", str(tiny_config), "--out", str(out), "--report"]) == 0
    err = capsys.readouterr().err
    assert "tiny: 4 points x 2 seeds" in err and "unfinished" not in err
    assert "of 4 conditions" not in (out / "report.html").read_text()
    assert (out / "figures" / "grad_norm_profile.png").exists()


def test_filesystem_and_input_errors_are_one_line(tmp_path, tiny_config, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.toml").write_text("[grid\n")
    cases = [
        (["run", str(tiny_config), "--out", str(a_file)], f"{a_file} is a file"),
        (
            ["run", str(tiny_config), "--out", str(a_file / "x")],
            f"{a_file} is a file",
        ),
        (["run", str(tiny_config), "--out", "/sys/x"], "/sys/x: "),
        (["run", str(tmp_path), "--out", str(tmp_path / "o")], "is a directory"),
        (["run", str(tiny_config), "--out", ""], "out must name a results dir"),
        (["run", str(tiny_config), "--out", str(damaged)], "config.toml is damaged"),
        (["report", str(damaged)], "config.toml is damaged"),
    ]
    for argv, expected in cases:
        argv += ["--quiet"] if argv[0] == "run" else []
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("gradflow: error: ") and expected in err, (argv, err)
        assert "Traceback" not in err and err.count("\n") == 1, err


def test_big_grids_need_yes(tmp_path, tiny_config, capsys, monkeypatch):
    import gradflow.cli

    monkeypatch.setattr(gradflow.cli, "MAX_POINTS", 3)
    out = tmp_path / "out"
    assert main(["run", str(tiny_config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "4 points x 2 seeds, more than the 3 allowed without --yes" in err
    assert not out.exists()
    assert main(["run", str(tiny_config), "--out", str(out), "--yes", "--quiet"]) == 0
    assert len(results.read_metrics(out)) == 4


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("length = 6", "length = 1"), "lengths >= 2 with grad_norms"),
        (
            ('input = "zeros"', 'input = "temporal_order"'),
            "lengths >= 10 with input temporal_order",
        ),
    ],
)
def test_what_a_run_needs_is_checked_before_it_starts(tmp_path, edit, expected, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace(*edit))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "[grid] length" in err and expected in err
    assert not (tmp_path / "out").exists()


def test_demo_resumes_its_own_folder_and_refuses_others(tmp_path, capsys, monkeypatch):
    import gradflow.cli

    demo = tmp_path / "demo.toml"
    demo.write_text(TINY.replace('name = "tiny"', 'name = "demo"'))
    monkeypatch.setattr(gradflow.cli, "DEMO_CONFIG", demo)
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quick", "--quiet"]) == 0
    quick = tmp_path / "gradflow-demo-quick"  # not over a full demo's folder
    assert len(results.read_metrics(quick)) == 2 and (quick / "report.html").exists()
    out = tmp_path / "gradflow-demo"
    assert main(["demo", "--quiet"]) == 0
    before = (out / "metrics.jsonl").read_bytes()
    assert len(results.read_metrics(out)) == 4
    assert main(["demo", "--quiet"]) == 0  # resumed: nothing to redo
    assert (out / "metrics.jsonl").read_bytes() == before
    # An older demo (another config) in its own folder is replaced...
    demo.write_text(
        TINY.replace('name = "tiny"', 'name = "demo"').replace("2.0]", "3.0]")
    )
    assert main(["demo", "--quiet"]) == 0
    assert 3.0 in [r["coords"]["gain"] for r in results.read_metrics(out)]
    # ... but a quick demo never replaces a full one, nor anything else.
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(out), "--quiet"]) == 2
    assert "holds the results of a full demo; gradflow demo never replaces" in (
        capsys.readouterr().err
    )
    other = tmp_path / "other"
    assert main(["run", str(demo), "--out", str(other), "--quiet"]) == 0
    (other / "config.toml").write_text(TINY)
    assert main(["demo", "--out", str(other), "--quiet"]) == 2
