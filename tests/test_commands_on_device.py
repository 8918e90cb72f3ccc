"""Every command runs end to end on every device this machine has (issue 15, item 1).

tests/test_devices.py checks the library; this runs each command of the command line, with small
settings, under ``--device``: the demos draw their problems on the CPU and move them, time with the
device's clock, and must not mix devices anywhere. On a machine without CUDA the CUDA cases are
skipped with the reason; the CPU cases are marked ``slow`` (each command has its own CPU tests in the
default run; these repeat them with other settings).
"""

from __future__ import annotations

import pytest
import torch

from tests.f16_fixture import make_benchmark
from tests.helpers import run_folder

#: (command words, small settings, run-folder path under the output root)
COMMANDS = [
    (["converge"], ["--restarts", "1", "solver_table=[anderson,broyden,fixed_point]", "curve_layers=10"], "converge"),
    (["hessian"], ["unroll_steps=40", "check_layer=false"], "hessian"),   # (probes, top_k: read by --hvp-only only)
    (["hessian"], ["--hvp-only", "--n-z", "12", "--batch", "3", "probes=8", "top_k=3"], "hessian"),
    (["mondeq"], ["eigen.restarts=2", "train.epochs=2", "train.samples=128", "sweep.alphas=[0.01,0.1,1.0,10.0]",
                  "sweep.max_iter=400", "sweep.batch=4", "model.n_z=8", "max_iter=10000"], "mondeq"),
    (["nethessian"], ["mlp.hidden=[3]", "batch=2", "repeats=1"], "nethessian"),
    (["nethessian", "pinn"], ["--steps", "15", "--hidden", "8", "pinn.grid=9", "pinn.n_interior=32", "pinn.n_boundary=16"],
     "nethessian/pinn"),
    (["lowrank"], [], "lowrank"),
    (["sysid", "pendulum"], ["sysid_preset=tiny"], "sysid/pendulum"),
    (["sysid", "f16"], ["sysid_f16_preset=tiny"], "sysid/f16"),
    (["bench", "solvers"], ["sizes=[8,40]", "norms=[0.9]", "repeats=1", "batch=4"], "bench/solvers"),
    (["bench", "hessian"], ["n_z=5", "n_x=2", "batch=3", "ladder=[4,6]", "memory_n_z=6", "repeats=1", "warmup=0",
                            "unroll_steps=80", "top_k=2", "dtypes=[float64,float32]", "rate_size=64"], "bench/hessian"),
    (["bench", "lowrank"], ["n=40", "rank=3", "k=6", "repeats=2", "large_n=[3000]"], "bench/lowrank"),
    (["bench", "mondeq"], ["sizes=[8,16]", "repeats=1", "alphas=[0.5,1.0]", "batch=4", "n_x=3"], "bench/mondeq"),
    (["bench", "nethessian"], ["repeats=1", "warmup=0", "batch=4", "hessian_batch=2", "mlp.d=5", "mlp.hidden=[6]"],
     "bench/nethessian"),
    (["bench", "sysid"], ["repeats=1", "warmup=0", "steps=3", "threads=[1]"], "bench/sysid"),
]

DEVICES = [
    pytest.param("cpu", marks=pytest.mark.slow),
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("words, settings, folder", COMMANDS, ids=lambda v: "-".join(v) if isinstance(v, list) else None)
def test_command_runs_on_device(cli, output_root, tmp_path, device, words, settings, folder):
    if words == ["sysid", "f16"]:
        settings = [*settings, "--data-dir", str(make_benchmark(tmp_path / "f16", steps=900))]
    r = cli(*words, *settings, "--device", device)
    assert r.exit_code == 0, (r.exit_code, r.stderr[-2000:], r.output[-2000:])
    folder = run_folder(output_root, folder)
    assert f"device: {device}" in (folder / "config.yaml").read_text()
