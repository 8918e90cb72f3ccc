"""What the implicit layer's safety checks cost a DEQ training step (forward solve + implicit backward).

    PYTHONPATH=. python experiments/implicit_check_overhead.py        # ~10 s on one core

Two checks run on every step of a DEQ made with the default ``on_fail="raise"``:

* the conditioning bound of the backward's iterative adjoint solve
  (:func:`deqlab.implicit.conditioning.require_well_conditioned_solution`: two more evaluations of the
  affine adjoint map), timed on a tanh cell with ``n_z = 64``, ``batch = 128``;
* the in-place checks around every evaluation of the map (:func:`deqlab.implicit.layer.version_of`:
  version counters of ``z`` and ``x``), timed on a small cell, ``n_z = 16``, ``batch = 8``, where the
  per-evaluation cost weighs most.

Each is timed with the check on and replaced by a no-op, the two interleaved (on, off, on, off …) on one
pinned thread; prints the median step time of each and their ratio. Four runs on a 2-core machine
(2026-12-01): conditioning check 1.017–1.032, in-place checks 1.004–1.021.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

import deqlab.implicit.deq as deq_module
import deqlab.implicit.layer as layer
from deqlab.benchmarks import pinned_threads
from deqlab.implicit import DEQ, SolveOptions

DT = torch.float64


class Cell(nn.Module):
    def __init__(self, n: int, d: int):
        super().__init__()
        self.W, self.U = nn.Linear(n, n, dtype=DT), nn.Linear(d, n, dtype=DT)

    def forward(self, z, x):
        return torch.tanh(self.W(z) + self.U(x))


def interleaved(step, switch, rounds: int) -> tuple[float, float]:
    """Median seconds of ``step`` with ``switch(True)`` and with ``switch(False)``, interleaved."""
    times = {True: [], False: []}
    step()
    for _ in range(rounds):
        for on in (True, False):
            switch(on)
            start = time.perf_counter()
            step()
            times[on].append(time.perf_counter() - start)
    switch(True)
    return statistics.median(times[True]), statistics.median(times[False])


def training_step(n: int, d: int, batch: int, readout: bool):
    torch.manual_seed(0)
    deq = DEQ(Cell(n, d), n, opts=SolveOptions(atol=1e-10))
    model = nn.Sequential(deq, nn.Linear(n, 10, dtype=DT)) if readout else deq
    x = torch.randn(batch, d, dtype=DT)
    y = torch.randint(0, 10, (batch,))

    def step():
        model.zero_grad()
        out = model(x)
        (nn.functional.cross_entropy(out, y) if readout else out.sum()).backward()

    return step


def main() -> None:
    with pinned_threads(1):
        check = layer.require_well_conditioned_solution

        def conditioning_check(on: bool) -> None:
            layer.require_well_conditioned_solution = check if on else (lambda *a, **k: None)

        on, off = interleaved(training_step(64, 32, 128, readout=True), conditioning_check, rounds=40)
        print(f"conditioning check, n_z 64, batch 128: {on * 1e3:.2f} ms with, {off * 1e3:.2f} ms without, "
              f"ratio {on / off:.3f}")

        version_of = layer.version_of

        def version_checks(on: bool) -> None:
            layer.version_of = deq_module.version_of = version_of if on else (lambda t: None)

        on, off = interleaved(training_step(16, 8, 8, readout=False), version_checks, rounds=60)
        print(f"in-place checks, n_z 16, batch 8: {on * 1e3:.3f} ms with, {off * 1e3:.3f} ms without, "
              f"ratio {on / off:.3f}")


if __name__ == "__main__":
    main()
