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


def test_training_curves_name_the_validation_noise_floor():
    """sysid's training curves draw the validation set's noise floor; labelled 'noise floor' it read as
    the table's (test) floor, a different number (0.2619 against 0.1926 in a tiny run)."""
    from deqlab.report.sysid_figures import training_curves

    fig = training_curves({"ren": np.array([3.0, 2.3]), "lstm": np.array([1.0, 0.98])}, title="t", noise_floor=0.2619)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "validation noise floor = 0.2619" in labels, labels


def test_a_log_axis_below_one_labels_its_ticks_with_their_values():
    """bench mondeq: times from 0.03 ms (the direct solve) to 1000 ms printed the ticks 0.5, 0.2, 0.1 and
    0.05 as '0', '0', '0', '0' (a plain formatter with the decimals of the axis's large end)."""
    from deqlab.report.mondeq_figures import bench_times

    sizes = np.array([50, 256, 1024])
    times = {"fixed_point": np.array([70.0, 340.0, 1100.0]), "peaceman_rachford": np.array([1.05, 38.0, 480.0]),
             "direct solve (linear monDEQ)": np.array([0.031, 7.2, 46.0])}
    fig = bench_times(sizes, times, title="t")
    ax = fig.axes[0]
    fig.canvas.draw()
    low, high = ax.get_ylim()
    shown = [(t.get_position()[1], t.get_text()) for t in ax.get_yticklabels()
             if t.get_text() and low <= t.get_position()[1] <= high]
    assert any(value < 1 for value, _ in shown), shown
    for value, text in shown:
        assert float(text.replace("−", "-")) == pytest.approx(value, rel=1e-6), (value, text)


def test_mondeq_training_figure_colours_each_model_by_its_solver():
    """'unconstrained (fixed_point)' took a colour from its whole name: forward-backward's cyan, while
    fixed-point iteration is blue in the alpha-sweep figure of the same run."""
    from matplotlib.colors import to_hex

    from deqlab.report.mondeq_figures import training_iterations
    from deqlab.report.style import color

    epochs = np.arange(1, 4)
    names = ["monotone (peaceman_rachford)", "unconstrained (fixed_point)"]
    steps = {n: np.array([30.0, 31.0, 33.0]) for n in names}
    fig = training_iterations(epochs, steps, steps, {n: np.ones(3) for n in names}, max_iter=200, title="t")
    lines = {line.get_label(): to_hex(line.get_color()) for line in fig.axes[0].get_lines()}
    assert lines["unconstrained (fixed_point): mean"] == color("fixed_point")
    assert lines["monotone (peaceman_rachford): mean"] == color("peaceman_rachford")


def test_bench_hessian_ladder_figure_skips_sizes_without_a_time():
    """A GPU ladder has no dense form above dense_max_p and float32 rows have no eigsh: NaN times are
    left out (not drawn at 0 nor breaking the log axis); every measured P is a labelled tick."""
    import pandas as pd

    from deqlab.report.hessian_figures import ladder_times

    P = np.array([1312, 10_000, 100_000, 1_000_000])
    t = np.array([1e-3, 1e-2, 1e-1, 1.0])
    frame = pd.DataFrame({"dtype": ["float64"] * 4, "P": P, "gradient (s)": t, "HVP cold (s)": 2 * t, "HVP warm (s)": t / 3,
                          "dense closed form (s)": [1e-2, 0.5, np.nan, np.nan], "dense floor (s)": [5e-3, 0.3, np.nan, np.nan]})
    fig = ladder_times(frame, {"unrolled": (1312, 3.0)}, title="t")
    ax = fig.axes[0]
    dense = next(line for line in ax.lines if line.get_label().startswith("dense closed form"))
    assert list(dense.get_xdata()) == [1312, 10_000]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["1,312", "10,000", "100,000", "1,000,000"]
    assert ax.get_xlabel() and "[s]" in ax.get_ylabel()
    matplotlib.pyplot.close(fig)


