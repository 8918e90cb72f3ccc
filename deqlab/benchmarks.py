"""Helpers shared by the ``deqlab bench ...`` experiments: timing protocol and machine description.

Protocol (GUIDE §4): one warm-up call, then ``repeats`` timed calls; report the median. Ratios are
always against a reference measured in the same process, because these machines are noisy.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, object]:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls; also the last output."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def machine_info() -> dict[str, str]:
    """What the numbers were measured on: CPU count, torch version and threads, platform."""
    import torch

    return {
        "cpu_count": str(os.cpu_count()),
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def machine_note(dtype: str) -> str:
    info = machine_info()
    return (
        f"Machine: {info['cpu_count']} CPUs, torch {info['torch']} ({info['torch_threads']} threads), "
        f"Python {info['python']} on {info['machine']}; dtype {dtype}."
    )
