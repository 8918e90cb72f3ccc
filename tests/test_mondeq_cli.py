"""``deqlab mondeq`` and ``deqlab bench mondeq`` through the CLI: files, numbers, bad input, honest divergence."""

import numpy as np
import pandas as pd
import pytest
import helpers
from sample_checks import SAMPLE_MEDIAN_RTOL, assert_reproduces, load_samples

#: A small but complete run (every table and figure) that takes a few seconds.
SMALL = ("eigen.restarts=2", "train.epochs=2", "train.samples=128", "sweep.alphas=[0.01,0.1,1.0,10.0]",
         "sweep.max_iter=400", "sweep.batch=4", "model.n_z=8", "max_iter=10000")


def run_folder(output_root, command="mondeq"):
    return helpers.run_folder(output_root, command)


def test_mondeq_writes_every_table_and_figure(cli, output_root):
    # --strict: every solve that is guaranteed to converge (monotone models, references) did
    r = cli("mondeq", *helpers.overriding(SMALL, "--strict"))
    assert r.exit_code == 0, r.output + r.stderr
    folder = run_folder(output_root)
    for name in ("eigen.csv", "eigen_summary.csv", "alpha_sweep.csv", "alpha_sweep.png", "solvers.csv", "train.csv",
                 "train.png", "mondeq.npz", "config.yaml"):
        assert (folder / name).is_file(), name
    eigen = pd.read_csv(folder / "eigen.csv")
    mono = eigen[eigen.model.str.startswith("monotone")]
    assert len(mono) == 2
    assert (mono["lambda_min(sym(I-W))"] >= 0.05 - 1e-12).all()
    assert mono["PR converged"].all() and (mono["||z_PR - z*||"] < 1e-6).all()
    normal = eigen[eigen.model == "normal_ init"]
    assert (normal["lambda_min(sym(I-W))"] < 0).all()
    sweep = pd.read_csv(folder / "alpha_sweep.csv")
    pr = sweep[sweep.method == "peaceman_rachford"]
    assert pr[pr.alpha >= 1.0].converged.all()
    arrays = np.load(folder / "mondeq.npz")
    assert arrays["W"].shape == (8, 8) and arrays["sweep_steps"].shape == (3, 4)
    W = arrays["W"]
    S = np.eye(8) - W
    assert np.linalg.eigvalsh((S + S.T) / 2).min() >= 0.05 - 1e-12
    (problem,) = pd.read_csv(folder / "sweep_problem.csv").to_dict("records")   # recomputed from the saved W
    assert problem["lambda_min(sym(I-W))"] == pytest.approx(np.linalg.eigvalsh((S + S.T) / 2).min(), rel=1e-12)
    assert problem["||I-W||_2"] == pytest.approx(np.linalg.norm(S, 2), rel=1e-12)
    assert problem["FB bound 2m/||I-W||^2"] == pytest.approx(2 * 0.05 / np.linalg.norm(S, 2) ** 2, rel=1e-12)
    assert problem["FB bound 2m/||I-W||^2"] == pytest.approx(float(arrays["fb_bound"]), rel=1e-15)
    train = pd.read_csv(folder / "train.csv")
    assert set(train.epoch) == {1, 2} and train.model.nunique() == 2
    assert train[train.model.str.startswith("monotone")]["converged batches"].eq(1.0).all()


def test_unguaranteed_failures_print_as_one_note_per_model_and_nan_alphas_are_explained(cli, output_root):
    """An unconstrained DEQ that stops converging printed one clause per epoch (ten terminal lines for the
    default run); the solver table printed alpha = nan for anderson and fixed_point with no word why."""
    r = cli("mondeq", *helpers.overriding(SMALL, "train.max_iter=2"))
    assert r.exit_code == 0, r.output + r.stderr
    text = " ".join(r.output.split())
    assert text.count("Training, not converged where nothing guarantees it") == 1
    assert "batches that missed it: epoch 1: 2 of 2, epoch 2: 2 of 2." in text
    assert text.count("take no alpha (alpha = nan)") == 2   # the alpha sweep's caption and the solver table's


