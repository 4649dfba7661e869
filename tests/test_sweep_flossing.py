"""[clipping.flossing] and task_options in the clipping kind: checks and the grid."""

import pytest

import gradflow as gf
from gradflow import results


def test_flossing_doubles_every_condition_and_labels_it():
    sec = gf.sweep.validate_clipping_section(
        {
            "lrs": 0.1,
            "thresholds": ["none", 1.0],
            "flossing": {"k": 4, "every": 10, "before": 5},
            "task": "copy",
            "task_options": {"symbols": 4, "recall": 1},
        },
        "x",
    )
    assert sec["flossing"] == {
        "k": 4,
        "weight": 1.0,
        "every": 10,
        "before": 5,
        "examples": 0,
    }
    grid = gf.sweep.clipping_grid(sec)
    assert [g.get("flossing") for g in grid] == ["off", "on", "off", "on"]
    labels = [results.clip_label(g) for g in grid]
    assert labels == [
        "none",
        "none + flossing",
        "global_norm 1",
        "global_norm 1 + flossing",
    ]
    # without the table nothing changes
    plain = gf.sweep.validate_clipping_section(
        {"lrs": 0.1, "thresholds": ["none", 1.0]}, "x"
    )
    assert [results.clip_label(g) for g in gf.sweep.clipping_grid(plain)] == [
        "none",
        "global_norm 1",
    ]


@pytest.mark.parametrize(
    "table, key, expected",
    [
        ({"k": 0}, "flossing.k", r"an integer in \[1, 32\]"),
        ({"k": 33}, "flossing.k", r"an integer in \[1, 32\]"),
        ({"k": 2, "weight": -1.0}, "flossing.weight", ">= 0"),
        ({"k": 2, "every": -1}, "flossing.every", ">= 0"),
        ({"k": 2, "rate": 1}, "flossing.rate", "one of k"),
    ],
)
def test_bad_flossing_tables(table, key, expected):
    with pytest.raises(ValueError, match=rf"exp\.toml: \[clipping\] {key}.*{expected}"):
        gf.sweep.validate_clipping_section({"flossing": table}, "exp.toml")


def test_bad_task_options():
    with pytest.raises(ValueError, match=r"\[clipping\] task_options.*integer options"):
        gf.sweep.validate_clipping_section({"task_options": {"recall": 0}}, "exp.toml")
