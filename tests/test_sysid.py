"""``deqlab sysid pendulum`` / ``deqlab sysid evaluate`` through the CLI (tiny preset), the saved
models, and bad input: exit code 2, one line on stderr, no run folder."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from deqlab.sysid.metrics import empirical_lipschitz, nrmse
from deqlab.sysid.models import load_model
import helpers
from sample_checks import assert_reproduces, load_samples

TINY = "sysid_preset=tiny"
#: evaluate on the training run's own test split must give the same NRMSE (same models, same data)
SAME_RUN_TOL = 1e-12


def _run_dir(root: Path, sub: str) -> Path:
    return helpers.run_folder(root / "sysid", sub, finished=False)


def _no_run(root: Path, sub: str = "pendulum"):
    base = root / "sysid" / sub
    return not base.exists() or not any(base.iterdir())


def _bad(r, text):
    helpers.assert_one_line_error(r, text)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny training run shared by the tests below."""
    import os

    from typer.testing import CliRunner

    from deqlab.cli.app import app

    root = tmp_path_factory.mktemp("sysid") / "outputs"
    old = os.environ.get("DEQLAB_OUTPUT_ROOT")
    os.environ["DEQLAB_OUTPUT_ROOT"] = str(root)
    try:
        r = CliRunner().invoke(app, ["sysid", "pendulum", TINY], env={"COLUMNS": "200"})
    finally:
        if old is None:
            del os.environ["DEQLAB_OUTPUT_ROOT"]
        else:
            os.environ["DEQLAB_OUTPUT_ROOT"] = old
    assert r.exit_code == 0, r.output
    return r, _run_dir(root, "pendulum")


def test_pendulum_run_writes_table_models_data_and_figures(tiny_run):
    r, run = tiny_run
    table = pd.read_csv(run / "sysid.csv")
    runs = pd.read_csv(run / "sysid_runs.csv")
    names = ["ren", "lipschitz_ren", "lstm", "rnn", "linear"]
    assert list(table["model"]) == names
    assert sorted(set(runs["seed"])) == [0, 1, 2] and len(runs) == 15
    assert np.isfinite(runs["NRMSE"]).all() and (table["params"] > 0).all() and (runs["status"] == "ok").all()
    for name, row in table.set_index("model").iterrows():
        mine = runs[runs["model"] == name]["NRMSE"]
        assert row["seeds"] == 3
        assert abs(row["NRMSE mean"] - mine.mean()) < 1e-12 and abs(row["± std"] - mine.std(ddof=1)) < 1e-12
        assert row["min"] == mine.min() and row["max"] == mine.max()
        assert abs(row["×floor"] - row["NRMSE mean"] / float(np.load(run / "predictions.npz")["noise_floor"])) < 1e-12
    np.testing.assert_allclose(table["fit %"], 100 * (1 - table["NRMSE mean"]))
    lren = table.set_index("model").loc["lipschitz_ren"]
    assert lren["Lip lower"] <= lren["Lip bound"]
    assert set(table["Lip lower by"]) <= {"H∞ of linearisation", "ascent, T=10"}
    for name in ("predictions.png", "robustness_accuracy.png", "training_curves.png", "config.yaml"):
        assert (run / name).is_file(), name
    data = np.load(run / "dataset.npz")
    assert data["u"].shape == (6, 60, 1) and data["y"].shape == (6, 60, 1)
    idx = np.concatenate([data["train_index"], data["val_index"], data["test_index"]])
    assert sorted(idx.tolist()) == list(range(6))
    pred = np.load(run / "predictions.npz")
    first = runs[runs["seed"] == 0].set_index("model")
    for name in names:
        _, model = load_model(run / "models" / f"{name}.pt")
        y_hat = model(torch.as_tensor(pred["u"]))[0].detach().numpy()
        np.testing.assert_allclose(y_hat, pred[f"y_hat_{name}"], rtol=0, atol=1e-12)
        assert abs(nrmse(y_hat, pred["y"], 10) - first.loc[name, "NRMSE"]) < SAME_RUN_TOL
        for seed in (1, 2):  # the other seeds' models are saved too and reproduce their rows
            _, other = load_model(run / "models" / f"seed{seed}" / f"{name}.pt")
            row = runs[(runs["model"] == name) & (runs["seed"] == seed)].iloc[0]
            assert abs(nrmse(other(torch.as_tensor(pred["u"]))[0].detach().numpy(), pred["y"], 10) - row["NRMSE"]) < SAME_RUN_TOL
    assert "noise floor" in r.output
    assert "claim 'REN within 1.2× of the noise floor'" in r.output and "mean over 3 seed(s)" in r.output
    assert "claim 'REN no worse than the LSTM'" in r.output


