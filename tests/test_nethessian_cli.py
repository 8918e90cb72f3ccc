"""CLI of deqlab nethessian (--check, pinn) and deqlab bench nethessian: exit codes, files, bad input."""

import numpy as np
import pandas as pd
import pytest
import helpers
from sample_checks import assert_reproduces, load_samples


def run_dirs(root):
    return helpers.run_folders(root.parent, root.name)


def test_check_writes_tables_arrays_and_figure(cli, output_root):
    r = cli("nethessian", "--check", "--activation", "softplus", "--hidden", "5,4", "batch=3", "repeats=1", "--strict")
    assert r.exit_code == 0, r.output
    (folder,) = run_dirs(output_root / "nethessian")
    for name in ("config.yaml", "check.csv", "pitfalls.csv", "nethessian.npz", "check.png"):
        assert (folder / name).is_file(), name
    check = pd.read_csv(folder / "check.csv")
    assert check["ok"].all() and (check["max rel error"] <= 1e-12).all()
    assert set(check["quantity"]) >= {"jacobian J", "diag Hessian Hd", "Laplacian", "Hessian H", "third T=dHd/dx"}
    assert pd.read_csv(folder / "pitfalls.csv")["as predicted"].all()
    arrays = np.load(folder / "nethessian.npz")
    assert arrays["jacobian"].shape == (3, 2, 4) and arrays["hessian"].shape == (3, 2, 4, 4)
    assert arrays["third"].shape == (3, 2, 4, 4) and arrays["laplacian"].shape == (3, 2)
    assert "Forward recursions vs torch.func" in r.output
    # which way the speed-up goes (0.6 for the forward pass read as 'ours 0.6x faster' or '0.6x the time')
    assert "speed-up: reference [ms] / ours [ms]" in " ".join(r.output.split())


