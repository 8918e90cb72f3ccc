"""Figures of ``deqlab lowrank`` (seed 004); each takes plain data and returns a matplotlib Figure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from deqlab.report.style import color

_STYLE = {
    "rank_k_recovery": {"marker": "o", "lw": 2},
    "seed_method": {"marker": "x", "ls": "--"},
    "least_change": {"marker": "s"},
    "symmetric_procrustes": {"marker": "^", "ls": ":"},
}


def _style(method: str) -> dict:
    """Marker and line of ``method``, in its colour from :mod:`deqlab.report.style`."""
    return {**_STYLE.get(method, {"marker": ".", "alpha": 0.8}), "color": color(method)}


def error_against_k(summary: pd.DataFrame, *, rank: int, title: str):
    """Median relative error ``‖H_est − H‖_F/‖H‖_F`` against ``k``, one panel per noise level."""
    import matplotlib.pyplot as plt

    levels = list(dict.fromkeys(summary["noise"]))
    fig, axes = plt.subplots(1, len(levels), figsize=(6.5 * len(levels), 4.8), squeeze=False, sharey=True)
    for ax, noise in zip(axes[0], levels):
        part = summary[summary["noise"] == noise]
        for method, rows in part.groupby("method", sort=False):
            err = np.maximum(rows["median rel error"].to_numpy(float), 1e-17)
            ax.plot(rows["k"], err, label=method, **_style(method))
        ax.axvline(rank, color="grey", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_title(f"{'exact pairs' if noise == 0 else f'relative gradient noise {noise:g}'}")
        ax.set_xlabel("k = number of (step, gradient-change) pairs")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("median ‖H_est − H‖_F / ‖H‖_F (dimensionless)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title + f" (dotted line: k = rank = {rank})")
    fig.tight_layout()
    return fig


def deq_against_k(frame: pd.DataFrame, *, title: str):
    """DEQ study: relative error and top-eigenvector misalignment against ``k``; one row of panels
    per kind of directions (random, krylov)."""
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(frame["directions"]))
    fig, axes = plt.subplots(len(kinds), 2, figsize=(13, 4.6 * len(kinds)), squeeze=False)
    for (a1, a2), kind in zip(axes, kinds):
        part = frame[frame["directions"] == kind]
        for method, rows in part.groupby("method", sort=False):
            style = _style(method)
            a1.plot(rows["k"], np.maximum(rows["rel error"].to_numpy(float), 1e-17), label=method, **style)
            a2.plot(rows["k"], np.maximum(1 - rows["|<u1, u1_true>|"].to_numpy(float), 1e-17), label=method, **style)
        floor = part.drop_duplicates("k")
        best = floor["best rank-k error"].to_numpy(float)
        a1.plot(floor["k"], np.where(best > 0, best, np.nan), "k:", label="best rank-k (Eckart-Young; 0 at k = P)")
        for ax, ylabel in ((a1, "‖H_est − H‖_F / ‖H‖_F (dimensionless)"), (a2, "1 − |⟨u₁, u₁,true⟩| (dimensionless)")):
            ax.set_yscale("log")
            ax.set_xlabel("k = number of (Δθ, Δ∇L) pairs")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        a1.set_title(f"Hessian error, {kind} directions")
        a2.set_title(f"top-eigenvector misalignment, {kind} directions")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def bench_times(frame: pd.DataFrame, *, reference: str, title: str, subtitle: str = ""):
    """``deqlab bench lowrank``: median time per call [ms] against ``n`` (log-log), one solid line per
    method of :mod:`deqlab.lowrank`, its plain numpy closed form (where it has one, column
    ``numpy closed form [ms]``) dashed in the same colour, and scipy's SR1 (rows whose method starts
    with ``scipy``, measured at the dense ``n`` only) as large hollow markers; ``reference`` (the
    speed-up's denominator) is named in the legend. ``frame``: the bench table."""
    from deqlab.report.figures import label_log_axis, new_axes, ticks_at

    fig, ax = new_axes(title + (f"\n{subtitle}" if subtitle else ""), "matrix size n (H is n × n)",
                       "median time per call [ms]", logx=True, logy=True)
    shown = []
    for method, rows in frame.groupby("method", sort=False):
        n = rows["n"].to_numpy(float)
        t = rows["time [ms]"].to_numpy(float)
        shown.append(t)
        if str(method).startswith("scipy"):
            marker = "D" if method == reference else "v"
            ax.plot(n, t, marker, ms=10, mfc="none", mew=2, color=color(method),
                    label=f"{method}{' (reference)' if method == reference else ''}, dense O(n² k)")
            continue
        ax.plot(n, t, label=f"{method}, factored", **_style(method))
        if "numpy closed form [ms]" in rows and rows["numpy closed form [ms]"].notna().any():
            floor = rows["numpy closed form [ms]"].to_numpy(float)
            shown.append(floor)
            ax.plot(n, floor, ls="-.", lw=1, marker=".", color=color(method), alpha=0.7,
                    label=f"{method}: plain numpy closed form")
    sizes = np.unique(frame["n"].to_numpy(float))
    ticks_at(ax, sizes, [f"{int(n)}" for n in sizes])
    if len(sizes) == 1:  # one size: widen the axis around it so the markers are not on its edge
        ax.set_xlim(sizes[0] / 2, sizes[0] * 2)
    label_log_axis(ax, "y", np.concatenate(shown))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
