"""Experiment configs: validation errors name the file and key; defaults; quick."""

import tomllib
from pathlib import Path

import pytest
import tomli_w

from gradflow import sweep

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        # unknown keys
        ("[grid]\ncolour = 'red'\n", "[grid] colour", "unknown key"),
        ("[gird]\ncell = 'rnn'\n", "[<top level>] gird", "unknown key"),
        ("[measure]\nlyapunov = { k = 2, speed = 1 }\n", "measure.lyapunov", "speed"),
        # wrong types
        ("[grid]\nhidden_size = 'big'\n", "[grid] hidden_size", "an integer"),
        ("[grid]\ngain = 'high'\n", "[grid] gain", "a finite number"),
        ("[grid]\nhidden_size = true\n", "[grid] hidden_size", "an integer"),
        ("[experiment]\nfigures = 'all'\n", "[experiment] figures", "a list"),
        ("[input]\nscale = [1]\n", "[input] scale", "a finite number"),
        # impossible values
        ("[grid]\ncell = 'transformer'\n", "[grid] cell", "one of rnn, lstm, gru"),
        ("[grid]\nhidden_size = 0\n", "[grid] hidden_size", ">= 1"),
        ("[grid]\ngain = -0.5\n", "[grid] gain", ">= 0.0"),
        ("[grid]\nseeds = 0\n", "[grid] seeds", "a count >= 1"),
        ("[grid]\nlength = [10, 10]\n", "[grid] length", "distinct"),
        ("[experiment]\nkind = 'train'\n", "[experiment] kind", "measure, clipping"),
        (
            "[grid]\nhidden_size = 4\ncell = 'rnn'\n[measure]\nlyapunov = { k = 5 }\n",
            "[measure] lyapunov.k",
            "smallest state size (4)",
        ),
        (
            "[grid]\nlength = 30\n[measure]\nlyapunov = { warmup = 30 }\n",
            "[measure] lyapunov.warmup",
            "shortest length - 1 (29)",
        ),
        (
            "[grid]\ngain = { start = 0.5, stop = 2.0 }\n",
            "[grid] gain.num",
            "missing",
        ),
        ("[cell]\nforget_bias = 1.0\n", "[cell] forget_bias", "LSTM cells only"),
        # counts and tolerances: 0 failed inside the first point, files written
        (
            "[measure]\nfixed_points = { starts = 0 }\n",
            "[measure] fixed_points.starts",
            "an integer >= 1, got int 0",
        ),
        (
            "[measure]\nfixed_points = { max_steps = -1 }\n",
            "[measure] fixed_points.max_steps",
            "an integer >= 1",
        ),
        (
            "[measure]\nfixed_points = { unique_tol = 0.0 }\n",
            "[measure] fixed_points.unique_tol",
            "a number > 0",
        ),
        ("[measure]\ngrad_norms = false\n", "[measure]", "at least one"),
        (
            "[measure]\nlayer_grad_norms = { loss = 'mean' }\n",
            "[measure] layer_grad_norms.loss",
            "one of last_linear, last_square, sum_linear, got 'mean'",
        ),
        ("[experiment]\nfigures = ['no_such_plot']\n", "figures", "no_such_plot"),
    ],
)
def test_invalid_config_names_file_and_key(tmp_path, text, key, expected):
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as err:
        sweep.load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    assert key in message, message
    assert expected in message, message


def test_invalid_toml_is_a_value_error(tmp_path):
    path = write(tmp_path, "[grid\ncell = 'rnn'\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        sweep.load_config(path)


def test_defaults_filled_and_round_trip(tmp_path):
    path = write(
        tmp_path,
        "[grid]\ncell = 'lstm'\ngain = { start = 0.5, stop = 2.0, num = 4 }\n"
        "seeds = 3\n[measure]\nlyapunov = true\n",
    )
    cfg = sweep.load_config(path)
    assert cfg["experiment"]["name"] == "exp"  # the file's stem
    assert cfg["grid"]["cell"] == ["lstm"]
    assert cfg["grid"]["gain"] == [0.5, 1.0, 1.5, 2.0]
    assert cfg["grid"]["seeds"] == [0, 1, 2]
    assert cfg["grid"]["hidden_size"] == [32]
    assert cfg["measure"] == {"lyapunov": {"k": 8, "warmup": 50}}
    assert cfg["cell"]["activation"] == "tanh"
    # What goes to DIR/config.toml reads back equal, and re-validates to itself.
    back = tomllib.loads(tomli_w.dumps(cfg))
    assert back == cfg
    assert sweep.validate(back, "again") == cfg


def test_log_range():
    cfg = sweep.validate(
        {"grid": {"gain": {"start": 0.1, "stop": 10, "num": 3, "log": True}}}
    )
    assert cfg["grid"]["gain"] == [0.1, 1.0, 10.0]


def test_grid_order_and_ids():
    cfg = sweep.validate({"grid": {"cell": ["rnn", "gru"], "gain": [0.5, 2.0]}})
    points = sweep.expand_grid(cfg)
    assert [(p.coords["cell"], p.coords["gain"]) for p in points] == [
        ("rnn", 0.5),
        ("rnn", 2.0),
        ("gru", 0.5),
        ("gru", 2.0),
    ]
    assert points[0].id == (
        "cell=rnn,hidden_size=32,init=torch,gain=0.5,length=100,input=gaussian"
    )
    assert len({p.id for p in points}) == 4
    assert all(p.seeds == (0, 1, 2, 3) for p in points)


def test_quick_shrinks_and_applies_overrides():
    cfg = sweep.validate(
        {
            "grid": {
                "cell": ["rnn", "lstm", "gru"],
                "hidden_size": [64, 128],
                "gain": [0.5, 1.0, 2.0],
                "length": [500, 1000],
                "seeds": 10,
            },
            "measure": {"lyapunov": {"k": 16, "warmup": 100}},
            "quick": {"gain": [1.0]},
        }
    )
    q = sweep.quick(cfg)
    assert q["experiment"]["quick"] is True
    assert q["grid"]["cell"] == ["rnn"]
    assert q["grid"]["hidden_size"] == [8]
    assert q["grid"]["length"] == [24]
    assert q["grid"]["seeds"] == [0, 1]
    assert q["grid"]["gain"] == [1.0]  # the [quick] override wins
    assert q["measure"]["lyapunov"] == {"k": 8, "warmup": 12}
    assert "quick" not in q
    assert cfg["grid"]["seeds"] == list(range(10))  # the input is not changed
    sweep.validate(q, "quick")  # a quick config is itself valid


@pytest.mark.parametrize(
    "path", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.stem
)
def test_shipped_experiments_validate(path):
    cfg = sweep.load_config(path)
    assert cfg["experiment"]["name"] == path.stem
    assert cfg["experiment"]["figures"]
