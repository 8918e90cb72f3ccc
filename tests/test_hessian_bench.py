"""`deqlab bench hessian` on a tiny problem: it runs, writes its CSVs, and its numbers are sane."""

import pandas as pd
import pytest

TINY = ("n_z=5", "n_x=2", "batch=3", "ladder=[4,6]", "repeats=1", "warmup=0", "unroll_steps=80", "top_k=2")


def test_bench_hessian_tiny(cli, output_root):
    r = cli("bench", "hessian", *TINY, "memory=false")
    assert r.exit_code == 0, r.output
    folder = [p for p in (output_root / "bench" / "hessian").iterdir() if p.is_dir()][0]
    ref = pd.read_csv(folder / "reference.csv").set_index("method")
    assert ref.loc["closed form Hessian (structured)", "rel. difference"] <= 1e-10
    assert ref.loc["implicit HVP, warm", "rel. difference"] <= 1e-10
    assert (ref["time (s)"] > 0).all()
    ladder = pd.read_csv(folder / "ladder.csv")
    assert list(ladder["N"]) == [4, 6]
    assert (ladder["lambda_max dense - eigsh (rel.)"] <= 1e-6).all()
    assert "threads" in r.output and "torch" in r.output


@pytest.mark.slow
def test_bench_hessian_memory_probe(cli, output_root):
    r = cli("bench", "hessian", *TINY, "ladder=[4]", "memory=true")
    assert r.exit_code == 0, r.output
    folder = [p for p in (output_root / "bench" / "hessian").iterdir() if p.is_dir()][0]
    mem = pd.read_csv(folder / "reference.csv")["peak memory (MiB)"]
    assert mem.notna().all() and (mem >= 0).all()


def test_bench_bad_input(cli, output_root):
    r = cli("bench", "hessian", "ladder=[0]")
    assert r.exit_code == 2
    assert "ladder" in r.stderr
    assert not (output_root / "bench").exists()
