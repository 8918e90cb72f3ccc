"""deqlab converge: the lecture's behaviour, its files, and its answers to bad input."""

import numpy as np
import pandas as pd
import pytest
import torch

from deqlab.cli.compose import load
from deqlab.demos import converge
from tests.helpers import overriding, read_csv_exact

GEOMETRIC_FALL = 1e-4     # default init: ||z^30 - z*|| / ||z^0 - z*|| must fall below this
NO_FALL = 0.1             # normal init: the gap at L=30 stays of order one


def run_cfg(*overrides):
    return converge.run(load("converge", overriding(["restarts=3", "solver_table=[fixed_point,anderson,broyden,fsolve]"], *overrides))[0])


def test_default_init_converges_geometrically():
    result = run_cfg()
    gap = result.tables["gap"].frame.set_index("L")
    g = gap["||z^L - z*|| (float64)"]
    assert g[30] / g[0] < GEOMETRIC_FALL
    assert (np.diff(g.values) < 0).all()
    eig = result.tables["eigen"].frame
    assert (eig["min Re eig(I-W_z)"] > 0).all() and eig["finite depth reached z*"].all()
    assert not result.failures


def test_normal_init_does_not_converge():
    result = run_cfg("model.init=normal")
    g = result.tables["gap"].frame.set_index("L")["||z^L - z*|| (float64)"]
    assert g[30] > NO_FALL
    eig = result.tables["eigen"].frame
    assert (eig["min Re eig(I-W_z)"] < 0).all()
    assert not eig["finite depth reached z*"].any()
    assert any("fixed_point" in f for f in result.failures)   # Picard iteration reported as failing


def test_float32_floors_while_float64_keeps_falling():
    result = run_cfg("curve_layers=80")
    arrays = result.arrays["converge"]
    assert arrays["gap"][80] > 1e-9                  # float32 round-off floor
    assert arrays["gap_float64"][80] < 1e-12         # float64 keeps falling


def test_depth_csv_holds_the_closing_notes_numbers(tmp_path):
    """depth.csv (what experiments/converge.md quotes for §3) recomputes from the saved arrays."""
    result = run_cfg("curve_layers=60")
    path = tmp_path / "depth.csv"
    result.files["depth.csv"](path)
    row = read_csv_exact(path).iloc[0]
    arrays = result.arrays["converge"]
    norm = float(np.linalg.norm(arrays["z_star"]))
    assert row["L"] == 60 and len(arrays["gap"]) == 61
    assert row["||z^L - z*|| (float32)"] == arrays["gap"][60] and row["||z^L - z*|| (float64)"] == arrays["gap_float64"][60]
    assert np.isclose(row["||z*||"], norm) and np.isclose(row["||z*||"], arrays["gap"][0])  # z^0 = 0
    assert row["unit round-off (float32)"] == 2.0**-24
    assert np.isclose(row["u*||z*|| (float32)"], 2.0**-24 * norm)
    assert f"{row['u*||z*|| (float32)']:.1e}" in result.notes[-1]  # the same number the run prints


def test_runs_are_repeatable_from_seed():
    a = run_cfg("seed=5").arrays["converge"]
    b = run_cfg("seed=5").arrays["converge"]
    c = run_cfg("seed=6").arrays["converge"]
    assert np.array_equal(a["W_z"], b["W_z"]) and np.array_equal(a["z_star"], b["z_star"])
    assert not np.array_equal(a["W_z"], c["W_z"])


