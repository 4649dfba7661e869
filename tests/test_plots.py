"""gradflow.plots: files, labels, non-finite handling, style. numpy + matplotlib."""

from __future__ import annotations

import math
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

from gradflow import plots

RNG = np.random.default_rng(0)
T = 12


def _profile():
    lag = np.arange(T - 1, -1, -1)
    return {
        "RNN": -0.1 * lag / math.log(10) + RNG.normal(0, 0.01, (3, T)),
        "LSTM": -0.01 * lag / math.log(10) + RNG.normal(0, 0.01, (3, T)),
    }


def _svg_text(svg: str) -> str:
    """The visible text of an SVG, tags and spaces stripped.

    A label with mathtext is written one glyph per ``<text>``; stripping tags
    and whitespace joins the glyphs back into the words.
    """
    return re.sub(r"\s+", "", re.sub(r"<[^>]+>", "", svg))


def _png_dpi(png: bytes) -> float:
    i = png.index(b"pHYs")
    ppm_x = struct.unpack(">I", png[i + 4 : i + 8])[0]
    return ppm_x * 0.0254


g = np.linspace(0.5, 2.0, 4)
L = np.array([10, 20, 40])

# name -> (make figure, xlabel part, ylabel part, plain text in the SVG)
CASES = {
    "grad_norm_profile": (
        lambda: plots.grad_norm_profile(_profile()),
        "T-t",
        r"\partial L/\partial h_t",
        "distance back in time",
    ),
    "param_grad_share": (
        lambda: plots.param_grad_share(np.full((2, T), 1.0 / T)),
        "T-1-t",
        r"W_{hh}",
        "steps back from the end",
    ),
    "grad_norm_heatmap": (
        lambda: plots.grad_norm_heatmap(RNG.normal(size=(2, 5, T))),
        "time step",
        "training iteration",
        "training iteration",
    ),
    "layer_heatmap": (
        lambda: plots.layer_heatmap(RNG.normal(size=(3, T))),
        "time step",
        "layer",
        "layer",
    ),
    "jacobian_singular_values": (
        lambda: plots.jacobian_singular_values(RNG.normal(size=(2, T, 3))),
        "T-t",
        r"\sigma_i",
        "distance back in time",
    ),
    "lyapunov_spectrum": (
        lambda: plots.lyapunov_spectrum(
            {"g=0.5": RNG.normal(-1, 0.1, (2, 4))},
            running=RNG.normal(size=(2, T, 4)),
        ),
        "exponent index",
        "nats / step",
        "nats / step",
    ),
    "lambda_max_vs_gain": (
        lambda: plots.lambda_max_vs_gain(g, {"tanh": np.log(g)[:, None] + 0 * g}),
        "gain",
        r"\lambda_{\max}",
        "edge of chaos",
    ),
    "metric_against": (
        lambda: plots.metric_against(
            L, -0.1 * L, xlabel="sequence length $T$", ylabel="log10 norm"
        ),
        "sequence length",
        "log10 norm",
        "sequence length",
    ),
    "phase_diagram": (
        lambda: plots.phase_diagram(g, L, np.log10(g)[:, None] * L[None, :]),
        "gain",
        "sequence length",
        "sequence length",
    ),
    "pascanu_bound": (
        lambda: plots.pascanu_bound(g, -np.log(0.9 * g), gamma=1.0),
        r"\sigma_{\max}(W_{hh})",
        "decay rate (nats / step)",
        "decay rate (nats / step)",
    ),
    "loss_curves": (
        lambda: plots.loss_curves({"1": 1 + RNG.random((2, 30)), "none": np.ones(30)}),
        "training iteration",
        "loss (nats)",
        "loss (nats)",
    ),
    "clipping_summary": (
        lambda: plots.clipping_summary(
            [0.1, 1.0, None], [0.0, 0.0, 0.5], [0.3, 0.2, 0.4], recommended=1.0
        ),
        "clipping threshold",
        "divergence rate",
        "recommended",
    ),
    "grad_norm_histogram": (
        lambda: plots.grad_norm_histogram(
            np.exp(RNG.normal(size=(2, 50))), thresholds=[1.0, None]
        ),
        "gradient norm",
        "count",
        "threshold 1",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_plot_writes_pdf_svg_png_with_labels(name, tmp_path):
    make, xpart, ypart, svg_part = CASES[name]
    fig = make()
    ax = fig.axes[0]
    assert xpart in ax.get_xlabel()
    assert ypart in " ".join(a.get_ylabel() for a in fig.axes)
    paths = plots.save(fig, tmp_path / name, dpi=200)
    assert [p.suffix for p in paths] == [".pdf", ".svg", ".png"]
    pdf, svg, png = (p.read_bytes() for p in paths)
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    # Text as text: TrueType (Type 42) fonts, no Type 3 glyph procedures.
    assert b"/Type3" not in pdf and b"FontFile2" in pdf
    assert png.startswith(b"\x89PNG") and _png_dpi(png) >= 199.5
    text = _svg_text(svg.decode())
    assert svg_part.replace(" ", "") in text
    assert "<text" in svg.decode()
    assert not list(tmp_path.glob(".*tmp"))  # atomic: no temporaries left


def test_profile_fits_the_decay_rate_and_skips_nonfinite():
    rate = 0.07
    lag = np.arange(T - 1, -1, -1)
    vals = np.tile(-rate * lag / math.log(10), (3, 1))
    assert plots.fit_decay(lag, vals[0]) == pytest.approx(rate, rel=1e-9)
    vals[0, 2] = np.inf  # one seed non-finite at t = 2: median of the others
    vals[1, 5] = np.nan
    vals[:, 7] = -np.inf  # every seed: nothing drawn at t = 7
    fig = plots.grad_norm_profile({"rnn": vals})
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "rnn: 0.07"
    assert "5 non-finite values not drawn" in labels
    line = ax.get_lines()[0]
    x, y = line.get_xdata(), line.get_ydata()
    assert not np.isinf(y).any()
    # t = 2 is lag T-3; the median of the two finite seeds is the exact value.
    assert y[x == T - 3][0] == pytest.approx(-rate * (T - 3) / math.log(10))
    assert np.isnan(y[x == T - 8][0])  # all-bad step left as a gap
    assert all(np.isfinite(ax.get_ylim()))
    markers = {ln.get_marker() for ln in ax.get_lines()[1:]}
    assert {"^", "v", "x"} <= markers


def test_profile_takes_plain_time_major_norms():
    # gf.hidden_grad_norms gives plain norms (T, batch): time_axis=0, log10=False.
    lag = np.arange(T - 1, -1, -1)
    norms = np.exp(-0.2 * lag)[:, None] * np.ones((1, 3))
    norms[4, 1] = 0.0  # underflowed to zero: −inf in log10, flagged
    fig = plots.grad_norm_profile({"a": norms}, time_axis=0, log10=False)
    ax = fig.axes[0]
    y = ax.get_lines()[0].get_ydata()
    np.testing.assert_allclose(y, -0.2 * np.arange(T) / math.log(10), atol=1e-12)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["a: 0.2", "1 non-finite value not drawn"]


def test_nonfinite_losses_heatmap_cells_and_histogram_are_flagged():
    loss = np.ones((3, 20))
    loss[0, 10:] = np.nan  # a diverged seed: 10 values, one mark
    fig = plots.loss_curves({"none": loss})
    ax = fig.axes[0]
    assert "10 non-finite values not drawn" in [
        t.get_text() for t in ax.get_legend().get_texts()
    ]
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [10.0]
    z = np.zeros((4, 5))
    z[1, 2], z[3, 0] = np.inf, np.nan
    fig = plots.grad_norm_heatmap(z)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "hatched: non-finite, not coloured (1 NaN, 1 +∞)" in texts
    mesh = fig.axes[0].collections[0]
    assert np.ma.getmaskarray(mesh.get_array()).sum() == 2
    fig = plots.grad_norm_histogram(np.array([1.0, 2.0, np.inf, np.nan, 0.0]))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["2 non-finite and 1 zero values not drawn"]
    assert sum(p.get_height() for p in fig.axes[0].patches) == 2


def test_param_grad_share_is_cumulative_from_the_end():
    share = np.zeros((1, 10))
    share[0, -3:] = [0.2, 0.3, 0.5]  # t = 9 (k = 0) holds half the gradient
    uniform = np.full((3, 10), 0.1)
    fig = plots.param_grad_share({"last": share, "flat": uniform}, level=0.9)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata()[:4], [0.5, 0.8, 1, 1])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["last: k = 2", "flat: k = 8"]  # (k + 1) / 10 >= 0.9
    with pytest.raises(ValueError, match="level"):
        plots.param_grad_share(share, level=1.5)


def test_lambda_max_marks_the_edge_of_chaos_crossing():
    gains = np.array([0.5, 1.0, 2.0])
    lam = np.array([-1.0, -0.5, 0.5])  # crosses 0 half way from 1 to 2
    fig = plots.lambda_max_vs_gain(gains, {"rnn": lam})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].endswith("1.5") and "edge of chaos" in labels[1]


