"""`deqlab hessian` through the CLI: printed routes, files, and bad input."""

import re

import numpy as np
import pandas as pd
import pytest
import helpers

from deqlab.errors import InputError

#: the CLI's own numbers must meet the same bars as the library tests
CLI_UNROLL_RTOL = 1e-10
CLI_FD_RTOL = 1e-8


def run_folder(root, command="hessian"):
    return helpers.run_folder(root, command, finished=False)


def test_check_fd_prints_routes_and_writes_files(cli, output_root):
    r = cli("hessian", "--check-fd", "--batch", "2", "unroll_steps=80")
    assert r.exit_code == 0, r.output
    for text in ("(a) central FD", "(b) torch.func.hessian", "(c) torch.func.hessian", "PITFALL", "Term A", "Term B",
                 "cond(I-J) max", "n negative", "time (s)"):
        assert text in r.output
    folder = run_folder(output_root)
    H = np.load(folder / "hessian.npy")
    problem = np.load(folder / "problem.npz")
    P = 6 * 6 + 6 + 6 * 2 + 6 + 1
    assert H.shape == (P, P)
    assert problem["theta"].shape == (P,) and problem["theta_names"][0] == "W_z[0,0]" and problem["theta_names"][-1] == "b_y[0]"
    assert problem["x"].shape == (2, 2) and problem["z_star"].shape == (2, 6)
    np.testing.assert_allclose(problem["theta"][:36], problem["W_z"].ravel())
    for png in ("hessian_heatmap.png", "spectrum.png"):
        assert (folder / png).stat().st_size > 10_000
    routes = pd.read_csv(folder / "routes.csv").set_index("route")
    err = routes["rel. error"]
    assert err[[i for i in err.index if i.startswith("(a)")][0]] <= CLI_FD_RTOL
    assert err[[i for i in err.index if i.startswith("(b)")][0]] <= CLI_UNROLL_RTOL
    assert err[[i for i in err.index if i.startswith("(c)")][0]] <= CLI_UNROLL_RTOL
    assert err[[i for i in err.index if i.startswith("PITFALL")][0]] >= 0.05
    terms = np.load(folder / "terms.npz")
    np.testing.assert_allclose(terms["term_a"] + terms["term_b"] + terms["term_r"], H, rtol=0, atol=1e-14)
    # spectrum.csv keeps every digit (it used to hold the printed 6 significant digits as text)
    spectrum = pd.read_csv(folder / "spectrum.csv").set_index("quantity")["value"]
    eigenvalues = np.linalg.eigvalsh(H)
    assert float(spectrum["lambda_min"]) == terms["eigenvalues"][0] and float(spectrum["lambda_max"]) == terms["eigenvalues"][-1]
    assert abs(float(spectrum["lambda_max"]) - eigenvalues[-1]) <= 1e-12 * abs(eigenvalues).max()
    assert spectrum["forward converged"] == "yes" and spectrum["n_z"] == "6"


def test_groups_option(cli, output_root):
    r = cli("hessian", "--groups", "b_z,W_y", "check_layer=false", "unroll_steps=60")
    assert r.exit_code == 0, r.output
    H = np.load(run_folder(output_root) / "hessian.npy")
    assert H.shape == (12, 12)
    # a route without a time says why (the pitfall's row printed a bare red 'nan', which reads as a failure)
    routes = pd.read_csv(run_folder(output_root) / "routes.csv").set_index("route")
    assert routes["time (s)"].isna().any()
    for route, row in routes[routes["time (s)"].isna()].iterrows():
        assert "not timed" in str(row["detail"]) or "FAILED" in str(row["detail"]), route


def test_hvp_only(cli, output_root):
    r = cli("hessian", "--hvp-only", "--n-z", "12", "--batch", "3", "probes=8", "top_k=3")
    assert r.exit_code == 0, r.output
    folder = run_folder(output_root)
    assert not (folder / "hessian.npy").exists()
    table = pd.read_csv(folder / "hvp.csv").set_index("quantity")
    assert table.loc["HVP vs central FD of the implicit gradient (rel. error)", "value"] <= 1e-7
    arrays = np.load(folder / "hvp.npz")
    assert arrays["top"].shape == (3,) and arrays["bottom"].shape == (3,)
    assert (folder / "spectrum.png").exists()
    # a row without a value says so (the table prints a red 'nan' there, which otherwise reads as a failure)
    for quantity, row in table[table["value"].isna()].iterrows():
        assert "value nan" in str(row["detail"]), quantity
    # the gradient's time excludes its adjoint solve (done once in the setup): the row says so, or the
    # HVP / gradient ratio reads as a hundreds-fold cost
    assert "adjoint" in table.loc["one implicit gradient", "detail"]
    # the eigenvalue table's rank counts from 0 in ascending order, the figure from 1 at each end: said
    assert "from 0 = λ_min to" in " ".join(r.output.split())


