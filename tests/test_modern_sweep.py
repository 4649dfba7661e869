"""The modern cells in configs: kinds with options of their own
(``"lru(r_min=0.99)"``), their inputs, and what a measure sweep refuses."""

import jax
import numpy as np
import pytest

import gradflow as gf
from gradflow import _names, sweep


def test_cell_variants_parse():
    assert _names.cell_variant("lru(r_min=0.99, max_phase=0.5)") == (
        "lru",
        {"r_min": 0.99, "max_phase": 0.5},
    )
    assert _names.cell_variant("lstm") == ("lstm", {})
    for bad in ("lru(", "lru(0.9)", "lru(r_min=x)", "a.b(r=1)", "lru(**k)"):
        assert _names.cell_variant(bad) is None
    assert _names.cell_kind("lru(r_min=0.9)") == _names.CELLS["lru"]


def test_a_config_with_cell_variants_builds_each():
    cfg = sweep.validate(
        {
            "grid": {
                "cell": ["lru(r_min=0.9)", "lru(r_min=0.999)", "min_gru"],
                "hidden_size": 4,
                "length": 6,
                "seeds": 1,
            },
            "input": {"size": 3},
            "measure": {"grad_norms": {"of": "state"}, "jacobian_norms": True},
        }
    )
    assert cfg["measure"]["grad_norms"]["of"] == "state"
    from gradflow.sweep._inputs import input_size
    from gradflow.sweep._point import build_cell

    mags = []
    for name in ("lru(r_min=0.9)", "lru(r_min=0.999)"):
        coords = {"cell": name, "hidden_size": 4, "init": "torch", "input": "gaussian"}
        assert input_size(cfg, coords) == 4  # width-bound: not [input] size 3
        cell = build_cell(cfg, coords)
        p = cell.init(jax.random.key(0), 4)
        mags.append(np.exp(-np.exp(np.asarray(p["nu_log"]))))
    assert mags[0].min() >= 0.9 and mags[1].min() >= 0.999
    coords = {"cell": "min_gru", "hidden_size": 4, "init": "torch", "input": "gaussian"}
    assert input_size(cfg, coords) == 3


@pytest.mark.parametrize(
    ("grid", "measure", "match"),
    [
        ({"cell": "lru(bogus=1)"}, None, r"options of lru .*bogus in lru\(bogus=1\)"),
        ({"cell": "lru(r_min="}, None, "such a kind with options of its own"),
        ({"cell": "elman(r=1)"}, None, "such a kind with options of its own"),
        ({"cell": "min_gru", "init": "orthogonal"}, None, r"\[grid\] init.*min_gru"),
        ({"cell": "lru", "gain": [1.0, 1.5]}, None, r"\[grid\] gain.*no W_hh"),
        ({"cell": "selective_ssm", "input": "adding"}, None, "hidden_size wide"),
        ({"cell": "lru"}, {"grad_norms": {"of": "sideways"}}, "one of output, state"),
    ],
)
def test_refused_configs(grid, measure, match):
    raw = {"grid": {"length": 20, **grid}}
    if measure:
        raw["measure"] = measure
    with pytest.raises(sweep.ConfigError, match=match):
        sweep.validate(raw)


def test_measure_sweep_on_the_modern_cells(tmp_path):
    """A whole run: every point finishes, the LRU's Jacobian norms are its
    closed form, param_grad_share reads its transition param (nu_log)."""
    cfg = sweep.validate(
        {
            "grid": {
                "cell": ["lru(r_min=0.5, r_max=0.9)"],
                "hidden_size": 3,
                "length": 8,
                "seeds": 2,
            },
            "input": {"size": 2},
            "measure": {
                "grad_norms": {"of": "state"},
                "jacobian_norms": True,
                "param_grad_by_step": True,
            },
        }
    )
    sweep.run(cfg, tmp_path / "out")
    res = gf.results.load(tmp_path / "out")
    for rec in res.records:
        arrays = res.arrays(rec["id"])
        share = arrays["param_grad_share"]
        np.testing.assert_allclose(share.sum(-1), 1.0, rtol=1e-5)
        if rec["coords"]["cell"].startswith("lru"):
            from gradflow.sweep._point import build_cell, seed_keys

            cell = build_cell(cfg, rec["coords"])
            for i, seed in enumerate(rec["seeds"]):
                p = cell.init(seed_keys(seed)[0], 3)
                rate = -np.exp(np.asarray(p["nu_log"], np.float64)).min()
                ref = np.arange(8, 0, -1) * rate / np.log(10)
                np.testing.assert_allclose(
                    arrays["jacobian_log10_norms"][i], ref, rtol=1e-5
                )
