"""ZClip against the reference package ``zclip`` 1.0.0; AGC by hand per output unit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import zclip as zclip_ref
from conftest import tol

import gradflow as gf


def _norms(n, seed):
    """Log-normal norms with a few spikes (10-50x) after the warm-up."""
    rng = np.random.default_rng(seed)
    norms = np.exp(rng.normal(0.0, 0.3, size=n))
    for i in rng.choice(np.arange(n // 2, n), size=4, replace=False):
        norms[i] *= rng.uniform(10.0, 50.0)
    return norms


def _grads(n, seed, dtype):
    """``n`` gradients ``{"W": (3, 4), "b": (4,)}`` with the norms of :func:`_norms`."""
    rng = np.random.default_rng(seed + 1)
    w = rng.normal(size=(n, 3, 4))
    b = rng.normal(size=(n, 4))
    unit = np.sqrt((w**2).sum(axis=(1, 2)) + (b**2).sum(axis=1))
    scale = _norms(n, seed) / unit
    return {
        "W": (w * scale[:, None, None]).astype(dtype),
        "b": (b * scale[:, None]).astype(dtype),
    }


def _reference(grads, dtype, **kwargs):
    """What ``zclip.ZClip.step`` leaves in a torch model's ``.grad`` each step."""
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    model = torch.nn.Linear(4, 3).to(tdtype)  # weight (3, 4), bias (3,)
    model.bias = torch.nn.Parameter(torch.zeros(4, dtype=tdtype))
    clip = zclip_ref.ZClip(**kwargs)
    out = {"W": [], "b": []}
    for w, b in zip(grads["W"], grads["b"], strict=True):
        model.weight.grad = torch.tensor(w)
        model.bias.grad = torch.tensor(b)
        clip.step(model)
        out["W"].append(model.weight.grad.numpy().copy())
        out["b"].append(model.bias.grad.numpy().copy())
    return {k: np.stack(v) for k, v in out.items()}


def _ours(grads, tx=None, **kwargs):
    tx = gf.train.zclip(**kwargs) if tx is None else tx

    @jax.jit
    def run(gs):
        first = jax.tree_util.tree_map(lambda a: a[0], gs)

        def step(state, g):
            out, state = tx.update(g, state)
            return state, (out, state.spike, state.mean)

        return jax.lax.scan(step, tx.init(first), gs)[1]

    return jax.device_get(run(jax.tree_util.tree_map(jnp.asarray, grads)))


CASES = [
    dict(),
    dict(alpha=0.9, z_thresh=2.0, warmup_steps=10),
    dict(warmup_steps=10, max_norm=1.5),
    dict(warmup_steps=10, mode="percentile", z_thresh=1.5),
    dict(warmup_steps=10, clip_option="mean"),
    dict(warmup_steps=10, clip_factor=0.7, skip_update_on_spike=True),
]


def _ref_kwargs(kw):
    kw = dict(kw)
    kw["max_grad_norm"] = kw.pop("max_norm", None)  # the reference defaults to 1.0
    return kw


@pytest.mark.parametrize("kwargs", CASES)
def test_zclip_equals_reference_step_by_step_float64(x64, kwargs):
    grads = _grads(80, 0, np.float64)
    want = _reference(grads, np.float64, **_ref_kwargs(kwargs))
    got, spike, _ = _ours(grads, **kwargs)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=tol(np.float64), atol=0)
    # the spikes planted after the warm-up are caught (and nothing in it)
    warm = kwargs.get("warmup_steps", 25)
    assert not spike[:warm].any() and spike.sum() >= 3


@pytest.mark.parametrize("kwargs", CASES[:4])
def test_zclip_equals_reference_float32(kwargs):
    grads = _grads(60, 1, np.float32)
    want = _reference(grads, np.float32, **_ref_kwargs(kwargs))
    got, _, _ = _ours(grads, **kwargs)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=10 * tol(np.float32))


def test_clipper_zclip_is_the_reference_at_z_2_5_or_the_threshold_given():
    grads = _grads(60, 1, np.float32)
    for threshold, z in ((None, 2.5), (0.5, 0.5)):
        got, spike, _ = _ours(grads, gf.train.clipper("zclip", threshold))
        want = _reference(grads, np.float32, z_thresh=z, max_grad_norm=None)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=10 * tol(np.float32))
        assert spike.sum() >= 3


