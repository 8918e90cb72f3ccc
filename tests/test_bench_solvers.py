"""deqlab bench solvers on a tiny problem set: the CSV, the ratios, the acceleration it measures."""

import pandas as pd

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
