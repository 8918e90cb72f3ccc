"""Figures shared by several demos; each takes plain data and returns a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def new_axes(title: str, xlabel: str, ylabel: str, *, logy: bool = False, logx: bool = False):
    """One titled, labelled, gridded axes on a new Agg figure (the demos' figure modules share it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    return fig, ax


def label_log_axis(ax, axis: str, values) -> None:
    """Labels on a log axis that spans less than a decade too: ticks at 1, 2, 5 × 10^k (more below
    2.5 decades), plain numbers.
    ``values``: what the axis shows; only the finite positive ones count (none: the axis is left as is)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    values = np.asarray(values, dtype=float).ravel()
    values = values[np.isfinite(values) & (values > 0)]
    if not values.size:
        return
    target = ax.yaxis if axis == "y" else ax.xaxis
    span = np.log10(values.max() / values.min())
    # 1, 2, 5 alone left an axis from 0.26 to 4.3 (sysid's validation NRMSE) with three labels
    subs = ((1.0, 2.0, 5.0) if span > 2.5 else (1.0, 2.0, 3.0, 5.0) if span > 1.2
            else (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0))
    target.set_major_locator(LogLocator(base=10, subs=subs))
    # each tick its own plain number ('0.05', '200'): a ScalarFormatter gives every tick the decimals of the
    # axis's large end, and printed 0.5, 0.2, 0.1, 0.05 as '0' on an axis up to 1000 (bench mondeq's times)
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.6g}"))
    target.set_minor_formatter(NullFormatter())


def symlog_decades(top: float, linthresh: float, max_ticks: int = 4, *, within: bool = False):
    """``(ticks, labels)`` for a symlog scale: decades outside the linear band ``|v| < linthresh``, at most
    ``max_ticks`` per sign, and 0 (so labels near zero never overprint). ``within``: no decade above ``top``
    (a colour bar cannot grow past its ``vmax``; an axis grows to the tick). ``([], [])`` when ``top`` or
    ``linthresh`` is not a positive finite number (the caller keeps matplotlib's ticks)."""
    if not (np.isfinite(top) and np.isfinite(linthresh) and top > 0 and linthresh > 0):
        return [], []
    lo = int(np.ceil(np.log10(linthresh)))
    hi = int(np.floor(np.log10(top))) if within else int(np.ceil(np.log10(top)))
    hi = max(hi, lo)
    step = max(1, int(np.ceil((hi - lo + 1) / max_ticks)))
    decades = list(range(hi, lo - 1, -step))
    ticks = sorted([-(10.0**d) for d in decades] + [0.0] + [10.0**d for d in decades])
    return ticks, [("0" if t == 0 else f"{'−' if t < 0 else ''}1e{round(np.log10(abs(t)))}") for t in ticks]


def symlog_ticks(ax, top: float, linthresh: float, max_ticks: int = 4) -> None:
    """:func:`symlog_decades` as the y ticks of ``ax``: matplotlib's own symlog ticks put 10^-k, 0 and
    -10^-k a hair apart around the linear band, printed over one another."""
    ticks, labels = symlog_decades(top, linthresh, max_ticks)
    if not ticks:
        return
    ax.set_yticks(ticks, labels)
    ax.minorticks_off()


def ticks_at(ax, values, labels, **text) -> None:
    """Major x ticks exactly at ``values`` (the sizes a bench measured), labelled ``labels``, and no minor
    ticks: a log axis's own ticks named sizes nobody ran (10², 10³) and left the measured ones bare.
    ``text``: passed to ``set_xticks`` (rotation, alignment, font size)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(values, labels, **text)


def integer_ticks(ax, axis: str = "x") -> None:
    """Major ticks at whole numbers only (epochs, iterations): never "epoch 1.2"."""
    from matplotlib.ticker import MaxNLocator

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def convergence_curves(curves: Mapping[str, np.ndarray], *, title: str, subtitle: str = "", emphasis: str | None = None,
                       floors: Mapping[str, float] | None = None, notes: Sequence[str] = ()):
    """``‖z^L − z*‖`` against depth ``L`` (log scale), one line per labelled curve.

    Curves whose label contains ``emphasis`` (this run's init) are drawn thick, the others thin and
    faded (shown for comparison); float64 curves dashed. ``floors`` (label → value) are horizontal
    dotted lines (the accuracy of ``z*``, the float32 rounding floor); ``notes`` are printed in a
    box in the lower left (why a curve behaves as it does).
    """
    from deqlab.report.style import color

    fig, ax = new_axes(title + (f"\n{subtitle}" if subtitle else ""), "depth L (weight-tied layers)",
                       "‖z^L − z*‖₂ (dimensionless)", logy=True)
    for label, values in curves.items():
        values = np.maximum(np.asarray(values, dtype=float), 1e-300)  # exact zeros cannot be drawn on a log axis
        main = emphasis is None or emphasis in label
        init = label.split(",")[0]
        ax.plot(np.arange(len(values)), values, "--" if "float64" in label else "-", label=label + ("" if main else " (for comparison)"),
                color=color(init), lw=2.0 if main else 1.0, alpha=1.0 if main else 0.45)
    for (label, value), style in zip((floors or {}).items(), (":", "-.", (0, (5, 2, 1, 2, 1, 2)))):
        if value > 0:
            ax.axhline(value, color="0.35", ls=style, lw=1.0, label=f"{label} = {value:.1e}")
    if notes:
        ax.text(0.02, 0.03, "\n".join(notes), transform=ax.transAxes, fontsize=7, va="bottom",
                bbox={"boxstyle": "round", "fc": "white", "ec": "0.7", "alpha": 0.9})
    # beside the axes: inside, the comparison init's curves (flat near 1, or rising) ran under it
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