def test_evaluate_on_the_runs_test_split_reproduces_the_table(tiny_run, cli, output_root, tmp_path):
    _, run = tiny_run
    pred = np.load(run / "predictions.npz")
    f = tmp_path / "test.npz"
    # the tiny test split is one trajectory; evaluate needs 3, and identical copies pool to the same NRMSE
    np.savez(f, u=np.concatenate([pred["u"]] * 3), y=np.concatenate([pred["y"]] * 3))
    r = cli("sysid", "evaluate", str(run), "--data", str(f), "lipschitz.iters=1")
    assert r.exit_code == 0, r.output
    ev = pd.read_csv(_run_dir(output_root, "evaluate") / "sysid.csv").set_index("model")
    runs = pd.read_csv(run / "sysid_runs.csv")
    trained = runs[runs["seed"] == 0].set_index("model")
    for name in trained.index:
        assert abs(ev.loc[name, "NRMSE"] - trained.loc[name, "NRMSE"]) < SAME_RUN_TOL
        assert ev.loc[name, "train time [s]"] == trained.loc[name, "train time [s]"]
        assert ev.loc[name, "status"] == "ok"
    # the caption describes this table: the file's trajectories (not a 'test' split), no NRMSE clean column,
    # and where its training columns come from
    caption = " ".join(r.output.split())
    assert "over all 3 trajectories of the data" in caption and "NRMSE clean" not in caption
    assert "copied from the run" in caption
    # the run folder in the key=value form every setting takes: the same run, not a folder "run_dir=…"
    again = cli("sysid", "evaluate", f"run_dir={run}", "--data", str(f), "lipschitz.iters=1")
    assert again.exit_code == 0, again.output
    assert cli("sysid", "evaluate", "seed=3", "--data", str(f)).exit_code == 2   # no run folder: refused


def test_one_seed_and_bad_seed_lists(cli, output_root):
    r = cli("sysid", "pendulum", TINY, "seed=4", "models=[linear]")
    assert r.exit_code == 0, r.output
    run = _run_dir(output_root, "pendulum")
    assert pd.read_csv(run / "sysid_runs.csv")["seed"].tolist() == [4]
    assert pd.read_csv(run / "sysid.csv").loc[0, "± std"] == 0.0
    _bad(cli("sysid", "pendulum", TINY, "seeds=[1,1]"), "seeds lists 1 twice")
    _bad(cli("sysid", "pendulum", TINY, "seeds=[]"), "seeds")
    _bad(cli("sysid", "pendulum", TINY, "lipschitz.steps=[0]"), "lipschitz.steps")


def test_noise_free_data_and_no_linearised_levels(cli, output_root):
    """data.noise_std=0 once divided by the zero noise floor, lipschitz.levels=0 reshaped one quantile
    into none: both tracebacks (found by a fuzz of every key). Now the run ends normally, without a
    ×floor column, and the lower gain bound is the ascent's."""
    r = cli("sysid", "pendulum", TINY, "seed=4", "models=[ren,linear]", "data.noise_std=0", "lipschitz.levels=0")
    assert r.exit_code == 0, r.output
    run = _run_dir(output_root, "pendulum")
    table = pd.read_csv(run / "sysid.csv")
    assert "×floor" not in table.columns and table["Lip lower by"].str.startswith("ascent").all()
    assert "noise-free" in r.output


@pytest.mark.parametrize("setting, says", [
    ("pendulum.l=1e-300", "the simulator divides by m·l²"),                     # refused with the settings
    ("pendulum.m=1e-12", "the pendulum simulation (pendulum.* and data.* settings): y contains NaN"),
    ("pendulum.dt=1e6", "the pendulum simulation (pendulum.* and data.* settings): y contains NaN"),
])
def test_a_pendulum_that_cannot_be_simulated_is_bad_input(cli, output_root, setting, says):
    """Extreme physical settings gave a ZeroDivisionError or an 'NRMSE is undefined' traceback after the
    simulation (found by an edge-value fuzz); the simulated data now pass the checks a user's file passes."""
    r = cli("sysid", "pendulum", TINY, setting)
    assert r.exit_code == 2 and says in r.stderr and "Traceback" not in r.stderr + r.output, r.stderr
    assert not (output_root / "sysid").exists() or not any((output_root / "sysid").rglob("config.yaml"))


def test_train_on_user_data(cli, output_root, tmp_path):
    rng = np.random.default_rng(0)
    u = rng.normal(size=(5, 40, 2))
    y = np.cumsum(u[..., :1] * 0.1, axis=1) + 0.01 * rng.normal(size=(5, 40, 1))
    f = tmp_path / "mine.npz"
    np.savez(f, u=u, y=y)
    r = cli("sysid", "pendulum", "--tiny", "--data", str(f), "--models", "ren,linear")
    assert r.exit_code == 0, r.output
    run = _run_dir(output_root, "pendulum")
    assert (run / "models" / "ren.pt").is_file()
    data = np.load(run / "dataset.npz")
    np.testing.assert_array_equal(data["u"], u)
    assert "y_clean" not in data.files


