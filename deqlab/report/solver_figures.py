"""Figures of ``deqlab bench solvers``: pure functions of its table."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from deqlab.report.figures import label_log_axis, ticks_at


def solver_panels(frame: pd.DataFrame, column: str, ylabel: str, *, title: str, subtitle: str = "",
                  labels: Mapping[str, str] | None = None):
    """``frame[column]`` against ``n_z`` (log-log), one line per solver (coloured by
    :func:`deqlab.report.style.color`), one panel per ``(family, ‖W‖₂)``: rows are the ``W``
    families, columns the norms, every panel on the same y scale so that panels compare.

    ``frame``: the ``bench`` table (columns ``family, n_z, ||W||_2, solver, converged`` and
    ``column``). A solve that did not converge is ringed in red; the legend, beside the panels,
    says so once per solver. ``labels``: solver → its legend entry (default: its name).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deqlab.report.style import color

    families = list(dict.fromkeys(frame["family"]))
    norms = list(dict.fromkeys(frame["||W||_2"]))
    sizes = np.array(sorted(set(int(n) for n in frame["n_z"])))
    fig, axes = plt.subplots(len(families), len(norms), figsize=(3.6 * len(norms) + 2.6, 3.1 * len(families) + 0.9),
                             sharex=True, sharey=True, squeeze=False)
    handles = {}
    for i, fam in enumerate(families):
        for j, s in enumerate(norms):
            ax = axes[i][j]
            ax.set_xscale("log")
            ax.set_yscale("log")
            part = frame[(frame["family"] == fam) & (frame["||W||_2"] == s)]
            for solver in dict.fromkeys(frame["solver"]):
                sub = part[part["solver"] == solver].sort_values("n_z")
                if sub.empty:
                    continue
                n, y = sub["n_z"].to_numpy(dtype=float), sub[column].to_numpy(dtype=float)
                ok = sub["converged"].to_numpy(dtype=bool)
                line, = ax.plot(n, y, "o-", ms=4, color=color(solver), label=(labels or {}).get(solver, solver))
                handles.setdefault(solver, line)
                if (~ok).any():
                    ring, = ax.plot(n[~ok], y[~ok], "o", ms=11, mfc="none", mec="red", mew=1.5, label="not converged")
                    handles.setdefault("not converged", ring)
            ax.set_title(f"{fam}, ‖W‖₂ = {s:g}", fontsize=9)
            ax.grid(True, which="major", alpha=0.3)
            if i == len(families) - 1:
                ax.set_xlabel("hidden size n_z")
            if j == 0:
                ax.set_ylabel(ylabel)
    ax0 = axes[0][0]
    ticks_at(ax0, sizes, [str(n) for n in sizes])
    ax0.set_xlim(sizes.min() / 1.5, sizes.max() * 1.5)
    label_log_axis(ax0, "y", frame[column].to_numpy(dtype=float))
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    # beside the panels: inside, it covered the small-n_z points of the first panel
    fig.legend(list(handles.values()), [h.get_label() for h in handles.values()], loc="upper left", bbox_to_anchor=(0.85, 0.9), fontsize=8,
               title="solver", title_fontsize=8)
    return fig


def solver_times(frame: pd.DataFrame, *, title: str, subtitle: str = "", labels: Mapping[str, str] | None = None):
    """Median wall time to tolerance [ms] against ``n_z``, per solver and problem (:func:`solver_panels`)."""
    return solver_panels(frame, "median time [ms]", "median time to tolerance [ms]", title=title, subtitle=subtitle, labels=labels)


def solver_fevals(frame: pd.DataFrame, *, title: str, subtitle: str = "", labels: Mapping[str, str] | None = None):
    """Function evaluations to tolerance against ``n_z``, per solver and problem (:func:`solver_panels`)."""
    return solver_panels(frame, "f evals", "f evaluations to tolerance", title=title, subtitle=subtitle, labels=labels)