def test_eigen_columns_match_numpy():
    W = torch.randn(7, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    min_re, min_sym = converge.eigen_columns(W)
    A = np.eye(7) - W.numpy()
    assert min_re == pytest.approx(min(np.linalg.eigvals(A).real), abs=1e-12)
    assert min_sym == pytest.approx(min(np.linalg.eigvalsh(0.5 * (A + A.T))), abs=1e-12)
    # the symmetric part's lambda_min bounds every eigenvalue's real part from below
    assert min_sym <= min_re + 1e-12


def test_input_matches_lecture_setup():
    x = converge.make_input(load("converge")[0])
    np.random.seed(2023)
    assert np.allclose(x.numpy(), np.random.normal(0, 0.1, size=(1, 3)))


def test_cli_writes_run_folder(cli, output_root):
    r = cli("converge", "--restarts", "2", "--seed", "1", "solver_table=[fixed_point,anderson]")
    assert r.exit_code == 0, r.output
    assert "Finite depth vs equilibrium" in r.output and "Eigenvalues of I - W_z" in r.output
    (run,) = list((output_root / "converge").iterdir())
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "gap.csv", "eigen.csv", "solvers.csv", "convergence.png", "converge.npz", "depth.csv"} <= names
    assert len(pd.read_csv(run / "eigen.csv")) == 2
    arrays = np.load(run / "converge.npz")
    assert arrays["W_z"].shape == (10, 10) and arrays["z_star"].shape == (1, 10)
    eig = np.load(run / "eigen.npz")
    assert eig["W_z"].shape == (2, 10, 10) and eig["z_star"].shape == (2, 10)
    # the saved arrays recompute the printed numbers
    assert np.allclose(eig["W_z"][0], arrays["W_z"])
    A = np.eye(10) - eig["W_z"][1]
    assert np.isclose(np.linalg.eigvals(A).real.min(), pd.read_csv(run / "eigen.csv")["min Re eig(I-W_z)"][1])
    z1 = eig["z_star"][1]
    assert np.allclose(np.tanh(eig["W_z"][1] @ z1 + eig["b_z"][1] + eig["U_z"][1] @ arrays["x"][0]), z1, atol=1e-9)
    # a second run never reuses the folder
    assert cli("converge", "--restarts", "1", "solver_table=[anderson]").exit_code == 0
    assert len(list((output_root / "converge").iterdir())) == 2


def test_cli_options_map_to_config(cli, output_root):
    r = cli("converge", "--init", "normal", "--dtype", "float64", "--solver", "anderson", "--restarts", "1", "--layers", "7",
            "solver_table=[anderson]")
    assert r.exit_code == 0, r.output
    (run,) = list((output_root / "converge").iterdir())
    text = (run / "config.yaml").read_text()
    assert "init: normal" in text and "dtype: float64" in text and "name: anderson" in text and "eig_layers: 7" in text