def test_empirical_lipschitz_is_a_lower_bound_and_finds_the_linear_gain():
    """For y = 3u (a static gain) every pair gives exactly 3."""
    from deqlab.sysid.models import Normalised

    class Gain(torch.nn.Module):
        def forward(self, u, state=None):
            return 3.0 * u, None

        def lipschitz_bound(self):
            return None

    model = Normalised(Gain(), [0.0], [1.0], [0.0], [1.0])
    u = np.random.default_rng(0).normal(size=(2, 30, 1))
    assert abs(empirical_lipschitz(model, u, steps=10, pairs=3, iters=3) - 3.0) < 1e-12


def _write(tmp_path, name, **arrays):
    f = tmp_path / name
    np.savez(f, **arrays)
    return str(f)


def test_bad_data_files(cli, output_root, tmp_path):
    ok_u, ok_y = np.zeros((4, 50, 1)), np.zeros((4, 50, 1))
    cases = {
        "must have shape": _write(tmp_path, "a.npz", u=np.zeros((4, 50)), y=ok_y),
        "NaN": _write(tmp_path, "b.npz", u=ok_u, y=np.full((4, 50, 1), np.nan)),
        "too few for a washout": _write(tmp_path, "c.npz", u=np.zeros((4, 5, 1)), y=np.zeros((4, 5, 1))),
        "must agree": _write(tmp_path, "d.npz", u=ok_u, y=np.zeros((4, 49, 1))),
        "missing array": _write(tmp_path, "e.npz", u=ok_u),
        "does not exist": str(tmp_path / "nope.npz"),
        "is a folder, not a file": str(tmp_path),
        "at least 3 trajectories": _write(tmp_path, "f.npz", u=np.random.default_rng(3).normal(size=(2, 50, 1)),
                                          y=np.random.default_rng(0).normal(size=(2, 50, 1))),
        "y is constant": _write(tmp_path, "h.npz", u=np.ones((4, 50, 1)), y=np.full((4, 50, 1), 3.0)),
        # (exit 0: u all zero trained, and the Lipschitz lower bounds came out at 1e11-2e12)
        "u is constant in input channel(s) [0]": _write(tmp_path, "j.npz", u=np.zeros((4, 50, 1)),
                                                        y=np.random.default_rng(1).normal(size=(4, 50, 1))),
        "u is too large": _write(tmp_path, "i.npz", u=np.full((4, 50, 1), 1e300), y=np.random.default_rng(0).normal(size=(4, 50, 1))),
    }
    (tmp_path / "g.npz").write_text("not a zip")
    cases["is text (a CSV?), not an .npz archive"] = str(tmp_path / "g.npz")
    for text, path in cases.items():
        r = cli("sysid", "pendulum", TINY, f"data.path={path}")
        _bad(r, text)
    assert _no_run(output_root)


@pytest.mark.parametrize("override,text", [
    ("data.noise_std=-0.1", "data.noise_std"),
    ("pendulum.dt=-0.01", "pendulum.dt"),
    ("pendulum.dt=0", "pendulum.dt"),
    ("pendulum.mu=-1", "pendulum.mu"),
    ("washout=100", "too few"),
    ("models=[ren,gru]", "gru"),
    ("models=[ren,linear,ren]", "models names 'ren' twice"),
    ("sysid_preset=[tiny,default]", "sysid_preset takes one name"),
    ("model_settings.ren.n_x=0", "n_x"),
    ("model_settings.lipschitz_ren.gamma=-1", "gamma"),
    ("train.lr=0", "train.lr"),
    ("data.signal=chirp", "data.signal"),
    ("data.fractions=[0.5,0.5]", "fractions"),
    ("sysid_preset=huge", "sysid_preset"),
    ("model_settings.lstm.lr=-1", "model_settings.lstm.lr"),
    ("model_settings.ren.init_rho=1.5", "init_rho"),
    ("model_settings.ren.patience=0", "model_settings.ren.patience"),
    ("model_settings.ren.clip=0", "model_settings.ren.clip"),
    ("lipschitz.pairs=0", "lipschitz.pairs"),
    ("data.fractions=[0.6,0.2,nan]", "data.fractions"),
    ("data.fractions=[1,0,0]", "three numbers > 0"),     # (a validation/test share of 0 became one trajectory each)
])
def test_bad_settings(cli, output_root, override, text):
    _bad(cli("sysid", "pendulum", TINY, override), text)
    assert _no_run(output_root)


