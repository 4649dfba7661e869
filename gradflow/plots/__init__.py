"""Paper figures from gradflow measurements: numpy + matplotlib only, never jax.

Every plot function takes numpy arrays (not directories) and returns a
``matplotlib.figure.Figure`` drawn in a paper style (``style="paper"``: serif
type that matches a LaTeX body, Okabe–Ito colours, no top/right spines, a faint
grid, 3.5 in single-column or 7 in double-column width). Values that are NaN or
±inf are never drawn as numbers: they are marked on the axes edge (or hatched in
heat maps) and counted in the legend. ``save`` writes PDF/SVG (text as text) and
PNG (300 dpi) atomically.
"""

from gradflow.plots._audit import clip_replay, grad_norm_trace
from gradflow.plots._clipping import (
    clipping_summary,
    grad_norm_histogram,
    loss_curves,
)
from gradflow.plots._common import finite_median, fit_decay, num
from gradflow.plots._dynamics import (
    RATE,
    jacobian_singular_values,
    lambda_max_vs_gain,
    lyapunov_spectrum,
    metric_against,
    pascanu_bound,
    phase_diagram,
)
from gradflow.plots._fixed import fixed_point_eigenvalues, trajectories_pca
from gradflow.plots._profiles import (
    grad_norm_heatmap,
    grad_norm_profile,
    layer_heatmap,
    param_grad_share,
)
from gradflow.plots._sensitivity import sensitivity_vs_memory
from gradflow.plots._study import success_heatmap, success_vs
from gradflow.plots._style import (
    COLUMN_WIDTHS,
    PALETTE,
    STYLES,
    figsize,
    save,
    style,
    style_rc,
)

__all__ = [
    "COLUMN_WIDTHS",
    "PALETTE",
    "RATE",
    "STYLES",
    "clip_replay",
    "clipping_summary",
    "figsize",
    "finite_median",
    "fit_decay",
    "fixed_point_eigenvalues",
    "grad_norm_heatmap",
    "grad_norm_histogram",
    "grad_norm_profile",
    "grad_norm_trace",
    "jacobian_singular_values",
    "lambda_max_vs_gain",
    "layer_heatmap",
    "loss_curves",
    "lyapunov_spectrum",
    "metric_against",
    "num",
    "param_grad_share",
    "pascanu_bound",
    "phase_diagram",
    "save",
    "sensitivity_vs_memory",
    "style",
    "style_rc",
    "success_heatmap",
    "success_vs",
    "trajectories_pca",
]
