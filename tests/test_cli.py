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
            "--quiet",
        ],
        "demo": ["--out", "--quick", "--quiet"],
        "report": ["DIR"],
        "figures": ["--experiments", "--out", "--results", "--only", "--quick"],
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
