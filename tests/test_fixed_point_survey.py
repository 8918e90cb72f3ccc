"""Which fixed point did each solver find (issue 11 item 3): the library survey and the two demos."""

import pandas as pd
import pytest
import torch

from deqlab.solvers.registry import SOLVERS, get_solver
from deqlab.solvers.survey import (
    describe_alternatives,
    place_point,
    survey_fixed_points,
)


def _three_roots(z):
    """``z = tanh(2z + 0.1)``: attracting roots near ±0.96 (ρ = 0.13) and a repelling one at −0.1003 (ρ = 1.98)."""
    return torch.tanh(2 * z + 0.1)


def test_survey_separates_the_repelling_root_from_the_attracting_one():
    z0 = torch.zeros(1, 1, dtype=torch.float64)
    ref = get_solver("newton")(_three_roots, z0, atol=1e-12, max_iter=100)
    points = {p.solver: p for p in survey_fixed_points(_three_roots, z0, ref, list(SOLVERS), atol=1e-12, max_iter=500,
                                                       known={"newton": ref})}
    # Newton (the reference) lands on the repelling middle root; Picard iteration cannot, it goes to +0.966
    assert abs(float(ref.z) + 0.1003387814904) < 1e-10
    assert points["newton"].same_point and points["newton"].rho > 1.9 and not points["newton"].attracting
    fp = points["fixed_point"]
    assert fp.converged and not fp.same_point and fp.attracting and abs(fp.rho - 0.1327) < 1e-3
    assert abs(fp.distance - 1.0666) < 1e-3
    assert "fixed_point reaches an attracting fixed point (rho(J) = 0.1327" in describe_alternatives(list(points.values()))


def test_same_point_bound_scales_with_the_residuals():
    """A point 1e-6 off the root with residual ~2e-6 is the same point; a different root is not."""
    z0 = torch.zeros(1, 1, dtype=torch.float64)
    ref = get_solver("newton")(_three_roots, z0, atol=1e-13, max_iter=100)
    rough = get_solver("fixed_point")(_three_roots, ref.z + 1e-6, atol=1e-3, max_iter=1)  # one step, residual ~2e-6
    assert place_point(_three_roots, "rough", rough, ref).same_point
    other = get_solver("fixed_point")(_three_roots, z0, atol=1e-13, max_iter=500)
    assert not place_point(_three_roots, "fp", other, ref).same_point


@pytest.fixture()
def repelling_case():
    return ("hessian", "--init", "normal", "--n-z", "3", "--seed", "617")


def test_hessian_refusal_names_the_attracting_alternative(cli, output_root, repelling_case):
    r = cli(*repelling_case)
    assert r.exit_code == 1
    err = " ".join(r.stderr.split())
    assert "anderson converged to a point where" in err and "ρ(J) = 1.0556" in err
    assert "fixed_point" in err and "newton" in err and "attracting fixed point (rho(J) = 0.9525" in err
    assert "--solver fixed_point" in err


def test_hessian_fixed_point_table_marks_the_other_equilibrium(cli, output_root, repelling_case):
    r = cli(*repelling_case, "--solver", "fixed_point", "check_layer=false", "unroll_steps=40")
    assert r.exit_code == 0, r.output
    (folder,) = [p for p in (output_root / "hessian").iterdir() if p.is_dir()]
    table = pd.read_csv(folder / "fixed_points.csv").set_index("solver")
    assert table.loc["fixed_point", "point"] == "same" and table.loc["newton", "point"] == "same"
    for name in ("anderson", "broyden"):
        assert table.loc[name, "point"] == "OTHER" and table.loc[name, "rho(J)"] > 1.05
        assert table.loc[name, "|z-z*|"] > 0.1
    assert abs(table.loc["fixed_point", "rho(J)"] - 0.9525) < 1e-4
    assert "other solvers found other equilibria" in " ".join(r.output.split())


def test_converge_fixed_point_table_marks_broyden(cli, output_root):
    """``converge --init normal``: Broyden 'converged' 2.88 away from fsolve's point, at another equilibrium."""
    r = cli("converge", "--init", "normal", "--restarts", "1", "solver_table=[anderson,broyden,fsolve]")
    assert r.exit_code == 0, r.output
    (folder,) = list((output_root / "converge").iterdir())
    table = pd.read_csv(folder / "fixed_points.csv").set_index("solver")
    assert table.loc["broyden", "point"] == "OTHER" and abs(table.loc["broyden", "|z-z*|"] - 2.88) < 0.01
    assert table.loc["fsolve", "point"] == "same" and table.loc["anderson", "point"] == "same"
    assert table["rho(J)"].notna().all()
    assert "broyden" in " ".join(r.output.split()) and "another equilibrium" in " ".join(r.output.split())
