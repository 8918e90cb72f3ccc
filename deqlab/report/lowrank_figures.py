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
