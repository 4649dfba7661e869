"""The param_sensitivity measurement and the Lyapunov dimension metrics in a sweep."""

import numpy as np

from gradflow import results, sweep

GAINS = [0.5, 0.8]


def test_curse_of_memory_sweep(tmp_path):
    """A linear RNN with ``W_hh = gI``, ``W_ih = I`` and unit Gaussian inputs:
    per entry of ``W_hh``, ``E‖∂h/∂W_ij‖² = (1+g²)/(1−g²)³`` (each entry is
    the scalar recurrence's ∂h/∂λ driven by one unit's input); the inputs
    scaled by ``sqrt(1−g²)`` scale that by exactly ``1−g²`` (linear, same
    probes). The Lyapunov exponents are all ``ln g``: D_KY = 0 and no entropy."""
    cfg = sweep.validate(
        {
            "experiment": {"name": "com", "quick": True},
            "grid": {
                "cell": "rnn",
                "hidden_size": 4,
                "init": "identity",
                "gain": GAINS,
                "length": 600,
                "input": "gaussian",
                "seeds": 3,
            },
            "cell": {
                "activation": "linear",
                "bias_init": "zeros",
                "input_init": "identity",
            },
            "input": {"size": 4},
            "measure": {
                "param_sensitivity": {"wrt": "W_hh", "probes": 16},
                "lyapunov": {"k": 4, "warmup": 10},
            },
        },
        "com",
    )
    sweep.run(cfg, tmp_path, progress="none")
    res = results.load(tmp_path)
    assert res.axes["param_sensitivity"] == ["seed", "step"]
    for rec in res.records:
        g = rec["coords"]["gain"]
        q = g * g
        m = {k: np.asarray(v, float) for k, v in rec["metrics"].items()}
        np.testing.assert_allclose(m["input_power"], 1.0, atol=0.15)
        ratio = 10 ** (
            m["log10_param_sensitivity_normalised"] - m["log10_param_sensitivity"]
        )
        np.testing.assert_allclose(ratio, 1 - q, rtol=1e-4)
        per = 10 ** m["log10_param_sensitivity"] / m["input_power"]
        want = (1 + q) / (1 - q) ** 3
        # one sequence per seed, averaged over 300 steps: ~15% per seed
        assert abs(np.median(per) / want - 1) < 0.3, (g, per, want)
        np.testing.assert_allclose(m["kaplan_yorke"], 0.0)
        np.testing.assert_allclose(m["entropy_rate"], 0.0)
        np.testing.assert_allclose(m["lambda_max"], np.log(g), atol=1e-4)
        sq = res.arrays(rec["id"])["param_sensitivity"]
        assert sq.shape == (3, 600)
