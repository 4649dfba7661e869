"""The sweep runner: closed-form numbers end to end, resume, refusal, determinism."""

import json
import math

import numpy as np
import pytest
from conftest import all_arrays

from gradflow import results, sweep

T = 12
GAINS = [0.5, 1.25, 2.0]


def linear_config(**grid):
    """A linear RNN with ``W_hh = g·Q`` (Q orthogonal) and zero inputs/biases.

    With the loss ``u·h_{T-1}`` (``‖u‖ = 1``), ``‖∂L/∂h_t‖ = g^(T-1-t)``
    exactly, the decay rate is ``−ln g``, ``σ_max(W_hh) = g`` and every
    Lyapunov exponent is ``ln g``.
    """
    return sweep.validate(
        {
            # quick: compiled at -O0 like `gradflow run --quick` (faster here).
            "experiment": {"name": "linear", "quick": True},
            "grid": {
                "cell": "rnn",
                "hidden_size": 4,
                "init": "orthogonal",
                "gain": GAINS,
                "length": T,
                "input": "zeros",
                "seeds": 3,
                **grid,
            },
            "cell": {"activation": "linear", "bias_init": "zeros"},
            "input": {"size": 2},
            "measure": {
                "grad_norms": {"loss": "last_linear"},
                "lyapunov": {"k": 2, "warmup": 2},
            },
        },
        "linear",
    )


@pytest.fixture(scope="module")
def compiled():
    """Compiled point functions shared by this module's runs (one compile)."""
    return {}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, compiled):
    out = tmp_path_factory.mktemp("full")
    seen = []
    sweep.run(
        linear_config(), out, progress="none", on_point=seen.append, cache=compiled
    )
    assert len(compiled) == 1  # three gains, one compiled function
    return out, seen


def test_closed_form_numbers(full_run):
    out, seen = full_run
    res = results.load(out)
    assert len(seen) == len(GAINS) == len(res.records)
    assert res.axes == {
        "log10_grad_norms": ["seed", "step"],
        "lyapunov_exponents": ["seed", "k"],
        "lyapunov_running": ["seed", "step", "k"],
        "lyapunov_resolved": ["seed", "k"],
    }
    steps = np.arange(T)
    for gain in GAINS:
        (rec,) = res.select(gain=gain)
        assert rec["seeds"] == [0, 1, 2]
        arrays = res.arrays(rec["id"])
        expected = (T - 1 - steps) * math.log10(gain)
        np.testing.assert_allclose(
            arrays["log10_grad_norms"], np.broadcast_to(expected, (3, T)), atol=2e-5
        )
        np.testing.assert_allclose(
            arrays["lyapunov_exponents"], math.log(gain), atol=1e-5
        )
        assert arrays["lyapunov_running"].shape == (3, T - 2, 2)
        assert arrays["lyapunov_resolved"].all()  # ρQ: equal exponents
        m = rec["metrics"]
        np.testing.assert_allclose(m["decay_rate"], -math.log(gain), atol=1e-5)
        np.testing.assert_allclose(m["lambda_max"], math.log(gain), atol=1e-5)
        np.testing.assert_allclose(m["sigma_max_whh"], gain, rtol=1e-5)
        np.testing.assert_allclose(m["log10_grad_norm_step0"], expected[0], atol=2e-5)
        assert m["pascanu_bound"] == [1.0, 1.0, 1.0]
        # Half-life is ln 2 / rate when vanishing, and "never" (null) otherwise.
        if gain < 1:
            np.testing.assert_allclose(
                m["half_life"], math.log(2) / -math.log(gain), rtol=1e-5
            )
        else:
            assert m["half_life"] == [None, None, None]
    prov = res.provenance
    assert prov["seeds"] == [0, 1, 2]
    assert prov["device_count"] >= 1 and prov["wall_time_s"] > 0
    for key in ("gradflow", "jax", "numpy", "device_kind", "git_commit", "started"):
        assert key in prov


class Interrupt(Exception):
    pass