def test_plain_nethessian_runs_the_check(cli, output_root):
    r = cli("nethessian", "mlp.hidden=[3]", "batch=2", "repeats=1", "--dtype", "float32", "--strict")
    assert r.exit_code == 0, r.output
    assert len(run_dirs(output_root / "nethessian")) == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (("nethessian", "--activation", "relu"), "unknown mlp.activation 'relu'"),
        (("nethessian", "mlp.d=0"), "mlp.d must be >= 1"),
        (("nethessian", "--hidden", "4,-2"), "mlp.hidden"),
        (("nethessian", "--dtype", "float16"), "unknown dtype"),
        (("nethessian", "pinn", "routes=[magic]"), "unknown routes entry 'magic'"),
        (("nethessian", "pinn", "--steps", "0"), "pinn.steps must be >= 1"),
        (("bench", "nethessian", "tasks=[jacobian]"), "unknown tasks entry 'jacobian'"),
        (("nethessian", "nosuchkey=1"), "unknown key 'nosuchkey'"),
        (("nethessian", "tolerance=1"), "tolerance must be < 1"),   # a check that could not fail
        # the group's options before `pinn` were dropped without a word (--device cuda ran on the CPU)
        (("nethessian", "--device", "cuda", "pinn", "--steps", "0"), "--device is an option of `deqlab nethessian`"),
        (("nethessian", "--batch", "0", "pinn", "--steps", "0"), "--batch is an option of `deqlab nethessian`"),
        # a sub-command after a setting read as a setting without a value, with no word of the order
        (("nethessian", "batch=3", "pinn"), "a sub-command goes right after its command"),
    ],
)
def test_bad_input_exits_2_without_a_folder(cli, output_root, args, message):
    r = cli(*args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not output_root.exists() or not any(output_root.rglob("config.yaml"))


def test_pinn_short_run(cli, output_root):
    r = cli("nethessian", "pinn", "--steps", "15", "--hidden", "8", "pinn.grid=9", "pinn.n_interior=32", "pinn.n_boundary=16")
    assert r.exit_code == 0, r.output
    (folder,) = [p for p in (output_root / "nethessian" / "pinn").iterdir()]
    for name in ("pinn.csv", "pinn.npz", "pinn.png", "config.yaml"):
        assert (folder / name).is_file(), name
    table = pd.read_csv(folder / "pinn.csv")
    assert list(table["route"]) == ["forward", "double_backward"]
    assert np.isfinite(table["rel L2 error"]).all()
    arrays = np.load(folder / "pinn.npz")
    assert arrays["u_forward"].shape == (9, 9) and arrays["loss_forward"].shape == (15,)
    # same maths: the first steps of the two routes agree to float32 round-off
    assert np.allclose(arrays["loss_forward"][:5], arrays["loss_double_backward"][:5], rtol=1e-4)
    # the printed speed-up and total time are recomputable from the saved step times, and the caption says how
    for route in ("forward", "double_backward"):
        row = table.set_index("route").loc[route]
        assert row["total train time [ms]"] == pytest.approx(1e3 * arrays[f"step_time_{route}"].sum(), rel=1e-12)
    assert "speed-up: double_backward's median step time / the route's" in " ".join(r.output.split())


def test_bench_small(cli, output_root):
    r = cli("bench", "nethessian", "mlp.d=3", "mlp.hidden=[4]", "batch=4", "hessian_batch=2", "repeats=1", "warmup=0")
    assert r.exit_code == 0, r.output
    (folder,) = list((output_root / "bench" / "nethessian").iterdir())
    table = pd.read_csv(folder / "bench.csv")
    ref = table[table["method"] == "double-backward loop"]
    assert len(ref) == 6 and np.allclose(ref["speed-up vs double-backward loop"], 1.0)
    f64 = table[table["dtype"] == "float64"]
    assert (f64["max rel error"] <= 1e-12).all()
    assert (table[table["dtype"] == "float32"]["max rel error"] <= 1e-5).all()


def test_bench_writes_a_figure_and_the_samples_behind_every_median(cli, output_root):
    r = cli("bench", "nethessian", "mlp.d=3", "mlp.hidden=[4]", "batch=4", "hessian_batch=2", "repeats=4", "warmup=0")
    assert r.exit_code == 0, r.output
    (folder,) = list((output_root / "bench" / "nethessian").iterdir())
    assert (folder / "bench.png").stat().st_size > 0
    table = pd.read_csv(folder / "bench.csv")
    samples = load_samples(folder / "bench_samples.npz")
    assert samples["time_s"].shape == (len(table), 4) and not np.isnan(samples["time_s"]).any()
    assert_reproduces(samples, table, labels=["task", "dtype", "batch", "method"],
                      columns={"median time [ms]": ("time_s", 1e3)})
    np.testing.assert_allclose(1e3 * samples["time_s"].min(axis=1), table["min time [ms]"], rtol=1e-12)


def test_failed_check_is_reported_and_strict_exits_1(cli, output_root):
    r = cli("nethessian", "mlp.hidden=[3]", "batch=2", "repeats=1", "tolerance=1e-30", "--strict")
    assert r.exit_code == 1
    assert "tolerance 1e-30" in r.output and "strict" in r.stderr


def test_subcommand_options_reach_the_subcommand(cli, output_root):
    """`--dtype`/`--seed` exist on the group and on `pinn`: after `pinn` they belong to `pinn`."""
    r = cli("nethessian", "pinn", "--dtype", "float64", "--seed", "3", "--steps", "2", "--hidden", "4",
            "pinn.grid=5", "pinn.n_interior=8", "pinn.n_boundary=8")
    assert r.exit_code == 0, r.output
    (folder,) = list((output_root / "nethessian" / "pinn").iterdir())
    text = (folder / "config.yaml").read_text()
    assert "dtype: float64" in text and "seed: 3" in text
    assert np.load(folder / "pinn.npz")["u_forward"].dtype == np.float64