def test_zclip_clips_spikes_and_leaves_ordinary_steps():
    grads = _grads(60, 2, np.float32)
    got, spike, _ = _ours(grads, warmup_steps=10)
    raw = np.sqrt((grads["W"] ** 2).sum(axis=(1, 2)) + (grads["b"] ** 2).sum(axis=1))
    out = np.sqrt((got["W"] ** 2).sum(axis=(1, 2)) + (got["b"] ** 2).sum(axis=1))
    np.testing.assert_allclose(out[~spike], raw[~spike], rtol=1e-6)
    planted = raw > 5 * np.median(raw)
    assert np.all(spike[planted])
    assert np.all(out[spike] < raw[spike])
    assert np.all(out[spike] < 2.5 * np.median(raw))  # back near the typical norm


def test_zclip_skips_non_finite_norms():
    grads = _grads(30, 3, np.float32)
    grads["W"][20, 0, 0] = np.nan
    got, spike, mean = _ours(grads, warmup_steps=10)
    assert np.isnan(got["W"][20, 0, 0]) and np.all(np.isfinite(got["W"][21:]))
    assert not spike[20] and np.all(np.isfinite(mean))
    assert mean[20] == mean[19]  # the statistics did not take the NaN


def test_zclip_nan_in_the_warm_up_is_neither_recorded_nor_counted():
    # A NaN at step 3 of a 10-step warm-up: the warm-up still takes 10 finite
    # norms, so every other step equals the reference run on the finite steps
    # alone (the reference cannot take a NaN: its statistics would stay NaN).
    grads = _grads(40, 4, np.float32)
    with_nan = {k: np.insert(v, 3, np.nan, axis=0) for k, v in grads.items()}
    got, spike, mean = _ours(with_nan, warmup_steps=10)
    want = _reference(grads, np.float32, **_ref_kwargs(dict(warmup_steps=10)))
    keep = np.arange(41) != 3
    for k in want:
        assert np.isnan(got[k][3]).any()  # passed through for divergence checks
        np.testing.assert_allclose(got[k][keep], want[k], rtol=10 * tol(np.float32))
    _, want_spike, want_mean = _ours(grads, warmup_steps=10)
    np.testing.assert_array_equal(spike[keep], want_spike)
    np.testing.assert_allclose(mean[keep], want_mean, rtol=1e-6)
    assert want_spike.any()  # the statistics were put to use


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(alpha=1.0), ValueError, r"alpha must be in \(0, 1\)"),
        (dict(z_thresh=0.0), ValueError, "z_thresh must be > 0"),
        (dict(warmup_steps=0), ValueError, "warmup_steps must be an int >= 1"),
        (dict(max_norm=-1.0), ValueError, "max_norm must be > 0"),
        (dict(mode="median"), ValueError, "mode must be one of"),
        (dict(clip_option="max"), ValueError, "clip_option must be one of"),
        (dict(skip_update_on_spike=1), TypeError, "skip_update_on_spike must be"),
    ],
)
def test_zclip_bad_input(kwargs, err, match):
    with pytest.raises(err, match=match):
        gf.train.zclip(**kwargs)


def test_agc_clips_each_output_row_by_hand():
    # W is (out=3, in=4): AGC's unit is a row (an output unit), as in NFNets
    params = {
        "W": jnp.array(
            [[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 0]], jnp.float32
        ),  # row norms 1, 2, 0 (-> eps)
        "b": jnp.array([3.0, 4.0, 0.0], jnp.float32),  # one unit, norm 5
    }
    grads = {
        "W": jnp.array(
            [[0.3, 0.4, 0, 0], [0.1, 0, 0, 0], [0, 0, 0.5, 0]], jnp.float32
        ),  # row norms 0.5, 0.1, 0.5
        "b": jnp.array([0.0, 0.0, 1.0], jnp.float32),  # norm 1
    }
    tx = gf.train.clipper("agc", 0.2)
    out, _ = jax.jit(lambda g, p: tx.update(g, tx.init(p), p))(grads, params)
    want_w = np.array(
        [
            [0.3 * 0.2 / 0.5, 0.4 * 0.2 / 0.5, 0, 0],  # 0.5 > 0.2*1: cut to 0.2
            [0.1, 0, 0, 0],  # 0.1 < 0.2*2: kept
            [0, 0, 0.5 * 0.2 * 1e-3 / 0.5, 0],  # weight norm 0 -> eps 1e-3
        ]
    )
    np.testing.assert_allclose(out["W"], want_w, rtol=1e-6)
    np.testing.assert_allclose(out["b"], [0, 0, 1.0], rtol=1e-6)  # 1 < 0.2*5
    # optax's default unit on a rank-2 leaf is a column, which differs here
    col, _ = optax.adaptive_grad_clip(0.2).update(grads, None, params)
    assert not np.allclose(col["W"], want_w)


def test_agc_needs_params():
    tx = gf.train.adaptive_grad_clip(0.1)
    with pytest.raises(ValueError, match="needs params"):
        tx.update({"W": jnp.ones((2, 2))}, tx.init(None))
