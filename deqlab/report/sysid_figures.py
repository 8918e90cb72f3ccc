"""Figures of ``deqlab sysid`` (plain arrays in, matplotlib Figure out)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from deqlab.report.figures import new_axes


def predictions(y: np.ndarray, y_hat: Mapping[str, np.ndarray], *, sample_time: float | None, washout: int,
                trajectories: int, title: str, y_label: str = "y [output units]"):
    """Measured vs simulated outputs of the first ``trajectories`` test trajectories (output channel 0),
    stacked one panel per trajectory. ``y`` (T, steps, n_y); ``y_hat[name]`` the same shape."""
    import matplotlib.pyplot as plt

    n = max(1, min(trajectories, y.shape[0]))
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.6 * n), sharex=True, squeeze=False)
    t = np.arange(y.shape[1]) * (sample_time or 1.0)
    unit = "time [s]" if sample_time else "step"
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(t, y[i, :, 0], color="0.6", lw=1.0, label="measured")
        for name, yh in y_hat.items():
            ax.plot(t, yh[i, :, 0], lw=1.1, label=name)
        ax.axvspan(t[0], t[min(washout, len(t) - 1)], color="0.9", label="washout" if i == 0 else None)
        ax.set_ylabel(f"test traj. {i}\n{y_label}")
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_title(title)
    axes[0, 0].legend(fontsize=7, ncol=4, loc="upper right")
    axes[-1, 0].set_xlabel(unit)
    fig.tight_layout()
    return fig


def robustness_accuracy(rows: list[dict], *, title: str, unit: str = "output/input units"):
    """Lipschitz constant (empirical lower bound ●, guaranteed bound ▲ where one exists) against test
    NRMSE, as in Revay, Wang & Manchester (2021), Fig. 2. ``rows``: ``name, nrmse, lipschitz_lower,
    lipschitz_bound``."""
    fig, ax = new_axes(title, "test NRMSE (dimensionless)", f"Lipschitz constant ‖Δy‖/‖Δu‖ [{unit}]", logy=True)
    for i, r in enumerate(rows):
        color = f"C{i}"
        ax.scatter([r["nrmse"]], [max(r["lipschitz_lower"], 1e-12)], color=color, marker="o", label=f"{r['name']} (lower bound)")
        if r.get("lipschitz_bound") is not None and np.isfinite(r["lipschitz_bound"]):
            ax.scatter([r["nrmse"]], [r["lipschitz_bound"]], color=color, marker="^", label=f"{r['name']} (guaranteed bound)")
            ax.plot([r["nrmse"]] * 2, [max(r["lipschitz_lower"], 1e-12), r["lipschitz_bound"]], color=color, lw=0.8)
    ax.legend(fontsize=7)
    return fig


def training_curves(curves: Mapping[str, np.ndarray], *, title: str):
    """Validation NRMSE per epoch, one line per model (log scale)."""
    fig, ax = new_axes(title, "epoch", "validation NRMSE (dimensionless)", logy=True)
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), np.asarray(values, dtype=float), marker=".", label=name)
    ax.legend()
    return fig
