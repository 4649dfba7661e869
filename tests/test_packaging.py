"""The release: one version source, shipped experiments by name, a wheel that installs.

The slow test builds the sdist and the wheel with ``python -m build`` from a copy
of the sources, installs the wheel into a fresh virtual environment and runs
``gradflow run init_scale --quick`` from a folder outside the repository.
"""

import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from gradflow import _experiments, results
from gradflow.cli import main

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
SHIPPED = sorted(p.stem for p in (ROOT / "experiments").glob("*.toml"))
# what `python -m build` reads: the sdist's inputs (MANIFEST.in names the rest)
SOURCES = ("gradflow", "experiments", "pyproject.toml", "setup.py", "MANIFEST.in")
SOURCES += ("README.md", "LICENSE", "CHANGELOG.md")


def test_distribution_name_and_one_version_source():
    assert PYPROJECT["project"]["name"] == "gradflow-jax"
    assert PYPROJECT["project"]["scripts"] == {"gradflow": "gradflow.cli:main"}
    # the version is written in pyproject.toml only; the package reads metadata
    init = (ROOT / "gradflow" / "__init__.py").read_text()
    assert not re.search(r"__version__\s*=\s*['\"]", init)
    changelog = (ROOT / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## (\d+\.\d+\.\d+)", changelog, flags=re.M)
    assert releases[:3] == [VERSION, "0.2.0", "0.1.0"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert (ROOT / "gradflow" / "py.typed").is_file()


def test_every_user_facing_install_line_uses_the_distribution_name():
    # the README and every message or docstring in the package a user may copy
    texts = {"README.md": (ROOT / "README.md").read_text()}
    for path in sorted((ROOT / "gradflow").rglob("*.py")):
        texts[str(path.relative_to(ROOT))] = path.read_text()
    lines = {
        (where, line)
        for where, text in texts.items()
        for line in re.findall(r"pip install\s[^\n`]*", text)
    }
    assert any("gradflow-jax" in line for _, line in lines), lines
    extras = {
        e for _, line in lines for e in re.findall(r"gradflow-jax\[(\w+)\]", line)
    }
    assert extras <= set(PYPROJECT["project"]["optional-dependencies"]), extras
    for where, line in lines:
        # `pip install gradflow` (or gradflow[...]) would fetch another project
        bad = re.search(r"install\s+['\"]?gradflow(\[|['\"\s]|$)", line)
        assert not bad, (where, line)


def test_a_name_resolves_to_the_shipped_config_and_a_path_to_itself(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # names must not depend on the working folder
    assert [e.name for e in _experiments.shipped()] == SHIPPED
    for name in SHIPPED:
        assert _experiments.resolve(name) == ROOT / "experiments" / f"{name}.toml"
    # a file that exists wins, even one named like a shipped experiment
    local = tmp_path / "init_scale"
    local.write_text("[grid]\n")
    assert _experiments.resolve("init_scale") == Path("init_scale")
    with pytest.raises(FileNotFoundError, match=r"shipped experiment's name.*clipping"):
        _experiments.resolve("no_such_experiment")
    with pytest.raises(FileNotFoundError, match="no such config file: x/init_scale"):
        _experiments.resolve("x/init_scale")
    with pytest.raises(FileNotFoundError, match="no such config file"):
        _experiments.resolve("rnn_lstm_gru.toml")  # a .toml is a path, not a name


def test_run_list_shows_every_shipped_experiment_with_its_description(capsys):
    assert main(["run", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    starts = [i for i, line in enumerate(lines) if line and not line[0].isspace()]
    assert [lines[i] for i in starts[: len(SHIPPED)]] == SHIPPED
    for i, name in zip(starts, SHIPPED, strict=False):
        # each name is followed by its own description, wrapped and indented
        own = []
        for line in lines[i + 1 :]:
            if not line.startswith("    "):
                break
            own.append(line.strip())
        text = tomllib.loads((ROOT / "experiments" / f"{name}.toml").read_text())
        want = " ".join(text["experiment"]["description"].split())
        assert " ".join(own) == want, name


def test_run_without_config_or_out_is_refused(capsys):
    assert main(["run", "init_scale"]) == 2
    assert "--out DIR" in capsys.readouterr().err
    assert main(["run", "--out", "somewhere"]) == 2
    assert "needs CONFIG" in capsys.readouterr().err


def _fresh_venv_sharing_this_envs_packages(venv: Path) -> Path:
    """A new venv with no gradflow; this env's site-packages appended via a .pth.

    A plain path line in a .pth adds the folder without running the .pth files
    inside it, so an editable gradflow install of this env stays invisible and
    nothing is downloaded (jax and friends come from this env).
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    here = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    (Path(site) / "_parent_env.pth").write_text("\n".join(sorted(here)) + "\n")
    return python


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_runs_a_shipped_experiment(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            # copy only what git would: no caches, results or build leftovers
            for f in path.rglob("*"):
                if f.is_file() and "__pycache__" not in f.parts:
                    dest = src / f.relative_to(ROOT)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(f.read_bytes())
        else:
            (src / name).write_bytes(path.read_bytes())
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = dist.glob("gradflow_jax-*.whl")
    (sdist,) = dist.glob("gradflow_jax-*.tar.gz")
    assert wheel.name == f"gradflow_jax-{VERSION}-py3-none-any.whl"

    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(f"gradflow_jax-{VERSION}.dist-info/METADATA").decode()
    for name in SHIPPED:
        assert f"gradflow/experiments/{name}.toml" in names
    assert f"gradflow_jax-{VERSION}.dist-info/licenses/LICENSE" in names
    assert "gradflow/py.typed" in names
    assert "Name: gradflow-jax" in meta and f"Version: {VERSION}" in meta
    assert "License-Expression: Apache-2.0" in meta
    with tarfile.open(sdist) as t:
        members = {m.split("/", 1)[-1] for m in t.getnames()}
    assert {"LICENSE", "CHANGELOG.md", "setup.py", "experiments/init_scale.toml"} <= (
        members
    )

    # without PYTHONPATH: a source tree on it would pass for an installed gradflow
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OPENBLAS_NUM_THREADS"] = "1"
    venv = tmp_path / "venv"
    python = _fresh_venv_sharing_this_envs_packages(venv)
    pip = [sys.executable, "-m", "pip", "--python", python]
    subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--no-index", wheel],
        check=True,
        env=env,
        timeout=300,
    )
    away = tmp_path / "elsewhere"  # no experiments/, no pyproject.toml here
    away.mkdir()

    def run(*args):
        proc = subprocess.run(
            args, cwd=away, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc.stdout

    where = run(python, "-c", "import gradflow; print(gradflow.__file__)")
    assert Path(where.strip()).is_relative_to(venv)
    gradflow = venv / "bin" / "gradflow"
    assert run(gradflow, "--version").strip() == f"gradflow {VERSION}"
    listed = run(gradflow, "run", "--list")
    for name in SHIPPED:
        assert f"\n{name}\n" in f"\n{listed}"
    run(gradflow, "run", "init_scale", "--quick", "--quiet", "--out", "res")
    res = results.load(away / "res")
    assert res.config["experiment"]["name"] == "init_scale"
    assert res.config["experiment"]["quick"] is True
    assert res.records and all(len(r["seeds"]) == 2 for r in res.records)
    provenance = (away / "res" / "provenance.json").read_text()
    assert f'"{VERSION}"' in provenance
