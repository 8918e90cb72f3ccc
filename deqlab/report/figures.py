"""Figures shared by several demos; each takes plain data and returns a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def new_axes(title: str, xlabel: str, ylabel: str, *, logy: bool = False, logx: bool = False):
    """One titled, labelled, gridded axes on a new Agg figure (the demos' figure modules share it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    return fig, ax


def convergence_curves(curves: Mapping[str, np.ndarray], *, title: str):
    """``‖z^L − z*‖`` against depth ``L`` (log scale), one line per labelled curve."""
    fig, ax = new_axes(title, "depth L (weight-tied layers)", "‖z^L − z*‖₂ (dimensionless)", logy=True)
    for label, values in curves.items():
        values = np.maximum(np.asarray(values, dtype=float), 1e-300)  # exact zeros cannot be drawn on a log axis
        ax.plot(np.arange(len(values)), values, "--" if "float64" in label else "-", label=label)
    ax.legend()
    return fig
