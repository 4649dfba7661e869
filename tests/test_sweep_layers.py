"""The ``layers`` axis of a measure sweep: stacked cells, every layer measured."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow import results
from gradflow.sweep._inputs import sample_input
from gradflow.sweep._point import build_cell, seed_keys

RAW = {
    "experiment": {"name": "stack", "kind": "measure"},
    "grid": {
        "cell": "lstm",
        "hidden_size": 4,
        "length": 6,
        "layers": [1, 3],
        "seeds": [0, 1],
    },
    "input": {"size": 3, "scale": 1.0},
    "measure": {"grad_norms": True, "layer_grad_norms": True},
}


def test_layers_axis_in_ids_only_where_named():
    config = gf.sweep.validate(RAW)
    ids = [p.id for p in gf.sweep.expand_grid(config)]
    assert ids == [
        "cell=lstm,hidden_size=4,init=torch,gain=1.0,length=6,input=gaussian,"
        f"layers={n}"
        for n in (1, 3)
    ]
    plain = gf.sweep.validate({**RAW, "grid": {"cell": "lstm"}})
    assert "layers" not in gf.sweep.expand_grid(plain)[0].coords


def test_bad_layers():
    with pytest.raises(ValueError, match=r"\[grid\] layers"):
        gf.sweep.validate({**RAW, "grid": {**RAW["grid"], "layers": [0]}})
    with pytest.raises(ValueError, match=r"\[grid\] layers"):
        gf.sweep.validate({**RAW, "grid": {**RAW["grid"], "layers": ["two"]}})


def test_sweep_of_a_stack_equals_direct_calls(tmp_path):
    config = gf.sweep.validate(RAW)
    out = gf.sweep.run(config, tmp_path / "run", progress="none")
    res = results.load(out)
    assert res.axes["log10_layer_grad_norms"] == ["seed", "layer", "step"]
    for point in gf.sweep.expand_grid(config):
        cell = build_cell(config, point.coords)
        arrays = res.arrays(point.id)
        got = arrays["log10_layer_grad_norms"]
        depth = point.coords["layers"]
        assert got.shape == (2, depth, 6)
        for row, seed in enumerate(point.seeds):
            k_p, k_x, k_u = seed_keys(jnp.uint32(seed))
            params = cell.init(k_p, 3)
            xs = sample_input("gaussian", k_x, (6, 3), 1.0)
            u = jax.random.normal(k_u, (4,))
            u = u / jnp.linalg.norm(u)
            ref = gf.hidden_grad_norms(
                cell, params, xs, lambda hs, u=u: jnp.dot(u, hs[-1]), layers="all"
            )
            np.testing.assert_allclose(got[row], ref.log10_norms, atol=1e-5)
            # the top layer's row is the ordinary profile of the stack
            np.testing.assert_allclose(
                arrays["log10_grad_norms"][row], got[row, -1], atol=1e-5
            )
