"""``deqlab train digits`` as a library call: tiny settings, repeatable, bad input in one line."""

import math
import sys

import numpy as np
import pytest

from deqlab.demos import train_digits as td
from deqlab.settings.train_digits import TINY, Settings
from deqlab.errors import InputError


@pytest.fixture(scope="module")
def tiny_result():
    return td.run(Settings.tiny())


def test_tiny_run_fills_the_table_and_the_curvature(tiny_result):
    r = tiny_result
    summary = r.tables["summary"].frame
    assert list(summary["model"]) == ["tanh DEQ", "monotone DEQ (PR)", "MLP"]
    counts = summary["parameters"].to_numpy()
    assert np.abs(counts / counts[0] - 1).max() < 0.1  # similar parameter counts
    assert (summary["test accuracy"] > 0.2).all()  # 10 classes: chance is 0.1
    assert summary["iterations/batch, first epoch"].iloc[0] > 1 and summary["iterations/batch, first epoch"].iloc[2] == 0
    for col in ("training time (s)", "batches not converged"):
        assert col in summary.columns
    curv = r.tables["curvature"].frame
    assert len(curv) == 3 * 2 and set(curv["epoch"]) == {0, 2}
    assert np.isfinite(curv[["top eigenvalue", "trace", "negative mass"]].to_numpy()).all()
    assert ((curv["negative mass"] >= 0) & (curv["negative mass"] <= 1)).all()
    assert set(r.figures) == {"training", "spectral_density"}
    # history.npz names each row's model (its rows are every model's epochs, one after the other), as plain
    # strings np.load reads without pickle
    history, frame = r.arrays["history"], r.tables["history"].frame
    assert list(history["model"]) == list(frame["model"]) and history["model"].dtype.kind == "U"
    for make in r.figures.values():
        fig = make()
        assert all(ax.get_xlabel() or ax.get_ylabel() for ax in fig.axes)
        titles = [ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""]
        assert any(f"seed {Settings.tiny().seed}" in t for t in titles)  # a figure says which run it shows


def test_top_eigenvalue_is_the_largest_slq_node(tiny_result):
    """Two routes to λ_max: ARPACK's and the largest Ritz value of the SLQ runs (a lower bound)."""
    curv = tiny_result.tables["curvature"].frame
    for _, row in curv.iterrows():
        key = row["model"].split(" ")[0].lower()
        nodes = tiny_result.arrays[f"density_{key}_epoch{row['epoch']}"]["nodes"]
        assert nodes.max() <= row["top eigenvalue"] * (1 + 1e-2) + 1e-9


def test_repeatable(tiny_result):
    again = td.run(Settings.tiny())
    a, b = tiny_result.tables["summary"].frame, again.tables["summary"].frame
    assert (a["test accuracy"] == b["test accuracy"]).all()
    assert (a["iterations/batch, last epoch"] == b["iterations/batch, last epoch"]).all()


def test_matched_width():
    assert td.matched_width(8906, 2, 75, 10) == 51  # 2·51² + 75·51 + 10 = 9037; 50 gives 8760
    assert td.matched_width(8906, 0, 75, 10) == 119
    assert td.checkpoint_epochs(30, 4) == [0, 10, 20, 30]
    assert td.checkpoint_epochs(5, 1) == [5] and td.checkpoint_epochs(5, 0) == []


@pytest.mark.parametrize("overrides, match", [
    ({"epochs": -1}, "epochs"),
    ({"lr": 0.0}, "lr"),
    ({"lr": math.nan}, "lr"),
    ({"deq_solver": "newtonn"}, "deq_solver"),
    ({"models": ["tanh_deq", "resnet"]}, "models"),
    ({"models": ["mlp", "mlp"]}, "models"),
    ({"models": []}, "models"),
    ({"test_fraction": 1.0}, "test_fraction"),
    ({"batch": True}, "batch"),
    # (1e-300 trained a monotone DEQ whose 1 - m is 1: no margin; mondeq refused it)
    ({"m": 1e-300}, r"^m must be >= 2\.2e-16 \(below float64's epsilon 1 - m rounds to 1"),
    ({"m": 1e-17}, r"^m must be >= 2\.2e-16"),
])
def test_bad_settings_are_one_line_input_errors(overrides, match):
    with pytest.raises(InputError, match=match) as info:
        Settings(**overrides)
    assert "\n" not in str(info.value)


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(InputError, match=r'pip install "deqlab\[data\]"'):
        td.load_digits_data(0.25, 0)


