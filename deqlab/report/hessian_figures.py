"""Figures of ``deqlab hessian``: heatmaps of H and its terms, and the spectrum."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from deqlab.report.figures import new_axes


def hessian_heatmaps(mats: Mapping[str, np.ndarray], boundaries: Sequence[tuple[str, int]], *, title: str):
    """One symmetric-log heatmap per matrix (``H``, Term A, Term B, …) with the parameter-group
    boundaries drawn; ``boundaries`` is ``[(group, start index), …]`` in θ order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import SymLogNorm

    n = len(mats)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.4), squeeze=False)
    vmax = max(float(np.abs(m).max()) for m in mats.values()) or 1.0
    linthresh = max(vmax * 1e-4, 1e-300)  # entries below 1e-4·max show as white; keeps the colour bar legible
    for ax, (name, m) in zip(axes[0], mats.items()):
        im = ax.imshow(m, cmap="RdBu_r", norm=SymLogNorm(linthresh=linthresh, vmin=-vmax, vmax=vmax), interpolation="nearest")
        ax.set_title(f"{name}\n‖·‖_F = {np.linalg.norm(m):.3g}")
        ax.set_xlabel("θ index (column)")
        if ax is axes[0][0]:
            ax.set_ylabel("θ index (row)")
        for g, start in boundaries:
            if start > 0:
                ax.axhline(start - 0.5, color="k", lw=0.5)
                ax.axvline(start - 0.5, color="k", lw=0.5)
        ticks = [s for _, s in boundaries]
        ax.set_xticks(ticks, [g for g, _ in boundaries], rotation=90, fontsize=7)
        ax.set_yticks(ticks, [g for g, _ in boundaries], fontsize=7)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="entry value (loss units / θ², symlog)")
    fig.suptitle(title)
    return fig


def spectrum_plot(spectra: Mapping[str, np.ndarray], *, title: str):
    """Sorted eigenvalues of each labelled symmetric matrix on a symlog axis."""
    fig, ax = new_axes(title, "eigenvalue rank (ascending)", "eigenvalue (loss units / θ², symlog)")
    vals = [np.asarray(v, dtype=float) for v in spectra.values()]
    top = max((float(np.abs(v).max()) for v in vals if v.size), default=1.0) or 1.0
    ax.set_yscale("symlog", linthresh=max(top * 1e-8, 1e-300))
    for label, v in spectra.items():
        v = np.sort(np.asarray(v, dtype=float))
        ax.plot(np.arange(len(v)), v, ".-" if len(v) < 60 else "-", ms=3, label=label)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.legend()
    return fig


def extreme_spectrum_plot(bottom: np.ndarray, top: np.ndarray, size: int, *, title: str):
    """The ``k`` smallest and largest eigenvalues found by eigsh (matrix-free mode)."""
    fig, ax = new_axes(title, "eigenvalue rank (ascending, of P)", "eigenvalue (loss units / θ², symlog)")
    b, t = np.sort(np.asarray(bottom, float)), np.sort(np.asarray(top, float))
    allv = np.concatenate([b, t]) if b.size + t.size else np.ones(1)
    ax.set_yscale("symlog", linthresh=max(float(np.abs(allv).max()) * 1e-8, 1e-300))
    ax.plot(np.arange(len(b)), b, "o", label="smallest (eigsh SA)")
    ax.plot(np.arange(size - len(t), size), t, "s", label="largest (eigsh LA)")
    ax.axhline(0.0, color="k", lw=0.5)
    ax.legend()
    return fig
