"""A config that names a user's cell factory, ``[grid] cell = "module:function"``.

The factory lives in a module written to a temporary directory on ``sys.path``
(as a user's package would be). The sweep's numbers for it equal direct
``gf.*`` calls on the same params, inputs and readout (rebuilt from the
documented per-seed keys), and every wrong factory is refused before the run
makes its directory, naming ``[grid] cell``.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow import results, sweep

T, N, D = 12, 6, 3
GAINS = [0.5, 1.5]
SEEDS = [2, 9]

# A minimal gated unit (Zhou et al. 2016) written against gradflow's custom
# cell, params under the sweep's names so that the gain can scale W_hh.
FACTORIES = """
import os
import sys

import jax
import jax.numpy as jnp
import gradflow as gf


def _init(key, input_size, dtype=jnp.float32, n=None):
    k1, k2 = jax.random.split(key)
    return {
        "W_ih": jax.random.normal(k1, (2 * n, input_size), dtype) / input_size**0.5,
        "W_hh": jax.random.normal(k2, (2 * n, n), dtype) / n**0.5,
        "b": jnp.zeros((2 * n,), dtype),
    }


def _step(p, h, x):
    n = h.shape[-1]
    a = p["W_ih"] @ x + p["b"]
    f = jax.nn.sigmoid(a[:n] + p["W_hh"][:n] @ h)
    g = jnp.tanh(a[n:] + p["W_hh"][n:] @ (f * h))
    h = (1 - f) * h + f * g
    return h, h


def mgu(hidden_size):
    import functools

    cell = gf.cells.custom(_step, jnp.zeros(hidden_size), hidden_size=hidden_size)
    return cell, functools.partial(_init, n=hidden_size)


def mgu_inits(hidden_size, *, recurrent_init):
    cell, init = mgu(hidden_size)
    return cell, init


def no_w_hh(hidden_size):
    def init(key, input_size, dtype=jnp.float32):
        return {"U": jnp.eye(hidden_size, dtype=dtype)}

    def step(p, h, x):
        h = jnp.tanh(p["U"] @ h + jnp.sum(x))
        return h, h

    return gf.cells.custom(step, jnp.zeros(hidden_size), init=init)


def not_a_cell(hidden_size):
    return {"hidden_size": hidden_size}


def no_init(hidden_size):
    return gf.cells.custom(lambda p, h, x: (h, h), jnp.zeros(hidden_size))


def noargs():
    return gf.cells.rnn(4)


def wider(hidden_size):
    return mgu(hidden_size + 1)


def bye(hidden_size):
    sys.exit(3)


def elsewhere(hidden_size):
    os.chdir(os.path.dirname(os.getcwd()))  # a relative --out must not follow
    return mgu(hidden_size)