def test_normal_init_is_refused_with_conditioning_figure(cli, output_root):
    r = cli("hessian", "--init", "normal")
    assert r.exit_code == 1
    assert "spectral radius" in r.stderr and "cond" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # in words a reader checks: the point is repelling (it read 'I − J ... is not contractive', a property of J),
    # and the start is named once ('From z = 0, no registered solver ... from the same start')
    assert r.stderr.startswith("error: the fixed point is repelling (ρ(J) ≥ 1)") and "same start" not in r.stderr
    assert "Traceback" not in r.output
    # no successful run folder claims results
    assert not [p for p in (output_root / "hessian").iterdir() if p.is_dir() and not p.name.endswith(".failed")]


def test_a_repelling_point_differentiated_anyway_gives_no_false_advice(cli, output_root):
    """require_contractive=false at ρ(J) = 1.19: route (b)'s note advised raising --steps 'to watch (b)
    converge', which at ρ(J) ≥ 1 makes its truncation grow like L²ρ^L instead."""
    r = cli("hessian", "--init", "normal", "require_contractive=false", "check_layer=false", "unroll_steps=60")
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "raise --steps" not in text and "no depth makes (b) converge" in text


def test_ill_conditioned_threshold(cli, output_root):
    r = cli("hessian", "max_cond=1.5")
    assert r.exit_code == 1
    assert "ill-conditioned" in r.stderr and "cond₂(I − J) = " in r.stderr


def test_unconverged_forward_solve_refused_then_marked(cli, output_root):
    r = cli("hessian", "solver.max_iter=3", "check_layer=false", "unroll_steps=40")
    assert r.exit_code == 1
    assert "did not converge" in r.stderr and "go_on" in r.stderr
    r = cli("hessian", "--go-on", "solver.max_iter=3", "check_layer=false", "unroll_steps=40")
    assert r.exit_code == 0, r.output
    assert "UNCONVERGED" in r.output and "not converged" in r.output


def test_a_tolerance_too_loose_for_z_star_is_refused_then_marked(cli, output_root):
    """solver.atol=1 (the largest the settings take; 1e308 before they had a range) stops the solve at
    residual 0.8; the polish brought it only to residual 5e-5, and the
    Hessian there (off by 1e-4 from the unroll) was reported as the reference."""
    r = cli("hessian", "solver.atol=1", "check_layer=false", "unroll_steps=40")
    assert r.exit_code == 1 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "too far from z* for the polish" in r.stderr and "lower solver.atol" in r.stderr
    assert [p.name for p in (output_root / "hessian").iterdir() if p.suffix == ".failed"]
    r = cli("hessian", "--go-on", "solver.atol=1", "check_layer=false", "unroll_steps=40")
    assert r.exit_code == 0, r.output
    assert "UNCONVERGED" in r.output


