"""The benches' raw-timing ``.npz`` layout (deqlab.report.timing_samples) and their time figures as a
reader meets them: axes in ms, on a log scale, the legend beside the data, every measured point drawn."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from deqlab.report.timing_samples import padded, sample_arrays

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def test_sample_arrays_pad_with_nan_and_load_without_pickle():
    arrays = sample_arrays({"n": [10, 10, 20], "method": ["a", "bb", None]},
                           {"time": [[1.0, 3.0, 2.0], [4.0], None]})
    assert arrays["time_s"].shape == (3, 3)
    np.testing.assert_array_equal(arrays["time_s"][1], [4.0, np.nan, np.nan])
    assert np.isnan(arrays["time_s"][2]).all()
    np.testing.assert_array_equal(np.nanmedian(arrays["time_s"][:2], axis=1), [2.0, 4.0])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as data:  # an object array would raise here
        assert data["method"].tolist() == ["a", "bb", ""] and data["n"].dtype.kind == "i"


def test_sample_arrays_refuse_columns_of_different_lengths():
    with pytest.raises(ValueError, match="one entry per table row"):
        sample_arrays({"n": [1, 2]}, {"time": [[1.0]]})
    assert padded([]).shape == (0, 1)


def _legend_beside(fig, ax) -> bool:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return not ax.get_legend().get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


def test_bench_lowrank_figure():
    from deqlab.report.lowrank_figures import bench_times

    frame = pd.DataFrame({"n": [500, 500, 500, 10000], "method": ["rank_k_recovery", "scipy SR1 (auto init)", "seed_method",
                                                                    "rank_k_recovery"],
                          "time [ms]": [0.25, 5.7, 2.4, 3.9], "numpy closed form [ms]": [0.2, np.nan, np.nan, 2.5]})
    fig = bench_times(frame, reference="scipy SR1 (auto init)", title="t")
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log" and ax.get_ylabel().endswith("[ms]") and ax.get_xlabel()
    drawn = np.concatenate([line.get_ydata() for line in ax.get_lines()])
    assert set(frame["time [ms]"]) | {0.2, 2.5} <= set(drawn.tolist())
    assert any("reference" in t.get_text() for t in ax.get_legend().get_texts()) and _legend_beside(fig, ax)


def test_bench_nethessian_figure_has_a_panel_per_task():
    from deqlab.report.nethessian_figures import bench_times

    rows = [{"task": t, "dtype": d, "batch": 4, "method": m, "median time [ms]": v}
            for t in ("laplacian", "hessian") for d in ("float32", "float64")
            for m, v in (("forward recursion", 1.0), ("double-backward loop", 30.0))]
    fig = bench_times(pd.DataFrame(rows), reference="double-backward loop", ours=("forward recursion",), title="t")
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and "[ms]" in ax.get_xlabel() and _legend_beside(fig, ax)
        assert [t.get_fontweight() for t in ax.get_yticklabels()] == ["bold", "normal"]


def test_bench_sysid_figure():
    from deqlab.report.sysid_figures import bench_step_times

    frame = pd.DataFrame({"model": ["ren", "ren", "lstm"] * 2, "backward": ["autograd", "implicit", "autograd"] * 2,
                          "threads": [1, 1, 1, 2, 2, 2], "median time [s]": [0.25, 0.15, 0.024, 0.4, 0.8, 0.12]})
    fig = bench_step_times(frame, title="t")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_ylabel().endswith("[ms]") and _legend_beside(fig, ax)
    assert len(ax.get_lines()) == 3
    drawn = np.concatenate([line.get_ydata() for line in ax.get_lines()])
    np.testing.assert_allclose(np.sort(drawn), np.sort(1e3 * frame["median time [s]"].to_numpy()))