def test_bench_solvers_figure_rings_a_solve_that_did_not_converge():
    import pandas as pd

    from deqlab.report.solver_figures import solver_times

    frame = pd.DataFrame({"family": ["gaussian"] * 4, "n_z": [10, 50, 10, 50], "||W||_2": [0.9] * 4,
                          "solver": ["fixed_point", "fixed_point", "anderson", "anderson"],
                          "converged": [True, False, True, True], "median time [ms]": [1.0, 20.0, 2.0, 3.0]})
    fig = solver_times(frame, title="t")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["fixed_point", "not converged", "anderson"]
    assert "[ms]" in fig.axes[0].get_ylabel() and fig.axes[0].get_xlabel() == "hidden size n_z"
    matplotlib.pyplot.close(fig)


@pytest.mark.parametrize("with_truth", [True, False])
def test_lowrank_estimates_figure_ranks_by_magnitude_and_labels_its_axes(with_truth):
    """deqlab lowrank's example and pairs runs wrote no figure; theirs puts each estimate's eigenvalues, by
    decreasing |λ|, beside the true H's (whose zero tail is summarised, not drawn), and the relative
    secant residual (and recovery error when H is known) per method."""
    import pandas as pd

    from deqlab.report.lowrank_figures import estimates_against_truth

    spectra = {"rank_k_recovery": np.array([3.0, -1.0]), "least_change": np.array([2.0, 0.5, -0.25])}
    truth = np.concatenate([[-1.0, 3.0], np.full(40, 1e-17)]) if with_truth else None
    frame = pd.DataFrame({"method": list(spectra), "||HX - Y||_F": [2e-15, 4.0],
                          "||H - H_true||_F / ||H_true||_F": [1e-15, 0.5] if with_truth else [np.nan, np.nan]})
    fig = estimates_against_truth(frame, spectra, truth, y_norm=2.0, title="t")
    left, right = fig.axes
    for ax in (left, right):
        assert ax.get_xlabel() or ax.get_xticklabels(), ax.get_title()
        assert ax.get_ylabel() and ("units" in ax.get_ylabel() or "dimensionless" in ax.get_ylabel())
    points = {line.get_label().split()[0]: line.get_ydata() for line in left.get_lines()}
    np.testing.assert_array_equal(points["rank_k_recovery"], [3.0, -1.0])          # by |λ|, not by value
    np.testing.assert_array_equal(points["least_change"], [2.0, 0.5, -0.25])
    heights = sorted(b.get_height() for b in right.patches)
    if with_truth:
        segments = left.collections[0].get_segments()
        assert [seg[0][1] for seg in segments] == [3.0, -1.0, 1e-17, 1e-17, 1e-17]   # largest rank + 2 shown
        assert "37 smaller eigenvalues not shown" in left.get_title()
        np.testing.assert_allclose(heights, [1e-15, 1e-15, 0.5, 2.0], rtol=1e-12)   # residuals / ||Y||_F, errors
    else:
        assert not left.collections
        np.testing.assert_allclose(heights, [1e-15, 2.0], rtol=1e-12)


