"""No silent change of what was asked (issue 11 item 4): do it, refuse, or say so in the output."""

import numpy as np
import pandas as pd


def _folder(root, command):
    """The one successful run folder (refused runs leave only a ``.failed`` one)."""
    (folder,) = [p for p in (root / command).iterdir() if p.is_dir() and not p.name.endswith(".failed")]
    return folder


def test_float32_atol_raise_is_recorded(cli, output_root):
    """float32 cannot reach atol 1e-12: the run goes on at 1e-6 and says so in the notes and the table."""
    r = cli("hessian", "--dtype", "float32", "solver.atol=1e-12", "check_layer=false", "unroll_steps=40")
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "solver.atol 1e-12 is below what float32 can reach; every solve ran at atol 1e-06" in out
    spectrum = pd.read_csv(_folder(output_root, "hessian") / "spectrum.csv").set_index("quantity")["value"]
    assert float(spectrum["solver atol asked"]) == 1e-12 and float(spectrum["solver atol used"]) == 1e-6


def test_float64_atol_is_not_changed(cli, output_root):
    r = cli("hessian", "solver.atol=1e-12", "check_layer=false", "unroll_steps=40")
    assert r.exit_code == 0, r.output
    assert "below what" not in r.output
    spectrum = pd.read_csv(_folder(output_root, "hessian") / "spectrum.csv").set_index("quantity")["value"]
    assert float(spectrum["solver atol used"]) == 1e-12


def test_go_on_works_with_hvp_only(cli, output_root):
    """--go-on --hvp-only: the run completes, marked, with the FD check a FAILED row (its solves cannot converge)."""
    args = ("hessian", "--hvp-only", "--n-z", "12", "--batch", "3", "probes=8", "top_k=3", "solver.max_iter=3")
    r = cli(*args)
    assert r.exit_code == 1 and "go_on" in r.stderr
    r = cli(*args, "--go-on")
    assert r.exit_code == 0, r.output
    assert "UNCONVERGED" in r.output
    table = pd.read_csv(_folder(output_root, "hessian") / "hvp.csv").set_index("quantity")
    row = table.loc["HVP vs central FD of the implicit gradient (rel. error)"]
    assert np.isnan(row["value"]) and str(row["detail"]).startswith("FAILED")
    assert np.isfinite(table.loc["trace (Hutchinson)", "value"])


def test_converge_closing_note_describes_what_ran(cli, output_root):
    """float64 pass, Anderson z* to 1e-10: no float32 sentence, and the flat gap is named as z*'s own accuracy."""
    r = cli("converge", "--restarts", "1", "--layers", "40", "--dtype", "float64", "solver=anderson", "model.n_z=20",
            "solver_table=[anderson]")
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "float32" not in out and "keeps falling" not in out and "still falling" not in out
    assert "The float64 gap is flat at 1.4e-10" in out and "how well z* itself is known" in out


def test_converge_closing_note_float32_default(cli, output_root):
    """The default (float32 pass, fsolve z* to 3e-16): the float32 floor sentence, and float64 still falling."""
    r = cli("converge", "--restarts", "1", "solver_table=[fsolve]")
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "float32 stores each entry of z^L" in out and "The float64 gap is still falling geometrically" in out