def test_bad_evaluate_inputs(tiny_run, cli, output_root, tmp_path):
    import shutil

    _, run = tiny_run
    two_inputs = _write(tmp_path, "two.npz", u=np.random.default_rng(2).normal(size=(3, 40, 2)),   # (a moving u: a constant
                        y=np.random.default_rng(0).normal(size=(3, 40, 1)))                         # one is refused first)
    _bad(cli("sysid", "evaluate", str(run), "--data", two_inputs), "input(s)")
    short = _write(tmp_path, "short.npz", u=np.zeros((3, 5, 1)), y=np.zeros((3, 5, 1)))
    _bad(cli("sysid", "evaluate", str(run), "--data", short), "washout")
    _bad(cli("sysid", "evaluate", str(tmp_path / "missing"), "--data", short), "does not exist")
    _bad(cli("sysid", "evaluate", short, "--data", short), "is not a folder")
    _bad(cli("sysid", "evaluate", str(tmp_path), "--data", short), "holds no saved models")   # any folder: no run
    no_config = tmp_path / "no_config"
    shutil.copytree(run / "models", no_config / "models")   # a run's models without its config.yaml
    _bad(cli("sysid", "evaluate", str(no_config), "--data", short), "has no config.yaml; give washout=N")
    _bad(cli("sysid", "evaluate", str(run)), "--data")
    pred = np.load(run / "predictions.npz")
    u, y = pred["u"], pred["y"]  # the tiny run's test split: 1 trajectory
    three = lambda a: np.concatenate([a, a, a])
    few = _write(tmp_path, "few.npz", u=np.concatenate([u, u]), y=np.concatenate([y, y]))
    _bad(cli("sysid", "evaluate", str(run), "--data", few), "at least 3 trajectories")
    flat = _write(tmp_path, "flat.npz", u=three(u), y=np.full_like(three(y), 0.7))
    _bad(cli("sysid", "evaluate", str(run), "--data", flat), "y is constant")
    huge = _write(tmp_path, "huge.npz", u=three(u) * 1e300, y=three(y))
    _bad(cli("sysid", "evaluate", str(run), "--data", huge), "u is too large")
    ok = _write(tmp_path, "ok.npz", u=three(u), y=three(y))
    _bad(cli("sysid", "evaluate", str(run), "--data", ok, "washout=-5"), "washout")
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text().replace("washout: 10", "washout: -5"))
    _bad(cli("sysid", "evaluate", str(copy), "--data", ok), "must be >= 0, got -5")
    (copy / "config.yaml").write_text((run / "config.yaml").read_text())
    blob = torch.load(copy / "models" / "ren.pt", weights_only=True)
    blob["state_dict"]["core.X"][0, 0] = float("nan")
    torch.save(blob, copy / "models" / "ren.pt")
    _bad(cli("sysid", "evaluate", str(copy), "--data", ok), "NaN or infinite values in core.X")
    assert _no_run(output_root, "evaluate")


def test_evaluate_reports_overflowing_outputs_as_a_failure_row(cli, output_root, tmp_path):
    """A model whose output overflows on the data gets a failure row (NaN metrics, status), never inf."""
    from deqlab.models.baselines import LinearStateSpace
    from deqlab.sysid.models import Normalised, save_model

    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "config.yaml").write_text("washout: 5\n")
    torch.manual_seed(0)
    core = LinearStateSpace(1, 2, 1)
    with torch.no_grad():
        core.A.copy_(1e10 * torch.eye(2, dtype=torch.float64))  # grows 1e10 per step: inf within 40 steps
    save_model(Normalised(core, [0.0], [1.0], [0.0], [1.0]), "linear", {"n_x": 2}, run / "models" / "linear.pt")
    rng = np.random.default_rng(0)
    data = _write(tmp_path, "d.npz", u=rng.normal(size=(3, 60, 1)), y=rng.normal(size=(3, 60, 1)))
    r = cli("sysid", "evaluate", str(run), "--data", data, "lipschitz.iters=1")
    assert r.exit_code == 0, r.output
    row = pd.read_csv(_run_dir(output_root, "evaluate") / "sysid.csv").iloc[0]
    assert row["status"] == "non-finite output"
    assert np.isnan(row["NRMSE"]) and np.isnan(row["Lip lower"]) and np.isnan(row["fit %"])
    assert "inf" not in r.stdout.replace("info", "")
    assert "non-finite output" in r.output


