"""memory_horizon by hand; fixed points through a sweep config to the report."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf


def test_memory_horizon_counts_steps_back_from_the_peak():
    steps = 40
    lag = np.arange(steps - 1, -1, -1, dtype=np.float32)
    # Column 0: 0.5 decades per step from the last step, so 7 decades at lag 14.
    # Column 1: peak at t = 29 (lag 10) then 0.25 per step: 28 steps back from it.
    # Column 2: grows back in time (explodes): never falls, inf.
    col0 = -0.5 * lag
    col1 = np.where(lag >= 10, -0.25 * (lag - 10), -0.1 * (10 - lag))
    col2 = 0.3 * lag
    logs = jnp.asarray(np.stack([col0, col1, col2], axis=1))
    got = np.asarray(jax.jit(gf.memory_horizon)(logs))
    np.testing.assert_array_equal(got, [14.0, 28.0, np.inf])
    # Fewer decades, an exact zero norm (-inf) is below any level, NaN is NaN.
    np.testing.assert_array_equal(gf.memory_horizon(logs[:, :1], 3.0), [6.0])
    zero = jnp.asarray([-np.inf, -1.0, 0.0], jnp.float32)
    assert float(gf.memory_horizon(zero)) == 2.0
    nan = jnp.asarray([np.nan, -9.0, 0.0], jnp.float32)
    assert np.isnan(float(gf.memory_horizon(nan)))
    with pytest.raises(ValueError, match="decades must be > 0"):
        gf.memory_horizon(logs, 0.0)
    with pytest.raises(ValueError, match=r"log10_norms must have shape \(T"):
        gf.memory_horizon(jnp.zeros(()))
    with pytest.raises(TypeError, match="log10_norms must be floating, got int32"):
        gf.memory_horizon(jnp.zeros(3, jnp.int32))


def config(gains, tmp_path, n=2):
    raw = {
        "experiment": {"name": "fp", "figures": []},
        "grid": {
            "cell": "rnn",
            "hidden_size": n,
            "init": "identity",
            "gain": gains,
            "length": 40,
            "input": "gaussian",
            "seeds": 2,
        },
        "cell": {"bias_init": "zeros"},
        "input": {"size": 2, "scale": 0.5},
        "measure": {"grad_norms": True, "fixed_points": {"starts": 16}},
    }
    cfg = gf.sweep.validate(raw, "fp.toml")
    out = gf.sweep.run(cfg, tmp_path / "fp", progress="none")
    return gf.results.load(out), out


def test_fixed_points_through_a_sweep_closed_form(tmp_path):
    """W_hh = g I, no bias: at g = 0.5 the origin alone, eigenvalues 0.5, so
    −ln|λ₁| = ln 2; at g = 2 the attracting points (±a, ±a), a = tanh 2a, with
    eigenvalues 2(1 − a²)."""
    res, out = config([0.5, 2.0], tmp_path)
    lo, hi = 0.5, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.tanh(2 * mid) > mid else (lo, mid)
    a = 0.5 * (lo + hi)
    by_gain = {r["coords"]["gain"]: r for r in res.records}
    m = by_gain[0.5]["metrics"]
    assert m["fixed_points"] == [1, 1] and m["stable_fixed_points"] == [1, 1]
    np.testing.assert_allclose(m["fixed_point_decay_rate"], np.log(2.0), rtol=1e-5)
    assert m["fixed_point_attracts"] == [1, 1]
    arrays = res.arrays(by_gain[0.5]["id"])
    np.testing.assert_allclose(arrays["whh_eigenvalues"], 0.5, rtol=1e-6)
    keep = arrays["fixed_point_distinct"][0]
    # float32 solve from O(1) starts: the damped last steps leave ~1e-6 (measured
    # 2.4e-6); a wrong point would be O(0.1) away.
    np.testing.assert_allclose(arrays["fixed_point_states"][0][keep], 0.0, atol=2e-5)
    m = by_gain[2.0]["metrics"]
    assert all(1 <= c <= 9 for c in m["fixed_points"]), m["fixed_points"]
    assert m["fixed_point_attracts"] == [1, 1]
    np.testing.assert_allclose(
        m["fixed_point_decay_rate"], -np.log(2 * (1 - a * a)), rtol=1e-4
    )
    # The memory horizon sits next to the decay rate it follows from:
    # ‖∂L/∂h_t‖ falls by 0.5 per step at g = 0.5 near the origin (ln 2 nats).
    hor = by_gain[0.5]["metrics"]["memory_horizon"]
    assert all(h is not None and 20 <= h <= 30 for h in hor), hor
    axes = json.loads((out / "axes.json").read_text())
    assert axes["fixed_point_eigenvalues"] == ["seed", "start", "eig"]
    assert np.iscomplexobj(arrays["fixed_point_eigenvalues"])
    gf.report.write_report(out, formats=("png",))
    for name in ("fixed_point_eigenvalues", "forgetting_vs_gain", "fixed_point_pca"):
        assert (out / "figures" / f"{name}.png").exists(), name
    md = (out / "report.md").read_text()
    assert "## Conditions" in md and "### g = 0.5" in md
    assert "memory horizon (steps)" in md
    assert "At the attracting point, −ln|λ₁| = 0.69 nats per step" in md


def test_condition_sentences():
    from gradflow.report._conditions import fixed_point_sentence, memory_sentence

    rec = {"coords": {"length": 300}, "metrics": {"memory_horizon": [38.0, 40.0]}}
    assert memory_sentence(rec).startswith("Forgets a signal within 39 steps")
    rec = {
        "coords": {"length": 300},
        "metrics": {"memory_horizon": [None, None], "decay_rate": [-0.2, -0.3]},
    }
    assert memory_sentence(rec).startswith("The gradient grows back in time")
    rec["metrics"]["decay_rate"] = [0.01, 0.02]
    assert memory_sentence(rec).startswith("Keeps a signal beyond the 300 steps")
    rec["metrics"]["decay_rate"] = [None, None]  # every norm NaN
    assert memory_sentence(rec).startswith(
        "No memory horizon: ‖∂L/∂h_t‖ is not finite (NaN or inf) over the 300 steps"
    )
    assert memory_sentence({"metrics": {}}) is None
    # a run that measured the whole state's gradient says so
    from gradflow.report._conditions import measured_norm

    state = {"measure": {"grad_norms": {"loss": "last_linear", "of": "state"}}}
    output = {"measure": {"grad_norms": {"loss": "last_linear", "of": "output"}}}
    assert measured_norm(state) == "‖∂L/∂s_t‖"
    assert measured_norm(output) == measured_norm({}) == "‖∂L/∂h_t‖"
    rec = {"coords": {"length": 300}, "metrics": {"memory_horizon": [38.0, 40.0]}}
    assert "by then ‖∂L/∂s_t‖ has fallen" in memory_sentence(rec, "‖∂L/∂s_t‖")
    rec = {
        "metrics": {
            "fixed_points": [3, 3],
            "stable_fixed_points": [0, 0],
            "fixed_point_decay_rate": [-0.5, -0.5],
            "fixed_point_attracts": [0, 0],
            "decay_rate": [-0.2, -0.2],
        }
    }
    text = fixed_point_sentence(rec)
    assert text.startswith("3 fixed points of the input-free map (0 attracting")
    assert "most visited point (which repels), −ln|λ₁| = −0.5" in text
    assert "measured decay rate of ‖∂L/∂h_t‖ is −0.2." in text
