"""The registry of names and the measurement specs: one source, read everywhere.

Also the claims of docs/extending.md: a new cell is one module + one registry
entry and a new measurement is one spec entry + its function + its plot, proven
by registering a toy of each and running them through a config to a report.
"""

import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow import _names, _specs

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [
    *sorted((ROOT / "experiments").glob("*.toml")),
    ROOT / "gradflow" / "cli" / "demo.toml",
]


def test_every_registered_name_builds_what_it_names():
    for name, kind in _names.CELLS.items():
        # the mLSTM's heads must divide N: one head of 3
        cell = gf.cells.make(name, 3, **({"heads": 1} if name == "mlstm" else {}))
        assert cell.kind == name
        params = cell.init(jax.random.key(0), input_size=3 if kind.width_bound else 2)
        if kind.gates:
            assert params["W_hh"].shape == (kind.gates * 3, 3)
        else:
            assert not gf.cells.has_w_hh(params)
        carry = cell.initial_carry(())
        size = sum(x.size for x in jax.tree_util.tree_leaves(carry))
        if name == "mlstm":
            # N²/H + N + H; the registry holds its lower bound N
            assert size == gf.cells.state_size(cell) == 9 + 3 + 1
            assert kind.state_multiplier * 3 <= size
            continue
        assert size == gf.cells.state_size(cell) == kind.state_multiplier * 3
    for activation in _names.ACTIVATIONS:
        gf.cells.rnn(3, activation)
    assert tuple(_names.CELLS) == gf.cells.CELL_KINDS == tuple(gf.cells.BUILDERS)
    assert tuple(_names.TASKS) == tuple(gf.tasks.BUILDERS)
    for name in _names.TASKS:
        assert gf.tasks.make(name, 12).input_size >= 1
    for name in _names.OPTIMIZERS:
        gf.train.optimizer(name, 0.1)
    for name, level in _names.CLIPS.items():
        gf.train.clipper(name, None if level is None else 1.0)
    with pytest.raises(ValueError, match=r"cell kind must be one of \('rnn'"):
        gf.cells.make("elman", 3)
    with pytest.raises(ValueError, match="already registered"):
        gf.cells.register_cell("rnn", gf.cells.rnn, _names.CELLS["rnn"])
    with pytest.raises(TypeError, match="must be a CellKind"):
        gf.cells.register_cell("toy", gf.cells.rnn, (1, 1))
    with pytest.raises(TypeError, match="must be callable"):
        gf.cells.register_cell("toy", "gradflow.cells._rnn:rnn")
    assert "toy" not in _names.CELLS and "toy" not in gf.cells.BUILDERS


