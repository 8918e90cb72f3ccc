"""Figures of ``deqlab nethessian``: pure functions of plain data returning matplotlib Figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from deqlab.report.figures import _new


def check_errors(frame: pd.DataFrame, *, tolerance: float, title: str):
    """Bar chart (log scale) of the max relative error of each quantity/route, with the tolerance line."""
    fig, ax = _new(title, "quantity (route)", "max relative error vs torch.func (dimensionless)", logy=True)
    labels = [f"{q}\n({r})" for q, r in zip(frame["quantity"], frame["route"])]
    errs = np.maximum(frame["max rel error"].to_numpy(dtype=float), 1e-18)  # exact zeros on a log axis
    ax.bar(range(len(errs)), errs, color="tab:blue")
    ax.axhline(tolerance, color="tab:red", ls="--", label=f"tolerance {tolerance:g}")
    ax.set_xticks(range(len(errs)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(1e-18, max(1.0, 10 * tolerance))
    ax.legend()
    fig.tight_layout()
    return fig
