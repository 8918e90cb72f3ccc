"""Figures as a reader meets them: legends beside the data they explain, not over it; log axes
labelled with plain numbers however few decades they span."""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def _extents(fig, ax):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)


def test_convergence_legend_covers_no_curve():
    """converge's figure: the comparison init's curves run flat near ‖z^L − z*‖ = 1 across the whole
    depth, right where an upper-right legend sat; the legend goes beside the axes."""
    from deqlab.report.figures import convergence_curves

    depth = np.arange(61)
    curves = {"init=default, float32": 0.6 * 0.63 ** depth + 4e-8, "init=default, float64": 0.6 * 0.63 ** depth,
              "init=normal, float32": np.full(61, 2.5), "init=normal, float64": np.full(61, 2.5)}
    fig = convergence_curves(curves, title="t", emphasis="init=default",
                             floors={"z* accuracy": 6e-17, "float32 rounding u·‖z*‖": 3.8e-8})
    legend, axes = _extents(fig, fig.axes[0])
    assert not legend.overlaps(axes)
    styles = [line.get_linestyle() for line in fig.axes[0].get_lines()[-2:]]
    assert styles[0] != styles[1], "the two floor lines must be told apart in the legend"


def test_bench_mondeq_time_axis_reads_in_plain_numbers():
    """Times within one decade once got ticks as '6 × 10⁰' or none at all."""
    from deqlab.report.mondeq_figures import bench_times

    times = {"peaceman_rachford": np.array([5.1]), "fixed_point": np.array([24.0]), "douglas_rachford": np.array([1.35])}
    fig = bench_times(np.array([50]), times, title="t")
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(labels) >= 3 and all("times" not in s and "\\" not in s and "^" not in s for s in labels), labels
    assert ax.get_ylabel().endswith("[ms]") and ax.get_xlabel()


def test_a_log_axis_over_a_decade_and_a_bit_gets_enough_labels():
    """sysid's validation NRMSE from 0.26 (the noise floor) to 4.3 was labelled 0.5, 1.0, 2.0 only."""
    from deqlab.report.sysid_figures import training_curves

    curves = {"ren": np.array([2.98, 2.28]), "lipschitz_ren": np.array([0.73, 0.65]), "linear": np.array([4.33, 3.51])}
    fig = training_curves(curves, title="t", noise_floor=0.2619)
    ax = fig.axes[0]
    fig.canvas.draw()
    low, high = ax.get_ylim()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text() and low <= t.get_position()[1] <= high]
    assert len(labels) >= 5, labels


def test_hvp_spectrum_panels_are_labelled_and_their_values_stay_inside():
    """hessian --hvp-only: the panel of the largest eigenvalues had no y label, and the value written
    beside the last point of each ranked panel ran over the axes' right edge."""
    from deqlab.report.hessian_figures import hvp_spectrum_plot

    bottom = np.array([-159.97, -148.44, -141.84, -138.38, -135.22])
    top = np.array([144.74, 152.17, 154.93, 2162.84, 3458.90])
    rng = np.random.default_rng(0)
    nodes = np.sort(rng.normal(0, 20, (4, 30)), axis=1)
    weights = np.full((4, 30), 1 / 30)
    fig = hvp_spectrum_plot(bottom, top, 91201, nodes, weights, title="t")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[:3]:
        assert ax.get_ylabel(), ax.get_title()
    for ax in fig.axes[:2]:
        box = ax.get_window_extent(renderer)
        for text in ax.texts:
            extent = text.get_window_extent(renderer)
            assert box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0 and extent.y1 <= box.y1, text.get_text()
