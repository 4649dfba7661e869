"""gradflow.report: write_report on synthetic results directories (no jax)."""

from __future__ import annotations

import base64
import math
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from gradflow import report
from gradflow import results as R
from gradflow.report import _select

RNG = np.random.default_rng(0)
SEEDS = 2


def _config(d: Path, name: str, figures: list[str] | None = None, extra: str = ""):
    figs = "" if figures is None else f"figures = {figures!r}\n".replace("'", '"')
    (d / "config.toml").write_text(
        f'[experiment]\nname = "{name}"\ndescription = "A synthetic {name}."\n'
        f"{figs}{extra}"
    )
    R.atomic_write_json(
        d / "provenance.json",
        {"gradflow": "0.1.0", "numpy": np.__version__, "seeds": list(range(SEEDS))},
    )


def measure_dir(d: Path, figures=None) -> dict[str, float]:
    """cell × gain × length; returns the decay rate written for each point id."""
    _config(d, "sweep", figures)
    R.atomic_write_json(
        d / "axes.json",
        {
            "log10_grad_norms": ["seed", "step"],
            "jacobian_log10_norms": ["seed", "step"],
            "jacobian_log10_singular_values": ["seed", "lag", "k"],
            "lyapunov_exponents": ["seed", "k"],
            "lyapunov_running": ["seed", "step", "k"],
            "lyapunov_resolved": ["seed", "k"],
            "param_grad_share": ["seed", "step"],
        },
    )
    rates = {}
    for cell in ("rnn", "lstm"):
        for gain in (0.5, 2.0):
            for T in (6, 10):
                coords = {"cell": cell, "gain": gain, "length": T}
                pid = R.point_id(coords)
                rate = -math.log(gain) * (1.0 if cell == "rnn" else 0.5)
                lag = np.arange(T - 1, -1, -1)
                lg = np.tile(-rate * lag / math.log(10), (SEEDS, 1))
                ex = np.sort(RNG.normal(math.log(gain), 0.1, (SEEDS, 3)))[:, ::-1]
                R.save_point(
                    d,
                    pid,
                    {
                        "log10_grad_norms": lg,
                        "jacobian_log10_norms": lg,
                        "jacobian_log10_singular_values": lg[:, :, None]
                        - np.arange(2)[None, None, :],
                        "lyapunov_exponents": ex,
                        "lyapunov_running": np.broadcast_to(
                            ex[:, None, :], (SEEDS, T, 3)
                        ),
                        # the LSTM's smallest exponent is only a bound in seed 0
                        "lyapunov_resolved": np.array(
                            [[True, True, cell == "rnn"], [True, True, True]]
                        ),
                        "param_grad_share": np.full((SEEDS, T), 1.0 / T),
                    },
                )
                half = math.log(2) / rate if rate > 0 else math.inf
                R.write_metrics(
                    d,
                    {
                        "id": pid,
                        "coords": coords,
                        "seeds": list(range(SEEDS)),
                        "metrics": {
                            "decay_rate": [rate] * SEEDS,
                            "half_life": [half] * SEEDS,
                            "lambda_max": list(ex[:, 0]),
                            "log10_grad_norm_step0": list(lg[:, 0]),
                            "sigma_max_whh": [gain] * SEEDS,
                            "pascanu_bound": [1.0] * SEEDS,
                        },
                    },
                )
                rates[pid] = rate
    return rates


REASON = (
    "global_norm 1 at lr 0.1 never diverged over 2 seeds and had the lowest median "
    "final loss 1.5 among the 2 conditions that never diverged; without clipping "
    "1 of 2 seeds diverged."
)