def test_monotone_checkpoint_view_matches_an_unrolled_splitting():
    """The monotone DEQ's curvature (its ReLU layer viewed as a DEQ, started at the PR solution) against
    torch.func.hessian through forward-backward steps of the same model, as many as bring the
    contraction factor below 1e-16."""
    import torch

    from deqlab.implicit import LossHessian
    from deqlab.implicit.checks import relative_error
    from deqlab.implicit.mondeq import unrolled_equilibrium
    from deqlab.models.mondeq import MonDEQ, lipschitz, monotonicity

    torch.manual_seed(3)
    mon = MonDEQ(4, 3, 2, m=1.0, nonlinearity="relu")
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (5,), generator=gen)
    view = td.curvature_model("monotone_deq", mon, x, Settings(models=["monotone_deq"], m=1.0))
    op = LossHessian(view, torch.nn.functional.cross_entropy, x, y)
    names = [k for k, _ in mon.named_parameters()]
    assert [k.split(".")[-1] for k in op.names] == [k.split(".")[-1] for k in names] == ["A", "B", "weight", "bias",
                                                                                          "weight", "bias"]
    W = mon.weight().detach()
    m, L = monotonicity(W), lipschitz(W)
    alpha = m / L**2  # forward-backward contracts by sqrt(1 - m²/L²) per step at this step
    steps = math.ceil(math.log(1e-16) / math.log(math.sqrt(1 - (m / L) ** 2)))

    class Unrolled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mon = mon

        def forward(self, x):
            return self.mon.readout(unrolled_equilibrium(self.mon, x, steps, alpha=alpha))

    unrolled = Unrolled()

    def unrolled_loss(theta):
        params = {f"mon.{k}": v for k, v in zip(names, op.unflatten(theta).values())}
        return torch.nn.functional.cross_entropy(torch.func.functional_call(unrolled, params, (x,)), y)

    H_u = torch.func.hessian(unrolled_loss)(op.theta)
    assert float(H_u.abs().max()) > 1e-3
    assert relative_error(op.dense(), H_u) <= 1e-10


def test_the_tanh_deqs_solver_can_be_set():
    """The key was `solver`, which is also the group of the other commands' solver presets: `solver=broyden` was
    read as that group and refused ("unknown key 'solver'; did you mean solver?"), so the documented key could not
    be set at all. It is `deq_solver`; `solver=` names it."""
    from deqlab.cli.compose import load

    assert load("train_digits", ["deq_solver=broyden"])[0].deq_solver == "broyden"
    with pytest.raises(InputError, match=r"^unknown key 'solver'; did you mean deq_solver\?"):
        load("train_digits", ["solver=broyden"])


def test_cli_train_digits_tiny_and_bad_input(cli, output_root):
    r = cli("train", "digits", "--tiny", "--models", "tanh_deq,mlp")
    assert r.exit_code == 0, r.output + r.stderr
    (folder,) = list((output_root / "train" / "digits").iterdir())
    assert (folder / "config.yaml").is_file() and list(folder.glob("*.csv"))
    bad = cli("train", "digits", "lr=-1")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: lr") and bad.stderr.count("\n") == 1
    # (exit 0: no checkpoint, so the probes were never used)
    unread = cli("train", "digits", "checkpoints=0", "slq_probes=8")
    assert unread.exit_code == 2 and unread.stderr == ("error: slq_probes is not read by this run: it is read only by "
                                                       "the loss-Hessian checkpoints, and checkpoints = 0 takes none\n")


