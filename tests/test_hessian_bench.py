"""`deqlab bench hessian` on a tiny problem: it runs, writes its CSVs, and its numbers are sane."""

import os
import signal
import time

import pandas as pd
import pytest
from helpers import overriding

TINY = ("n_z=5", "n_x=2", "batch=3", "ladder=[4,6]", "repeats=1", "warmup=0", "unroll_steps=80", "top_k=2")


def test_bench_hessian_tiny(cli, output_root):
    r = cli("bench", "hessian", *overriding(TINY, "memory=false"))
    assert r.exit_code == 0, r.output
    folder = next(p for p in (output_root / "bench" / "hessian").iterdir() if p.is_dir())
    ref = pd.read_csv(folder / "reference.csv").set_index("method")
    assert ref.loc["closed form Hessian (structured)", "rel. difference"] <= 1e-10
    assert ref.loc["implicit HVP, warm", "rel. difference"] <= 1e-10
    assert (ref["time (s)"] > 0).all()
    ladder = pd.read_csv(folder / "ladder.csv")
    assert list(ladder["N"]) == [4, 6]
    assert (ladder["lambda_max dense - eigsh (rel.)"] <= 1e-6).all()
    assert (ladder["dense floor (s)"] > 0).all() and (ladder["dense fraction of floor"] > 0).all()
    assert "threads" in r.output and "torch" in r.output and "threadpoolctl" in r.output
    targets = pd.read_csv(folder / "targets.csv")
    assert set(targets["met"]) <= {"met", "NOT met"}
    assert {"1 dense Hessian", "2 HVP"} <= set(targets["target"])
    assert targets["bound"].notna().all() and targets["against"].notna().all()
    costs = pd.read_csv(folder / "dense_costs.csv")
    assert list(costs["N"]) == [4, 6]  # every ladder size with a dense form
    phases = ["set-up / floor", "operands / floor", "products / floor", "symmetrise / floor"]
    assert (costs[phases] > 0).all().all()
    assert ((costs[phases].sum(axis=1) - costs["sum / floor"]).abs() <= 1e-9 * costs["sum / floor"]).all()
    err = targets[targets["quantity"] == "rel. difference"]
    assert len(err) == 1 and float(err["value"].iloc[0]) <= 1e-13  # tiny problem: the closed form is exact to round-off


def test_bench_hessian_ladder_in_both_dtypes_with_the_rate_and_the_gpu_targets(cli, output_root, monkeypatch):
    """``dtypes=[float64,float32]``: float32 rows time the derivatives (no eigsh); every dense row has its
    rate over the device's matrix-product rate; issue 15's target rows appear where the ladder reaches
    their sizes (lowered here so that a tiny ladder does) and judge what they say."""
    import deqlab.demos.bench_hessian as bench

    monkeypatch.setattr(bench, "DENSE_RATE_MIN_P", 40)
    monkeypatch.setattr(bench, "HVP_SECOND_MIN_P", 40)
    r = cli("bench", "hessian", *overriding(TINY, "memory=false", "dtypes=[float64,float32]", "rate_size=32"))
    assert r.exit_code == 0, r.output
    folder = next(p for p in (output_root / "bench" / "hessian").iterdir() if p.is_dir())
    ladder = pd.read_csv(folder / "ladder.csv")
    assert list(zip(ladder["dtype"], ladder["N"])) == [("float64", 4), ("float64", 6), ("float32", 4), ("float32", 6)]
    f32 = ladder[ladder["dtype"] == "float32"]
    assert f32["lambda_max"].isna().all() and (f32["eigsh HVPs"] == 0).all() and (f32["HVP warm (s)"] > 0).all()
    assert (ladder["dense rate / matmul rate"] > 0).all() and (ladder["dense rate (Gflop/s)"] > 0).all()
    targets = pd.read_csv(folder / "targets.csv")
    rate = targets[targets["target"] == "15 dense Hessian rate"]
    hvp = targets[targets["target"] == "15 HVP at P ~ 1e6"]
    assert list(rate["N"]) == [6] and list(hvp["N"]) == [6]  # P = 54 for N = 6, 28 for N = 4; float64 rows only
    assert rate["met"].iloc[0] == ("met" if rate["value"].iloc[0] >= 0.3 else "NOT met")
    assert hvp["met"].iloc[0] == "met"  # a tiny HVP takes far under a second


