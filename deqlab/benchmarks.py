"""Helpers shared by the ``deqlab bench ...`` experiments: timing protocol, memory, machine description.

Protocol (GUIDE §4): ``warmup`` untimed calls, then ``repeats`` timed calls; report the median.
Ratios are always against a reference measured in the same process, because these machines are
noisy. On a GPU the clock is read only after :func:`synchronize` (CUDA kernels run asynchronously: without
it a timer measures the launch, not the work).
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
import tracemalloc
from typing import Callable, Iterator

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def synchronize(device=None) -> None:
    """Wait until the GPU work queued on ``device`` is done (``torch.cuda.synchronize``); nothing on a CPU.

    ``device=None``: every CUDA device this process has used (nothing if torch was never imported or
    CUDA never initialised), so timings of code that does not say where it runs stay correct.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if device is None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        return
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timings(fn: Callable[[], object], repeats: int, warmup: int = 1, device=None) -> tuple[list[float], object]:
    """Wall times in seconds of ``repeats`` calls of ``fn()`` after ``warmup`` calls; also the last output.

    Each timed call starts and ends with :func:`synchronize` of ``device`` (a no-op on the CPU), so a GPU
    call is timed to the end of its kernels.
    """
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(max(1, repeats)):
        synchronize(device)
        start = time.perf_counter()
        out = fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times, out


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1, device=None) -> tuple[float, object]:
    """Median wall time in seconds of ``fn()`` (see :func:`timings`), and the last output."""
    times, out = timings(fn, repeats, warmup, device)
    return statistics.median(times), out


def peak_memory_mib(fn: Callable[[], object]) -> float:
    """Peak Python-heap allocation of one ``fn()`` call in MiB (``tracemalloc``; numpy buffers included,
    torch's own allocator not)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """``torch.set_num_threads(n)`` inside the block (``None`` or ``0``: leave torch's default)."""
    import torch

    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def machine_info() -> dict[str, str]:
    """What the numbers were measured on: CPU count, library versions, thread settings, platform."""
    import numpy
    import scipy
    import torch

    blas = ", ".join(f"{v}={os.environ[v]}" for v in BLAS_THREAD_VARIABLES if v in os.environ)
    return {
        "cpu_count": str(os.cpu_count()),
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "blas_threads": blas or "library default",
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def device_name(device=None) -> str:
    """``"cpu"`` or e.g. ``"cuda:0 (NVIDIA H200, CUDA 12.8)"``: where a benchmark ran."""
    import torch

    device = torch.device(device if device is not None else "cpu")
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)}, CUDA {torch.version.cuda})"


def machine_note(dtype: str, device=None) -> str:
    info = machine_info()
    return (
        f"Machine: {info['cpu_count']} CPUs, Python {info['python']} on {info['machine']}, torch {info['torch']} "
        f"({info['torch_threads']} threads), numpy {info['numpy']}, scipy {info['scipy']}, "
        f"BLAS threads: {info['blas_threads']}; device {device_name(device)}; dtype {dtype}."
    )
