"""Figures of ``deqlab nethessian``: pure functions of plain data returning matplotlib Figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from deqlab.report.figures import label_log_axis


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
                       # 'ours' is the route named in each row: forward recursion or the adjoint formula
                       label=col.replace(" [ms]", "") + (" (the row's route)" if name == "forward" else " (torch.func)"))
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

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    fig.suptitle(title)
    im = axes[0].pcolormesh(X, Y, u, shading="auto", cmap="viridis")
    # two-line titles: on one line they were wider than the square panels and ran over the y tick labels
    axes[0].set_title(f"u_θ(x, y)\nLaplacian by {ROUTE_LABELS.get(route, route)}")
    fig.colorbar(im, ax=axes[0], label="u (dimensionless)")
    im = axes[1].pcolormesh(X, Y, np.abs(u - u_exact), shading="auto", cmap="magma")
    axes[1].set_title("|u_θ − u*|\nu* = sin(πx) sin(πy)")
    fig.colorbar(im, ax=axes[1], label="absolute error (dimensionless)")
    for ax in axes[:2]:
        ax.set_xlabel("x (dimensionless)")
        ax.set_ylabel("y (dimensionless)")
        ax.set_aspect("equal")
    ax = axes[2]
    for name, loss in losses.items():
        ax.plot(np.arange(1, len(loss) + 1), loss, "-" if name == "forward" else "--", label=f"Laplacian by {ROUTE_LABELS.get(name, name)}")
    ax.set_yscale("log")
    label_log_axis(ax, "y", np.concatenate([np.ravel(v) for v in losses.values()]))   # 1.8 to 100: not 10¹, 10² alone
    ax.set_xlabel("Adam step")
    ax.set_ylabel("PINN loss (dimensionless)")
    ax.set_title("training loss")
    ax.grid(True, which="both", alpha=0.3)
    # below the axes: inside, wherever 'best' put it, it covered part of the curves' descent
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    fig.tight_layout(rect=(0, 0, 1, 0.97))   # room below the suptitle for the two-line panel titles
    return fig


TASK_TITLES = {"laplacian": "input Laplacian Δf (batch × 1)", "diag_hessian": "Hessian diagonal (batch × d)",
               "hessian": "full input Hessian (batch × d × d)"}


def bench_times(frame: pd.DataFrame, *, reference: str, ours, title: str, subtitle: str = ""):
    """``deqlab bench nethessian``: median time per call [ms] (log axis) of every method, one panel per
    task, one marker per dtype; the reference's time (the speed-up's denominator) is a vertical line
    in the dtype's colour, and the routes of :mod:`deqlab.nethessian` (``ours``) are named in bold.
    ``frame``: the bench table (``task, dtype, batch, method, median time [ms]``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deqlab.report.style import color

    tasks = list(dict.fromkeys(frame["task"]))
    counts = [frame[frame["task"] == t]["method"].nunique() for t in tasks]
    fig, axes = plt.subplots(len(tasks), 1, figsize=(8.5, 1.2 + sum(0.42 * c + 0.9 for c in counts)), squeeze=False,
                             gridspec_kw={"height_ratios": counts})
    markers = {"float32": "o", "float64": "s"}
    for ax, task in zip(axes[:, 0], tasks):
        part = frame[frame["task"] == task]
        methods = list(dict.fromkeys(part["method"]))
        y = {m: len(methods) - 1 - i for i, m in enumerate(methods)}
        for dtype, rows in part.groupby("dtype", sort=False):
            ax.scatter(rows["median time [ms]"].to_numpy(float), [y[m] for m in rows["method"]], s=40, zorder=3,
                       marker=markers.get(dtype, "D"), color=color(dtype), label=f"{dtype}")
            ref = rows[rows["method"] == reference]["median time [ms]"]
            if len(ref):
                ax.axvline(float(ref.iloc[0]), color=color(dtype), ls=":", lw=1,
                           label=f"{reference}, {dtype} (reference)")
        ax.set_yticks(list(y.values()), methods, fontsize=8)
        for tick, m in zip(ax.get_yticklabels(), methods):
            tick.set_fontweight("bold" if m in ours else "normal")
        ax.set_ylim(-0.6, len(methods) - 0.4)
        ax.set_xscale("log")
        shown = part["median time [ms]"].to_numpy(float)
        shown = shown[np.isfinite(shown) & (shown > 0)]
        if shown.size:  # room on both sides: a marker on the frame is half hidden
            ax.set_xlim(shown.min() / 1.5, shown.max() * 1.5)
        label_log_axis(ax, "x", shown)  # plain numbers, not '3 × 10¹' labels running into each other
        ax.set_title(f"{TASK_TITLES.get(task, task)}, batch {int(part['batch'].iloc[0])}", fontsize=9, loc="left")
        ax.set_xlabel("median time per call [ms] (log)")
        ax.grid(True, which="both", axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else "") + "\nbold: deqlab.nethessian's routes; the others: autodiff references",
                 fontsize=10)
    fig.tight_layout()
    return fig
