"""The clipping study that learns: methods and levels, lengths, success, recommended."""

import numpy as np
import pytest

import gradflow as gf
from gradflow.sweep import _clipping
from gradflow.sweep._success import wilson_interval

FAST = {"xla_backend_optimization_level": 0}


def test_list_of_methods_with_levels_and_lengths():
    sec = gf.sweep.validate_clipping_section(
        {
            "clip": ["none", "agc", "autoclip", "zclip"],
            "levels": {"agc": [0.01, 0.1], "autoclip": 50},
            "lrs": [0.1],
            "lengths": [20, 40],
        },
        "x",
    )
    assert sec["levels"] == {"agc": [0.01, 0.1], "autoclip": [50.0], "zclip": [2.5]}
    grid = gf.sweep.clipping_grid(sec)
    assert grid == [
        {"clip": c, **lv, "lr": 0.1, "length": t}
        for t in (20, 40)
        for c, lv in [
            ("none", {}),
            ("agc", {"threshold": 0.01}),
            ("agc", {"threshold": 0.1}),
            ("autoclip", {"percentile": 50.0}),
            ("zclip", {"threshold": 2.5}),
        ]
    ]
    q = _clipping.quick_section(sec)
    assert q["levels"]["agc"] == [0.01] and q["lengths"] == [20]
    assert gf.sweep.validate_clipping_section(q, "quick") == q


@pytest.mark.parametrize(
    "section, key, expected",
    [
        ({"clip": ["none", "adam"]}, "clip", "a method or a list of none"),
        ({"clip": ["agc"], "thresholds": [1.0]}, "thresholds", "no thresholds"),
        ({"clip": ["agc"], "levels": {"value": [1]}}, "levels.value", "listed"),
        (
            {"clip": ["autoclip"], "levels": {"autoclip": [150]}},
            "levels.autoclip",
            r"\(0, 100\]",
        ),
        ({"levels": {"agc": [1]}}, "levels", "unless clip is a list"),
        ({"success_accuracy": 1.5}, "success_accuracy", r"\(0, 1\]"),
        ({"lengths": [2]}, "lengths", ">= 4"),
    ],
)
def test_bad_sections(section, key, expected):
    with pytest.raises(ValueError, match=rf"x: \[clipping\] {key}.*{expected}"):
        gf.sweep.validate_clipping_section(section, "x")


def test_zclip_condition_runs_and_measures_success():
    sec = gf.sweep.validate_clipping_section(
        {
            "task": "temporal_order",
            "length": 10,
            "hidden_size": 8,
            "clip": ["zclip"],
            "steps": 30,
            "record_every": 0,
            "eval_batch_size": 16,
            "success_accuracy": 0.2,  # reachable at chance (0.25) by some seeds
        },
        "x",
    )
    coords = {"clip": "zclip", "threshold": 2.5, "lr": 0.05}
    arrays, m = gf.sweep.run_clipping_point(sec, coords, [0, 1], compiler_options=FAST)
    acc = np.asarray(m["final_accuracy"])
    np.testing.assert_array_equal(m["success"], (acc >= 0.2).astype(float))
    reached = np.isfinite(m["steps_to_success"])
    np.testing.assert_array_equal(reached, np.asarray(m["success"]) == 1)
    assert arrays["loss"].shape == (2, 30)


def _record(cid, coords, success, loss, frac=0.1, diverged=None):
    n = len(success)
    return {
        "id": cid,
        "coords": coords,
        "seeds": list(range(n)),
        "metrics": {
            "success": success,
            "steps_to_success": [100.0 if s else None for s in success],
            "final_loss": loss,
            "final_accuracy": [1.0 if s else 0.3 for s in success],
            "diverged": diverged or [0.0] * n,
            "clip_fraction": [frac] * n,
            "chance_loss": [2.0] * n,
        },
    }


def test_summary_recommends_the_most_successful_and_compares_the_runner_up():
    recs = [
        _record("none", {"clip": "none", "lr": 0.1}, [0, 0, 0, 0], [2.1] * 4),
        _record(
            "g1",
            {"clip": "global_norm", "threshold": 1.0, "lr": 0.1},
            [1, 1, 1, 1],
            [0.2, 0.1, 0.3, 0.2],
            frac=0.3,
        ),
        _record(
            "g10",
            {"clip": "global_norm", "threshold": 10.0, "lr": 0.1},
            [1, 1, 1, 0],
            [0.01, 0.01, 0.01, 1.9],
        ),
        _record(
            "z",
            {"clip": "zclip", "threshold": 2.5, "lr": 0.1},
            [1, 1, 1, 1],
            [0.2, 0.1, 0.3, 0.2],
            frac=0.05,
        ),
    ]
    summ = gf.sweep.summarize_clipping(recs)
    e = {x["id"]: x for x in summ["thresholds"]}
    assert e["g10"]["success_rate"] == 0.75
    assert e["g10"]["success_interval"] == pytest.approx(wilson_interval(3, 4))
    assert e["g1"]["final_loss_ratio"] == pytest.approx(0.1)
    rec = summ["recommended"]
    # g1 and z tie on success and final loss; z clips less
    assert rec["id"] == "z" and rec["runner_up"] == "g1"
    assert "equal success" in rec["reason"]
    assert "Without clipping at the same lr 0 of 4 seeds succeeded" in rec["reason"]
    assert summ["working_region"]["global_norm"] == [[0.1, 1.0], [0.1, 10.0]]
    assert summ["working_region"]["none"] == []


def test_report_draws_success_heatmap_and_success_against_length(tmp_path):
    from gradflow.report import FIGURES
    from gradflow.results import Results

    recs = [
        _record("n", {"clip": "none", "lr": 0.1}, [0, 0], [2.0, 2.0]),
        _record("n2", {"clip": "none", "lr": 0.3}, [0, 1], [2.0, 0.1]),
        _record(
            "g", {"clip": "global_norm", "threshold": 1.0, "lr": 0.1}, [1, 1], [0.1] * 2
        ),
        _record("z", {"clip": "zclip", "threshold": 2.5, "lr": 0.3}, [1, 0], [0.1] * 2),
    ]
    res = Results(tmp_path, {}, {}, {}, recs, gf.sweep.summarize_clipping(recs))
    fig = FIGURES["success_heatmap"](res)
    titles = [ax.get_title(loc="left") for ax in fig.axes[:2]]
    assert titles == ["global_norm", "zclip (z-score)"]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["none", "1"]
    # lr 0.1: none 0, global_norm 1; lr 0.3: none 0.5, global_norm not run
    assert sorted(t.get_text() for t in ax.texts if "NaN" not in t.get_text()) == [
        "0",
        "0.5",
        "1",
    ]
    assert FIGURES["success_vs_length"](res) is None  # no T axis
    recs_t = [
        _record(f"{c}{t}", {"clip": c, "lr": 0.1, "length": t, **lv}, s, [0.1, 0.1])
        for t, s in ((20, [1, 1]), (50, [0, 1]))
        for c, lv in (("none", {}), ("global_norm", {"threshold": 1.0}))
    ]
    res = Results(tmp_path, {}, {}, {}, recs_t, gf.sweep.summarize_clipping(recs_t))
    fig = FIGURES["success_vs_length"](res)
    assert fig.axes[0].get_legend_handles_labels()[1] == ["none", "global_norm 1"]