def clip_dir(d: Path) -> None:
    """A clipping study: 3 conditions × 2 learning rates, summary.json as the
    clipping study writes it (``thresholds`` list, ``recommended`` dict)."""
    _config(d, "clipping")
    R.atomic_write_json(
        d / "axes.json",
        {
            "loss": ["seed", "iteration"],
            "grad_norm": ["seed", "iteration"],
            "profile_log10_grad_norms": ["seed", "record", "step"],
            "profile_iteration": ["seed", "record"],
        },
    )
    entries = []
    for lr in (0.1, 1.0):
        for clip, th in (("global_norm", 1.0), ("global_norm", 10.0), ("none", None)):
            coords = {"clip": clip, "lr": lr}
            if th is not None:
                coords = {"clip": clip, "threshold": th, "lr": lr}
            pid = R.point_id(coords)
            loss = 1.0 + RNG.random((SEEDS, 20))
            diverged = th is None
            if diverged:
                loss[0, 8:] = np.nan  # seed 0 diverged at iteration 8
            R.save_point(
                d,
                pid,
                {
                    "loss": loss,
                    "grad_norm": np.exp(RNG.normal(size=(SEEDS, 20))),
                    "profile_log10_grad_norms": RNG.normal(size=(SEEDS, 4, 7)),
                    "profile_iteration": np.tile(np.arange(4) * 5, (SEEDS, 1)),
                },
            )
            div = [1.0, 0.0] if diverged else [0.0, 0.0]
            R.write_metrics(
                d,
                {
                    "id": pid,
                    "coords": coords,
                    "seeds": [0, 1],
                    "metrics": {"diverged": div, "final_loss": list(loss[:, -1])},
                },
            )
            label = "none" if th is None else f"global_norm {th:g}"
            entries.append(
                {
                    "id": pid,
                    "label": label,
                    "clip": clip,
                    "threshold": "none" if th is None else th,
                    "lr": lr,
                    "seeds": SEEDS,
                    "divergence_rate": float(np.mean(div)),
                    "diverged_seeds": int(np.sum(div)),
                    "final_loss": {"q10": 1.2, "median": 1.5 + lr, "q90": 1.8 + lr},
                    "final_accuracy": None,
                    "clip_fraction": {"median": 0.25, "mean": 0.3},
                    "grad_norm_percentiles": {"p50": 1.0, "p90": 3.5, "p99": 9.0},
                }
            )
    rec_id = R.point_id({"clip": "global_norm", "threshold": 1.0, "lr": 0.1})
    R.atomic_write_json(
        d / "summary.json",
        {
            "thresholds": entries,
            "recommended": {
                "id": rec_id,
                "label": "global_norm 1",
                "clip": "global_norm",
                "threshold": 1.0,
                "lr": 0.1,
                "range": [1.0, 10.0],
                "reason": REASON,
            },
        },
    )


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.hrefs, self.tags, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if "src" in a:
            self.srcs.append(a["src"])
        if "href" in a:
            self.hrefs.append(a["href"])

    def handle_data(self, data):
        self.text.append(data)


def _check_html(directory: Path) -> _Page:
    page = _Page()
    page.feed((directory / "report.html").read_text())
    page.close()
    assert "script" not in page.tags and "link" not in page.tags
    for src in page.srcs:
        assert src.startswith("data:image/png;base64,"), src[:40]
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    for href in page.hrefs:
        assert not re.match(r"[a-z]+:", href), href  # no network, no absolute URL
        assert (directory / href).is_file(), href
    md = (directory / "report.md").read_text()
    for link in re.findall(r"\]\(([^)]+)\)", md):
        assert (directory / link).is_file(), link
    return page


def _figures(directory: Path) -> set[str]:
    return {p.name for p in (directory / "figures").iterdir()}


def test_measure_report_has_every_supported_figure_and_the_table(tmp_path):
    rates = measure_dir(tmp_path)
    path = report.write_report(tmp_path, formats=("png",))
    assert path == tmp_path / "report.html"
    expected = {
        "grad_norm_profile",
        "jacobian_norm_profile",
        "jacobian_singular_values",
        "lyapunov_spectrum",
        "lambda_max_vs_gain",
        "decay_rate_vs_gain",
        "grad_norm_vs_length",
        "phase_diagram",
        "pascanu_bound",
        "param_grad_share",
    }
    assert _figures(tmp_path) == {f"{n}.png" for n in expected}
    page = _check_html(tmp_path)
    assert len(page.srcs) == len(expected)
    text = " ".join(page.text)
    for name in expected:
        assert report.CAPTIONS[name] in text
    # an exponent the precision cannot resolve is flagged in the caption
    assert "2 of 12 exponents (v markers) are upper bounds" in text  # 2 LSTM lines
    # The summary table: decay rate ln 2 = 0.6931 for the rnn at gain 0.5, and
    # its half-life 1 step; the exploding rnn has no finite half-life.
    rate = rates[R.point_id({"cell": "rnn", "gain": 0.5, "length": 6})]
    assert f"{rate:.4g}" == "0.6931" and "0.6931" in text
    assert "−0.6931" in text  # gain 2: exploding, negative decay rate
    md = (tmp_path / "report.md").read_text()
    assert "| cell | gain | length | decay rate (nats / step) |" in md
    assert md.count("![") == len(expected)


