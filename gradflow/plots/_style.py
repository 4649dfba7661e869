"""Paper style, figure sizes and saving (numpy + matplotlib only, never jax)."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from gradflow._checks import check_choice
from gradflow.results import atomic_write_bytes

# Okabe & Ito (2008), ordered so the first lines are the most distinct on white;
# yellow comes last because it is faint on a white page.
PALETTE: tuple[str, ...] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#E69F00",  # orange
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow
)

#: Widths in inches of a single and a double column of a two-column paper.
COLUMN_WIDTHS: dict[str, float] = {"single": 3.5, "double": 7.0}

# Saving keeps text as text: Type 42 (TrueType) in PDF, <text> in SVG.
_SAVE_RC: dict[str, Any] = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    # Fixed ids and no dates: the same figure saves to the same bytes, so
    # remade figures under version control only differ where the data do.
    "svg.hashsalt": "gradflow",
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
}

_PAPER: dict[str, Any] = {
    # STIX is a Times-like face that sits well next to a LaTeX serif body;
    # DejaVu Serif is the fallback matplotlib always ships. No usetex. Concrete
    # names, not the generic "serif": a generic family is resolved when the
    # figure is drawn, which may be after the style's context has closed.
    "font.family": ["STIXGeneral", "DejaVu Serif", "serif"],
    "mathtext.fontset": "stix",
    "font.size": 8.0,
    "axes.titlesize": 8.0,
    "axes.labelsize": 8.0,
    "xtick.labelsize": 7.0,
    "ytick.labelsize": 7.0,
    "legend.fontsize": 6.5,
    "legend.frameon": False,
    "legend.handlelength": 1.6,
    "legend.borderaxespad": 0.3,
    "axes.prop_cycle": matplotlib.cycler(color=list(PALETTE)),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.4,
    "grid.alpha": 1.0,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "xtick.minor.size": 1.5,
    "ytick.minor.size": 1.5,
    "xtick.direction": "out",
    "ytick.direction": "out",
    "image.cmap": "viridis",
    "figure.dpi": 100,
    "figure.constrained_layout.use": True,
    "savefig.dpi": 300,
    **_SAVE_RC,
}

#: Named styles for the ``style=`` argument of every plot function.
STYLES: dict[str, dict[str, Any]] = {
    "paper": _PAPER,
    # Bigger type for slides; same palette, same lack of junk.
    "talk": {
        **_PAPER,
        "font.family": ["DejaVu Sans", "sans-serif"],
        "mathtext.fontset": "dejavusans",
        "font.size": 11.0,
        "axes.titlesize": 11.0,
        "axes.labelsize": 11.0,
        "xtick.labelsize": 9.5,
        "ytick.labelsize": 9.5,
        "legend.fontsize": 9.0,
        "lines.linewidth": 1.8,
    },
}

StyleLike = str | Mapping[str, Any] | None


def style_rc(style: StyleLike = "paper") -> dict[str, Any]:
    """The matplotlib rc settings of a style.

    Args:
        style: a name in ``STYLES``; a mapping of rc settings laid over the paper
            style; or ``None`` for no change (the caller's current rcParams).

    Returns:
        A dict of rcParams.
    """
    if style is None:
        return {}
    if isinstance(style, str):
        check_choice("style", style, tuple(STYLES))
        return dict(STYLES[style])
    if isinstance(style, Mapping):
        unknown = [k for k in style if k not in matplotlib.rcParams]
        if unknown:
            raise ValueError(
                f"style has keys that are not matplotlib rcParams: {unknown}"
            )
        return {**_PAPER, **style}
    raise TypeError(
        "style must be a style name, a mapping of rcParams or None, "
        f"got {type(style).__name__}"
    )


@contextlib.contextmanager
def style(style: StyleLike = "paper") -> Iterator[dict[str, Any]]:
    """Draw in a style within a ``with`` block.

    Example::

        with gf.plots.style("paper"):
            fig, ax = plt.subplots(figsize=gf.plots.figsize("single"))

    Args:
        style: see :func:`style_rc`.

    Yields:
        The rc settings in force.
    """
    rc = style_rc(style)
    with matplotlib.rc_context(rc):
        yield rc


def figsize(column: str = "single", aspect: float = 0.62) -> tuple[float, float]:
    """Width and height in inches: a single (3.5 in) or double (7 in) column.

    Args:
        column: ``"single"`` or ``"double"``.
        aspect: height / width.
    """
    check_choice("column", column, tuple(COLUMN_WIDTHS))
    width = COLUMN_WIDTHS[column]
    return (width, width * aspect)


def new_figure(
    column: str, aspect: float, ncols: int = 1, nrows: int = 1, **kwargs: Any
) -> tuple[Figure, Any]:
    """A figure outside pyplot: no backend, no global registry, freed with its ref."""
    fig = Figure(figsize=figsize(column, aspect), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=True, **kwargs)
    return fig, axes


def finish(fig: Figure) -> Figure:
    # Tick labels are made lazily at draw time; drawing once inside the style
    # context fixes their fonts, so saving outside it keeps the style.
    fig.draw_without_rendering()
    return fig


_MIN_PNG_DPI = 200


def save(
    fig: Figure,
    path_stem: str | os.PathLike,
    formats: Sequence[str] = ("pdf", "svg", "png"),
    *,
    dpi: int = 300,
) -> list[Path]:
    """Save a figure as ``path_stem.<fmt>`` for each format, each file atomically.

    PDF and SVG are vector with text kept as text (Type 42 fonts in PDF, ``<text>``
    in SVG), so a journal can restyle or search it; PNG is raster at ``dpi``.

    Args:
        fig: the figure.
        path_stem: path without the suffix, e.g. ``figures/grad_norm_profile``.
        formats: any of ``"pdf"``, ``"svg"``, ``"png"``.
        dpi: PNG resolution, at least 200.

    Returns:
        The paths written, in the order of ``formats``.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    if isinstance(formats, str):
        formats = (formats,)
    for fmt in formats:
        check_choice("formats", fmt, ("pdf", "svg", "png"))
    if isinstance(dpi, bool) or not isinstance(dpi, int) or dpi < _MIN_PNG_DPI:
        raise ValueError(f"dpi must be an int >= {_MIN_PNG_DPI}, got {dpi!r}")
    stem = Path(path_stem)
    written = []
    with matplotlib.rc_context(_SAVE_RC):
        for fmt in formats:
            buf = io.BytesIO()
            metadata = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(
                fmt, {}
            )
            fig.savefig(buf, format=fmt, dpi=dpi, metadata=metadata)
            path = stem.with_name(f"{stem.name}.{fmt}")
            atomic_write_bytes(path, buf.getvalue())
            written.append(path)
    return written
