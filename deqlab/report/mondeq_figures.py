"""Figures of ``deqlab mondeq`` and ``deqlab bench mondeq``: pure functions of arrays."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from deqlab.report.figures import new_axes


def alpha_sweep(alphas: np.ndarray, steps: Mapping[str, np.ndarray], converged: Mapping[str, np.ndarray],
                references: Mapping[str, tuple[int, bool]], *, bound: float, max_iter: int, title: str):
    """Iterations to tolerance against the step ``α`` (log-log), one line per splitting method.

    Runs that did not converge are drawn as crosses at ``max_iter``; α-free solvers
    (``references``: name → (steps, converged)) are horizontal lines; the forward-backward bound
    ``2m/‖I − W‖₂²`` is a vertical line.
    """
    fig, ax = new_axes(title, "step α (dimensionless)", "iterations to tolerance", logx=True, logy=True)
    alphas = np.asarray(alphas, dtype=float)
    for name, s in steps.items():
        s = np.asarray(s, dtype=float)
        ok = np.asarray(converged[name], dtype=bool)
        line, = ax.plot(alphas[ok], s[ok], "o-", label=name)
        if (~ok).any():
            ax.plot(alphas[~ok], np.full((~ok).sum(), max_iter), "x", color=line.get_color(), markersize=9,
                    label=f"{name}: not converged in {max_iter}")
    styles = iter([":", "-."])
    for name, (s, ok) in references.items():
        ax.axhline(s if ok else max_iter, color="gray", linestyle=next(styles, "--"),
                   label=f"{name} (no α){'' if ok else ': not converged'}")
    if bound > 0:
        ax.axvline(bound, color="red", linestyle="--", alpha=0.6, label=f"FB bound 2m/L² = {bound:.3g}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def training_iterations(epochs: np.ndarray, mean_steps: Mapping[str, np.ndarray], max_steps: Mapping[str, np.ndarray],
                        converged_fraction: Mapping[str, np.ndarray], *, max_iter: int, title: str):
    """Top: forward-solve iterations per epoch (mean solid, max dashed); bottom: fraction of batches converged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax.set_title(title)
    ax.set_yscale("log")
    ax.set_ylabel("forward iterations per batch")
    for name in mean_steps:
        line, = ax.plot(epochs, mean_steps[name], "o-", label=f"{name}: mean")
        ax.plot(epochs, max_steps[name], "--", color=line.get_color(), label=f"{name}: max")
        ax2.plot(epochs, converged_fraction[name], "s-", color=line.get_color(), label=name)
    ax.axhline(max_iter, color="red", linestyle=":", label=f"max_iter = {max_iter}")
    ax.legend(fontsize=8)
    ax2.set_ylabel("batches converged")
    ax2.set_xlabel("epoch")
    ax2.set_ylim(-0.05, 1.05)
    for a in (ax, ax2):
        a.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def bench_times(sizes: np.ndarray, times: Mapping[str, np.ndarray], *, title: str):
    """Median wall time per forward solve against ``n_z`` (log-log), one line per method."""
    fig, ax = new_axes(title, "hidden size n_z", "median wall time per solve [ms]", logx=True, logy=True)
    for name, t in times.items():
        ax.plot(sizes, t, "o-", label=name)
    ax.legend(fontsize=8)
    return fig