def test_physical_lipschitz_bound_of_a_normalised_lipschitz_ren():
    """‖Δy‖ ≤ γ·max s_y/min s_u ‖Δu‖ in physical units (standardisation rescales the bound)."""
    from deqlab.models.ren import LipschitzREN
    from deqlab.sysid.models import Normalised

    torch.manual_seed(0)
    model = Normalised(LipschitzREN(2, 3, 4, 1, gamma=1.5), [0.1, -0.2], [2.0, 4.0], [1.0], [5.0])
    bound = model.lipschitz_bound()
    assert bound == 1.5 * 5.0 / 2.0
    g = torch.Generator().manual_seed(1)
    ua = torch.randn(64, 25, 2, generator=g, dtype=torch.float64) * 3
    ub = ua + torch.randn(64, 25, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        ratio = (model(ua)[0] - model(ub)[0]).flatten(1).norm(dim=1) / (ua - ub).flatten(1).norm(dim=1)
    assert torch.all(ratio <= bound)
    lower = empirical_lipschitz(model, ua.numpy(), steps=20, pairs=4, iters=20)
    assert 0 < lower <= bound


def test_runs_repeat_and_do_not_depend_on_model_order(tiny_run, cli, output_root):
    _, run = tiny_run
    r = cli("sysid", "pendulum", TINY, "models=[linear,ren]", "seeds=[2,0]")
    assert r.exit_code == 0, r.output
    again = pd.read_csv(_run_dir(output_root, "pendulum") / "sysid_runs.csv").set_index(["model", "seed"])
    first = pd.read_csv(run / "sysid_runs.csv").set_index(["model", "seed"])
    for key in again.index:
        assert again.loc[key, "NRMSE"] == first.loc[key, "NRMSE"]


def test_bench_sysid(cli, output_root):
    r = cli("bench", "sysid", "repeats=1", "warmup=0", "steps=3", "threads=[1]")
    assert r.exit_code == 0, r.output
    table = pd.read_csv(next((output_root / "bench" / "sysid").iterdir()) / "bench_sysid.csv")
    assert set(zip(table["model"], table["backward"])) == {("ren", "autograd"), ("ren", "implicit"), ("lstm", "autograd")}
    ref = table[(table["model"] == "ren") & (table["backward"] == "autograd")]
    assert (ref["ratio to ren/autograd"] == 1.0).all()
    _bad(cli("bench", "sysid", "repeats=0"), "repeats")


def test_bench_sysid_writes_a_figure_and_the_samples_behind_every_median(cli, output_root):
    r = cli("bench", "sysid", "repeats=3", "warmup=0", "steps=3", "threads=[1,2]")
    assert r.exit_code == 0, r.output
    folder = next((output_root / "bench" / "sysid").iterdir())
    assert (folder / "bench_sysid.png").stat().st_size > 0
    table = pd.read_csv(folder / "bench_sysid.csv")
    samples = load_samples(folder / "bench_sysid_samples.npz")
    assert samples["time_s"].shape == (6, 3) and not np.isnan(samples["time_s"]).any()
    assert_reproduces(samples, table, labels=["model", "backward", "threads"], columns={"median time [s]": ("time_s", 1.0)})


def test_progress_bar_reports_epochs(monkeypatch):
    from deqlab.demos.sysid import EpochBar
    from deqlab.report import progress

    real_enabled = progress.enabled
    monkeypatch.setattr(progress, "enabled", lambda: True)  # as on a terminal (pytest captures stdout)
    with EpochBar() as bar:
        report = bar.callback("ren", 3)
        report(0, {"train_loss": 0.5, "val_nrmse": 0.4, "best": 0.4})
        task = bar.progress.tasks[0]
        assert task.completed == 1 and "val NRMSE 0.4000" in task.fields["info"]
    monkeypatch.setattr(progress, "enabled", real_enabled)
    monkeypatch.setenv("DEQLAB_PROGRESS", "0")
    with EpochBar() as bar:
        assert bar.callback("ren", 3) is None


def test_nrmse_refuses_where_it_is_undefined():
    """A constant reference channel gave 1.3e300 (its std, floored at 1e-300, divided); a washout past
    the end gave NaN with numpy warnings; a shorter prediction a broadcast error."""
    y = np.random.default_rng(0).normal(size=(3, 50, 1))
    tail = y[:, 10:, 0]
    assert nrmse(0.9 * y, y, 10) == pytest.approx(0.1 * np.sqrt(np.mean(tail**2)) / tail.std(), rel=1e-12)
    with pytest.raises(ValueError, match="constant after the washout"):
        nrmse(y, np.ones_like(y), 10)
    with pytest.raises(ValueError, match=r"washout must lie in \[0, steps = 50\)"):
        nrmse(y, y, 50)
    with pytest.raises(ValueError, match="must both be"):
        nrmse(y[:, :40], y, 10)
    assert np.isnan(nrmse(y * np.nan, y, 10))   # a prediction that overflowed stays NaN: the caller reports it
    # a NaN in the reference read as 'output channel(s) [0] of y are constant'; a washout of 2.5 failed in slicing
    # (TypeError) and True was taken as 1
    with pytest.raises(ValueError, match="y contains NaN or infinite values"):
        nrmse(y, np.where(np.arange(50)[None, :, None] == 20, np.nan, y), 10)
    for washout in (2.5, True):
        with pytest.raises(ValueError, match=r"washout must lie in \[0, steps = 50\) as an integer"):
            nrmse(y, y, washout)


class _Payload:
    """A pickle that would run code when unpickled (touch a file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_a_model_file_that_is_not_weights_only_is_refused_without_running_it(tmp_path):
    """Model files are loaded weights-only: a pickled object (here one that would run a command) and a
    garbage file are a one-line ``InputError``, the object's code never runs, and the message does not
    pass on torch's advice to load with ``weights_only=False``."""
    import torch

    from deqlab.errors import InputError

    marker = tmp_path / "ran"
    evil, garbage = tmp_path / "evil.pt", tmp_path / "garbage.pt"
    torch.save(_Payload(marker), evil)
    garbage.write_text("not a torch file")
    for path in (evil, garbage):
        with pytest.raises(InputError, match="not a deqlab sysid model") as info:
            load_model(path)
        assert "weights_only" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("change", [{"kwargs": {"n_v": 10**6}}, {"n_u": 10**9}])
def test_a_model_file_whose_sizes_are_not_its_weights_is_refused_before_it_is_built(tmp_path, monkeypatch, change):
    """A model file of a few kB whose n_v read 30000 built a 7 GB REN (n_u = 10⁹: 64 GB) before load_state_dict
    found the mismatch: minutes, or the OOM killer. Its sizes are now checked against its weights on the meta
    device first; here a real build of the sizes it names fails the test."""
    import torch

    from deqlab.errors import InputError
    from deqlab.sysid.models import make_model, save_model

    kwargs = {"n_x": 2, "n_v": 3, "activation": "tanh"}
    u, y = np.random.default_rng(0).normal(size=(2, 5, 1)), np.random.default_rng(1).normal(size=(2, 5, 1))
    path = tmp_path / "ren.pt"
    save_model(make_model("ren", kwargs, u, y), "ren", kwargs, path)
    blob = torch.load(path, weights_only=True)
    for key, value in change.items():
        blob[key] = {**blob[key], **value} if isinstance(value, dict) else value
    torch.save(blob, path)
    import deqlab.sysid.models as models

    real_build = models.build_core

    def small_or_meta(kind, n_u, n_y, **kw):
        # (a real build of the sizes the file names would take GB to TB: only the meta device may see them)
        sizes = [n_u, n_y, *(v for v in kw.values() if isinstance(v, int))]
        assert str(torch.get_default_device()) == "meta" or max(sizes) < 1000, f"built {kind} of sizes {sizes}"
        return real_build(kind, n_u, n_y, **kw)

    monkeypatch.setattr(models, "build_core", small_or_meta)
    with pytest.raises(InputError, match="do not match its saved weights"):
        load_model(path)


def test_a_data_file_with_pickled_objects_is_refused_without_running_them(tmp_path):
    """Data files are read with allow_pickle=False; NumPy's refusal invited loading the file "unsafely"
    with allow_pickle. Now one line that says what the file is instead, and the payload never runs."""
    import pickle

    from deqlab.errors import InputError
    from deqlab.sysid.data import load_arrays

    marker = tmp_path / "ran"
    evil, garbage, objects = tmp_path / "evil.npz", tmp_path / "garbage.npz", tmp_path / "objects.npz"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    garbage.write_text("not a zip")
    np.savez(objects, u=np.array([{"a": 1}], dtype=object), y=np.zeros(3))
    for path, words in ((evil, "is a Python pickle, not an .npz archive"), (garbage, "is text (a CSV?), not an .npz archive"),
                        (objects, "holds Python objects, not plain numeric arrays")):
        with pytest.raises(InputError, match=re.escape(words)) as info:
            load_arrays(path, washout=0)
        assert "allow_pickle" not in str(info.value) and "unsafe" not in str(info.value)
    assert not marker.exists()


def _column_as_text(table: str, column: str) -> str:
    import io

    frame = pd.read_csv(io.StringIO(table))
    frame[column] = "abc"
    return frame.to_csv(index=False)


def test_a_run_folder_with_broken_tables_or_model_files_is_one_line(tiny_run, cli, output_root, tmp_path):
    """What `sysid evaluate` reads from a run folder besides config.yaml: the training table (empty, not
    text, or without its model/seed column ended in pandas' traceback) and the model files (a FIFO in
    place of one made torch.load wait forever)."""
    import os
    import shutil

    _, run = tiny_run
    pred = np.load(run / "predictions.npz")
    three = lambda a: np.concatenate([a, a, a])
    ok = _write(tmp_path, "ok.npz", u=three(pred["u"]), y=three(pred["y"]))
    table = (run / "sysid_runs.csv").read_text()
    for name, text, message in [("empty", "", "not a table"), ("binary", "\x9e\x00\xff" * 50, "not a table"),
                                ("no_seed", table.replace("seed", "sead"), "no column seed"),
                                ("no_model", table.replace("model", "modell"), "no column model"),
                                # (exit 0: the evaluation's cells held a pandas Series over three lines, or the text)
                                ("twice", "\n".join([*table.splitlines()[:2], *table.splitlines()[1:]]) + "\n", "has two rows"),
                                ("text", _column_as_text(table, "train time [s]"), "holds text, not numbers")]:
        copy = tmp_path / name
        shutil.copytree(run, copy)
        (copy / "sysid_runs.csv").write_bytes(text.encode("latin-1"))
        _bad(cli("sysid", "evaluate", str(copy), "--data", ok), message)
    fifo = tmp_path / "fifo"
    shutil.copytree(run, fifo)
    (fifo / "models" / "ren.pt").unlink()
    os.mkfifo(fifo / "models" / "ren.pt")
    _bad(cli("sysid", "evaluate", str(fifo), "--data", ok), "is not a regular file")
    assert _no_run(output_root, "evaluate")


def test_evaluate_refuses_a_pickled_model_in_one_line(tiny_run, tmp_path):
    """A models/*.pt that is a plain pickle (protocol 4): torch's two-line warning came before the refusal."""
    import pickle
    import shutil

    _, run = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    marker = tmp_path / "ran"
    with open(copy / "models" / "ren.pt", "wb") as f:
        pickle.dump(_Payload(marker), f, protocol=4)
    data = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, u=rng.normal(size=(4, 60, 1)), y=rng.normal(size=(4, 60, 1)))
    import os
    import subprocess
    import sys

    # (a process of its own: pytest would catch the warning that went to stderr)
    r = subprocess.run([sys.executable, "-m", "deqlab", "sysid", "evaluate", str(copy), "--data", str(data)],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "DEQLAB_OUTPUT_ROOT": str(tmp_path / "out")})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a deqlab sysid model" in r.stderr, r.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_evaluate_of_another_commands_run_folder_says_it_is_no_sysid_run(cli, output_root, tmp_path):
    """A `deqlab converge` run folder (a config.yaml without washout, no models/) read as "config.yaml: no usable
    washout; give washout=N": given a washout, the next line said what was wrong all along."""
    folder = tmp_path / "converge_run"
    folder.mkdir()
    (folder / "config.yaml").write_text("seed: 0\nrestarts: 10\n")
    data = tmp_path / "uy.npz"
    np.savez(data, u=np.zeros((3, 50, 1)), y=np.ones((3, 50, 1)))
    helpers.assert_one_line_error(cli("sysid", "evaluate", str(folder), "--data", str(data)),
                                  "holds no saved models (models/*.pt): not a finished `deqlab sysid pendulum` run")
    assert not output_root.exists()


