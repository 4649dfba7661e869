"""Fixed points: their eigenvalues on the complex plane, trajectories in PCA space."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gradflow.plots import _common as c
from gradflow.plots._style import PALETTE, StyleLike, figsize, finish
from gradflow.plots._style import style as use_style

STABLE_COLOR = PALETTE[0]
UNSTABLE_COLOR = PALETTE[1]
REFERENCE_COLOR = "#999999"


def _complex(name: str, value: Any, ndims: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.complex128)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"{name} must be a complex or real array, got {type(value).__name__}"
        ) from e
    if arr.ndim not in ndims:
        raise ValueError(
            f"{name} must have {' or '.join(str(n) for n in ndims)} dimensions, "
            f"got shape {arr.shape}"
        )
    return arr


def _stable_of(name: str, stable: Any, eig: np.ndarray) -> np.ndarray:
    finite = np.isfinite(eig.real) & np.isfinite(eig.imag)
    modulus = np.where(finite, np.abs(eig), np.nan)
    with np.errstate(invalid="ignore"):
        derived = np.all(finite, axis=-1) & (np.max(modulus, axis=-1, initial=0) < 1)
    if stable is None:
        return derived
    arr = np.asarray(stable)
    if arr.shape != (eig.shape[0],) or arr.dtype != bool:
        raise ValueError(
            f"{name} must be a bool array of shape ({eig.shape[0]},) (one per fixed "
            f"point), got {arr.dtype} {arr.shape}"
        )
    return arr


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def fixed_point_eigenvalues(
    eigenvalues: Mapping[str, Any] | Any,
    *,
    stable: Mapping[str, Any] | Any | None = None,
    reference: Mapping[str, Any] | Any | None = None,
    column: str = "double",
    style: StyleLike = "paper",
) -> Figure:
    """Eigenvalues of ``∂F/∂s`` at each fixed point on the complex plane.

    One panel per label, with the unit circle: a fixed point attracts when all
    its eigenvalues lie inside. Eigenvalues of stable points are blue dots,
    of unstable points vermillion crosses; ``reference`` (e.g. the
    eigenvalues of ``W_hh``) is drawn as small grey dots behind them.
    Non-finite eigenvalues are not drawn and are counted in the legend.

    Args:
        eigenvalues: ``label -> (M, S)`` complex (``M`` fixed points; ``M`` may
            be 0), or one such array.
        stable: ``label -> (M,)`` bool, or one array; default: all ``|λ| < 1``.
        reference: ``label -> (R,)`` complex, or one array; optional.
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    data = {
        k: _complex(f"eigenvalues[{k!r}]", v, (2,))
        for k, v in c.labelled("eigenvalues", eigenvalues).items()
    }
    stab = c.labelled("stable", stable) if stable is not None else {}
    refs = c.labelled("reference", reference) if reference is not None else {}
    for what, extra in (("stable", stab), ("reference", refs)):
        unknown = set(extra) - set(data)
        if unknown:
            raise ValueError(
                f"{what} has labels {sorted(unknown)} that eigenvalues lacks "
                f"({sorted(data)})"
            )
    rows, cols = _grid(len(data))
    width, _ = figsize(column)
    with use_style(style):
        fig = Figure(figsize=(width, width / cols * rows), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
        for ax in axes[len(data) :]:
            ax.set_axis_off()
        theta = np.linspace(0.0, 2 * np.pi, 256)
        for ax, (label, eig) in zip(axes, data.items(), strict=False):
            is_stable = _stable_of(f"stable[{label!r}]", stab.get(label), eig)
            ax.plot(np.cos(theta), np.sin(theta), color="black", lw=0.6, ls="--")
            bad = 0
            radius = 1.0
            if label in refs:
                ref = _complex(f"reference[{label!r}]", refs[label], (1,))
                ok = np.isfinite(ref.real) & np.isfinite(ref.imag)
                bad += int(np.sum(~ok))
                ax.scatter(ref.real[ok], ref.imag[ok], s=4, color=REFERENCE_COLOR, lw=0)
                if ok.any():
                    radius = max(radius, float(np.max(np.abs(ref[ok]))))
            for flag, color, marker in (
                (True, STABLE_COLOR, "o"),
                (False, UNSTABLE_COLOR, "x"),
            ):
                vals = eig[is_stable == flag].ravel()
                ok = np.isfinite(vals.real) & np.isfinite(vals.imag)
                bad += int(np.sum(~ok))
                kw = {"lw": 0} if marker == "o" else {"linewidths": 0.7}
                ax.scatter(
                    vals.real[ok], vals.imag[ok], s=9, color=color, marker=marker, **kw
                )
                if ok.any():
                    radius = max(radius, float(np.max(np.abs(vals[ok]))))
            lim = 1.08 * radius
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_xlabel(r"Re $\lambda$")
            ax.set_ylabel(r"Im $\lambda$")
            n_stable = int(np.sum(is_stable))
            counts = f"{n_stable} stable, {eig.shape[0] - n_stable} unstable"
            ax.set_title(f"{label}: {counts}" if label else counts, fontsize="small")
            handles = [
                Line2D([], [], color=STABLE_COLOR, marker="o", ls="", label="stable"),
                Line2D(
                    [], [], color=UNSTABLE_COLOR, marker="x", ls="", label="unstable"
                ),
            ]
            if label in refs:
                handles.append(
                    Line2D(
                        [],
                        [],
                        color=REFERENCE_COLOR,
                        marker="o",
                        ms=2,
                        ls="",
                        label=r"eig $W_{hh}$",
                    )
                )
            if bad:
                handles.append(c.nonfinite_handle(bad))
            ax.legend(handles=handles, loc="upper right", fontsize="x-small")
        return finish(fig)


def trajectories_pca(
    trajectories: Any,
    *,
    fixed_points: Any | None = None,
    stable: Any | None = None,
    dims: int = 2,
    column: str = "single",
    style: StyleLike = "paper",
) -> Figure:
    """Trajectories projected on their top principal components, fixed points marked.

    The principal axes are those of the trajectories' states (centred); the
    fixed points are projected on the same axes: stable ones as filled blue
    dots, unstable ones as open vermillion circles. The axis labels give the
    share of the trajectories' variance each component explains. Time steps
    with a non-finite state are left out (and counted in the legend).

    Args:
        trajectories: ``(T, S)`` or ``(n, T, S)`` states (e.g. flattened carries).
        fixed_points: ``(M, S)`` states, optional.
        stable: ``(M,)`` bool; required with ``fixed_points``.
        dims: 2 or 3 components.
        column: ``"single"`` or ``"double"``.
        style: a style name, rc mapping, or ``None``.

    Returns:
        The figure.
    """
    arr = c.as_array("trajectories", trajectories, (2, 3))
    runs = arr[None] if arr.ndim == 2 else arr
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims!r}")
    size = runs.shape[-1]
    if size < dims:
        raise ValueError(
            f"trajectories must have at least dims={dims} state units, got {size}"
        )
    points = None
    if fixed_points is not None:
        points = np.asarray(fixed_points, np.float64)
        if points.ndim != 2 or points.shape[1] != size:
            raise ValueError(
                f"fixed_points must have shape (M, {size}), got {points.shape}"
            )
        if stable is None:
            raise ValueError("stable must be given with fixed_points ((M,) bool)")
        stable = np.asarray(stable)
        if stable.shape != (points.shape[0],) or stable.dtype != bool:
            raise ValueError(
                f"stable must be a bool array of shape ({points.shape[0]},), got "
                f"{stable.dtype} {stable.shape}"
            )
    flat = runs.reshape(-1, size)
    ok = np.all(np.isfinite(flat), axis=-1)
    if not ok.any():
        raise ValueError("trajectories has no finite state to fit the PCA on")
    mean = flat[ok].mean(axis=0)
    _, sing, vt = np.linalg.svd(flat[ok] - mean, full_matrices=False)
    axes_ = vt[:dims]
    var = sing**2
    share = var[:dims] / var.sum() if var.sum() > 0 else np.zeros(dims)
    with use_style(style):
        fig = Figure(figsize=figsize(column, 0.8 if dims == 2 else 0.9))
        ax = fig.add_subplot(projection="3d") if dims == 3 else fig.add_subplot()
        bad = 0
        # Not the stability colours: trajectories cycle through the rest.
        others = [p for p in PALETTE if p not in (STABLE_COLOR, UNSTABLE_COLOR)]
        for i, run in enumerate(runs):
            color = others[i % len(others)]
            good = np.all(np.isfinite(run), axis=-1)
            bad += int(np.sum(~good))
            proj = np.where(good[:, None], (run - mean) @ axes_.T, np.nan)
            ax.plot(*proj.T, color=color, lw=0.7, alpha=0.8)
        handles = []
        if points is not None:
            proj = (points - mean) @ axes_.T
            finite = np.all(np.isfinite(proj), axis=-1)
            bad += int(np.sum(~finite))
            # 3-D scatter fades far points unless told not to.
            extra = {"depthshade": False} if dims == 3 else {}
            for flag, face, label in (
                (True, STABLE_COLOR, "stable"),
                (False, "none", "unstable"),
            ):
                sel = finite & (stable == flag)
                edge = STABLE_COLOR if flag else UNSTABLE_COLOR
                ax.scatter(
                    *proj[sel].T,
                    s=28,
                    facecolors=face,
                    edgecolors=edge,
                    lw=1.0,
                    zorder=5,
                    **extra,
                )
                handles.append(
                    Line2D(
                        [],
                        [],
                        marker="o",
                        ls="",
                        markerfacecolor=face,
                        markeredgecolor=edge,
                        label=f"{label} ({int(sel.sum())})",
                    )
                )
        labels = [f"PC{i + 1} ({100 * share[i]:.0f}%)" for i in range(dims)]
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        if dims == 3:
            ax.set_zlabel(labels[2])
        if bad:
            handles.append(c.nonfinite_handle(bad))
        if handles:
            ax.legend(handles=handles, loc="best", fontsize="x-small")
        if dims == 2:
            fig.set_layout_engine("constrained")
        return finish(fig)
