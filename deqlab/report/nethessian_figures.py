"""Figures of ``deqlab nethessian``: pure functions of plain data returning matplotlib Figures."""

from __future__ import annotations

import numpy as np
import pandas as pd


def check_errors(frame: pd.DataFrame, *, tolerance: float, title: str, dtype: str = "float64", subtitle: str = ""):
    """Two panels per checked quantity/route. Left: max relative error against torch.func as points
    on a log axis, with the dtype's machine epsilon and the tolerance as lines (an exact 0 is drawn
    on the bottom edge, marked "0"). Right: the measured times of our route and of the reference
    (``ours [ms]``, ``reference [ms]``), log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deqlab.report.style import color

    eps = float(np.finfo(np.float32 if dtype == "float32" else np.float64).eps)
    labels = [f"{q} ({r})" for q, r in zip(frame["quantity"], frame["route"])]
    y = np.arange(len(labels))[::-1]
    err = frame["max rel error"].to_numpy(dtype=float)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 0.45 * len(labels) + 2.2), sharey=True,
                                 gridspec_kw={"width_ratios": [1.3, 1]})
    floor = eps / 100
    shown = np.where(err > 0, err, floor)
    a1.scatter(shown, y, color=["tab:blue" if e <= tolerance else "tab:red" for e in err], zorder=3)
    for yi, e in zip(y, err):
        if e == 0:
            a1.annotate("0 (exact)", (floor, yi), textcoords="offset points", xytext=(6, -3), fontsize=7)
    a1.axvline(eps, color="0.3", ls=":", label=f"{dtype} epsilon {eps:.1e}")
    a1.axvline(tolerance, color="tab:red", ls="--", label=f"tolerance {tolerance:g}")
    a1.set_xscale("log")
    left = floor / 3 if (err == 0).any() else min(eps, float(np.nanmin(shown))) / 10
    a1.set_xlim(left, max(10 * tolerance, float(np.nanmax(shown)) * 10))
    a1.set_yticks(y, labels, fontsize=8)
    a1.set_xlabel("max relative error vs torch.func (dimensionless)")
    a1.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    a1.grid(True, which="major", alpha=0.3)
    for col, name, marker in (("ours [ms]", "forward", "o"), ("reference [ms]", "double_backward", "s")):
        if col in frame:
            a2.scatter(frame[col].to_numpy(dtype=float), y, marker=marker, color=color(name),
                       label=col.replace(" [ms]", "") + (" (forward recursion)" if name == "forward" else " (torch.func)"))
    a2.set_xscale("log")
    a2.set_xlabel("median time [ms] (log)")
    a2.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    a2.grid(True, which="both", alpha=0.3)
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""))
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