def test_resume_after_interruption_is_identical(full_run, compiled, tmp_path):
    reference = all_arrays(full_run[0])

    def stop_after_one(pid):
        raise Interrupt(pid)

    with pytest.raises(Interrupt):
        sweep.run(
            linear_config(),
            tmp_path,
            progress="none",
            on_point=stop_after_one,
            cache=compiled,
        )
    assert len(results.read_metrics(tmp_path)) == 1
    assert len(list((tmp_path / "points").glob("*.npz"))) == 1
    assert not list((tmp_path / "points").glob(".*tmp"))  # no half-written files

    seen = []
    sweep.run(
        linear_config(), tmp_path, progress="none", on_point=seen.append, cache=compiled
    )
    assert len(seen) == len(GAINS) - 1  # the finished point was skipped
    resumed = all_arrays(tmp_path)
    assert resumed.keys() == reference.keys()
    for pid, arrays in reference.items():
        for name, value in arrays.items():
            np.testing.assert_array_equal(resumed[pid][name], value)

    # A point whose file was lost (a kill between files) is recomputed, the same.
    lost = sorted(reference)[1]
    results.point_path(tmp_path, lost).unlink()
    seen.clear()
    sweep.run(
        linear_config(), tmp_path, progress="none", on_point=seen.append, cache=compiled
    )
    assert seen == [lost]
    for name, value in reference[lost].items():
        np.testing.assert_array_equal(results.load_point(tmp_path, lost)[name], value)
    ids = [r["id"] for r in results.read_metrics(tmp_path)]
    assert sorted(ids) == sorted(reference)  # one record per point, no duplicates


def test_different_config_is_refused(full_run, tmp_path):
    out = full_run[0]
    before = (out / "config.toml").read_text()
    other = linear_config(seeds=5)
    with pytest.raises(ValueError, match="different config") as err:
        sweep.run(other, out, progress="none")
    assert "grid.seeds" in str(err.value)
    assert (out / "config.toml").read_text() == before
    # A quick run of the same file is a different config too.
    with pytest.raises(ValueError, match="different config"):
        sweep.run(linear_config(), out, quick=True, progress="none")


def test_force_replaces_and_progress_lines(compiled, tmp_path):
    import io

    stream = io.StringIO()
    small = linear_config(gain=[1.25])
    sweep.run(small, tmp_path, progress=sweep.Progress("lines", stream), cache=compiled)
    text = stream.getvalue()
    assert "linear: 1 points" in text and "[1/1] cell=rnn" in text
    assert "points/s" in text and "s left" in text
    bigger = linear_config(gain=[0.5], length=T)
    with pytest.raises(ValueError, match="--force"):
        sweep.run(bigger, tmp_path, progress="none")
    sweep.run(bigger, tmp_path, progress="none", force=True, cache=compiled)
    res = results.load(tmp_path)
    assert [r["coords"]["gain"] for r in res.records] == [0.5]
    assert len(list((tmp_path / "points").glob("*.npz"))) == 1
    assert json.loads((tmp_path / "provenance.json").read_text())["seeds"] == [0, 1, 2]


def test_one_grid_expansion_per_run_and_max_points(compiled, tmp_path, monkeypatch):
    measure = sweep.KINDS["measure"]
    calls = []

    def counted(config):
        calls.append(1)
        return measure.grid(config)

    monkeypatch.setitem(sweep.KINDS, "measure", measure._replace(grid=counted))
    with pytest.raises(sweep.GridTooLarge, match="3 points x 3 seeds, more than the 2"):
        sweep.run(linear_config(), tmp_path / "big", progress="none", max_points=2)
    assert not (tmp_path / "big").exists() and len(calls) == 1
    calls.clear()
    out = tmp_path / "ok"
    sweep.run(linear_config(), out, progress="none", max_points=3, cache=compiled)
    assert len(calls) == 1 and len(results.read_metrics(out)) == 3


def test_progress_bar_and_quiet():
    import io

    stream = io.StringIO()
    bar = sweep.Progress("bar", stream)
    bar.start("exp", 3, 1)  # one point already done (a resumed run)
    bar.advance("cell=rnn,gain=0.5", 0.1)
    bar.advance("cell=rnn,gain=2.0", 0.1)
    bar.close()
    text = stream.getvalue()
    assert "1/3" in text and "3/3" in text and "point/s" in text
    quiet = io.StringIO()
    none = sweep.Progress("none", quiet)
    none.start("exp", 2, 0)
    none.advance("x", 0.1)
    none.close()
    assert quiet.getvalue() == ""
    with pytest.raises(ValueError, match="progress must be one of"):
        sweep.Progress("fancy")


def test_task_inputs(tmp_path):
    """A task's inputs drive the cell: its width, and its steps (copy: T + 20)."""
    cfg = sweep.validate(
        {
            "experiment": {"quick": True},
            "grid": {"hidden_size": 4, "length": 5, "input": "copy", "seeds": 2},
            "measure": {"grad_norms": True},
        }
    )
    sweep.run(cfg, tmp_path, progress="none")
    res = results.load(tmp_path)
    (rec,) = res.records
    assert rec["coords"]["input"] == "copy"
    assert res.arrays(rec["id"])["log10_grad_norms"].shape == (2, 5 + 20)