def test_evaluate_refuses_a_run_its_run_did_not_finish(tiny_run, cli, output_root, tmp_path):
    """A .failed or .partial run folder was evaluated like a finished one, into a folder that claimed success;
    renamed without .failed, the models are evaluated (a strict run's failure report leaves them whole)."""
    import shutil

    _, run = tiny_run
    pred = np.load(run / "predictions.npz")
    three = lambda a: np.concatenate([a, a, a])
    ok = _write(tmp_path, "ok.npz", u=three(pred["u"]), y=three(pred["y"]))
    failed = tmp_path / f"{run.name}.failed"
    shutil.copytree(run, failed)
    (failed / "error.txt").write_text("stopped by SIGTERM\n")
    _bad(cli("sysid", "evaluate", str(failed), "--data", ok), "is a run marked failed (stopped by SIGTERM): its models")
    partial = shutil.copytree(run, tmp_path / f"{run.name}.partial")
    _bad(cli("sysid", "evaluate", str(partial), "--data", ok), "is unfinished (.partial: its run is still going, or was killed)")
    assert _no_run(output_root, "evaluate")


def test_empirical_lipschitz_checks_its_input_and_leaves_frozen_parameters_frozen():
    from deqlab.errors import InputError
    from deqlab.models.baselines import LinearStateSpace
    from deqlab.sysid.models import Normalised

    core = LinearStateSpace(1, 2, 1)
    core.A.requires_grad_(False)
    model = Normalised(core, [0.0], [1.0], [0.0], [1.0])
    u = np.random.default_rng(0).normal(size=(2, 30, 1))
    empirical_lipschitz(model, u, steps=5, pairs=2, iters=1)
    assert not core.A.requires_grad and core.B.requires_grad        # (every parameter came back requires_grad=True)
    for kw, message in ((dict(steps=50), "must not exceed"), (dict(steps=0), "steps must be"), (dict(pairs=0), "pairs must be")):
        with pytest.raises(InputError, match=message):               # (torch's RuntimeErrors from random_ and stack)
            empirical_lipschitz(model, u, **{"steps": 5, "pairs": 2, "iters": 1, **kw})
    with pytest.raises(InputError, match="NaN"):                     # (no finite ratio: 0.0 was the bound)
        empirical_lipschitz(model, u * np.nan, steps=5, pairs=2, iters=1)


