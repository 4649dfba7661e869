"""AdaGC against pytorch-optimizer's ``AdaGC`` (4.1.0) step by step; the replay too."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from conftest import tol
from pytorch_optimizer import AdaGC
from pytorch_optimizer.optimizer import adagc as adagc_module

import gradflow as gf
from gradflow.report._replay import replay


def _grads(n, seed):
    """``n`` gradients ``{"W": (3, 4), "b": (3,)}``, with spikes in W after step 20."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n, 3, 4)) * np.exp(rng.normal(0, 0.3, (n, 1, 1)))
    b = rng.normal(size=(n, 3)) * 0.5
    w[[25, 31, 40]] *= np.array([12.0, 30.0, 8.0])[:, None, None]
    b[33] *= 20.0
    return {"W": w, "b": b}


def _global_norm_sq_float64(param_groups, *args, **kwargs):
    """The reference's squared global norm, without its cast to float32."""
    grads = [p.grad for g in param_groups for p in g["params"] if p.grad is not None]
    return torch.stack([g.norm() for g in grads]).square().sum().reshape(1)


def _reference(grads, lr, **kw):
    """pytorch-optimizer's AdaGC on a Linear(4, 3): params and gamma per step."""
    model = torch.nn.Linear(4, 3).double()
    with torch.no_grad():
        model.weight.fill_(0.1)
        model.bias.fill_(-0.2)
    opt = AdaGC(model.parameters(), lr=lr, weight_decay=0.0, foreach=False, **kw)
    params, gammas = [], []
    for w, b in zip(grads["W"], grads["b"], strict=True):
        model.weight.grad = torch.tensor(w)
        model.bias.grad = torch.tensor(b)
        opt.step()
        params.append(
            (model.weight.detach().numpy().copy(), model.bias.detach().numpy().copy())
        )
        gammas.append(
            [float(opt.state[p]["gamma"]) for p in (model.weight, model.bias)]
        )
    return params, np.array(gammas)


def _ours(grads, lr, betas=(0.9, 0.999), eps=1e-8, **kw):
    tx = optax.chain(
        gf.train.adagc(eps=eps, **kw), optax.adam(lr, b1=betas[0], b2=betas[1], eps=eps)
    )
    p0 = {"W": jnp.full((3, 4), 0.1), "b": jnp.full((3,), -0.2)}

    @jax.jit
    def run(gs):
        def step(carry, g):
            p, s = carry
            u, s = tx.update(g, s, p)
            p = optax.apply_updates(p, u)
            return (p, s), (p, s[0].gamma)

        return jax.lax.scan(step, (p0, tx.init(p0)), gs)[1]

    return jax.device_get(run(jax.tree_util.tree_map(jnp.asarray, grads)))


@pytest.mark.parametrize(
    "kw",
    [dict(warmup_steps=10), dict(warmup_steps=1, lambda_rel=1.5, beta=0.9)],
)
def test_adagc_equals_pytorch_optimizer_step_by_step_float64(x64, kw, monkeypatch):
    grads = _grads(60, 0)
    got, got_gamma = _ours(grads, 1e-2, **kw)
    # the reference sums the warm-up's global norm in float32 (`.float()` in
    # get_global_gradient_norm): as it is, it agrees to float32's precision...
    want, want_gamma = _reference(grads, 1e-2, **kw)
    np.testing.assert_allclose(got_gamma["W"], want_gamma[:, 0], rtol=1e-6)
    np.testing.assert_allclose(got["W"][-1], want[-1][0], rtol=1e-6)
    assert np.abs(got_gamma["W"] / want_gamma[:, 0] - 1).max() > 1e-12
    # ...and with that sum in float64, to float64's, step by step
    monkeypatch.setattr(
        adagc_module, "get_global_gradient_norm", _global_norm_sq_float64
    )
    want, want_gamma = _reference(grads, 1e-2, **kw)
    for t, (w, b) in enumerate(want):
        np.testing.assert_allclose(got["W"][t], w, rtol=tol(np.float64), atol=1e-15)
        np.testing.assert_allclose(got["b"][t], b, rtol=tol(np.float64), atol=1e-15)
    np.testing.assert_allclose(got_gamma["W"], want_gamma[:, 0], rtol=tol(np.float64))
    np.testing.assert_allclose(got_gamma["b"], want_gamma[:, 1], rtol=tol(np.float64))


def test_adagc_replay_over_per_tensor_norms_equals_the_transform(x64):
    # the audit's replay sees only the logged norms; the transform the gradients
    grads = _grads(60, 1)
    tx = gf.train.adagc(warmup_steps=10)
    state = tx.init({"W": jnp.zeros((3, 4)), "b": jnp.zeros(3)})
    factors = []
    for t in range(60):
        g = {"W": jnp.asarray(grads["W"][t]), "b": jnp.asarray(grads["b"][t])}
        out, state = tx.update(g, state)
        factors.append(
            [float(jnp.linalg.norm(out[k]) / jnp.linalg.norm(g[k])) for k in ("W", "b")]
        )
    norms = {k: np.linalg.norm(grads[k].reshape(60, -1), axis=1) for k in ("W", "b")}
    total = np.sqrt(norms["W"] ** 2 + norms["b"] ** 2)
    _, per = replay(total, "adagc", 1.05, groups=norms, adagc={"warmup_steps": 10})
    np.testing.assert_allclose(per["W"], np.array(factors)[:, 0], rtol=1e-12)
    np.testing.assert_allclose(per["b"], np.array(factors)[:, 1], rtol=1e-12)
    # the largest spike (W at step 31) is clipped hardest
    assert np.argmin(per["W"]) == 31 and per["W"][31] < per["b"][31]


def test_adagc_leaves_a_nonfinite_update_and_its_state_alone():
    tx = gf.train.adagc(warmup_steps=2)
    g = {"a": jnp.ones(3)}
    s = tx.init(g)
    _, s1 = tx.update(g, s)
    out, s2 = jax.jit(tx.update)({"a": jnp.array([1.0, jnp.nan, 0.0])}, s1)
    assert np.isnan(out["a"][1]) and out["a"][0] == 1.0
    assert s2.count == s1.count and s2.gamma["a"] == s1.gamma["a"]
    with pytest.raises(ValueError, match="beta must be in"):
        gf.train.adagc(beta=1.0)
    with pytest.raises(ValueError, match="lambda_rel"):
        gf.train.adagc(lambda_rel=0.0)


def test_adagc_is_a_method_of_the_clipping_study():
    sec = gf.sweep.validate_clipping_section(
        {
            "clip": ["none", "adagc"],
            "levels": {"adagc": [1.05, 2.0]},
            "length": 12,
            "hidden_size": 4,
            "steps": 12,
            "record_every": 4,
            "batch_size": 4,
            "eval_batch_size": 8,
            "gain": 3.0,
        },
        "x",
    )
    grid = gf.sweep.clipping_grid(sec)
    assert {"clip": "adagc", "threshold": 2.0, "lr": sec["lrs"][0]} in grid
    arrays, metrics = gf.sweep.run_clipping_point(
        sec,
        {"clip": "adagc", "threshold": 2.0, "lr": 0.1},
        [0, 1],
        compiler_options={"xla_backend_optimization_level": 0},
    )
    # 12 steps are all warm-up: AdaGC clips the global norm at lambda_abs = 1
    g = arrays["grad_norm"]
    assert (g > 1.0).any() and (g < 1.0).any()
    np.testing.assert_array_equal(arrays["clipped"].astype(bool), g > 1.0)
    assert all(np.isfinite(metrics["final_loss"]))