@pytest.mark.parametrize(
    "args, message",
    [
        (("--m", "0"), "model.m must be > 0"),
        (("--m", "-0.5"), "model.m must be > 0"),
        (("--alpha", "0"), "alpha must be > 0"),
        (("--alpha", "-1"), "alpha must be > 0"),
        (("--fb-alpha", "0"), "fb_alpha must be a number > 0 or auto"),
        (("sweep.alphas=[1.0,-2.0]",), "sweep.alphas"),
        (("model.nonlinearity=sigmoid",), "unknown model.nonlinearity"),
        (("train.unconstrained_solver=magic",), "unknown train.unconstrained_solver"),
        (("model.m=abc",), "model.m must be a number"),
        # 1 - m rounds to 1 below float64's epsilon: W had no margin (--m 1e-320 ran)
        (("--m", "1e-320"), "model.m must be >= 2.2e-16 (below float64's epsilon"),
        (("--m", "1e-17"), "model.m must be >= 2.2e-16"),
        (("--alpha", "1e-320"), "alpha must be >= 2.2e-308 (a smaller positive number is subnormal"),
        (("--fb-alpha", "1e-320"), "fb_alpha must be >= 2.2e-308"),
        (("sweep.alphas=[1.0,1e-320]",), "sweep.alphas[1] must be >= 2.2e-308"),
        (("rtol=0.9",), "rtol must lie in [0, 0.5]"),
        (("atol=1e300",), "atol must lie in [0, 1]"),
        (("atol=1e-320",), "atol must be 0 or >= 2.2e-308"),
        (("sweep.rtol=0.7",), "sweep.rtol must lie in [0, 0.5]"),
        # (exit 0: nothing was trained, the learning rate ignored)
        (("--epochs", "0", "train.lr=0.1"), "train.lr is not read by this run: train.epochs = 0 trains nothing"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, output_root, args, message):
    r = cli("mondeq", *args)
    assert r.exit_code == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr + r.output
    assert not output_root.exists() or not any(output_root.rglob("config.yaml"))


@pytest.mark.slow   # (7 s; divergence reported in the alpha sweep stays in the default run: -m slow)
def test_forward_backward_above_its_bound_warns_and_reports_divergence(cli, output_root):
    r = cli("mondeq", *helpers.overriding(SMALL, "--fb-alpha", "5"))
    assert r.exit_code == 0
    assert "is not below its convergence bound 2m/||I-W||^2" in r.stderr
    assert "--fb-alpha auto" in r.stderr and r.stderr.count("warning:") == 1   # what to do, in the one line
    solvers = pd.read_csv(run_folder(output_root) / "solvers.csv")
    fb = solvers[solvers.method == "forward_backward"].iloc[0]
    assert fb.alpha == 5 and not fb.converged
    assert "forward_backward (alpha=5)" in " ".join(r.output.split())
    strict = cli("mondeq", *helpers.overriding(SMALL, "--fb-alpha", "5", "--strict"))
    assert strict.exit_code == 1


def test_alpha_sweep_marks_non_finite_solves_as_diverged(cli, output_root):
    """Forward-backward at alpha=10 meets NaN/inf and returns its best finite iterate, so its residual is
    finite: the figure's 'diverged' band must still get it (it once showed it as merely not converged)."""
    # (no training: the other train.* keys of SMALL would be refused as unread)
    r = cli("mondeq", *[o for o in SMALL if not o.startswith("train.")], "train.epochs=0")
    assert r.exit_code == 0, r.output + r.stderr
    folder = run_folder(output_root)
    sweep = pd.read_csv(folder / "alpha_sweep.csv")
    diverged = np.load(folder / "alpha_sweep_diverged.npz")
    fb = sweep[sweep.method == "forward_backward"].reset_index(drop=True)
    ended_badly = fb.message.str.startswith(("non-finite", "diverged")).to_numpy()
    assert ended_badly.any(), fb.message.tolist()
    assert (diverged["forward_backward"] == ended_badly).all()


def test_bench_mondeq(cli, output_root):
    r = cli("bench", "mondeq", "sizes=[8,16]", "repeats=1", "alphas=[0.5,1.0]", "batch=4", "n_x=3")
    assert r.exit_code == 0, r.output + r.stderr
    folder = run_folder(output_root / "bench", "mondeq")
    bench = pd.read_csv(folder / "bench.csv")
    assert set(bench.n_z) == {8, 16}
    pr = bench[bench.method == "peaceman_rachford"]
    assert pr.converged.all() and (pr.factorizations == 1).all()
    fp = bench[bench.method == "fixed_point"]
    assert np.allclose(fp["x fixed_point"], 1.0)
    assert (bench[bench.method.str.startswith("direct")]["x direct solve"] == 1.0).all()
    assert (folder / "bench.png").is_file() and (folder / "alpha_grid.csv").is_file()
    assert "threads" in r.output
    bad = cli("bench", "mondeq", "alphas=[0]")
    assert bad.exit_code == 2 and "alphas" in bad.stderr


def test_bench_mondeq_saves_the_samples_behind_every_median(cli, output_root):
    r = cli("bench", "mondeq", "sizes=[8,16]", "repeats=3", "alphas=[0.5,1.0]", "batch=4", "n_x=3")
    assert r.exit_code == 0, r.output + r.stderr
    folder = run_folder(output_root / "bench", "mondeq")
    bench = pd.read_csv(folder / "bench.csv")
    samples = load_samples(folder / "bench_samples.npz")
    assert samples["time_s"].shape == (len(bench), 3) and not np.isnan(samples["time_s"]).any()
    assert_reproduces(samples, bench, labels=["n_z", "method"], columns={"median time [ms]": ("time_s", 1e3)})

    per = pd.read_csv(folder / "per_iteration.csv")
    samples = load_samples(folder / "per_iteration_samples.npz")
    assert_reproduces(samples, per, labels=["n_z", "method", "steps"],
                      columns={"set-up [ms]": ("set_up_s", 1e3), "floor [ms]": ("floor_s", 1e3)})
    # per step = (median solve - median set-up) / steps, NaN where that is not positive (timing noise)
    per_step = 1e3 * (np.nanmedian(samples["solve_s"], axis=1) - np.nanmedian(samples["set_up_s"], axis=1)) / per["steps"]
    expected = np.where(per_step > 0, per_step, np.nan)
    np.testing.assert_allclose(per["per step [ms]"], expected, rtol=SAMPLE_MEDIAN_RTOL)


def test_fb_alpha_option_takes_auto_as_its_help_says(cli, output_root):
    """The help says `default auto`, but the option was typed float: `--fb-alpha auto` was refused by
    Typer. (An invalid n_z stops the run right after the settings accepted the option.)"""
    for value in ("auto", "0.5"):
        helpers.assert_one_line_error(cli("mondeq", "--fb-alpha", value, "model.n_z=0"), "model.n_z must be >= 1")
    helpers.assert_one_line_error(cli("mondeq", "--fb-alpha", "abc"), "fb_alpha must be a number > 0 or auto, got 'abc'")


def test_bench_mondeq_never_reports_a_negative_time_per_step(cli, output_root, monkeypatch):
    """per step = (solve − set-up) / steps: when timing noise puts the set-up's median above the solve's,
    the table once printed -0.362 ms per step, -21.9x the floor, and 'met'."""
    import deqlab.demos.bench_mondeq as bench

    original = bench.interleaved_medians

    def noisy(calls, *args, **kwargs):
        out = original(calls, *args, **kwargs)
        if "set-up" in out:   # the set-up measured slower than the whole solve
            out["set-up"] = (10 * out["solve"][0], out["set-up"][1])
        return out

    monkeypatch.setattr(bench, "interleaved_medians", noisy)
    r = cli("bench", "mondeq", "sizes=[8]", "repeats=1", "alphas=[0.5]", "batch=4", "n_x=3")
    assert r.exit_code == 0, r.output + r.stderr
    per = pd.read_csv(run_folder(output_root / "bench", "mondeq") / "per_iteration.csv")
    assert per["per step [ms]"].isna().all() and per["x floor"].isna().all()
    met = pd.read_csv(run_folder(output_root / "bench", "mondeq") / "per_iteration.csv", keep_default_na=False,
                      dtype=str).set_index("method")["met"]   # ('n/a' is a NaN word to pandas by default)
    assert met["peaceman_rachford"] == "n/a" and met["douglas_rachford"] == ""