def _overlapping_labels(fig, ax, axis: str = "y"):
    """Pairs of visible tick labels of ``ax`` whose drawn boxes overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    low, high = ax.get_ylim() if axis == "y" else ax.get_xlim()
    labels = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    idx = 1 if axis == "y" else 0
    shown = [(t.get_text(), t.get_window_extent(renderer)) for t in labels
             if t.get_text() and t.get_visible() and low <= t.get_position()[idx] <= high]
    return [(a, b) for i, (a, ea) in enumerate(shown) for b, eb in shown[i + 1:] if ea.overlaps(eb)]


def test_lowrank_eigenvalue_axis_labels_do_not_overprint_around_zero():
    """deqlab lowrank --pairs: the symlog axis of the eigenvalues printed 10⁻⁵, 0 and −10⁻⁵ on top of one
    another at the linear band (an unreadable blob beside the axis); ticks are now decades outside the
    band and 0."""
    import pandas as pd

    from deqlab.report.lowrank_figures import estimates_against_truth

    spectra = {"rank_k_recovery": np.array([76.6, 33.1, 4.73, 2.9e-6, -2.6e-6, -21.6]),
               "least_change": np.array([56.7, 12.3, 8.48, 2.1, 0.3, -0.9, -8.1, -14.3, -23.0, 1e-7, -1e-7, 3e-8])}
    truth = np.concatenate([[80.0, -22.0, 33.0, 4.7], np.full(16, 1e-16)])
    frame = pd.DataFrame({"method": list(spectra), "||HX - Y||_F": [1.8e-5, 5.8e-6],
                          "||H - H_true||_F / ||H_true||_F": [1.6e-7, 0.66]})
    fig = estimates_against_truth(frame, spectra, truth, y_norm=200.0, title="t")
    assert not _overlapping_labels(fig, fig.axes[0])
    matplotlib.pyplot.close(fig)


def test_hessian_heatmap_colour_bar_labels_do_not_overprint_around_zero():
    """deqlab hessian --n-z 8 --batch 8 (largest |entry| 5.3, not a power of ten): the colour bar printed
    10⁻⁴, 0 and −10⁻⁴ over one another at the edge of its linear band (experiments/hessian/p114_batch8)."""
    from deqlab.report.hessian_figures import hessian_heatmaps

    rng = np.random.default_rng(0)
    a = rng.normal(size=(12, 12))
    h = (a + a.T) / 2
    h *= 5.3 / np.abs(h).max()
    fig = hessian_heatmaps({"H": h, "Term A": h / 3}, [("W_z", 0), ("b_z", 8)], title="t")
    bar = fig.axes[-1]
    assert "symlog" in bar.get_ylabel()
    assert not _overlapping_labels(fig, bar)
    matplotlib.pyplot.close(fig)


def test_pinn_loss_panel_legend_beside_the_curves_and_labelled_ticks():
    """deqlab nethessian pinn --steps 200: the loss legend sat over the curves' descent (upper right) and the
    log axis from 1.8 to 100 was labelled 10¹ and 10² only."""
    from deqlab.report.nethessian_figures import pinn_summary

    g = np.linspace(0, 1, 9)
    X, Y = np.meshgrid(g, g, indexing="ij")
    u = np.sin(np.pi * X) * np.sin(np.pi * Y)
    steps = np.arange(200)
    loss = 1.8 + 98 * np.exp(-steps / 25.0)
    fig = pinn_summary(X, Y, u, u, {"forward": loss, "double_backward": loss * (1 + 1e-7)}, route="forward",
                       title="Poisson PINN −Δu = f on (0,1)², 2→32→32→1 tanh, float32, 200 Adam steps, seed=0")
    ax = fig.axes[2]
    legend, box = _extents(fig, ax)
    assert not legend.overlaps(box)
    low, high = ax.get_ylim()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text() and low <= t.get_position()[1] <= high]
    assert len(labels) >= 4, labels
    renderer = fig.canvas.get_renderer()
    for panel in fig.axes[:2]:   # a one-line title wider than its square panel ran over the '1.0' tick, 1 px above it
        title = panel.title.get_window_extent(renderer)
        ticks = [t.get_window_extent(renderer) for t in panel.get_yticklabels() if t.get_text()]
        assert title.x0 >= max(t.x1 for t in ticks), panel.get_title()
        assert not title.overlaps(fig._suptitle.get_window_extent(renderer)), panel.get_title()
    matplotlib.pyplot.close(fig)


def test_alpha_sweep_has_no_iteration_count_ticks_in_its_failure_bands():
    """mondeq's alpha sweep draws runs that did not converge or diverged in bands above max_iter, at made-up
    heights; a '10⁴' tick label there read as a count of 10,000 iterations for the diverged stars."""
    from deqlab.report.mondeq_figures import alpha_sweep

    alphas = np.array([0.01, 0.1, 1.0, 10.0])
    steps = {"forward_backward": np.array([2000, 596, 2000, 450]), "peaceman_rachford": np.array([2000, 267, 52, 219])}
    converged = {"forward_backward": np.array([False, True, False, False]),
                 "peaceman_rachford": np.array([False, True, True, True])}
    diverged = {"forward_backward": np.array([False, False, False, True]), "peaceman_rachford": np.zeros(4, bool)}
    fig = alpha_sweep(alphas, steps, converged, {"anderson": (55, True)}, bound=0.03, max_iter=2000, title="t",
                      diverged=diverged)
    ax = fig.axes[0]
    fig.canvas.draw()
    low, high = ax.get_ylim()
    shown = [t.get_position()[1] for t in ax.get_yticklabels() if t.get_text() and low <= t.get_position()[1] <= high]
    assert shown and max(shown) <= 2000, shown
    matplotlib.pyplot.close(fig)


def test_mondeq_converged_fraction_lines_stay_visible_when_equal():
    """Both models converged in every batch (fraction 1.0 each epoch): the second line covered the first
    exactly, and the monotone model vanished from the lower panel."""
    from deqlab.report.mondeq_figures import training_iterations

    epochs = np.arange(1, 4)
    names = ["monotone (peaceman_rachford)", "unconstrained (fixed_point)"]
    steps = {n: np.array([30.0, 31.0, 33.0]) for n in names}
    fig = training_iterations(epochs, steps, steps, {n: np.ones(3) for n in names}, max_iter=200, title="t")
    first, second = fig.axes[1].get_lines()[:2]
    assert first.get_markersize() > second.get_markersize()
    matplotlib.pyplot.close(fig)


def test_sysid_figures_give_every_model_its_own_colour():
    """Models are coloured by name; names outside the palette took a hashed colour, and
    'lipschitz_ren_g1' and 'lipschitz_ren_g2' (experiments/sysid.md's γ sweep) both came out red, 'ren_small'
    the purple of 'rnn': the legend could not tell them apart."""
    from matplotlib.colors import to_hex

    from deqlab.report.style import color
    from deqlab.report.sysid_figures import predictions, robustness_accuracy, training_curves

    names = ["lipschitz_ren_g1", "lipschitz_ren_g2", "ren_small", "rnn", "ren"]
    rows = [{"name": n, "nrmse": 0.2 + 0.05 * i, "lipschitz_lower": 0.3 + 0.1 * i, "lipschitz_bound": None}
            for i, n in enumerate(names)]
    fig = robustness_accuracy(rows, title="t")
    scatter = [to_hex(c.get_facecolor()[0]) for c in fig.axes[0].collections]
    assert len(set(scatter)) == len(names), scatter
    assert scatter[names.index("rnn")] == color("rnn") and scatter[names.index("ren")] == color("ren")
    curves = training_curves({n: np.array([1.0, 0.5]) for n in names}, title="t")
    lines = {line.get_label(): to_hex(line.get_color()) for line in curves.axes[0].get_lines()}
    y = np.ones((1, 5, 1))
    pred = predictions(y, {n: y for n in names}, sample_time=None, washout=1, trajectories=1, title="t")
    drawn = {line.get_label(): to_hex(line.get_color()) for line in pred.axes[0].get_lines()}
    assert all(lines[n] == drawn[n] == scatter[i] for i, n in enumerate(names)), (lines, drawn, scatter)
    for f in (fig, curves, pred):
        matplotlib.pyplot.close(f)


def test_robustness_accuracy_names_cover_no_other_point_or_name():
    """experiments/sysid/robustness_accuracy.png: 'ren' was written under the lipschitz_ren point beside it
    (each name at one fixed offset from its point); a name now moves to a free side."""
    from deqlab.report.sysid_figures import robustness_accuracy

    rows = [{"name": "ren", "nrmse": 0.1771, "lipschitz_lower": 0.4256, "lipschitz_bound": None},
            {"name": "lipschitz_ren", "nrmse": 0.1816, "lipschitz_lower": 0.4135, "lipschitz_bound": 0.8257},
            {"name": "lstm", "nrmse": 0.1995, "lipschitz_lower": 0.478, "lipschitz_bound": None},
            {"name": "rnn", "nrmse": 0.2100, "lipschitz_lower": 0.68, "lipschitz_bound": None},
            {"name": "linear", "nrmse": 0.2029, "lipschitz_lower": 0.401, "lipschitz_bound": None}]
    fig = robustness_accuracy(rows, title="t", unit="rad/(N·m)")
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    names = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(names) == len(rows)
    for i, a in enumerate(names):
        assert not any(a.overlaps(b) for b in names[i + 1:]), ax.texts[i].get_text()
    r = np.sqrt(40) / 2 * fig.dpi / 72
    points = ax.transData.transform([(row["nrmse"], row["lipschitz_lower"]) for row in rows])
    for text, box in zip(ax.texts, names):
        for (x, y) in points:
            assert not (box.x0 < x + r and x - r < box.x1 and box.y0 < y + r and y - r < box.y1), text.get_text()
    matplotlib.pyplot.close(fig)


def test_hessian_spectrum_y_label_fits_beside_its_axes():
    """hessian's spectrum.png: the one-line y label (unit, scale and linear band) was taller than the axes
    and ran to the figure's bottom edge."""
    from deqlab.report.hessian_figures import spectrum_plot

    rng = np.random.default_rng(0)
    spectra = {"H": rng.normal(size=61), "Term A": rng.normal(size=61), "Term B": rng.normal(size=61)}
    fig = spectrum_plot(spectra, title="Eigenvalues of H and its terms (P=61)", subtitle="solver=anderson")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    label, box = ax.yaxis.label.get_window_extent(renderer), ax.get_window_extent(renderer)
    assert "θ²" in ax.get_ylabel() and "linear" in ax.get_ylabel()
    assert box.y0 <= label.y0 and label.y1 <= box.y1, (label, box)
    matplotlib.pyplot.close(fig)


def test_nethessian_check_timing_legend_does_not_call_every_route_forward_recursion():
    """The check's timing panel labelled our times 'ours (forward recursion)' on rows timing the adjoint
    formula too."""
    import pandas as pd

    from deqlab.report.nethessian_figures import check_errors

    frame = pd.DataFrame({"quantity": ["Hessian H", "Hessian H"], "route": ["forward recursion", "adjoint (fwd J + bwd)"],
                          "max rel error": [2e-16, 3e-16], "ours [ms]": [0.2, 0.3], "reference [ms]": [8.0, 8.0]})
    fig = check_errors(frame, tolerance=1e-12, title="t")
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert labels[0].startswith("ours") and "forward recursion" not in labels[0], labels
    matplotlib.pyplot.close(fig)


def test_train_digits_legends_sit_beside_the_panels():
    """train digits' training.png: the accuracy legend (lower right) covered the end of the monotone DEQ's
    curve and the iterations legend (upper right) the max_iter line."""
    from deqlab.report.train_figures import accuracy_and_iterations

    epochs = {n: np.array([1, 2]) for n in ("tanh DEQ", "monotone DEQ (PR)", "MLP")}
    acc = {"tanh DEQ": np.array([0.62, 0.69]), "monotone DEQ (PR)": np.array([0.42, 0.47]), "MLP": np.array([0.58, 0.60])}
    its = {"tanh DEQ": np.array([12.0, 12.1]), "monotone DEQ (PR)": np.array([35.4, 35.5])}
    fig = accuracy_and_iterations(epochs, acc, its, max_iter=100, title="t")
    for ax in fig.axes[:2]:
        legend, box = _extents(fig, ax)
        assert not legend.overlaps(box), ax.get_ylabel()
    matplotlib.pyplot.close(fig)


def test_hvp_spectrum_values_are_not_written_over_the_line():
    """hessian --hvp-only: each ranked eigenvalue's value sat above-right of its point, where the rising
    line of the smallest eigenvalues passes ('-13.09' printed over it)."""
    from deqlab.report.hessian_figures import hvp_spectrum_plot

    bottom = np.array([-13.732, -13.094, -11.616, -11.082, -10.704])
    top = np.array([12.78, 13.49, 14.87, 21.22, 34.27])
    rng = np.random.default_rng(0)
    nodes = np.sort(rng.normal(0, 5, (4, 30)), axis=1)
    fig = hvp_spectrum_plot(bottom, top, 1021, nodes, np.full((4, 30), 1 / 30), title="t")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[:2]:
        line = ax.get_lines()[0]
        xy = ax.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()]))
        path = np.concatenate([np.linspace(a, b, 200) for a, b in zip(xy[:-1], xy[1:])])
        for text in ax.texts:
            box = text.get_window_extent(renderer)
            inside = (path[:, 0] > box.x0) & (path[:, 0] < box.x1) & (path[:, 1] > box.y0) & (path[:, 1] < box.y1)
            assert not inside.any(), (ax.get_title(), text.get_text())
    matplotlib.pyplot.close(fig)