def test_cli_tiny_takes_the_users_value_of_a_preset_key(cli, output_root):
    """--tiny expands to key=value overrides, and `--tiny --epochs 1` (or `--tiny checkpoints=0`) was refused as
    setting the key twice; the user's value replaces the preset's. The preset's own curvature keys are not the
    user's: with checkpoints=0 they are not refused as unread."""
    import yaml

    r = cli("train", "digits", "--tiny", "--epochs", "1", "checkpoints=0", "--models", "mlp")
    assert r.exit_code == 0, r.output + r.stderr
    (folder,) = list((output_root / "train" / "digits").iterdir())
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["epochs"] == 1 and config["checkpoints"] == 0 and config["n_z"] == TINY["n_z"]


def test_tanh_checkpoint_view_starts_at_the_training_solvers_point():
    """The tanh DEQ's curvature is taken at the equilibrium the model itself uses: Newton starts at the
    training solver's point (from zero it failed on the seed-0 record's epoch-10 weights and could find
    another fixed point), and computing that point leaves the training layer's state alone."""
    import torch

    settings = Settings(models=["tanh_deq"], n_z=6)
    model, _ = td.build_models(settings, n_x=4, n_y=3)["tanh_deq"]
    dtype = next(model.parameters()).dtype
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=dtype)
    before = model.deq.last_solution
    view = td.curvature_model("tanh_deq", model, x, settings)
    assert model.deq.last_solution is before                          # the training layer was not run
    start = view.deq.last_solution
    with torch.no_grad():
        z = model.deq(x)                                              # the training solver's point
    assert start is not None and torch.equal(start, z)
    with torch.no_grad():
        view.deq.warm_start = True
        z_newton = view.deq(x)
        residual = (model.deq.f(z_newton, x) - z_newton).norm(dim=-1).max()
    assert float(residual) <= td.CURVATURE_ATOL and float((z_newton - z).norm(dim=-1).max()) <= 1e-3


def test_a_checkpoint_whose_curvature_is_refused_is_a_note_not_a_crash(monkeypatch):
    """LossHessian refuses a checkpoint near a fold (IllConditionedError, as it refuses an unconverged one with
    NotConvergedError): the run used to end there, the other models' and epochs' rows lost; now that row is NaN
    with the reason in the notes."""
    from deqlab.errors import IllConditionedError

    real = td.LossHessian
    calls = []

    def refusing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise IllConditionedError("I - df/dz at a DEQ's fixed point is ill-conditioned at sample 0 (test)")
        return real(*args, **kwargs)

    monkeypatch.setattr(td, "LossHessian", refusing)
    result = td.run(Settings.tiny())
    curv = result.tables["curvature"].frame
    assert math.isnan(curv["top eigenvalue"].iloc[0]) and np.isfinite(curv["top eigenvalue"].iloc[1:]).all()
    assert any("no curvature (I - df/dz at a DEQ's fixed point is ill-conditioned" in note for note in result.notes)


def test_a_width_whose_checkpoints_cannot_fit_is_refused_before_the_run(monkeypatch):
    """`deqlab train digits --tiny n_z=10000` passed the memory guard (its estimate, 9.7 GB, left out the
    checkpoint's per-sample n_z x n_z Jacobians) and was killed by the kernel at 22.7 GB after 4 minutes, its folder
    left .partial. With 24 GiB free (CI's machine) it is refused now, naming that term; n_z = 64 (the default
    width) still fits in 4 GiB, and without checkpoints the term is not counted."""
    from deqlab.cli.execute import check_resources

    monkeypatch.setattr("deqlab.settings.resources.available_memory", lambda: 24 * 2**30)
    with pytest.raises(InputError, match=r"a checkpoint's per-sample n_z x n_z Jacobians would need about 95.4 GiB"):
        check_resources(Settings.tiny(n_z=10_000))
    monkeypatch.setattr("deqlab.settings.resources.available_memory", lambda: 4 * 2**30)
    check_resources(Settings(n_z=64))
    assert "n_z / hessian_batch" not in [e.key for e in Settings.tiny(n_z=10_000, checkpoints=0).memory_estimates()]
