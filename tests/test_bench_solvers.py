"""deqlab bench solvers on a tiny problem set: the CSV, the ratios, the acceleration it measures."""

import pandas as pd

import helpers

from deqlab.cli.compose import load
from deqlab.demos import bench_solvers


def test_bench_cli_writes_csv(cli, output_root):
    r = cli("bench", "solvers", "sizes=[8]", "norms=[0.9]", "families=[symmetric]", "repeats=1", "batch=4")
    assert r.exit_code == 0, r.output
    (run,) = list((output_root / "bench" / "solvers").iterdir())
    frame = pd.read_csv(run / "bench.csv")
    assert set(frame["solver"]) == {"fixed_point", "anderson", "broyden", "root"}
    ref = frame[frame.solver == "fixed_point"].iloc[0]
    assert ref["f evals / fixed_point"] == 1.0 and ref["time / fixed_point"] == 1.0


def test_acceleration_on_the_slow_family():
    """On a symmetric W with ||W||_2 = 0.99, Anderson and Broyden need at most half of Picard's f-evals."""
    cfg, _ = load("bench_solvers", ["sizes=[50]", "norms=[0.99]", "families=[symmetric]", "repeats=1", "batch=8",
                                    "solvers=[fixed_point,anderson,broyden]"])
    frame = bench_solvers.run(cfg).tables["bench"].frame.set_index("solver")
    assert frame["converged"].all()
    assert frame.loc["anderson", "f evals / fixed_point"] <= 0.5
    assert frame.loc["broyden", "f evals / fixed_point"] <= 0.5


def test_bad_bench_config_exits_2(cli, output_root):
    r = cli("bench", "solvers", "norms=[1.5]")
    assert r.exit_code == 2 and "norms[0] must be <= 1" in r.stderr


def test_a_selection_with_nothing_to_measure_is_refused(cli, output_root):
    """Only scipy's solvers, every size above scipy_max_n: each row was skipped and the empty table ended in a
    KeyError traceback ('family')."""
    r = cli("bench", "solvers", "sizes=[4]", "solvers=[root]", "scipy_max_n=1")
    helpers.assert_one_line_error(r, "nothing to measure: solvers root run only at n_z <= scipy_max_n=1", code=2)
    assert not (output_root / "bench").exists()


def test_a_tolerance_the_dtype_cannot_resolve_is_refused(cli, output_root):
    """dtype=float32 with the default tol 1e-10: every solve ran its 5000 evaluations 'not converged' (3 min for
    sizes=[10]) and the bench exited 0 having measured nothing. The floor is eps·sqrt(n_z) of the largest size."""
    r = cli("bench", "solvers", "dtype=float32", "sizes=[10,1024]")
    helpers.assert_one_line_error(r, "tol 1e-10 is below what float32 resolves at n_z up to 1024 (eps·sqrt(n_z) = "
                                     "3.8e-06): no solve could reach it; use tol >= 3.8e-06 or dtype=float64", code=2)
    assert not output_root.exists()
    assert cli("config", "bench_solvers", "dtype=float32", "sizes=[10]", "tol=1e-6").exit_code == 0
    assert cli("config", "bench_solvers", "tol=1e-15", "sizes=[1024]").exit_code == 2   # float64: 7.1e-15


def test_scipy_max_n_without_a_scipy_solver_is_refused(cli, output_root):
    """`scipy_max_n` limits only fsolve and root: with neither in `solvers` the value went unused, exit 0."""
    r = cli("bench", "solvers", "sizes=[10]", "solvers=[fixed_point,anderson]", "scipy_max_n=100")
    helpers.assert_one_line_error(r, "scipy_max_n is not read by this run: it limits the scipy solvers (fsolve, root), "
                                     "which solvers = [fixed_point,anderson] does not name", code=2)
    assert not output_root.exists()
    r = cli("sweep", "bench_solvers", "sizes=[10]", "solvers=[fixed_point],[anderson]", "scipy_max_n=100")
    helpers.assert_one_line_error(r, "scipy_max_n is not read by any job of the sweep", code=2)
    assert not output_root.exists()
    assert cli("config", "bench_solvers", "solvers=[root]", "scipy_max_n=100").exit_code == 0


def test_bench_writes_its_figures_and_the_samples_behind_every_median(cli, output_root):
    """bench.png and fevals.png; bench_samples.npz / broyden_memory_samples.npz hold every timed call (seconds), one
    NaN-padded row per table row (scipy's root is timed once, the others ``repeats`` times), and each
    row's median is the table's median time."""
    import numpy as np

    r = cli("bench", "solvers", "sizes=[8]", "norms=[0.9]", "families=[symmetric]", "repeats=2", "batch=4")
    assert r.exit_code == 0, r.output
    (run,) = list((output_root / "bench" / "solvers").iterdir())
    assert (run / "bench.png").stat().st_size > 0 and (run / "fevals.png").stat().st_size > 0
    frame = pd.read_csv(run / "bench.csv")
    with np.load(run / "bench_samples.npz", allow_pickle=False) as npz:
        assert list(npz["solver"]) == list(frame["solver"]) and list(npz["family"]) == list(frame["family"])
        assert list(npz["n_z"]) == list(frame["n_z"]) and list(npz["norm"]) == list(frame["||W||_2"])
        samples = npz["time_s"]
    counts = np.isfinite(samples).sum(axis=1)
    assert list(counts) == [1 if s == "root" else 2 for s in frame["solver"]]
    np.testing.assert_allclose(1e3 * np.nanmedian(samples, axis=1), frame["median time [ms]"], rtol=1e-12)
    memory = pd.read_csv(run / "broyden_memory.csv")
    with np.load(run / "broyden_memory_samples.npz", allow_pickle=False) as npz:
        assert list(npz["broyden"]) == list(memory["broyden"]) and list(npz["n_z"]) == list(memory["n_z"])
        np.testing.assert_allclose(1e3 * np.nanmedian(npz["time_s"], axis=1), memory["time [ms]"], rtol=1e-12)
