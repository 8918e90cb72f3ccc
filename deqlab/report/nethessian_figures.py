"""Figures of ``deqlab nethessian``: pure functions of plain data returning matplotlib Figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from deqlab.report.figures import new_axes


def check_errors(frame: pd.DataFrame, *, tolerance: float, title: str):
    """Bar chart (log scale) of the max relative error of each quantity/route, with the tolerance line."""
    fig, ax = new_axes(title, "quantity (route)", "max relative error vs torch.func (dimensionless)", logy=True)
    labels = [f"{q}\n({r})" for q, r in zip(frame["quantity"], frame["route"])]
    errs = np.maximum(frame["max rel error"].to_numpy(dtype=float), 1e-18)  # exact zeros on a log axis
    ax.bar(range(len(errs)), errs, color="tab:blue")
    for i, e in enumerate(frame["max rel error"].to_numpy(dtype=float)):
        if e == 0:
            ax.text(i, 3e-18, "0 (exact)", ha="center", va="bottom", fontsize=8)
    ax.axhline(tolerance, color="tab:red", ls="--", label=f"tolerance {tolerance:g}")
    ax.set_xticks(range(len(errs)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(1e-18, max(1.0, 10 * tolerance))
    ax.legend()
    fig.tight_layout()
    return fig


ROUTE_LABELS = {"forward": "forward recursion", "double_backward": "autograd double backward"}


def pinn_summary(X, Y, u, u_exact, losses: dict, *, route: str, title: str):
    """Three panels: learned solution, absolute error against the exact solution, loss curves (log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    fig.suptitle(title)
    im = axes[0].pcolormesh(X, Y, u, shading="auto", cmap="viridis")
    axes[0].set_title(f"u_θ(x, y), Laplacian by {ROUTE_LABELS.get(route, route)}")
    fig.colorbar(im, ax=axes[0], label="u (dimensionless)")
    im = axes[1].pcolormesh(X, Y, np.abs(u - u_exact), shading="auto", cmap="magma")
    axes[1].set_title("|u_θ − u*|, u* = sin(πx) sin(πy)")
    fig.colorbar(im, ax=axes[1], label="absolute error (dimensionless)")
    for ax in axes[:2]:
        ax.set_xlabel("x (dimensionless)")
        ax.set_ylabel("y (dimensionless)")
        ax.set_aspect("equal")
    ax = axes[2]
    for name, loss in losses.items():
        ax.plot(np.arange(1, len(loss) + 1), loss, "-" if name == "forward" else "--", label=f"Laplacian by {ROUTE_LABELS.get(name, name)}")
    ax.set_yscale("log")
    ax.set_xlabel("Adam step")
    ax.set_ylabel("PINN loss (dimensionless)")
    ax.set_title("training loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