@pytest.mark.parametrize(
    "args,message",
    [
        (("--groups", "W_z,nope"), "unknown groups entry 'nope'"),
        (("--n-z", "-3"), "model.n_z"),
        (("--dtype", "float16"), "dtype"),
        (("--fd-step", "0"), "fd_step"),
        # (exit 0, the finite differences' route reported a 100% error: θ + 1e-300 is θ)
        (("--check-fd", "--fd-step", "1e-300"), "fd_step must be >= 2.2e-16 (float64's epsilon"),
        (("--solver", "magic"), "unknown solver"),
        (("--n-z", "60"), "max_dense_p"),
        (("check_fd=maybe",), "check_fd"),
        # (exit 0, and no finite-difference route ran: hvp_only has no dense H to compare)
        (("--hvp-only", "--check-fd"), "check_fd is not read by this run: it (--check-fd) compares the dense Hessian with "
                                     "finite differences and --hvp-only"),
        # (exit 0, the value ignored: keys only the other mode reads)
        (("probes=128",), "probes is not read by this run: it is read only by the matrix-free mode (add --hvp-only"),
        (("--hvp-only", "unroll_steps=5"), "unroll_steps is not read by this run: it sizes or checks the dense Hessian"),
        # (refused only as the run reached Hutchinson's estimate: a sweep over it started its jobs)
        (("--hvp-only", "probes=1"), "probes must be >= 2, got 1"),
    ],
)
def test_bad_input_exit_2_no_folder(cli, output_root, args, message):
    r = cli("hessian", *args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (output_root / "hessian").exists()


def test_float32_runs_and_a_failing_route_is_reported_not_fatal(cli, output_root):
    """float32: the closed form still agrees with the unroll to float32 accuracy; a check route that
    fails (Anderson's bordered system goes singular in float32 in the layer's linear solves) is a row
    marked FAILED plus a failure line, never a crash."""
    r = cli("hessian", "--dtype", "float32", "unroll_steps=60")
    assert r.exit_code == 0, r.output
    routes = pd.read_csv(run_folder(output_root) / "routes.csv").set_index("route")
    assert routes.loc["(b) torch.func.hessian, 60-layer unroll", "rel. error"] <= 1e-4
    for route, row in routes.iterrows():
        assert np.isfinite(row["rel. error"]) or str(row["detail"]).startswith("FAILED")


def test_groups_must_be_a_list_without_empty_entries(cli, output_root):
    r = cli("hessian", "groups=W_z")
    assert r.exit_code == 2 and "groups must be a list" in r.stderr
    r = cli("hessian", "--groups", "W_z,,b_z")
    assert r.exit_code == 2 and "without empty entries" in r.stderr
    assert not output_root.exists() or not any(output_root.rglob("*.csv"))


def test_a_long_fixed_point_survey_is_named_in_the_notes(cli, output_root, monkeypatch):
    """hessian --hvp-only --n-z 300 --batch 64 (the README's example) spent 9 of its 11 minutes in the
    fixed-points table's per-sample MINPACK solves, timed nowhere; a survey above SURVEY_NOTE_SECONDS says so."""
    import deqlab.demos.hessian as demo

    monkeypatch.setattr(demo, "SURVEY_NOTE_SECONDS", -1.0)
    r = cli("hessian", "--hvp-only", "--n-z", "6", "--batch", "2", "probes=4", "top_k=2")
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "the fixed-points table took" in text and "slowest: " in text


def test_what_the_readout_width_costs_is_refused_before_the_run(cli, output_root, monkeypatch):
    """`deqlab hessian --n-y 100000 --groups W_z,b_z,U_z --batch 64` passed the memory guard (P = 54: its estimate
    left n_y out) and died "out of memory", exit 1, its folder .failed. With 24 GiB free (CI's machine) the
    estimate now names what n_y costs: the generic route's loss Hessian (91.6 GiB), the autodiff routes' Jacobian
    columns (P = 378), the closed form's readout products (n_z = 50, batch 1000), and in the matrix-free mode the
    Lanczos vectors of P (n_z = 300: W_y alone is 3e7 parameters). Sizes that ran within 6 GB still fit."""
    from deqlab.cli.compose import load
    from deqlab.cli.execute import check_resources

    monkeypatch.setattr("deqlab.settings.resources.available_memory", lambda: 24 * 2**30)
    # (the settings first: an estimate that lost a term fails here, not by starting the run it should refuse)
    for args, says in [(["model.n_y=100000", "groups=[W_z,b_z,U_z]", "batch=64"],
                        "the generic route's loss Hessian, 384 columns of 64x100000 outputs would need about 91.6 GiB"),
                       (["model.n_y=100000", "groups=[W_z,b_z,U_z]", "model.n_z=18", "batch=64"],
                        "the autodiff routes' 378 Jacobian columns of 64x100000 outputs would need about 90.1 GiB"),
                       (["model.n_y=100000", "groups=[W_z,b_z,U_z]", "model.n_z=50", "batch=1000"],
                        "the closed form's readout products, 1000x50x100000 would need about 149 GiB"),
                       (["hvp_only=true", "model.n_z=300", "model.n_y=100000"],
                        "the Lanczos vectors of P = 30,190,900 would need about 36 GiB")]:
        settings, _ = load("hessian", args)
        with pytest.raises(InputError, match=re.escape(says)):
            check_resources(settings)
    r = cli("hessian", "--n-y", "100000", "--groups", "W_z,b_z,U_z", "--batch", "64")
    helpers.assert_one_line_error(r, "the generic route's loss Hessian, 384 columns of 64x100000 outputs would need "
                                     "about 91.6 GiB, more than the 19.2 GiB this machine can give")
    assert not output_root.exists()
    # measured peak RSS: 0.6 GB at batch 1, 5.3 GB at batch 16, 5.4 GB for the matrix-free mode at n_z = 60
    for args in (["model.n_y=100000", "groups=[W_z,b_z,U_z]", "batch=16"], ["hvp_only=true", "model.n_y=100000", "model.n_z=60"]):
        check_resources(load("hessian", args)[0])
    monkeypatch.setattr("deqlab.settings.resources.available_memory", lambda: 4 * 2**30)
    check_resources(load("hessian", ["model.n_y=100000", "groups=[W_z,b_z,U_z]"])[0])


def test_the_unroll_is_counted_whether_or_not_a_check_is_on(monkeypatch):
    """Route (b), the unroll, runs whenever P <= max_reference_p; its memory was counted only with check_fd,
    check_layer or pitfall on, so `unroll_steps=100000 check_layer=false pitfall=false` passed the guard."""
    from deqlab.cli.compose import load
    from deqlab.cli.execute import check_resources

    monkeypatch.setattr("deqlab.settings.resources.available_memory", lambda: 2**28)   # 256 MiB
    for extra in ([], ["check_layer=false", "pitfall=false", "check_fd=false"]):
        with pytest.raises(InputError, match=r"^the unrolled reference routes would need about 279 MiB, .*; lower unroll_steps$"):
            check_resources(load("hessian", ["unroll_steps=100000", *extra])[0])
    # above max_reference_p the routes do not run, and nothing is counted for them
    check_resources(load("hessian", ["unroll_steps=100000", "check_layer=false", "pitfall=false", "max_reference_p=10"])[0])