def test_style_sizes_fonts_and_bad_arguments(tmp_path):
    assert plots.figsize("single")[0] == 3.5 and plots.figsize("double")[0] == 7.0
    fig = plots.grad_norm_profile(_profile(), column="double")
    assert fig.get_figwidth() == 7.0
    ax = fig.axes[0]
    assert not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible()
    assert ax.xaxis.label.get_fontname() == "STIXGeneral"
    rc = plots.style_rc("paper")
    assert rc["svg.fonttype"] == "none" and rc["pdf.fonttype"] == 42
    assert not rc.get("text.usetex", False)
    with plots.style({"font.size": 13.0}) as active:
        assert active["font.size"] == 13.0
    with pytest.raises(ValueError, match="column"):
        plots.figsize("triple")
    with pytest.raises(ValueError, match="style"):
        plots.grad_norm_profile(_profile(), style="fancy")
    with pytest.raises(ValueError, match="not matplotlib rcParams"):
        plots.style_rc({"no.such": 1})
    with pytest.raises(ValueError, match="dpi"):
        plots.save(fig, tmp_path / "f", ("png",), dpi=100)
    with pytest.raises(ValueError, match="formats"):
        plots.save(fig, tmp_path / "f", ("jpg",))
    with pytest.raises(ValueError, match="time_axis"):
        plots.grad_norm_profile(np.zeros((2, 3)), time_axis=2)
    with pytest.raises(ValueError, match="log10_norms"):
        plots.grad_norm_profile(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="log10_norm_step0"):
        plots.phase_diagram([1.0, 2.0], [10, 20], np.zeros((3, 2)))