not_callable = 3
"""


@pytest.fixture
def factories(tmp_path, monkeypatch):
    module = f"user_cells_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(FACTORIES))
    (tmp_path / f"{module}_syntax.py").write_text("def f(:\n")
    (tmp_path / f"{module}_raises.py").write_text("raise RuntimeError('no GPU')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module
    for name in ("", "_syntax", "_raises"):
        sys.modules.pop(module + name, None)


def _config(cells, measure=None, **grid):
    return sweep.validate(
        {
            "experiment": {"name": "user_cells", "quick": True},
            "grid": {
                "cell": cells,
                "hidden_size": N,
                "init": "gaussian",
                "gain": GAINS,
                "length": T,
                "input": "gaussian",
                "seeds": SEEDS,
                **grid,
            },
            "input": {"size": D, "scale": 0.8},
            "measure": measure
            or {
                "grad_norms": True,
                "lyapunov": {"k": 3, "warmup": 2},
            },
        },
        "user.toml",
    )


def test_sweep_of_a_user_cell_equals_direct_calls(factories, tmp_path):
    name = f"{factories}:mgu"
    out = sweep.run(_config(["gru", name]), tmp_path / "out", progress="none")
    res = results.load(out)
    factory = sys.modules[factories].mgu
    cell, init = factory(N)
    by_coords = {(r["coords"]["cell"], r["coords"]["gain"]): r for r in res.records}

    @jax.jit
    def direct(params, xs, u):
        loss = lambda hs: jnp.dot(u, hs[-1])  # noqa: E731 - the sweep's last_linear
        return (
            gf.hidden_grad_norms(cell, params, xs, loss, log10=True).log10_norms,
            gf.lyapunov_spectrum(cell, params, xs, k=3, warmup=2).exponents,
        )

    for gain in GAINS:
        point = res.arrays(by_coords[(name, gain)]["id"])
        for i, seed in enumerate(SEEDS):
            k_p, k_x, k_u = jax.random.split(jax.random.key(seed), 3)
            params = init(k_p, D)
            params = {**params, "W_hh": gain * params["W_hh"]}
            xs = 0.8 * jax.random.normal(k_x, (T, D))
            u = jax.random.normal(k_u, (N,))
            grad, lyap = direct(params, xs, u / jnp.linalg.norm(u))
            for key, want in [
                ("log10_grad_norms", grad),
                ("lyapunov_exponents", lyap),
            ]:
                np.testing.assert_allclose(point[key][i], want, atol=2e-5, err_msg=key)
    # gain 0.5 forgets faster than gain 1.5: the gain reached the user's W_hh
    slow = res.arrays(by_coords[(name, 1.5)]["id"])["log10_grad_norms"][:, 0]
    fast = res.arrays(by_coords[(name, 0.5)]["id"])["log10_grad_norms"][:, 0]
    assert np.all(fast < slow)
    gru, user = by_coords[("gru", 0.5)]["metrics"], by_coords[(name, 0.5)]["metrics"]
    assert "pascanu_bound" in gru
    assert "pascanu_bound" not in user
    w_hh = init(jax.random.split(jax.random.key(SEEDS[0]), 3)[0], D)["W_hh"]
    sigma = float(jnp.linalg.norm(0.5 * w_hh, 2))
    assert user["sigma_max_whh"][0] == pytest.approx(sigma, rel=1e-5)


def test_a_cell_without_w_hh_runs_at_gain_one(factories, tmp_path):
    name = f"{factories}:no_w_hh"
    out = sweep.run(
        _config([name], gain=[1.0], measure={"grad_norms": True}),
        tmp_path / "out",
        progress="none",
    )
    res = results.load(out)
    arrays = res.arrays(res.records[0]["id"])
    assert np.all(np.isfinite(arrays["log10_grad_norms"]))


@pytest.mark.parametrize(
    ("factory", "grid", "measure", "expected"),
    [
        ("no_w_hh", {}, None, "gain scales params['W_hh']"),
        ("not_a_cell", {}, None, "expected the factory to return a gradflow Cell"),
        ("no_init", {"gain": [1.0]}, None, "has no init"),
        ("not_callable", {}, None, "expected a callable factory, got int"),
        ("missing", {}, None, "has no 'missing'"),
        ("noargs", {}, None, "called as noargs(hidden_size, **options) -> Cell, but "),
        ("wider", {}, None, "hidden_size 6, the factory built a cell whose h has"),
        ("bye", {}, None, "failed at hidden_size 6: it called sys.exit(3)"),
        ("json:dumps", {}, None, "failed at hidden_size 6: TypeError: "),
        ("os:getcwd", {}, None, "called as getcwd(hidden_size, **options)"),
        ("_syntax:f", {}, None, "_syntax' failed: SyntaxError: invalid syntax"),
        ("_raises:f", {}, None, "_raises' failed: RuntimeError: no GPU"),
        ("mgu", {"init": ["gaussian", "orthogonal"]}, None, "takes no recurrent_init"),
        (
            "mgu",
            {},
            {"lyapunov": {"k": 7, "warmup": 2}},
            "state size 6 (hidden_size 6), got 7",
        ),
        (
            "no_w_hh",
            {"gain": [1.0]},
            {"param_grad_by_step": True},
            "param_grad_by_step reads params['W_hh']",
        ),
    ],
)
def test_a_wrong_factory_is_refused_before_the_run(
    factories, tmp_path, factory, grid, measure, expected
):
    out = tmp_path / "out"
    if ":" not in factory:
        factory = f"{factories}:{factory}"
    elif factory.startswith("_"):  # another module beside the factories
        factory = factories + factory
    config = _config([factory], measure, **grid)
    with pytest.raises(sweep.ConfigError, match="grid\\] cell") as err:
        sweep.run(config, out, progress="none")
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert not out.exists()


def test_a_factory_taking_recurrent_init_sweeps_the_init_axis(factories, tmp_path):
    name = f"{factories}:mgu_inits"
    config = _config(
        [name], {"grad_norms": True}, init=["gaussian", "orthogonal"], gain=[1.0]
    )
    out = sweep.run(config, tmp_path / "out", progress="none")
    assert len(results.load(out).records) == 2


def test_config_checks_the_form_and_the_module_without_importing_it(factories):
    _config([f"{factories}:mgu"])
    assert factories not in sys.modules  # found, not imported: no jax at validation
    for bad, expected in [
        ("nosuchpkg_xyz.cells:mgu", "No module named 'nosuchpkg_xyz'"),
        (f"{factories}.sub:mgu", "whose module can be imported"),
        ("mgu", "or a cell factory 'module:function'"),
        ("a:b:c", "or a cell factory 'module:function'"),
    ]:
        with pytest.raises(sweep.ConfigError, match="grid\\] cell") as err:
            _config([bad])
        assert expected in str(err.value)


def test_gradflow_run_finds_a_factory_in_the_current_folder(tmp_path):
    """The console script, from the folder holding ``mycells.py``, with a report."""
    (tmp_path / "mycells.py").write_text(textwrap.dedent(FACTORIES))
    (tmp_path / "mine.toml").write_text(
        textwrap.dedent(
            """\
            [experiment]
            name = "mine"
            [grid]
            cell = ["rnn", "mycells:mgu"]
            hidden_size = 6
            gain = [0.5, 1.5]
            length = 10
            seeds = [0, 1]
            [measure]
            grad_norms = true
            """
        )
    )
    script = Path(sys.executable).with_name("gradflow")
    proc = subprocess.run(
        [script, "run", "mine.toml", "--out", "out", "--report", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = results.load(tmp_path / "out")
    assert {r["coords"]["cell"] for r in res.records} == {"rnn", "mycells:mgu"}
    assert "mycells:mgu" in (tmp_path / "out" / "report.md").read_text()


def test_a_factory_that_changes_directory_or_exits(tmp_path):
    """In a real process: ``--out`` stays where the user meant it, relative to
    the folder the command started in; ``sys.exit`` in a factory is one line."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mycells.py").write_text(textwrap.dedent(FACTORIES))
    config = """\
        [experiment]
        name = "mine"
        [grid]
        cell = "mycells:{}"
        hidden_size = 3
        length = 4
        seeds = [0]
        [measure]
        grad_norms = true
        """

    def run(factory):
        (tmp_path / "run" / "mine.toml").write_text(
            textwrap.dedent(config.format(factory))
        )
        command = [sys.executable, "-m", "gradflow.cli", "run", "mine.toml"]
        root = str(Path(gf.__file__).resolve().parents[1])  # this gradflow
        return subprocess.run(
            [*command, "--out", "out", "--quiet"],
            cwd=tmp_path / "run",
            env={**os.environ, "PYTHONPATH": root},
            capture_output=True,
            text=True,
            timeout=300,
        )

    proc = run("elsewhere")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "out" / "config.toml").exists()
    assert not (tmp_path / "out").exists()  # where the factory's chdir led
    proc = run("bye")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "[grid] cell 'mycells:bye': the factory failed at hidden_size 3" in (
        proc.stderr
    )
