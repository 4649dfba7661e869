"""The clipping study (a sweep kind): config checks, one condition end to end, the
summary."""

import numpy as np
import pytest

import gradflow as gf
from gradflow.sweep import _clipping

FAST = {"xla_backend_optimization_level": 0}


def test_defaults_resolve_and_names_match_the_packages():
    sec = gf.sweep.validate_clipping_section({}, "exp.toml")
    assert sec == gf.sweep.CLIPPING_DEFAULTS
    sec = gf.sweep.validate_clipping_section(
        {"seeds": 3, "lrs": 0.1, "thresholds": [1, "none"]}, "exp.toml"
    )
    assert sec["seeds"] == [0, 1, 2] and sec["lrs"] == [0.1]
    assert sec["thresholds"] == [1.0, "none"]


@pytest.mark.parametrize(
    "section, key, expected",
    [
        ({"threshold": 1.0}, "threshold", "unknown key"),
        ({"thresholds": ["none", -1.0]}, r"thresholds\[1\]", "a number > 0"),
        ({"thresholds": ["clipall"]}, r"thresholds\[0\]", '"none" or "autoclip"'),
        ({"autoclip_percentile": 0.0}, "autoclip_percentile", "> 0"),
        ({"autoclip_percentile": 150}, "autoclip_percentile", r"\(0, 100\]"),
        ({"optimizer": "adamax"}, "optimizer", "one of sgd"),
        ({"clip": "autoclip"}, "clip", "one of global_norm"),
        ({"task": "mnist"}, "task", "one of adding"),
        ({"steps": "100"}, "steps", "an integer >= 1"),
        ({"lrs": [0.1, 0]}, "lrs", "learning rates > 0"),
        ({"lrs": [0.1, 0.05, 0.1]}, "lrs", "distinct learning rates"),
        ({"seeds": [0, 0]}, "seeds", "distinct"),
        ({"task": "temporal_order", "length": 5}, "length", ">= 10"),
    ],
)
def test_bad_sections_name_file_key_and_expectation(section, key, expected):
    with pytest.raises(ValueError, match=rf"exp\.toml: \[clipping\] {key}.*{expected}"):
        gf.sweep.validate_clipping_section(section, "exp.toml")


def test_grid_and_quick():
    sec = gf.sweep.validate_clipping_section(
        {"lrs": [0.1, 0.2], "thresholds": ["none", 0.5, 2.0, "autoclip"]}, "x"
    )
    grid = gf.sweep.clipping_grid(sec)
    assert len(grid) == 8
    assert grid[0] == {"clip": "none", "lr": 0.1}
    assert grid[1] == {"clip": "global_norm", "threshold": 0.5, "lr": 0.1}
    assert grid[3] == {"clip": "autoclip", "percentile": 10.0, "lr": 0.1}
    q = _clipping.quick_section(sec)
    assert q["seeds"] == [0, 1] and q["lrs"] == [0.1] and q["steps"] <= 60
    assert q["thresholds"] == ["none", 0.5, "autoclip"]
    assert gf.sweep.validate_clipping_section(q, "quick") == q


def test_run_point_arrays_and_metrics():
    sec = gf.sweep.validate_clipping_section(
        {
            "length": 12,
            "hidden_size": 4,
            "steps": 12,
            "record_every": 4,
            "batch_size": 4,
            "eval_batch_size": 8,
            "gain": 1.0,
        },
        "x",
    )
    coords = {"clip": "global_norm", "threshold": 0.05, "lr": 0.1}
    arrays, metrics = gf.sweep.run_clipping_point(
        sec, coords, [3, 5], compiler_options=FAST
    )
    assert set(arrays) == set(gf.sweep.CLIPPING_AXES)
    for name, axes in gf.sweep.CLIPPING_AXES.items():
        assert arrays[name].ndim == len(axes) and arrays[name].shape[0] == 2
    assert arrays["loss"].shape == (2, 12)
    assert arrays["profile_log10_grad_norms"].shape == (2, 4, 12)
    np.testing.assert_array_equal(arrays["profile_iteration"][0], [0, 4, 8, 12])
    assert all(len(v) == 2 for v in metrics.values())
    assert metrics["diverged"] == [0.0, 0.0]
    # the clip fires exactly when the raw norm is above the threshold
    fired = arrays["grad_norm"] > 0.05
    np.testing.assert_array_equal(arrays["clipped"].astype(bool), fired)
    np.testing.assert_allclose(metrics["clip_fraction"], fired.mean(axis=1))
    np.testing.assert_allclose(
        metrics["grad_norm_p50"],
        np.percentile(arrays["grad_norm"], 50, axis=1),
        rtol=1e-5,
    )
    assert all(np.isfinite(metrics["final_loss"]))
    with pytest.raises(ValueError, match="unknown key 'width'"):
        gf.sweep.run_clipping_point(sec, {"width": 3, "lr": 0.1}, [0])
    with pytest.raises(ValueError, match="needs a 'threshold'"):
        gf.sweep.run_clipping_point(sec, {"clip": "value", "lr": 0.1}, [0])


