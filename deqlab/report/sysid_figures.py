"""Figures of ``deqlab sysid`` (plain arrays in, matplotlib Figure out). Every model keeps its
colour (:func:`deqlab.report.style.colors`: its palette colour, made distinct within the run's models) in
every figure."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from deqlab.report.figures import integer_ticks, label_log_axis, new_axes, ticks_at
from deqlab.report.style import color, colors


def predictions(y: np.ndarray, y_hat: Mapping[str, np.ndarray], *, sample_time: float | None, washout: int,
                trajectories: int, title: str, y_label: str = "y [output units]", panel: str = "test trajectory",
                subtitle: str = ""):
    """Measured vs simulated outputs of the first ``trajectories`` trajectories (output channel 0),
    stacked one panel per trajectory, the legend above the panels (never over the data).
    ``y`` (T, steps, n_y); ``y_hat[name]`` the same shape; ``panel`` names a panel's trajectory."""
    import matplotlib.pyplot as plt

    n = max(1, min(trajectories, y.shape[0]))
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.4 * n + 0.8), sharex=True, squeeze=False)
    t = np.arange(y.shape[1]) * (sample_time or 1.0)
    unit = "time [s]" if sample_time else "sample index"
    palette = colors(["measured", *y_hat])
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(t, y[i, :, 0], color=palette["measured"], lw=1.6, label="measured")
        for name, yh in y_hat.items():
            ax.plot(t, yh[i, :, 0], lw=1.0, color=palette[name], label=name)
        ax.axvspan(t[0], t[min(washout, len(t) - 1)], color="0.9", label=f"washout ({washout} samples)")
        ax.set_ylabel(y_label)
        ax.set_title(f"{panel} {i}", fontsize=9, loc="left")
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)  # beside the panels
    axes[-1, 0].set_xlabel(unit)
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""))
    fig.tight_layout()
    return fig


def robustness_accuracy(rows: list[dict], *, title: str, unit: str = "output/input units", subtitle: str = ""):
    """Lipschitz constant (empirical lower bound ●, guaranteed bound ▲ where one exists) against test
    NRMSE, as in Revay, Wang & Manchester (2021), Fig. 2. ``rows``: ``name, nrmse, lipschitz_lower,
    lipschitz_bound``. Both axes logarithmic, labelled at 1, 2, 5 × 10^k (finer when they span less
    than a decade), each point named."""
    fig, ax = new_axes(title + (f"\n{subtitle}" if subtitle else ""), "test NRMSE (dimensionless, log)",
                       f"Lipschitz constant ‖Δy‖/‖Δu‖ [{unit}] (log)", logy=True, logx=True)
    ys, xs, points, bars = [], [], [], []
    palette = colors(["measured", *(r["name"] for r in rows)])   # the set predictions() colours
    for r in rows:
        c = palette[r["name"]]
        lower = max(r["lipschitz_lower"], 1e-12)
        ax.scatter([r["nrmse"]], [lower], color=c, marker="o", s=40, label=f"{r['name']} (empirical lower bound)")
        ax.annotate(r["name"], (r["nrmse"], lower), textcoords="offset points", xytext=(6, -10), fontsize=8, color=c)
        points.append((r["nrmse"], lower))
        ys.append(lower)
        xs.append(r["nrmse"])
        if r.get("lipschitz_bound") is not None and np.isfinite(r["lipschitz_bound"]):
            ax.scatter([r["nrmse"]], [r["lipschitz_bound"]], color=c, marker="^", s=50, label=f"{r['name']} (guaranteed bound)")
            ax.plot([r["nrmse"]] * 2, [lower, r["lipschitz_bound"]], color=c, lw=0.8)
            bars.append((r["nrmse"], lower, r["lipschitz_bound"]))
            ys.append(r["lipschitz_bound"])
    ys, xs = np.asarray(ys, float), np.asarray([x for x in xs if np.isfinite(x) and x > 0], float)
    ys = ys[np.isfinite(ys) & (ys > 0)]
    if ys.size:
        ax.set_ylim(ys.min() / 1.5, ys.max() * 1.5)
        label_log_axis(ax, "y", ys)
    if xs.size:
        ax.set_xlim(xs.min() / 1.3, xs.max() * 1.3)
        label_log_axis(ax, "x", xs)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _free_sides(fig, ax, points, marker_size=40, bars=bars)
    return fig


#: where a point's name may go, in order of preference: (x, y) offset in points, horizontal alignment
_SIDES = (((6, -10), "left"), ((6, 4), "left"), ((-6, -10), "right"), ((-6, 4), "right"), ((6, -18), "left"),
          ((6, 12), "left"), ((-6, -18), "right"), ((-6, 12), "right"))