def test_clipping_report_all_formats_recommendation_and_table(tmp_path):
    clip_dir(tmp_path)
    report.write_report(tmp_path)
    names = {"loss_curves", "clipping_summary", "grad_norm_histogram"}
    names.add("grad_norm_heatmap")
    expected = {f"{n}.{e}" for n in names for e in ("pdf", "svg", "png")}
    assert _figures(tmp_path) == expected
    for p in (tmp_path / "figures").iterdir():
        assert p.stat().st_size > 1000
    page = _check_html(tmp_path)
    assert len([h for h in page.hrefs if h.endswith(".svg")]) == len(names)
    text = " ".join(page.text)
    head = (
        "Recommended clipping: global_norm 1 at lr 0.1 (thresholds 1 to 10 never "
        "diverged)."
    )
    assert head in text and REASON in text
    assert REASON in (tmp_path / "report.md").read_text()
    # One row per condition (both learning rates), the recommended one flagged.
    assert "global_norm 1 (recommended)" in text
    assert text.count("(recommended)") == 1
    assert "1 of 2" in text and "1.6 (1.2 to 1.9)" in text
    # The figures are drawn at the recommended learning rate.
    assert "Shown at lr = 0.1." in text
    fig = report.FIGURES["clipping_summary"](R.load(tmp_path))
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["global_norm 1\n(recommended)", "global_norm 10", "none"]
    bars = [p.get_height() for p in fig.axes[0].containers[0]]
    assert bars == [0.0, 0.0, 0.5]
    fig = report.FIGURES["loss_curves"](R.load(tmp_path))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == [
        "global_norm 1",
        "global_norm 10",
        "none",
        "12 non-finite values not drawn",
    ]


def test_listed_figures_missing_data_and_missing_points(tmp_path):
    measure_dir(
        tmp_path, figures=["grad_norm_profile", "loss_curves", "lyapunov_spectrum"]
    )
    # A point whose file is gone and an axes.json without the Lyapunov arrays.
    first = R.read_metrics(tmp_path)[0]["id"]
    R.point_path(tmp_path, first).unlink()
    axes = R.load(tmp_path).axes
    del axes["lyapunov_exponents"], axes["lyapunov_running"]
    R.atomic_write_json(tmp_path / "axes.json", axes)
    report.write_report(tmp_path, formats=("svg",))
    assert _figures(tmp_path) == {"grad_norm_profile.svg"}
    page = _check_html(tmp_path)
    assert page.srcs and len(page.srcs) == 1
    text = " ".join(page.text)
    assert "loss_curves" in text and "lyapunov_spectrum" in text
    assert "the results hold no data for it" in text


def test_only_metrics_no_arrays_still_reports(tmp_path):
    _config(tmp_path, "bare")
    R.write_metrics(
        tmp_path,
        {
            "id": "a",
            "coords": {"cell": "rnn"},
            "seeds": [0, 1],
            "metrics": {"decay_rate": [0.5, None]},
        },
    )
    report.write_report(tmp_path, formats=("png",))
    text = " ".join(_check_html(tmp_path).text)
    assert "0.5 (1 non-finite)" in text
    assert not (tmp_path / "figures").exists() or not _figures(tmp_path)


def test_registry_names_and_bad_input(tmp_path):
    assert set(report.FIGURES) == set(report.CAPTIONS)
    assert all(callable(f) for f in report.FIGURES.values())
    with pytest.raises(FileNotFoundError):
        report.write_report(tmp_path / "nothing")
    _config(tmp_path, "x")
    with pytest.raises(ValueError, match="formats"):
        report.write_report(tmp_path, formats=("gif",))


def test_pick_fixes_what_does_not_fit_in_the_legend():
    recs = [
        {"coords": {"cell": c, "gain": g, "length": T}}
        for c in ("rnn", "lstm", "gru")
        for g in (0.5, 0.9, 2.0, 4.0)
        for T in (10, 100)
    ]
    lines, fixed = _select.pick(recs)
    # 3 cells × 4 gains > 7 lines: gain fixed nearest 1, length at its longest.
    assert fixed == {"gain": 0.9, "length": 100}
    assert [label for label, _ in lines] == ["RNN", "LSTM", "GRU"]
    lines, fixed = _select.pick([r for r in recs if r["coords"]["cell"] == "rnn"])
    assert [label for label, _ in lines] == [f"g = {g}" for g in (0.5, 0.9, 2, 4)]


def test_report_never_imports_jax(tmp_path):
    measure_dir(tmp_path, figures=["grad_norm_profile"])
    code = (
        "import sys, gradflow.plots, gradflow.report as r; "
        f"r.write_report({str(tmp_path)!r}, formats=('png',)); "
        "assert 'jax' not in sys.modules, 'jax imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert (tmp_path / "figures" / "grad_norm_profile.png").is_file()
