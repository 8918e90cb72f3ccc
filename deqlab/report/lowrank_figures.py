"""Figures of ``deqlab lowrank`` (seed 004); each takes plain data and returns a matplotlib Figure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from deqlab.report.figures import symlog_ticks
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


def estimates_against_truth(frame: pd.DataFrame, spectra: dict[str, np.ndarray], truth: np.ndarray | None, *,
                            y_norm: float, title: str):
    """``deqlab lowrank`` (the seed's example, a user's pairs): what each method recovered.

    Left, the eigenvalues of each estimate ``H = U diag(S) Uᵀ`` (``spectra[method] = S``, rank ``r``) by
    decreasing magnitude, beside those of the true ``H`` (``truth``; ``None`` when the pairs came without
    one; its tail beyond the largest rank + 2 is summarised in the title), on a symmetric log axis (they
    may be negative). Right, per method, the relative secant residual
    ``‖HX − Y‖_F / ‖Y‖_F`` and, with ``truth``, the relative error ``‖H − H_true‖_F / ‖H_true‖_F``, from
    ``frame`` (:func:`deqlab.demos.lowrank.method_table`; its residual is absolute, divided here by
    ``y_norm = ‖Y‖_F``). Values at or below 1e-17 are drawn at 1e-17.
    """
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    methods = list(frame["method"])

    def by_magnitude(v) -> np.ndarray:   # an estimate of rank r is its r eigenvalues of largest magnitude, then zeros
        v = np.asarray(v, float)
        return v[np.argsort(-np.abs(v), kind="stable")]

    ranked = {m: by_magnitude(spectra[m]) for m in methods}
    shown = list(ranked.values())
    subtitle = ""
    if truth is not None:
        t = by_magnitude(truth)
        keep = min(len(t), max((len(v) for v in shown), default=0) + 2)   # the rest: the truth's small tail
        if keep < len(t):
            subtitle = f"\n(true H: {len(t) - keep} smaller eigenvalues not shown, |λ| ≤ {abs(t[keep]):.2g})"
        t = t[:keep]
        at = np.arange(1, len(t) + 1)
        left.hlines(t, at - 0.25, at + 0.25, colors="k", lw=2, label="true H", zorder=1)
        shown.append(t)
    for j, method in enumerate(methods):   # side by side at each index: equal estimates would hide each other
        s = ranked[method]
        offset = 0.3 * (j - (len(methods) - 1) / 2) / max(len(methods) - 1, 1)
        left.plot(np.arange(1, len(s) + 1) + offset, s, ls="none", label=f"{method} (rank {len(s)})",
                  **{k: v for k, v in _style(method).items() if k not in ("ls", "lw")})
    values = np.abs(np.concatenate(shown)) if shown else np.zeros(0)
    top = float(values.max()) if values.size and np.isfinite(values).all() and values.max() > 0 else 1.0
    # linear within 1e-6 of the largest magnitude: eigenvalues at round-off level read as 0, not as decades
    linthresh = 1e-6 * top
    left.set_yscale("symlog", linthresh=linthresh)
    left.axhspan(-linthresh, linthresh, color="0.93", zorder=0)
    symlog_ticks(left, top, linthresh)   # matplotlib's own printed 10⁻⁵, 0, −10⁻⁵ over one another
    left.axhline(0, color="grey", lw=0.8)
    left.set_xlabel("eigenvalue index i (by decreasing |λᵢ|)")
    left.set_ylabel(f"eigenvalue λᵢ (units of Y per unit of X)\nsymlog; |λ| < {linthresh:.1g} linear (shaded)")
    left.set_title("eigenvalues of each estimate" + subtitle)
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    if left.get_xlim()[1] - left.get_xlim()[0] < 20:
        left.xaxis.get_major_locator().set_params(integer=True)

    bars = {"‖HX − Y‖_F / ‖Y‖_F": frame["||HX - Y||_F"].to_numpy(float) / y_norm}
    if truth is not None:
        bars["‖H − H_true‖_F / ‖H_true‖_F"] = frame["||H - H_true||_F / ||H_true||_F"].to_numpy(float)
    width = 0.8 / len(bars)
    at = np.arange(len(methods))
    for j, (label, heights) in enumerate(bars.items()):
        right.bar(at + (j - (len(bars) - 1) / 2) * width, np.maximum(heights, 1e-17), width, label=label,
                  color=["tab:blue", "tab:orange"][j])
    right.set_yscale("log")
    right.set_xticks(at, methods, rotation=15, ha="right")
    right.set_ylabel("relative error (dimensionless)")
    right.set_title("secant residual and recovery error per method")
    right.grid(True, axis="y", which="both", alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
