"""One spec per measurement and per experiment kind: what it takes, writes and draws.

A :class:`Measurement` says everything the experiment layer needs about one
measurement a ``[measure]`` section may switch on: its options and defaults,
the rules a config must meet to use it (the losses it accepts, the shortest
sequence, whether it needs a ``W_hh``), the arrays it writes with their named
axes (``axes.json``), its metrics (with the report's column header), how its
seeds batch on CPU, and its figures with their captions. The config validator,
the sweep, the report and ``docs/results-format.md`` all read this table;
nothing else lists measurement names.

Data only: this module imports neither jax nor matplotlib (checking a config
stays a jax-free, matplotlib-free process) and names no module above it. The
function behind each measurement is in ``gradflow.sweep`` (``MEASUREMENTS``,
name -> function) and the drawing function behind each figure in
``gradflow.report`` (``FIGURES``); tests/test_names.py checks that both cover
every spec.

Adding a measurement is one entry here, its function and its figure; see
``docs/extending.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from gradflow._names import register

#: The losses of a measure sweep's gradient measurements, ``loss(hs)`` of the
#: states ``hs (T, N)`` and a unit readout ``u``: ``u · h_T``, ``|h_T|² / 2``,
#: ``Σ_t u · h_t``.
LOSSES = ("last_linear", "last_square", "sum_linear")


class Figure(NamedTuple):
    """A figure the report can draw (its drawing function: ``gradflow.report``).

    Attributes:
        caption: one sentence for the report: what to look at.
    """

    caption: str


class Measurement(NamedTuple):
    """One measurement of a ``measure`` sweep.

    Attributes:
        defaults: the options a config may set, with their defaults (a value's
            type is the type the option must have).
        arrays: array name -> its named axes, seed first (``axes.json``).
        metrics: metric name -> the report's column header (units in it).
        batching: how seeds batch on CPU with ``batching="auto"``: ``"vmap"``
            or ``"map"`` (``lax.map``), whichever benchmarks/bench_sweep.py
            found faster.
        figures: figure name -> :class:`Figure`.
        always: run at every point without being switched on (no options).
        losses: the names its ``loss`` option accepts (empty: it has none).
        min_length: the shortest ``[grid] length`` it is defined for.
        needs_w_hh: it reads ``params["W_hh"]``, so a user's cell must have one.
    """

    defaults: Mapping[str, Any] = {}
    arrays: Mapping[str, tuple[str, ...]] = {}
    metrics: Mapping[str, str] = {}
    batching: str = "vmap"
    figures: Mapping[str, Figure] = {}
    always: bool = False
    losses: tuple[str, ...] = ()
    min_length: int = 1
    needs_w_hh: bool = False


class Kind(NamedTuple):
    """What one experiment kind (``[experiment] kind``) writes and draws.

    Its functions (validate, quick, grid, run a point, summarise) are the
    ``gradflow.sweep.ExperimentKind`` of the same name.

    Attributes:
        metrics: metric name -> the report's column header (the measurements'
            metrics come from :data:`MEASUREMENTS`).
        figures: figure name -> :class:`Figure`.
    """

    metrics: Mapping[str, str] = {}
    figures: Mapping[str, Figure] = {}


#: The measurements a ``[measure]`` section may switch on, in the order they
#: run and their figures are listed; ``bound`` runs at every point.
MEASUREMENTS: dict[str, Measurement] = {
    "grad_norms": Measurement(
        # of: "output" (‖∂L/∂h_t‖) or "state" (‖∂L/∂s_t‖ of the whole carry,
        # for cells whose output is a readout: the LRU, the selective SSM)
        defaults={"loss": "last_linear", "of": "output"},
        losses=LOSSES,
        min_length=2,  # its decay fit needs two steps
        arrays={"log10_grad_norms": ("seed", "step")},
        metrics={
            "decay_rate": "decay rate (nats / step)",
            "half_life": "half-life (steps)",
            "log10_grad_norm_step0": "log10 ‖∂L/∂h_0‖",
            "memory_horizon": "memory horizon (steps)",
        },
        batching="vmap",
        figures={
            "grad_norm_profile": Figure(
                "Gradient norm ‖∂L/∂h_t‖ against distance back in time (median "
                "over seeds, 10–90% band): a straight falling line is exponential "
                "vanishing at the decay rate in the legend (fitted to the median), "
                "a rising one explodes, a flat one keeps memory.",
            ),
            "decay_rate_vs_gain": Figure(
                "Fitted gradient decay rate against gain: above the dashed line "
                "gradients vanish, below it they explode.",
            ),
            "grad_norm_vs_length": Figure(
                "log10 of the gradient reaching the first step against sequence "
                "length: a straight line means exponential decay (or growth) in T.",
            ),
            "phase_diagram": Figure(
                "log10 ‖∂L/∂h_0‖ over gain and sequence length: blue is "
                "vanishing, red exploding, and the dashed contour (norm 1) is the "
                "trainable boundary.",
            ),
            "pascanu_bound": Figure(
                "Measured decay rate against σ_max(W_hh) with the bound "
                "−ln(γσ_max) of Pascanu et al. (2013): left of σ_max = 1/γ "
                "vanishing is guaranteed, and every point should lie on or above "
                "the bound curve.",
            ),
        },
    ),
    "layer_grad_norms": Measurement(
        defaults={"loss": "last_linear"},
        losses=LOSSES,
        arrays={"log10_layer_grad_norms": ("seed", "layer", "step")},
        metrics={"log10_grad_norm_step0_bottom": "log10 ‖∂L/∂h_0‖ (bottom layer)"},
        batching="vmap",
        figures={
            "layer_heatmap": Figure(
                "‖∂L/∂h_{l,t}‖ over time step and layer of the deepest stack "
                "(every layer's own h, all its paths to the loss): compare how "
                "fast the colour fades along time with how fast it fades down "
                "the layers.",
            ),
        },
    ),
    "jacobian_norms": Measurement(
        arrays={"jacobian_log10_norms": ("seed", "step")},
        # The exact SVD fallback, batched, runs for every seed at a step where
        # any one seed needs it (1.6x slower than lax.map for an LSTM, N = 64).
        batching="map",
        figures={
            "jacobian_norm_profile": Figure(
                "Spectral norm of the state Jacobian ∂s_T/∂s_t against lag: its "
                "slope is how fast any signal, not just this loss's gradient, is "
                "forgotten per step.",
            ),
        },
    ),
    "jacobian_singular_values": Measurement(
        defaults={"k": 4},
        arrays={"jacobian_log10_singular_values": ("seed", "lag", "k")},
        batching="map",
        figures={
            "jacobian_singular_values": Figure(
                "Top singular values of ∂s_T/∂s_t against lag: the gap between "
                "σ_1 and the rest shows how few directions still carry a gradient "
                "far back.",
            ),
        },
    ),
    "lyapunov": Measurement(
        defaults={"k": 8, "warmup": 50},
        arrays={
            "lyapunov_exponents": ("seed", "k"),
            "lyapunov_running": ("seed", "step", "k"),
            "lyapunov_resolved": ("seed", "k"),
        },
        metrics={
            "lambda_max": "λ_max (nats / step)",
            "kaplan_yorke": "Kaplan–Yorke dimension D_KY",
            "entropy_rate": "entropy rate (nats / step)",
        },
        batching="vmap",
        figures={
            "lyapunov_spectrum": Figure(
                "Lyapunov exponents (left, nats per step) and their running "
                "estimates (right): λ_max above 0 means chaos and exploding "
                "gradients, below 0 vanishing; flat running estimates mean the "
                "spectrum has converged.",
            ),
            "lambda_max_vs_gain": Figure(
                "Largest Lyapunov exponent against gain: the edge of chaos is "
                "where the line crosses the dashed λ_max = 0 line (g* in the "
                "legend).",
            ),
        },
    ),
    "fixed_points": Measurement(
        defaults={"starts": 32, "max_steps": 50, "unique_tol": 1e-3},
        arrays={
            "fixed_point_states": ("seed", "start", "unit"),
            "fixed_point_speeds": ("seed", "start"),
            "fixed_point_eigenvalues": ("seed", "start", "eig"),
            "fixed_point_distinct": ("seed", "start"),
            "fixed_point_trajectory": ("seed", "step", "unit"),
            "whh_eigenvalues": ("seed", "eig"),
        },
        metrics={
            "fixed_points": "fixed points",
            "stable_fixed_points": "stable fixed points",
            "fixed_point_decay_rate": "−ln|λ₁| at the fixed point (nats / step)",
            "fixed_point_attracts": "that point attracts",
        },
        # Not timed against lax.map: vmap puts every seed's starts in one
        # while loop, which stops when the slowest start of any seed does.
        batching="vmap",
        figures={
            "fixed_point_eigenvalues": Figure(
                "Eigenvalues of the state Jacobian at each fixed point of the "
                "input-free map (first seed), with the unit circle: a point "
                "attracts when all of its eigenvalues lie inside, and the "
                "largest modulus |λ₁| sets how fast the state forgets, "
                "−ln|λ₁| nats per step. Grey dots: eigenvalues of W_hh.",
            ),
            "forgetting_vs_gain": Figure(
                "Predicted against measured forgetting over gain: −ln|λ₁| at the "
                "fixed point, the fitted decay rate of ‖∂L/∂h_t‖ and −λ_max. "
                "Below the edge of chaos the state settles on an attracting "
                "point and the three agree; above it the point no longer "
                "attracts, the dynamics leave it, and they part.",
            ),
            "fixed_point_pca": Figure(
                "Fixed points in the plane of the two leading principal "
                "components of the visited states (first seed): filled dots "
                "attract, open circles repel.",
            ),
        },
    ),
    "param_sensitivity": Measurement(
        defaults={"wrt": "W_hh", "probes": 32},
        arrays={"param_sensitivity": ("seed", "step")},
        metrics={
            "log10_param_sensitivity": "log10 ‖∂h_t/∂θ‖² per scalar",
            "log10_param_sensitivity_normalised": (
                "log10 ‖∂h_t/∂θ‖² per scalar, inputs × sqrt(1 − ‖W_hh‖²)"
            ),
            "input_power": "mean squared input projection",
        },
        batching="vmap",
        figures={
            "sensitivity_vs_memory": Figure(
                "The curse of memory: ‖∂h_t/∂θ‖² per parameter scalar and unit "
                "input power (the second half of each sequence, median over "
                "seeds) against the memory 1/(1 − g); open markers with inputs "
                "scaled by sqrt(1 − ‖W_hh‖²). Lines: the closed forms "
                "(1+g²)/(1−g²)³ and (1+g²)/(1−g²)² of the linear recurrence "
                "W_hh = gI (drawn for a linear RNN at identity init).",
            ),
        },
    ),
    "param_grad_by_step": Measurement(
        arrays={"param_grad_share": ("seed", "step")},
        needs_w_hh=True,
        batching="vmap",
        figures={
            "param_grad_share": Figure(
                "Share of the recurrent-weight gradient ‖∂L/∂W_hh‖ contributed by "
                "the last k steps: a curve that reaches the dotted line within a "
                "few steps means the weight learns from short-term terms only.",
            ),
        },
    ),
    "bound": Measurement(
        metrics={"sigma_max_whh": "σ_max(W_hh)", "pascanu_bound": "1/γ"},
        batching="vmap",
        always=True,
    ),
}

_CLIPPING_FIGURES = {
    "loss_curves": Figure(
        "Training loss per clipping threshold (median over seeds, 10–90% band): "
        "marks on the edge show where runs diverged to NaN/inf.",
    ),
    "clipping_summary": Figure(
        "Share of seeds that diverged (left) and final loss (right) per clipping "
        "threshold: the recommended threshold is the shaded column.",
    ),
    "grad_norm_heatmap": Figure(
        "‖∂L/∂h_t‖ over time step (x) and training iteration (y): watch whether "
        "the gradient reaching early steps grows or fades as the network learns.",
    ),
    "grad_norm_histogram": Figure(
        "Global gradient norms before clipping with the thresholds drawn: a "
        "threshold clips the share of the histogram to its right.",
    ),
    "success_heatmap": Figure(
        "Success rate (share of seeds whose accuracy on fresh sequences reached "
        "the criterion after training) over learning rate and threshold, one "
        "panel per clipping method with no clipping as the first column: the "
        "outlined cells (success rate at least 0.5) are where training works.",
    ),
    "success_vs_length": Figure(
        "Success rate against sequence length T with and without clipping "
        "(error bars: Wilson 95% intervals over seeds).",
    ),
}

#: Experiment kinds by the name ``[experiment] kind`` uses.
KINDS: dict[str, Kind] = {
    "measure": Kind(),
    "clipping": Kind(
        metrics={
            "diverged": "divergence rate",
            "final_loss": "final loss (nats)",
            "final_accuracy": "final accuracy",
            "clip_fraction": "clip fraction",
            "success": "success rate",
            "steps_to_success": "steps to success",
        },
        figures=_CLIPPING_FIGURES,
    ),
}

BATCHINGS = ("vmap", "map")


def switchable() -> dict[str, Measurement]:
    """The measurements a ``[measure]`` section may name (all but ``always``)."""
    return {k: v for k, v in MEASUREMENTS.items() if not v.always}


def figures() -> dict[str, Figure]:
    """Every figure the report can draw, by name, in the order listed here."""
    out: dict[str, Figure] = {}
    for spec in (*MEASUREMENTS.values(), *KINDS.values()):
        out.update(spec.figures)
    return out


def metric_headers() -> dict[str, str]:
    """Every metric any measurement or kind writes -> its report column header."""
    out: dict[str, str] = {}
    for spec in (*MEASUREMENTS.values(), *KINDS.values()):
        out.update(spec.metrics)
    return out


def array_axes(measure: Mapping[str, Any]) -> dict[str, list[str]]:
    """``axes.json`` content for a resolved ``[measure]`` section."""
    out: dict[str, list[str]] = {}
    for name, spec in MEASUREMENTS.items():
        if name in measure or spec.always:
            out.update({k: list(v) for k, v in spec.arrays.items()})
    return out


def register_measurement(name: str, spec: Measurement) -> None:
    """Add a measurement (for one defined outside gradflow); see docs/extending.md.

    Raises:
        ValueError: ``name`` is taken, not an identifier, its batching is not
            ``"vmap"``/``"map"``, its ``loss`` default is not one of its
            ``losses``, or one of its figure names is taken.
        TypeError: ``spec`` is not a :class:`Measurement`.
    """
    if isinstance(spec, Measurement):
        loss = spec.defaults.get("loss")
        if loss is not None and loss not in spec.losses:
            raise ValueError(
                f"measurement {name!r}: its loss default {loss!r} must be one of "
                f"its losses {spec.losses}"
            )
        if spec.batching not in BATCHINGS:
            raise ValueError(
                f"measurement {name!r}: batching must be one of {BATCHINGS}, "
                f"got {spec.batching!r}"
            )
        taken = set(figures()) & set(spec.figures)
        if taken:
            raise ValueError(
                f"measurement {name!r}: figure {sorted(taken)[0]!r} is already "
                "registered"
            )
    register("measurement", MEASUREMENTS, name, spec, Measurement)
