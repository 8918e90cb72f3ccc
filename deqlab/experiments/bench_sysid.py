"""``deqlab bench sysid``: time of one training step of the identified models (forward + backward of a
truncated chunk), the REN with the implicit-function backward of its equilibrium layer against the
reference autograd route through the row loop, and the LSTM for scale; for each torch thread count.

Rows: model, backward, threads, batch, steps, median seconds over ``repeats`` after ``warmup`` calls,
ratio to the reference (REN, ``autograd`` backward, same thread count).
"""

from __future__ import annotations

import os
import statistics
import time

import pandas as pd
import torch

from deqlab import config as C
from deqlab.experiments.result import Result, Table
from deqlab.models.baselines import LSTMModel
from deqlab.models.ren import ContractingREN


def validate(cfg) -> None:
    for key in ("batch", "steps", "n_x", "n_v", "lstm_hidden", "repeats"):
        C.require_int(cfg, key, minimum=1)
    C.require_int(cfg, "warmup", minimum=0)
    C.require_int_list(cfg, "threads", minimum=1)


def _time(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(cfg) -> Result:
    validate(cfg)
    old = torch.get_num_threads()
    rows = []
    try:
        for threads in cfg.threads:
            torch.set_num_threads(threads)
            torch.manual_seed(cfg.seed)
            u = torch.randn(cfg.batch, cfg.steps, 1, dtype=torch.float64)
            cases = {}
            for backward in ("autograd", "implicit"):
                model = ContractingREN(1, cfg.n_x, cfg.n_v, 1, equilibrium_backward=backward)
                cases[("ren", backward)] = model
            cases[("lstm", "autograd")] = LSTMModel(1, cfg.lstm_hidden, 1)
            times = {}
            for (name, backward), model in cases.items():
                def step(model=model):
                    model.zero_grad()
                    y, _ = model(u)
                    (y**2).mean().backward()
                times[(name, backward)] = _time(step, cfg.warmup, cfg.repeats)
            ref = times[("ren", "autograd")]
            for (name, backward), seconds in times.items():
                params = sum(p.numel() for p in cases[(name, backward)].parameters())
                rows.append({"model": name, "backward": backward, "threads": threads, "params": params,
                             "batch": cfg.batch, "steps": cfg.steps, "median s": seconds,
                             "ratio to ren/autograd": seconds / ref})
    finally:
        torch.set_num_threads(old)
    result = Result(command="bench_sysid")
    result.tables["bench_sysid"] = Table(
        title="One training step (forward + backward of a chunk), float64",
        frame=pd.DataFrame(rows), formats={"median s": "{:.4f}", "ratio to ren/autograd": "{:.3f}"},
        caption=f"median of {cfg.repeats} after {cfg.warmup} warm-up calls; REN n_x={cfg.n_x}, n_v={cfg.n_v}")
    result.notes.append(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, float64, threads as in the table")
    return result
