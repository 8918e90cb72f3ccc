"""Figures of ``deqlab mondeq`` and ``deqlab bench mondeq``: pure functions of arrays."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from deqlab.report.figures import integer_ticks, label_log_axis, new_axes, ticks_at

#: markers per splitting method: big hollow first, small filled last, so coinciding points stay visible
_SPLIT_STYLE = {"peaceman_rachford": {"marker": "o", "ms": 10, "mfc": "none", "ls": "-", "lw": 2.2},
                "douglas_rachford": {"marker": "s", "ms": 6, "mfc": "none", "ls": "--", "lw": 1.6},
                "forward_backward": {"marker": "^", "ms": 4, "ls": ":", "lw": 1.2}}


def alpha_sweep(alphas: np.ndarray, steps: Mapping[str, np.ndarray], converged: Mapping[str, np.ndarray],
                references: Mapping[str, tuple[int, bool]], *, bound: float, max_iter: int, title: str,
                diverged: Mapping[str, np.ndarray] | None = None, subtitle: str = ""):
    """Iterations to tolerance against the step ``α`` (log-log), one line per splitting method.

    Converged runs are joined by lines; runs that hit ``max_iter`` are crosses in a band above
    ``max_iter`` and runs that diverged (non-finite iterates, ``diverged[name]``) are stars in a band
    above that, each method at its own height so none hides another. α-free solvers
    (``references``: name → (steps, converged)) are horizontal lines; the forward-backward bound
    ``2m/‖I − W‖₂²`` is a vertical line.
    """
    from deqlab.report.style import color

    fig, ax = new_axes(title + (f"\n{subtitle}" if subtitle else ""), "step α (dimensionless)",
                       "iterations to tolerance", logx=True, logy=True)
    alphas = np.asarray(alphas, dtype=float)
    band_fail, band_div = 1.8 * max_iter, 5.0 * max_iter
    for i, (name, s) in enumerate(steps.items()):
        s = np.asarray(s, dtype=float)
        ok = np.asarray(converged[name], dtype=bool)
        div = np.asarray(diverged[name], dtype=bool) if diverged is not None else np.zeros_like(ok)
        stuck = ~ok & ~div
        col = color(name)
        style = _SPLIT_STYLE.get(name, {"marker": "o", "ms": 5})
        ax.plot(alphas[ok], s[ok], color=col, label=f"{name} ({ok.sum()}/{len(ok)} converged)", **style)
        lift = 1.18**i  # each method its own height inside a band
        if stuck.any():
            ax.plot(alphas[stuck], np.full(stuck.sum(), band_fail * lift), "x", color=col, ms=9, mew=2,
                    label=f"{name}: not converged in {max_iter}")
        if div.any():
            ax.plot(alphas[div], np.full(div.sum(), band_div * lift), "*", color=col, ms=11,
                    label=f"{name}: diverged (non-finite)")
    ax.axhline(max_iter, color="0.4", lw=0.8, ls="-")
    ax.text(0.01, max_iter * 1.08, f"max_iter = {max_iter}", transform=ax.get_yaxis_transform(), va="bottom", fontsize=7)
    ax.axhspan(max_iter * 1.4, max_iter * 3.0, color="0.93", zorder=0)
    ax.axhspan(max_iter * 3.6, max_iter * 9.0, color="#fde0e0", zorder=0)
    ax.text(0.01, band_fail * 0.8, "not converged", transform=ax.get_yaxis_transform(), fontsize=7, color="0.3")
    ax.text(0.01, band_div * 0.8, "diverged", transform=ax.get_yaxis_transform(), fontsize=7, color="#a00")
    for name, (s, ok) in references.items():
        if ok:
            ax.axhline(s, color=color(name), linestyle="-.", lw=1.2, label=f"{name} (no α): {s} iterations")
        else:  # a legend entry only: a line in the not-converged band would hide the crosses there
            ax.plot([], [], color=color(name), linestyle="-.", lw=1.2, label=f"{name} (no α): not converged in {max_iter}")
    if bound > 0:
        ax.axvline(bound, color="red", linestyle="--", alpha=0.6, label=f"FB bound 2m/L² = {bound:.3g}")
    ax.set_ylim(top=max_iter * 10)
    # no count above max_iter: the bands there are categories at made-up heights, and a '10⁴' beside the
    # diverged stars read as ten thousand iterations
    from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation

    counts = LogFormatterSciNotation()
    counts.set_axis(ax.yaxis)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, pos: "" if v > max_iter * 1.001 else counts(v, pos)))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def training_iterations(epochs: np.ndarray, mean_steps: Mapping[str, np.ndarray], max_steps: Mapping[str, np.ndarray],
                        converged_fraction: Mapping[str, np.ndarray], *, max_iter: int, title: str):
    """Top: forward-solve iterations per epoch (mean solid, max dashed); bottom: fraction of batches converged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deqlab.report.style import color

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax.set_title(title)
    ax.set_yscale("log")
    ax.set_ylabel("forward iterations per batch")
    for i, name in enumerate(mean_steps):
        # coloured by the solver in its name ('unconstrained (fixed_point)'): by the whole name it drew fixed-point
        # iteration in forward-backward's cyan, beside the alpha-sweep figure where fixed_point is blue
        solver = name.rsplit("(", 1)[-1].rstrip(")") if name.endswith(")") else name
        line, = ax.plot(epochs, mean_steps[name], "o-", color=color(solver), label=f"{name}: mean")
        ax.plot(epochs, max_steps[name], "--", color=line.get_color(), label=f"{name}: max")
        # each model a smaller square than the one before: at equal fractions (all 1.0) the last drawn hid the others
        ax2.plot(epochs, converged_fraction[name], "s-", color=line.get_color(), label=name, ms=max(8.0 - 3.0 * i, 3.0),
                 lw=max(2.5 - 1.0 * i, 1.0))
    ax.axhline(max_iter, color="red", linestyle=":", label=f"max_iter = {max_iter}")
    ax.legend(fontsize=8)
    label_log_axis(ax, "y", np.concatenate([np.ravel(v) for v in (*mean_steps.values(), *max_steps.values(), [max_iter])]))
    ax2.set_ylabel("fraction of batches\nconverged")
    ax2.set_xlabel("epoch")
    ax2.set_ylim(-0.05, 1.05)
    integer_ticks(ax2)
    for a in (ax, ax2):
        a.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def bench_times(sizes: np.ndarray, times: Mapping[str, np.ndarray], *, title: str,
                converged: Mapping[str, np.ndarray] | None = None, subtitle: str = ""):
    """Median wall time per forward solve against ``n_z`` (log-log), one line per method, ticks at
    the sizes measured; a run that did not converge is ringed in red (and the legend says at
    which ``n_z``), a method that converged everywhere carries no mark."""
    from deqlab.report.style import color

    fig, ax = new_axes(title + (f"\n{subtitle}" if subtitle else ""), "hidden size n_z", "median wall time per solve [ms]",
                       logx=True, logy=True)
    sizes = np.asarray(sizes)
    for name, t in times.items():
        ok = np.ones(len(t), bool) if converged is None else np.asarray(converged[name], bool)
        label = name if ok.all() else f"{name} (not converged at n_z = {', '.join(str(n) for n in sizes[~ok])})"
        ax.plot(sizes, t, "o-", color=color(name.split(" (")[0]), label=label)
        if (~ok).any():
            ax.plot(sizes[~ok], np.asarray(t)[~ok], "o", ms=13, mfc="none", mec="red", mew=1.5)
    ticks_at(ax, sizes, [str(n) for n in sizes])
    label_log_axis(ax, "y", np.concatenate([np.ravel(t) for t in times.values()]))  # "6", not "6 × 10⁰"
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