def test_hessian_heatmap_group_names_do_not_overprint():
    """deqlab hessian --n-z 20: the group names sat at each block's first index, and the short blocks b_z, U_z
    and W_y, b_y wrote their names into one another on both axes."""
    from deqlab.report.hessian_figures import hessian_heatmaps

    n, d = 20, 2
    sizes = {"W_z": n * n, "b_z": n, "U_z": n * d, "W_y": n, "b_y": 1}
    starts, at = [], 0
    for g, k in sizes.items():
        starts.append((g, at))
        at += k
    h = np.random.default_rng(0).normal(size=(at, at))
    fig = hessian_heatmaps({"H": h + h.T, "Term A": h @ h.T / at}, starts, title="t")
    for ax in fig.axes[:2]:
        assert not _overlapping_labels(fig, ax, "x") and not _overlapping_labels(fig, ax, "y")
        assert [t.get_text() for t in ax.get_xticklabels()] == list(sizes)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(sizes)
    matplotlib.pyplot.close(fig)


def test_symlog_decades_leave_a_non_finite_scale_alone():
    """A Hessian with a NaN entry (--go-on after an unconverged solve) must still draw: no decades from NaN."""
    from deqlab.report.figures import symlog_decades

    assert symlog_decades(float("nan"), 1e-4) == ([], []) and symlog_decades(1.0, 0.0) == ([], [])
    ticks, labels = symlog_decades(5.3, 5.3e-4, within=True)
    assert ticks == [-1.0, -0.1, -0.01, -0.001, 0.0, 0.001, 0.01, 0.1, 1.0] and labels[4] == "0" and labels[-1] == "1e0"


def test_hessian_heatmap_draws_a_matrix_with_a_non_finite_entry():
    """A NaN entry made the colour scale's vmax NaN: 'Invalid vmin or vmax' and no figure (the run failed
    while drawing)."""
    from deqlab.report.hessian_figures import hessian_heatmaps

    h = np.random.default_rng(0).normal(size=(10, 10))
    h[2, 3] = np.nan
    fig = hessian_heatmaps({"H": h, "Term A": np.where(np.isnan(h), np.inf, h)}, [("W_z", 0), ("b_z", 8)], title="t")
    fig.canvas.draw()
    assert [t.get_text() for t in fig.axes[-1].get_yticklabels() if t.get_text()][-1] == "1e0"
    matplotlib.pyplot.close(fig)