@pytest.mark.parametrize("command", [["sysid", "pendulum", "--tiny"], ["sysid", "f16", "--data-dir", ".", "--tiny"]])
def test_seed_and_seeds_options_together_are_refused(cli, output_root, command):
    """--seed is one seed instead of the list --seeds: given both, the list went unused and the run exited 0."""
    r = cli(*command, "--seed", "1", "--seeds", "1,2")
    helpers.assert_one_line_error(r, "seeds is not read by this run: seed and seeds both given")
    assert not output_root.exists()


_RUN, _CONFIG, _SWEEP = ["sysid", "pendulum", "--tiny"], ["config", "sysid"], ["sweep", "sysid"]


@pytest.mark.parametrize("command, given, key", [
    (_RUN, ["--data", "mine.npz", "--noise", "0.1"], "data.noise_std is not read by this run: it (--noise)"),
    (_RUN, ["data.path=mine.npz", "data.trajectories=100"], "data.trajectories is not read by this run: it"),
    (_RUN, ["--data", "mine.npz", "pendulum.mu=0.5"], "pendulum.mu is not read by this run: it"),
    (_CONFIG, ["data.path=mine.npz", "data.noise_std=0.1"], "data.noise_std is not read by this run: it (--noise)"),
    (_CONFIG, ["data.path=mine.npz", "pendulum.mu=0.5"], "pendulum.mu is not read by this run: it"),
    (_SWEEP, ["data.path=mine.npz", "data.steps=5,10"], "data.steps is not read by any job of the sweep: it"),
    (_SWEEP, ["data.path=mine.npz", "seed=1,2", "data.hold=3"], "data.hold is not read by any job of the sweep: it"),
])
def test_a_simulator_setting_with_a_data_file_is_refused(cli, output_root, tmp_path, command, given, key):
    """`--data mine.npz --noise 0.1` trained on the file as it was: the noise asked for was never added, exit 0;
    so did a sweep over a simulator setting with a data file (`deqlab sweep sysid data.path=F data.steps=5,10`),
    and `deqlab config` printed such settings as if they applied."""
    data = tmp_path / "mine.npz"
    np.savez(data, u=np.zeros((5, 200, 1)), y=np.zeros((5, 200, 1)))
    given = [str(data) if g == "mine.npz" else g.replace("mine.npz", str(data)) for g in given]
    r = cli(*command, *given)
    helpers.assert_one_line_error(r, f"{key} sets the pendulum simulator's data, but a data file is given")
    assert not output_root.exists()
    assert cli("config", "sysid", "data.path=null", "data.trajectories=7").exit_code == 0


