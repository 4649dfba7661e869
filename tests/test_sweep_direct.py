"""A sweep on nonlinear cells equals direct gf.* calls on the same params and inputs.

Covers what no other test or shipped config runs: the ``uniform`` input, the
``last_square`` and ``sum_linear`` losses and the ``param_grad_by_step``
measurement, on a tanh RNN and an LSTM (whose Jacobians depend on the state,
unlike the linear RNN of test_sweep.py). The reference rebuilds each seed's
params, inputs and readout from the documented per-seed keys
(``split(key(seed), 3)`` = params, input, readout), writes each loss by hand,
and takes gradient norms by plain autodiff with respect to a perturbation of
each ``h_t`` (the sweep uses ``hidden_grad_norms``' log-space reverse scan).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow import results, sweep

T, N, D, SCALE = 9, 5, 3, 0.7
GAINS = [0.8, 1.6]
SEEDS = [3, 11]


def _autodiff_grad_norms(cell, params, xs, loss_fn):
    """``‖∂L/∂h_t‖``: jax.grad by a zero ``e_t`` added to ``h_t`` (output and carry)."""

    def loss_of(eps):
        def body(c, inp):
            x_t, e_t = inp
            c, h = cell.step(params, c, x_t)
            return c._replace(h=c.h + e_t), h + e_t

        carry = cell.initial_carry(xs.shape[1:-1], xs.dtype)
        return loss_fn(jax.lax.scan(body, carry, (xs, eps))[1])

    eps = jnp.zeros((*xs.shape[:-1], cell.hidden_size), xs.dtype)
    return jnp.linalg.norm(jax.grad(loss_of)(eps), axis=-1)


def _config(cell, loss):
    return sweep.validate(
        {
            "experiment": {"name": f"direct_{cell}_{loss}", "quick": True},
            "grid": {
                "cell": cell,
                "hidden_size": N,
                "init": "gaussian",
                "gain": GAINS,
                "length": T,
                "input": "uniform",
                "seeds": SEEDS,
            },
            "cell": {"activation": "tanh"},
            "input": {"size": D, "scale": SCALE},
            "measure": {
                "grad_norms": {"loss": loss},
                "param_grad_by_step": True,
                "jacobian_norms": True,
                "lyapunov": {"k": 2, "warmup": 1},
            },
        },
        "direct",
    )


def _loss(kind, u):
    """The sweep's losses from their definitions, ``hs (T, N) -> ()``."""
    if kind == "last_square":
        return lambda hs: 0.5 * jnp.sum(hs[-1] ** 2)
    assert kind == "sum_linear"
    return lambda hs: jnp.sum(hs @ u)


def _seed_inputs(cell, seed, gain):
    k_p, k_x, k_u = jax.random.split(jax.random.key(seed), 3)
    params = cell.init(k_p, D)
    params = {**params, "W_hh": gain * params["W_hh"]}
    xs = jax.random.uniform(k_x, (T, D), minval=-SCALE, maxval=SCALE)
    u = jax.random.normal(k_u, (N,))
    return params, xs, u / jnp.linalg.norm(u)


@pytest.mark.parametrize("kind, loss", [("rnn", "last_square"), ("lstm", "sum_linear")])
def test_sweep_equals_direct_calls_on_a_nonlinear_cell(tmp_path, kind, loss):
    config = _config(kind, loss)
    sweep.run(config, tmp_path, progress="none")
    res = results.load(tmp_path)
    assert set(res.axes) == {
        "log10_grad_norms",
        "param_grad_share",
        "jacobian_log10_norms",
        "lyapunov_exponents",
        "lyapunov_running",
        "lyapunov_resolved",
    }
    cell = gf.cells.make(
        kind,
        N,
        recurrent_init="gaussian",
        input_init="torch",
        bias_init="torch",
        **({"activation": "tanh"} if kind == "rnn" else {}),
    )
    assert len(res.records) == len(GAINS)

    @jax.jit
    def direct(params, xs, u):
        loss_fn = _loss(loss, u)
        by_step = gf.param_grad_by_step(cell, params, xs, loss_fn)

        def total(w):
            return loss_fn(gf.unroll(cell, {**params, "W_hh": w}, xs)[1])

        return {
            # plain autodiff (the sweep takes the log-space reverse scan)
            "grad_norms": _autodiff_grad_norms(cell, params, xs, loss_fn),
            "share": by_step.share["W_hh"],
            "by_step_grad": by_step.grad["W_hh"],
            "grad": jax.grad(total)(params["W_hh"]),
            "jac": gf.jacobian_norms(cell, params, xs).log10_norms,
            "lyap": gf.lyapunov_spectrum(cell, params, xs, k=2, warmup=1).exponents,
        }

    for rec in res.records:
        gain = rec["coords"]["gain"]
        arrays = res.arrays(rec["id"])
        assert rec["seeds"] == SEEDS
        for i, seed in enumerate(SEEDS):
            params, xs, u = _seed_inputs(cell, seed, gain)
            # the input really is uniform on [-scale, scale) (no other test runs it)
            assert float(jnp.max(jnp.abs(xs))) <= SCALE
            ref = jax.device_get(direct(params, xs, u))
            close = {"rtol": 1e-4, "atol": 1e-5}
            np.testing.assert_allclose(
                arrays["log10_grad_norms"][i], np.log10(ref["grad_norms"]), **close
            )
            np.testing.assert_allclose(
                arrays["param_grad_share"][i], ref["share"], **close
            )
            # the shares are of the real gradient: the contributions sum to it
            np.testing.assert_allclose(ref["by_step_grad"], ref["grad"], **close)
            np.testing.assert_allclose(
                arrays["jacobian_log10_norms"][i], ref["jac"], **close
            )
            np.testing.assert_allclose(
                arrays["lyapunov_exponents"][i], ref["lyap"], **close
            )
            lam = rec["metrics"]["lambda_max"][i]
            assert lam == pytest.approx(float(ref["lyap"][0]), rel=1e-4, abs=1e-5)


def test_an_unknown_loss_name_is_refused_not_read_as_another():
    from gradflow import _specs
    from gradflow.sweep._measures import make_loss

    u = jnp.ones(3) / jnp.sqrt(3.0)
    hs = jnp.arange(6.0).reshape(2, 3)
    for name in _specs.LOSSES:
        assert jnp.isfinite(make_loss(name, u)(hs))
    with pytest.raises(ValueError, match=r"loss must be one of .*got 'mean'"):
        make_loss("mean", u)
