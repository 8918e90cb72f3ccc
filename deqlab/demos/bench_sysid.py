"""``deqlab bench sysid``: time of one training step of the identified models (forward + backward of a
truncated chunk), the REN with the implicit-function backward of its equilibrium layer against the
reference autograd route through the row loop, and the LSTM for scale; for each torch thread count.

Rows: model, backward, threads, batch, steps, median seconds over ``repeats`` after ``warmup`` calls,
ratio to the reference (REN, ``autograd`` backward, same thread count).
"""

from __future__ import annotations
from functools import partial

import pandas as pd
import torch

from deqlab.benchmarks import machine_note, median_time, pinned_threads
from deqlab.report import sysid_figures
from deqlab.report.progress import track
from deqlab.report.result import Result, Table
from deqlab.report.timing_samples import sample_arrays
from deqlab.models.baselines import LSTMModel
from deqlab.models.ren import ContractingREN
from deqlab.report.words import counted


def run(cfg) -> Result:
    rows, samples = [], []  # samples: per table row, every timed call's seconds
    for threads in track(list(cfg.threads), "bench sysid", label=lambda t: f"{t} thread(s)"):
        with pinned_threads(threads):
            torch.manual_seed(cfg.seed)
            u = torch.randn(cfg.batch, cfg.steps, 1, dtype=torch.float64)
            cases = {}
            for backward in ("autograd", "implicit"):
                model = ContractingREN(1, cfg.n_x, cfg.n_v, 1, equilibrium_backward=backward)
                cases[("ren", backward)] = model
            cases[("lstm", "autograd")] = LSTMModel(1, cfg.lstm_hidden, 1)
            times, calls = {}, {}
            for (name, backward), model in cases.items():
                def step(model=model):
                    model.zero_grad()
                    y, _ = model(u)
                    (y**2).mean().backward()
                calls[(name, backward)] = []
                times[(name, backward)] = median_time(step, cfg.repeats, cfg.warmup, samples=calls[(name, backward)])[0]
            ref = times[("ren", "autograd")]
            for (name, backward), seconds in times.items():
                params = sum(p.numel() for p in cases[(name, backward)].parameters())
                rows.append({"model": name, "backward": backward, "threads": threads, "params": params,
                             "batch": cfg.batch, "steps": cfg.steps, "median time [s]": seconds,
                             "ratio to ren/autograd": seconds / ref})
                samples.append(calls[(name, backward)])
    result = Result(command="bench_sysid")
    frame = pd.DataFrame(rows)
    result.tables["bench_sysid"] = Table(
        title="One training step (forward + backward of a chunk), float64",
        frame=frame, formats={"median time [s]": "{:.4f}", "ratio to ren/autograd": "{:.3f}"},
        caption=f"median of {cfg.repeats} after {counted(cfg.warmup, 'warm-up call')}; REN n_x={cfg.n_x}, n_v={cfg.n_v}")
    result.arrays["bench_sysid_samples"] = sample_arrays(
        {"model": frame["model"].tolist(), "backward": frame["backward"].tolist(), "threads": frame["threads"].to_numpy(int)},
        {"time": samples})
    result.figures["bench_sysid"] = partial(
        sysid_figures.bench_step_times, frame,
        title=f"One training step of a chunk (batch {cfg.batch}, {cfg.steps} steps, float64)",
        subtitle=f"median of {cfg.repeats} after {cfg.warmup} warm-up; REN n_x={cfg.n_x}, n_v={cfg.n_v}, "
                 f"LSTM hidden {cfg.lstm_hidden}, seed={cfg.seed}")
    result.notes.append(machine_note("float64", cfg.device) + " Torch threads per row as in the table.")
    return result