@pytest.mark.parametrize("command, given", [
    (_RUN, ["seed=1", "seeds=[1,2]"]), (_RUN, ["--seed", "1", "seeds=[1,2]"]), (_RUN, ["++seed=1", "seeds=[3]"]),
    (["sysid", "f16", "--data-dir", ".", "--tiny"], ["seed=1", "seeds=[1,2]"]),
    (_SWEEP, ["seed=1,2", "seeds=[3]"]), (["sweep", "sysid_f16"], ["f16.data_dir=.", "seed=1,2", "seeds=[3]"]),
])
def test_seed_and_seeds_keys_together_are_refused(cli, output_root, command, given):
    """The keys too: `seed=1 seeds=[1,2]` ran seed 1 alone, the list unused, with exit 0; so did the F-16
    command with both, and a sweep over seed with seeds given."""
    r = cli(*command, *given)
    helpers.assert_one_line_error(r, "seeds is not read by ")
    helpers.assert_one_line_error(r, "seed and seeds both given: seed runs one seed instead of the list seeds")
    assert not output_root.exists()


def test_a_model_file_on_a_full_disk_is_an_os_error():
    """torch's zip writer reported a full disk as a RuntimeError ('[enforce fail at inline_container.cc:672] .
    unexpected pos 64 vs 0'), which the CLI could only show as a traceback (`deqlab sysid pendulum` on a nearly
    full disk); the model is now serialised in memory and written by Python, whose OSError (ENOSPC) the CLI reports
    as 'cannot write models/ren.pt: No space left on device'. /dev/full refuses every write with ENOSPC."""
    import errno

    from deqlab.models.baselines import LinearStateSpace
    from deqlab.sysid.models import Normalised, save_model

    model = Normalised(LinearStateSpace(1, 2, 1), [0.0], [1.0], [0.0], [1.0])
    with pytest.raises(OSError) as caught:
        save_model(model, "linear", {"n_x": 2}, "/dev/full")
    assert caught.value.errno == errno.ENOSPC