def test_bench_hessian_writes_its_figure_and_the_samples_behind_every_median(cli, output_root):
    """ladder.png; reference_samples.npz, ladder_samples.npz and dense_costs_samples.npz hold every timed call (seconds), one
    NaN-padded row per CSV row, and each row's median is the CSV's time (ladder: every time column, NaN
    where the CSV has none; dense_costs: each phase's median over the row's floor)."""
    import numpy as np

    r = cli("bench", "hessian", *overriding(TINY, "repeats=2", "memory=false", "dtypes=[float64,float32]", "rate_size=32"))
    assert r.exit_code == 0, r.output
    folder = next(p for p in (output_root / "bench" / "hessian").iterdir() if p.is_dir())
    assert (folder / "ladder.png").stat().st_size > 0
    ref = pd.read_csv(folder / "reference.csv")
    with np.load(folder / "reference_samples.npz", allow_pickle=False) as npz:
        assert list(npz["method"]) == list(ref["method"]) and list(npz["P"]) == list(ref["P"])
        np.testing.assert_allclose(np.nanmedian(npz["time_s"], axis=1), ref["time (s)"], rtol=1e-12)
    ladder = pd.read_csv(folder / "ladder.csv")
    columns = {"forward_solve": "forward solve (s)", "gradient": "gradient (s)", "hvp_cold": "HVP cold (s)",
               "hvp_warm": "HVP warm (s)", "eigsh": "top-2 eigsh (s)", "dense": "dense closed form (s)",
               "dense_floor": "dense floor (s)"}
    with np.load(folder / "ladder_samples.npz", allow_pickle=False) as npz:
        assert list(npz["dtype"]) == list(ladder["dtype"]) and list(npz["N"]) == list(ladder["N"])
        assert list(npz["P"]) == list(ladder["P"])
        for name, column in columns.items():
            samples = npz[f"{name}_s"]
            assert samples.shape[0] == len(ladder)
            timed = np.isfinite(samples).any(axis=1)
            assert list(timed) == list(ladder[column].notna()), name  # float32 rows: no eigsh
            np.testing.assert_allclose(np.nanmedian(samples[timed], axis=1), ladder[column][timed], rtol=1e-12, err_msg=name)
        assert list(npz["matmul_dtype"]) == ["float64", "float32"] and np.isfinite(npz["matmul_s"]).sum(axis=1).tolist() == [2, 2]
    costs = pd.read_csv(folder / "dense_costs.csv")
    with np.load(folder / "dense_costs_samples.npz", allow_pickle=False) as npz:
        assert list(npz["N"]) == list(costs["N"]) and list(npz["dtype"]) == list(costs["dtype"])
        for phase in ("set-up", "operands", "products", "symmetrise"):
            median = np.nanmedian(npz[f"{phase.replace('-', '_')}_s"], axis=1)
            np.testing.assert_allclose(median / costs["floor (s)"], costs[f"{phase} / floor"], rtol=1e-12, err_msg=phase)


@pytest.mark.slow
def test_bench_hessian_memory_probe(cli, output_root):
    r = cli("bench", "hessian", *overriding(TINY, "ladder=[4]", "memory=true", "memory_n_z=6"))
    assert r.exit_code == 0, r.output
    folder = next(p for p in (output_root / "bench" / "hessian").iterdir() if p.is_dir())
    mem = pd.read_csv(folder / "reference.csv")["peak memory (MiB)"]
    assert mem.notna().all() and (mem >= 0).all()
    targets = pd.read_csv(folder / "targets.csv")
    assert (targets["quantity"] == "peak RSS increase / floor").sum() == 2


def _killed_child():
    os.kill(os.getpid(), signal.SIGKILL)


def _slow_child():
    time.sleep(60)


def _failing_child():
    raise RuntimeError("boom")


def _good_child(a, b):
    return a + b


@pytest.mark.parametrize("work,message,timeout_s", [(_killed_child, "killed by signal 9", 120),
                                                    # (waits out its 10 s timeout: -m slow)
                                                    pytest.param(_slow_child, "no result within", 10, marks=pytest.mark.slow),
                                                    (_failing_child, "RuntimeError: boom", 120)])
def test_probe_child_never_hangs_the_parent(work, message, timeout_s):
    """A memory probe whose child dies, hangs or fails raises a deqlab error, at the latest after its
    timeout (a spawned child needs a few seconds to import deqlab before it runs ``work``)."""
    from deqlab.benchmarks import run_in_child
    from deqlab.errors import DeqlabError

    start = time.monotonic()
    with pytest.raises(DeqlabError, match=message):
        run_in_child(work, (), "probe", timeout_s=timeout_s)
    assert time.monotonic() - start < timeout_s + 15


def _chatty_child(a, b):
    print("a line on stdout")   # (must not corrupt the answer)
    return a + b


def test_probe_child_returns_its_value():
    from deqlab.benchmarks import run_in_child

    assert run_in_child(_good_child, (2, 3), "probe", timeout_s=120) == 5
    assert run_in_child(_chatty_child, (2, 3), "probe", timeout_s=120) == 5


@pytest.mark.parametrize("args, message", [
    (["ladder=[0]"], "ladder"),
    # ARPACK finds at most P - 1 eigenvalues: refused before the run, naming the groups and the size
    (["groups=[b_y]"], "top_k = 5 eigenvalues need more than 5 parameters; groups [b_y] at ladder size 32 have P = 1"),
    (["groups=[W_y]", "ladder=[4,64]"], "groups [W_y] at ladder size 4 have P = 4"),
    # (exit 0: the probe's size was ignored)
    (["memory=false", "memory_n_z=200"], "memory_n_z is not read by this run: it sizes the memory probe, which memory=false skips"),
])
def test_bench_bad_input(cli, output_root, args, message):
    r = cli("bench", "hessian", *args)
    assert r.exit_code == 2
    assert message in r.stderr and r.stderr.strip().count("\n") == 0
    assert not (output_root / "bench").exists()


def test_a_probe_child_that_cannot_be_started_is_a_deqlab_error(monkeypatch):
    """Under a limit on processes (``ulimit -u``) starting the child fails with EAGAIN; the run reported
    it as "cannot write: Resource temporarily unavailable", a disk problem."""
    import errno
    import subprocess

    from deqlab.benchmarks import run_in_child
    from deqlab.errors import DeqlabError

    def refused(*args, **kwargs):
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(subprocess, "Popen", refused)
    with pytest.raises(DeqlabError, match=r"probe: cannot start the child process: Resource temporarily unavailable "
                                          r"\(a limit on processes, such as ulimit -u\?\)"):
        run_in_child(_good_child, (2, 3), "probe", timeout_s=120)