def test_strict_turns_non_convergence_into_exit_1(cli, output_root):
    r = cli("converge", "--init", "normal", "--strict", "--restarts", "1", "solver_table=[fixed_point]")
    assert r.exit_code == 1
    assert "failure report(s)" in r.stderr and "fixed_point" in r.stderr
    # results are still written, in a folder that says the run failed the strict check
    (run,) = list((output_root / "converge").iterdir())
    assert run.name.endswith(".failed") and "fixed_point" in (run / "error.txt").read_text()
    assert (run / "solvers.csv").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--solver", "nope"], "unknown solver 'nope'"),
        (["--init", "weird"], "unknown model.init 'weird'"),
        (["model.n_z=0"], "model.n_z must be >= 1"),
        (["model.n_z=-3"], "model.n_z must be >= 1"),
        (["model.n_z=abc"], "model.n_z must be an integer"),
        (["seed"], "malformed override 'seed'"),
        (["--bogus"], "no such option '--bogus'"),
        (["--bogus", "1"], "no such option '--bogus'"),
        (["nosuchkey=1"], "unknown key 'nosuchkey'"),
        (["input_std=nan"], "input_std must be finite"),
        (["--dtype", "float16"], "unknown dtype 'float16'"),
        (["layers=[1,-2]"], "layers[1] must be >= 0"),
        (["solver_table=[fixed_point,magic]"], "unknown solver_table entry 'magic'"),
        (["solver.atol=-1"], "solver.atol and solver.rtol must be >= 0"),
        (["solver=anderson", "solver.memory=0"], "solver.memory must be an integer in [1, 10000]"),
        (["solver=fixed_point", "solver.damping=0"], "damping must lie in (0, 1]"),
        (["solver.rtol=inf"], "solver.rtol must be a finite number"),
        (["solver.xtol=nan"], "solver.xtol must be a finite number"),
        (["solver_table=[]"], "solver_table must name at least one of"),
        (["+bogus=1"], "unknown key 'bogus'"),
        (["+model.nz=20"], "unknown key 'model.nz'; did you mean model.n_z"),
        (["++model.extra=1"], "unknown key 'model.extra'"),
        (["model={n_z:3,foo:1}"], "unknown key 'model.foo'"),
        (["model.foo.bar=1"], "unknown key 'model.foo'"),
        (["model=null"], "model must be a group of settings, set key by key (e.g. model.n_z=...), got None"),
        (["model=3"], "model must be a group of settings"),
        (["seed=18446744073709551616"], "seed must be <= 9223372036854775807"),
        (["--seed", "99999999999999999999999"], "seed must be <= 9223372036854775807"),
        (["seed=${oc.env:DEQLAB_NO_SUCH_VARIABLE}"], "cannot resolve the configuration"),
        (["seed=${seed}"], "cannot resolve the configuration"),
        (["model.n_z=${oc.decode:\"[1,2\"}"], "cannot resolve the configuration"),
        (["seed=glob(*)"], "is a sweep over several values"),
        (["seed=interval(0,1)"], "is a sweep over several values"),
        (["seed=0,1"], "is a sweep over several values"),
        (["layers=[0,1000000000]"], "layers[1] must be <= 100000"),
        (["model.n_z=200000"], "model.n_z must be <= 100000"),
        (["--init", "Normal"], "unknown model.init 'Normal'; choose one of: default, normal"),
        (["hydra.callbacks.x={a:1}"], "Hydra setting"),
        (["~seed"], "deleting keys is not supported ('~seed')"),
        (["command=hessian"], "command is fixed by the command line"),
        (["strict=maybe"], "strict must be true or false"),
        # a preset group takes one name: Hydra would merge a list's presets in turn, and take [] as the default
        (["solver=[anderson,newton]"], "solver takes one name, got ['anderson', 'newton'] (to compare several, sweep"),
        (["solver=[]"], "solver takes one name, got []"),
        (["solver=null"], "solver takes one name, got None"),
        (["solver={name:newton}"], "solver takes one name"),
        (["x" * 5_000 + "=1"], "cannot compose the configuration from the overrides: File name too long"),
        (["x" * 100_000 + "=1"], "is 100,002 characters long; at most 10,000 are read"),
        (["=3"], "malformed override '=3'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_folder(cli, output_root, args, message):
    r = cli("converge", *args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.output + r.stderr
    assert not output_root.exists() or not any(output_root.rglob("*.csv"))


def test_bad_input_never_touches_earlier_runs(cli, output_root):
    assert cli("converge", "--restarts", "1", "solver_table=[anderson]").exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in output_root.rglob("*") if p.is_file()}
    assert cli("converge", "model.n_z=-1").exit_code == 2
    after = {p: p.stat().st_mtime_ns for p in output_root.rglob("*") if p.is_file()}
    assert before == after


def test_unwritable_output_root_is_one_line_exit_2(cli, monkeypatch):
    monkeypatch.setenv("DEQLAB_OUTPUT_ROOT", "/dev/null/x")
    r = cli("converge", "--restarts", "1")
    assert r.exit_code == 2 and "cannot create a run folder under DEQLAB_OUTPUT_ROOT='/dev/null/x'" in r.stderr
    assert "Traceback" not in r.output + r.stderr


def test_a_reference_solve_that_does_not_converge_fails_the_run(cli, output_root):
    """Every gap is a distance to z*: against the best iterate of a failed solve it measures nothing, so
    the run ends as a failure (one line, exit 1, a .failed folder with no tables), not as reports."""
    r = cli("converge", "solver=anderson", "solver.max_iter=1", "--restarts", "1")
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and "reference solve (anderson) for z* did not converge" in r.stderr
    (folder,) = list((output_root / "converge").iterdir())
    assert folder.name.endswith(".failed") and "did not converge" in (folder / "error.txt").read_text()
    assert not list(folder.glob("*.csv"))
    assert "raise solver.max_iter" in r.stderr


def test_a_reference_tolerance_below_float64_resolution_is_named_not_more_iterations(cli, output_root):
    """solver.atol=1e-300 cannot be met in float64: the one line says so and does not advise raising
    max_iter (fsolve stops at 6e-17 whatever its budget)."""
    r = cli("converge", "solver.atol=1e-300", "--restarts", "1")
    assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "atol = 1e-300 is below what float64 resolves" in r.stderr and "raise solver.max_iter" not in r.stderr


def test_figure_names_whose_equilibrium_each_floor_belongs_to():
    """With --init normal the figure draws the default init's curves for comparison beside the float32
    rounding floor of the normal init's z*; labelled 'float32 rounding u·‖z*‖' alone it read as the floor of
    the converging (default) curve, which flattens at its own, different level."""
    result = run_cfg("model.init=normal", "restarts=1", "solver_table=[fixed_point]")
    fig = result.figures["convergence"]()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(s.startswith("float32 rounding") and "init=normal" in s for s in labels), labels


def test_one_restart_is_not_called_restarts():
    """'Eigenvalues of I - W_z over 1 restarts' (restarts=1, as in a quick sweep)."""
    result = run_cfg("restarts=1", "solver_table=[fixed_point]")
    assert "over 1 restart," in result.tables["eigen"].title