def _record(coords, diverged, loss, frac=0.5):
    nan = [None if d else v for d, v in zip(diverged, loss, strict=True)]
    return {
        "id": gf.results.clip_label(coords),
        "coords": coords,
        "seeds": list(range(len(diverged))),
        "metrics": {
            "diverged": [float(d) for d in diverged],
            "final_loss": nan,
            "final_accuracy": nan,
            "clip_fraction": [frac] * len(diverged),
            "grad_norm_p50": [1.0, 3.0, 2.0, 4.0][: len(diverged)],
            "grad_norm_p90": [5.0] * len(diverged),
            "grad_norm_p99": [9.0] * len(diverged),
        },
    }


def test_summary_by_hand():
    recs = [
        _record({"clip": "none", "lr": 0.1}, [1, 1, 0, 1], [9, 9, 0.5, 9], 0.0),
        _record(
            {"clip": "global_norm", "threshold": 1.0, "lr": 0.1},
            [0, 0, 0, 0],
            [0.2, 0.4, 0.3, 0.1],
        ),
        _record(
            {"clip": "global_norm", "threshold": 4.0, "lr": 0.1},
            [0, 0, 0, 0],
            [0.3, 0.5, 0.4, 0.2],
        ),
        _record(
            {"clip": "autoclip", "percentile": 10.0, "lr": 0.1},
            [0, 1, 0, 0],
            [0.01, 9, 0.01, 0.01],
        ),
    ]
    s = gf.sweep.summarize_clipping(recs)
    rows = s["thresholds"]
    assert [r["divergence_rate"] for r in rows] == [0.75, 0.0, 0.0, 0.25]
    assert rows[0]["threshold"] == "none" and rows[3]["threshold"] == "autoclip"
    assert rows[1]["final_loss"]["median"] == pytest.approx(0.25)
    assert rows[0]["final_loss"]["median"] == pytest.approx(
        0.5
    )  # diverged seeds absent
    assert rows[1]["grad_norm_percentiles"]["p50"] == pytest.approx(2.5)
    assert rows[0]["clip_fraction"]["median"] == 0.0
    rec = s["recommended"]
    # autoclip has the lowest loss but diverged once: not recommended
    assert rec["threshold"] == 1.0 and rec["range"] == [1.0, 4.0]
    assert "never diverged" in rec["reason"] and "3 of 4 seeds" in rec["reason"]
    everything_diverges = gf.sweep.summarize_clipping(recs[:1])
    assert everything_diverges["recommended"]["threshold"] == "none"
    assert "every condition diverged" in everything_diverges["recommended"]["reason"]
    with pytest.raises(ValueError, match="at least one condition"):
        gf.sweep.summarize_clipping([])


def test_every_condition_diverged_recommends_nothing(tmp_path):
    from gradflow.report._figures import clip_rows, recommended
    from gradflow.results import Results

    recs = [
        _record({"clip": "none", "lr": 1e6}, [1, 1], [9, 9]),
        _record({"clip": "global_norm", "threshold": 1.0, "lr": 1e6}, [1, 1], [9, 9]),
    ]
    s = gf.sweep.summarize_clipping(recs)
    assert s["recommended"] is None
    assert s["nothing_learned"].startswith("Nothing learned: every seed of all 2")
    res = Results(tmp_path, {}, {}, {}, recs, s)
    text, reason = recommended(res)
    assert text is None and reason == s["nothing_learned"]
    assert not any(r["recommended"] for r in clip_rows(res))
    # One seed that did not diverge is something learned: ranked as before.
    recs[1] = _record(
        {"clip": "global_norm", "threshold": 1.0, "lr": 1e6}, [1, 0], [9, 0.3]
    )
    s = gf.sweep.summarize_clipping(recs)
    assert s["recommended"]["threshold"] == 1.0 and "nothing_learned" not in s
