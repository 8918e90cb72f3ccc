"""Hydra multiruns through the basic, joblib and submitit_local launchers."""

import pandas as pd
import pytest

JOB_FILES = {"gap.csv", "eigen.csv", "solvers.csv", "convergence.png", "converge.npz"}


@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_local"])
def test_sweep_runs_every_job(cli, output_root, launcher):
    r = cli("sweep", "converge", "seed=0,1", "restarts=1", "solver_table=[anderson]", f"hydra/launcher={launcher}",
            f"output_root={output_root}")
    assert r.exit_code == 0, r.output
    (sweep_dir,) = list((output_root / "sweep" / "converge").iterdir())
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    seeds = set()
    for job in jobs:
        assert JOB_FILES <= {p.name for p in job.iterdir()}, job
        seeds.add((job / ".hydra" / "overrides.yaml").read_text())
        assert len(pd.read_csv(job / "eigen.csv")) == 1
    assert len(seeds) == 2     # each job ran its own seed, nothing overwritten


@pytest.mark.parametrize(
    "args, message",
    [
        (["converge", "model.n_z=-1,2"], "model.n_z must be >= 1"),
        (["converge", "model.n_z=2,-1"], "model.n_z must be >= 1"),      # not only the first value is checked
        (["nosuch", "seed=1"], "unknown experiment"),
        (["converge", "hydra/launcher=bogus"], "unknown launcher 'bogus'"),
        (["converge", "seed=["], "bad override"),
    ],
)
def test_sweep_bad_input_exits_2_before_any_job(cli, output_root, args, message):
    r = cli("sweep", *args, f"output_root={output_root}")
    assert r.exit_code == 2 and message in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert not (output_root / "sweep").exists()


def test_strict_sweep_exits_1_when_a_job_reports_failures(cli, output_root):
    r = cli("sweep", "converge", "seed=0,1", "restarts=1", "solver=fixed_point", "solver.max_iter=1",
            "solver_table=[anderson]", "strict=true", f"output_root={output_root}")
    assert r.exit_code == 1 and "2 job(s) reported failures" in r.stderr
    (sweep_dir,) = list((output_root / "sweep" / "converge").iterdir())
    assert sorted(p.parent.name for p in sweep_dir.glob("*/failures.txt")) == ["0", "1"]