def _free_sides(fig, ax, points, *, marker_size: float, bars=()) -> None:
    """Move each of ``ax``'s point names (its annotations, in the order of ``points``) to the first side in
    :data:`_SIDES` where it covers no point's marker, no vertical bar ``(x, y0, y1)`` (a lower bound joined
    to its guarantee, its triangle included) and no name already placed (first side if none is free): at one
    fixed offset, a name close to another point was drawn under that point's marker."""
    if not points or len(ax.texts) != len(points):
        return
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    r = np.sqrt(marker_size) / 2 * fig.dpi / 72 + 1.0
    marks = [(x - r, y - r, x + r, y + r) for x, y in ax.transData.transform(np.asarray(points, float))]
    for x, y0, y1 in bars:
        (xa, ya), (_, yb) = ax.transData.transform([(x, y0), (x, y1)])
        marks.append((xa - 2.0, min(ya, yb) - r, xa + 2.0, max(ya, yb) + r))
    placed = []
    for text in ax.texts:
        for offset, align in _SIDES:
            text.set_position(offset)
            text.set_horizontalalignment(align)
            box = text.get_window_extent(renderer)
            hits = [m for m in marks if box.x0 < m[2] and m[0] < box.x1 and box.y0 < m[3] and m[1] < box.y1]
            if not hits and not any(box.overlaps(other) for other in placed):
                break
        else:
            text.set_position(_SIDES[0][0])
            text.set_horizontalalignment(_SIDES[0][1])
            box = text.get_window_extent(renderer)
        placed.append(box)


def training_curves(curves: Mapping[str, np.ndarray], *, title: str, noise_floor: float | None = None, subtitle: str = ""):
    """Validation NRMSE per epoch, one line per model (log scale), with the noise floor of the
    validation set (NRMSE of the noise-free output against the measured one: no model beats it on
    average); integer epoch ticks."""
    fig, ax = new_axes(title + (f"\n{subtitle}" if subtitle else ""), "epoch", "validation NRMSE (dimensionless)", logy=True)
    palette = colors(["measured", *curves])   # the set predictions() colours
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), np.asarray(values, dtype=float), marker=".", color=palette[name], label=name)
    if noise_floor is not None and np.isfinite(noise_floor):
        ax.axhline(noise_floor, color="k", ls=":", lw=1.2, label=f"validation noise floor = {noise_floor:.4f}")
    integer_ticks(ax)
    label_log_axis(ax, "y", np.concatenate([np.asarray(v, float) for v in curves.values()] + [np.asarray([noise_floor or np.nan])]))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def bench_step_times(frame, *, title: str, subtitle: str = ""):
    """``deqlab bench sysid``: median time of one training step [ms] against the torch thread count,
    one line per model and backward (the model's colour; implicit backward solid, autograd dashed),
    each point labelled with its time. ``frame``: the bench table (``model, backward, threads,
    median time [s]``)."""
    fig, ax = new_axes(title + (f"\n{subtitle}" if subtitle else ""), "torch (and BLAS) threads",
                       "median time per training step [ms]", logy=True)
    shown = []
    for (model, backward), rows in frame.groupby(["model", "backward"], sort=False):
        threads = rows["threads"].to_numpy(float)
        ms = 1e3 * rows["median time [s]"].to_numpy(float)
        shown.append(ms)
        ax.plot(threads, ms, "-" if backward == "implicit" else "--", marker="o" if backward == "implicit" else "s",
                color=color(model), label=f"{model}, {backward} backward")
    counts = np.unique(frame["threads"].to_numpy(float))
    for (model, _), rows in frame.groupby(["model", "backward"], sort=False):
        for t, v in zip(rows["threads"].to_numpy(float), 1e3 * rows["median time [s]"].to_numpy(float)):
            # outside the lines: left of the first thread count, right of the others
            left = t == counts.min()
            ax.annotate(f"{v:.3g}", (t, v), textcoords="offset points", xytext=(-9 if left else 9, 0), va="center",
                        ha="right" if left else "left", fontsize=7, color=color(model))
    ax.set_xscale("log", base=2)
    ticks_at(ax, counts, [str(int(c)) for c in counts])
    ax.set_xlim(counts.min() / 1.4, counts.max() * 1.6)
    values = np.concatenate(shown)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size:
        ax.set_ylim(values.min() / 1.6, values.max() * 1.6)
    label_log_axis(ax, "y", values)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
