"""Figures of ``deqlab train digits``: pure functions of arrays."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from deqlab.report.figures import integer_ticks, label_log_axis


def accuracy_and_iterations(epochs: Mapping[str, np.ndarray], accuracy: Mapping[str, np.ndarray],
                            iterations: Mapping[str, np.ndarray], *, max_iter: int, title: str):
    """Top: test accuracy against epoch, one line per model; bottom: mean forward iterations per batch
    (models with a forward solve only; log scale), ``max_iter`` dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8.5, 6.5), sharex=True)
    ax.set_title(title)
    colors = {}
    for name, acc in accuracy.items():
        line, = ax.plot(epochs[name], 100 * np.asarray(acc), "o-", markersize=3, label=name)
        colors[name] = line.get_color()
    ax.set_ylabel("test accuracy [%]")
    # legends beside the panels: inside, they covered the accuracy curves' ends and the max_iter line
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for name, it in iterations.items():
        ax2.plot(epochs[name], it, "o-", markersize=3, color=colors.get(name), label=name)
    ax2.axhline(max_iter, color="red", linestyle=":", label=f"max_iter = {max_iter}")
    ax2.set_yscale("log")
    label_log_axis(ax2, "y", np.concatenate([np.ravel(v) for v in (*iterations.values(), [max_iter])]))
    ax2.set_ylabel("forward iterations per batch (mean)")
    ax2.set_xlabel("epoch")
    integer_ticks(ax2)
    ax2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for a in (ax, ax2):
        a.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def spectral_densities(pairs: Mapping[str, tuple], *, title: str, points: int = 800):
    """One panel per model: the SLQ density at the first (dashed) and last (solid) checkpoint.

    ``pairs[model] = (first epoch, last epoch, first density, last density)``, densities with
    ``.density(grid, sigma)`` and ``.nodes`` (:class:`deqlab.implicit.spectrum.SpectralDensity`). The
    Gaussian width is 1% of the panel's eigenvalue range; the density axis is logarithmic.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(pairs), 1, figsize=(7, 2.6 * len(pairs) + 0.6), squeeze=False)
    for ax, (name, (e0, e1, d0, d1)) in zip(axes[:, 0], pairs.items()):
        nodes = np.concatenate([d0.nodes.ravel(), d1.nodes.ravel()])
        lo, hi = float(nodes.min()), float(nodes.max())
        pad = 0.05 * max(hi - lo, 1e-12)
        grid = np.linspace(lo - pad, hi + pad, points)
        sigma = 0.01 * max(hi - lo, 1e-12)
        for epoch, dens, style in ((e0, d0, "--"), (e1, d1, "-")):
            ax.plot(grid, np.maximum(dens.density(grid, sigma), 1e-12), style, label=f"epoch {epoch}")
        ax.axvline(0.0, color="gray", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_ylim(bottom=1e-6)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("density [1/eigenvalue]")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("Hessian eigenvalue (of the mean cross-entropy; dimensionless)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