@pytest.mark.parametrize("init", _names.INITS)
@pytest.mark.parametrize("kind", [k for k, v in _names.CELLS.items() if v.gates])
def test_gain_scales_w_hh_for_every_init(kind, init):
    # gain is defined once: W_hh(gain g) is exactly g * W_hh(gain 1), which is
    # what a measure sweep computes (gain-1 params, then g * W_hh).
    key = jax.random.key(3)
    one = gf.cells.make(kind, 4, recurrent_init=init).init(key, 2)["W_hh"]
    two = gf.cells.make(kind, 4, recurrent_init=init, gain=1.7).init(key, 2)["W_hh"]
    np.testing.assert_array_equal(np.asarray(two), np.asarray(1.7 * one))
    if init != "zeros":
        assert np.abs(np.asarray(one)).max() > 0


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_validating_a_shipped_config_imports_neither_jax_nor_matplotlib(path):
    code = (
        "import sys, gradflow.sweep as s\n"
        f"cfg = s.load_config({str(path)!r})\n"
        "s.quick(cfg); s.expand_grid(cfg) if cfg['experiment']['kind'] == "
        "'measure' else None\n"
        "bad = [m for m in ('jax', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr


def test_spec_tables_are_consistent():
    figs = _specs.figures()
    from gradflow import report

    # each table of functions covers every spec, and nothing more
    assert set(report.FIGURES) == set(figs) == set(report.CAPTIONS)
    assert set(gf.sweep.MEASUREMENTS) == set(_specs.MEASUREMENTS)
    assert set(gf.sweep.KINDS) == set(_specs.KINDS)
    for name, spec in _specs.MEASUREMENTS.items():
        if "loss" in spec.defaults:
            assert spec.defaults["loss"] in spec.losses, name
        else:
            assert not spec.losses, name
    seen: set[str] = set()
    for name, spec in _specs.MEASUREMENTS.items():
        assert spec.batching in _specs.BATCHINGS, name
        for array, axes in spec.arrays.items():
            assert axes[0] == "seed" and array not in seen
            seen.add(array)
    assert gf.sweep.measure_defaults()["lyapunov"] == {"k": 8, "warmup": 50}
    assert "bound" not in gf.sweep.measure_defaults()


# -- a toy cell and a toy measurement, end to end --------------------------------


def toy_cell(hidden_size, *, recurrent_init, input_init, bias_init, leak=1.0):
    """A leaky linear RNN, ``h' = leak * W_hh h + W_ih x`` (biases zero)."""
    base = gf.cells.rnn(
        hidden_size,
        "linear",
        recurrent_init=recurrent_init,
        input_init=input_init,
        bias_init="zeros",
    )

    def init(key, input_size):
        p = base.init(key, input_size)
        return {**p, "W_hh": leak * p["W_hh"]}

    return base._replace(kind="toy", init=init)


def toy_trace(ctx, params, xs, u):
    """A toy measurement: ``diag(W_hh)`` per unit and its sum."""
    diag = jnp.diagonal(params["W_hh"])
    return {"toy_diag": diag}, {"toy_trace": jnp.sum(diag) * ctx.options["scale"]}


def toy_figure(results):
    from gradflow import plots

    rec = results.records[0]
    return plots.grad_norm_profile(results.arrays(rec["id"])["toy_diag"])


@pytest.fixture
def toy_registry():
    """The toy cell, measurement and figure, registered by the public functions
    for one test (and removed from every table after it)."""
    from gradflow import report

    tables = [
        (_names.CELLS, "toy"),
        (gf.cells.BUILDERS, "toy"),
        (_specs.MEASUREMENTS, "toy"),
        (gf.sweep.MEASUREMENTS, "toy"),
        (report.FIGURES, "toy_figure"),
    ]
    gf.cells.register_cell(
        "toy", toy_cell, gf.cells.CellKind(options=("leak",), torch_name=None)
    )
    gf.sweep.register_measurement(
        "toy",
        gf.sweep.Measurement(
            defaults={"scale": 1.0},
            arrays={"toy_diag": ("seed", "unit")},
            metrics={"toy_trace": "trace(W_hh)"},
            batching="vmap",
            figures={"toy_figure": gf.sweep.Figure("The toy's diagonal.")},
        ),
        toy_trace,
    )
    report.register_figure("toy_figure", toy_figure)
    yield
    for table, name in tables:
        del table[name]


def test_a_registered_cell_and_measurement_run_through_a_config(toy_registry, tmp_path):
    raw = {
        "experiment": {"name": "toy", "figures": ["toy_figure", "grad_norm_profile"]},
        "grid": {
            "cell": "toy",
            "hidden_size": 3,
            "init": "identity",
            "gain": [0.5, 2.0],
            "length": 6,
            "input": "zeros",
            "seeds": 2,
        },
        "cell": {"leak": 0.5},
        "measure": {"grad_norms": True, "toy": {"scale": 2.0}},
    }
    cfg = gf.sweep.validate(raw, "toy.toml")
    with pytest.raises(ValueError, match=r"toy\.toml: \[measure\] toy\.scale"):
        gf.sweep.validate({**raw, "measure": {"toy": {"scale": "big"}}}, "toy.toml")
    with pytest.raises(ValueError, match=r"\[cell\] leak: applies to TOY"):
        gf.sweep.validate({**raw, "grid": {"cell": "rnn"}}, "toy.toml")
    out = gf.sweep.run(cfg, tmp_path / "toy", progress="none")
    res = gf.results.load(out)
    assert res.axes["toy_diag"] == ["seed", "unit"]
    for rec in res.records:
        g = rec["coords"]["gain"]
        # W_hh = leak * gain * I, so diag = 0.5 g, trace*scale = 2 * 3 * 0.5 g,
        # and dL/dh_t = (W_hh^T)^(T-1-t) u with |u| = 1: log10 = (T-1-t) log10(g/2).
        np.testing.assert_allclose(rec["metrics"]["toy_trace"], [3.0 * g] * 2)
        arrays = res.arrays(rec["id"])
        np.testing.assert_allclose(arrays["toy_diag"], np.full((2, 3), 0.5 * g))
        steps = np.arange(5, -1, -1)
        np.testing.assert_allclose(
            arrays["log10_grad_norms"],
            np.tile(steps * np.log10(0.5 * g), (2, 1)),
            atol=1e-5,
        )
        np.testing.assert_allclose(
            rec["metrics"]["decay_rate"], [-np.log(0.5 * g)] * 2, rtol=1e-4
        )
    gf.report.write_report(out, formats=("png",))
    assert (out / "figures" / "toy_figure.png").exists()
    assert "The toy's diagonal." in (out / "report.md").read_text()
    assert "trace(W_hh)" in (out / "report.md").read_text()
    assert json.loads((out / "axes.json").read_text())["toy_diag"] == ["seed", "unit"]


def test_top_level_names_are_listed_once_for_tools_and_the_lazy_loader():
    import ast

    tree = ast.parse((ROOT / "gradflow" / "__init__.py").read_text())
    checked: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for imp in node.body:
                for alias in imp.names:
                    checked[alias.name] = imp.module
    lazy = dict(gf._FUNCTIONS)
    missing = sorted(set(lazy) - set(checked))
    assert not missing, (
        f"{missing}: add them to the `if TYPE_CHECKING:` imports and __all__ of "
        "gradflow/__init__.py too"
    )
    assert {k: checked[k] for k in lazy} == lazy
    assert set(checked) == set(lazy) | set(gf._SUBPACKAGES)
    assert sorted(gf.__all__) == sorted([*lazy, *gf._SUBPACKAGES, "__version__"])
    for name in lazy:
        assert getattr(gf, name) is getattr(importlib.import_module(lazy[name]), name)
    # make test installs this tree: its version, never an older install's
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    assert gf.__version__ == tomllib.loads(pyproject.read_text())["project"]["version"]