def test_saving_is_reproducible(tmp_path):
    # No dates, fixed SVG ids: a remade figure has the same bytes.
    first = [
        p.read_bytes()
        for p in plots.save(
            plots.layer_heatmap(np.eye(3)), tmp_path / "a", ("pdf", "svg")
        )
    ]
    again = [
        p.read_bytes()
        for p in plots.save(
            plots.layer_heatmap(np.eye(3)), tmp_path / "b", ("pdf", "svg")
        )
    ]
    assert first == again


def test_plots_never_import_jax():
    code = (
        "import sys, numpy as np, gradflow.plots as p; "
        "p.grad_norm_profile(np.zeros((2, 5))); "
        "assert 'jax' not in sys.modules, 'jax imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_lyapunov_unresolved_exponents_drawn_as_bounds():
    ex = {"f32": np.array([[-1.0, -20.0, -80.0], [-1.1, -21.0, -85.0]])}
    resolved = {"f32": np.array([[True, True, False], [True, False, False]])}
    fig = plots.lyapunov_spectrum(ex, resolved=resolved)
    ax = fig.axes[0]
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "v"]
    assert len(marks) == 1
    np.testing.assert_array_equal(marks[0].get_xdata(), [2.0, 3.0])
    np.testing.assert_allclose(marks[0].get_ydata(), [-20.5, -82.5])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "upper bound (not resolved)" in labels
    with pytest.raises(ValueError, match="must have the exponents' shape"):
        plots.lyapunov_spectrum(ex, resolved={"f32": np.ones((2, 2), bool)})
