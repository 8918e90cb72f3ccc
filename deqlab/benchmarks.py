"""Helpers shared by the ``deqlab bench ...`` experiments: timing protocol, thread pinning, memory,
machine description, target verdicts.

Protocol (GUIDE §4): ``warmup`` untimed calls, then ``repeats`` timed calls; report the median.
Ratios are always against a reference measured in the same process, because these machines are
noisy. Every bench runs inside :func:`pinned_threads`, which pins torch's intra-op threads *and*
the BLAS/OpenMP pools of numpy and scipy (threadpoolctl): pinning torch alone leaves numpy's
OpenBLAS free to oversubscribe the machine, which made timings 10-60x off (issue 12). On a GPU the
clock is a pair of CUDA events around the timed code, read once the second has completed (:class:`Stopwatch`:
CUDA kernels run asynchronously, so a host clock without a synchronisation measures the launch, not the work).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator

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
        if torch.cuda.is_initialized():  # a cheap flag, False wherever CUDA is absent
            torch.cuda.synchronize()
        return
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def is_cuda(device) -> bool:
    """Whether ``device`` (a name, a :class:`torch.device` or ``None``) is a CUDA device."""
    return device is not None and str(device).startswith("cuda")


class Stopwatch:
    """Seconds taken by the code inside ``with Stopwatch(device) as watch:`` (then ``watch.seconds``).

    On the CPU (and for ``device=None``): the host clock, read after :func:`synchronize` of every CUDA
    device in use. On a CUDA device: two CUDA events recorded on its current stream around the block;
    the end event is waited for, and ``seconds`` is the GPU time between them (``elapsed_time``), i.e.
    until the block's last kernel has finished, not until the host has queued it.
    """

    def __init__(self, device=None):
        self.device = device
        self.seconds = float("nan")

    def __enter__(self) -> "Stopwatch":
        if is_cuda(self.device):
            import torch

            with torch.cuda.device(torch.device(self.device)):
                self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                self._events[0].record()
        else:
            synchronize(None)
            self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if is_cuda(self.device):
            import torch

            with torch.cuda.device(torch.device(self.device)):
                self._events[1].record()
                self._events[1].synchronize()
            self.seconds = self._events[0].elapsed_time(self._events[1]) / 1e3  # ms → s
        else:
            synchronize(None)
            self.seconds = time.perf_counter() - self._start


def timings(fn: Callable[[], object], repeats: int, warmup: int = 1, device=None) -> tuple[list[float], object]:
    """Times in seconds of ``repeats`` calls of ``fn()`` after ``warmup`` calls; also the last output.

    Each call is timed by a :class:`Stopwatch` on ``device`` (CUDA events on a GPU, so a call is timed
    to the end of its kernels).
    """
    out = None
    for _ in range(warmup):
        out = None   # (released before the call: see interleaved_medians)
        out = fn()
    times = []
    for _ in range(max(1, repeats)):
        out = None
        with Stopwatch(device) as watch:
            out = fn()
        times.append(watch.seconds)
    return times, out


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1, device=None, *,
                samples: list[float] | None = None) -> tuple[float, object]:
    """Median time in seconds of ``fn()`` (see :func:`timings`), and the last output; ``samples``, when
    given, receives every timed call's seconds (what a bench saves in its ``.npz`` beside the median)."""
    times, out = timings(fn, repeats, warmup, device)
    if samples is not None:
        samples.extend(times)
    return statistics.median(times), out


def interleaved_medians(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, *,
    cpu: dict[str, float] | None = None, min_sample_s: float = 0.0, device=None,
    samples: dict[str, list[float]] | None = None,
) -> dict[str, tuple[float, object]]:
    """``name → (median seconds per call, last output)`` for each ``fn``, the calls interleaved
    (``A B C A B C …``, ``warmup`` untimed rounds first) so that drift of a shared machine hits every
    method alike (GUIDE §4). Each sample is timed by a :class:`Stopwatch` on ``device``.

    ``cpu``, when given, receives ``name → median`` of the thread's CPU seconds per call (with one
    pinned thread: the same work without the time the scheduler gave to other processes, the steadier
    measure on a shared machine; on a GPU it is the host's cost of queuing the work, and NaN is
    reported instead, since it says nothing of the work). ``min_sample_s``: a call shorter than this
    (judged by the last warm-up call) is repeated ``k`` times back to back within each sample, which
    counts ``sample / k``, so that one preemption does not decide the median of a sub-millisecond call.
    ``samples``, when given, receives ``name → every sample`` (seconds per call, in timing order): the
    raw data behind the medians, which a bench saves in its ``.npz``.
    """
    outs: dict[str, object] = {}
    calls = dict.fromkeys(fns, 1)
    for _ in range(warmup):
        for name, fn in fns.items():
            outs[name] = None   # (released before the call: below)
            with Stopwatch(device) as watch:
                outs[name] = fn()
            once = watch.seconds
            calls[name] = min(1000, int(min_sample_s / max(once, 1e-9)) + 1) if once < min_sample_s else 1
    times: dict[str, list[float]] = {name: [] for name in fns}
    cpu_times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            start_cpu = time.thread_time()
            with Stopwatch(device) as watch:
                for _ in range(calls[name]):
                    # The previous output is released before the call, so that a call never allocates its
                    # output while the last one is still alive: holding it made glibc hand a 13.8 MB
                    # output (the dense Hessian's at P = 1312, and its floor's) freshly mapped pages, which
                    # the kernel zeroes, in some processes and recycled ones in others: the floor took
                    # 6.1-6.8 ms with 2232 page faults per call, or 2.3 ms with none when released first.
                    outs[name] = None
                    outs[name] = fn()
            times[name].append(watch.seconds / calls[name])
            cpu_times[name].append((time.thread_time() - start_cpu) / calls[name])
    if samples is not None:
        samples.update(times)
    if cpu is not None:
        cpu.update({name: float("nan") if is_cuda(device) else statistics.median(t) for name, t in cpu_times.items()})
    return {name: (statistics.median(times[name]), outs[name]) for name in fns}


def peak_device_memory_mib(fn: Callable[[], object], device) -> float:
    """Peak increase of the CUDA caching allocator's allocated memory (MiB) during one ``fn()`` call on
    ``device`` (``torch.cuda.max_memory_allocated`` after a reset, minus what was allocated before)."""
    import torch

    device = torch.device(device)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


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
    """``torch.set_num_threads(n)`` inside the block (``None`` or ``0``: leave torch's default).

    Training demos use this; benches use :func:`pinned_threads`, which also pins BLAS."""
    import torch

    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def pinned_threads(n: int | None) -> Iterator[int]:
    """Pin torch's intra-op threads and every loaded BLAS / OpenMP pool to ``n`` inside the block.

    ``torch.set_num_threads(n)`` plus ``threadpoolctl.threadpool_limits(n)``; both are restored on
    exit. numpy, scipy.linalg and torch are imported first so that their BLAS libraries are loaded
    (threadpoolctl only limits libraries already loaded). ``None`` or ``0``: leave every default
    (yields torch's thread count). Yields the torch thread count in force.
    """
    import numpy  # noqa: F401  (load OpenBLAS before limiting it)
    import scipy.linalg  # noqa: F401
    import torch
    from threadpoolctl import threadpool_limits

    if not n:
        yield torch.get_num_threads()
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        with threadpool_limits(limits=int(n)):
            yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def blas_threads() -> str:
    """The thread counts of the loaded BLAS / OpenMP pools, e.g. ``"openblas=1, openmp=1"``."""
    from threadpoolctl import threadpool_info

    counts: dict[str, set[int]] = {}
    for pool in threadpool_info():
        counts.setdefault(pool["internal_api"], set()).add(int(pool["num_threads"]))
    return ", ".join(f"{api}={'/'.join(map(str, sorted(c)))}" for api, c in sorted(counts.items())) or "none loaded"


def verdict(ratio: float, target: float) -> str:
    """``"met"`` when ``ratio <= target`` (a ratio where lower is better), else ``"not met"``; ``"n/a"`` for NaN."""
    if math.isnan(ratio):
        return "n/a"
    return "met" if ratio <= target else "not met"


def machine_info() -> dict[str, str]:
    """What the numbers were measured on: CPU count, library versions, thread settings, platform."""
    import numpy
    import scipy
    import torch

    env = ", ".join(f"{v}={os.environ[v]}" for v in BLAS_THREAD_VARIABLES if v in os.environ)
    return {
        "cpu_count": str(os.cpu_count()),
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "blas_threads": blas_threads(),
        "blas_env": env or "unset",
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
    threads = f"{info['torch_threads']} thread{'' if str(info['torch_threads']) == '1' else 's'}"
    return (
        f"Machine: {info['cpu_count']} CPUs, Python {info['python']} on {info['machine']}, torch {info['torch']} "
        f"({threads}), numpy {info['numpy']}, scipy {info['scipy']}, "
        f"BLAS/OpenMP threads: {info['blas_threads']} (env: {info['blas_env']}); device {device_name(device)}; "
        f"dtype {dtype}."
    )


# --- measurements in a fresh process ------------------------------------------------------------------

#: The command line of a :func:`run_in_child` child (its name shows in ``ps``).
CHILD_COMMAND = "from deqlab.benchmarks import probe_child_main; probe_child_main()"


def probe_child_main() -> None:
    """The child of :func:`run_in_child`: read the pickled ``(work, args)`` from stdin, run it and write
    the pickled ``("ok", value)`` or ``("error", text)`` to the stdout it was started with. Anything
    ``work`` prints goes to stderr instead, so it cannot corrupt the answer."""
    import pickle

    answer = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    try:
        work, args = pickle.load(sys.stdin.buffer)
        reply = ("ok", work(*args))
    except BaseException as exc:  # noqa: BLE001  (reported to the parent, which raises)
        reply = ("error", f"{type(exc).__name__}: {exc}")
    pickle.dump(reply, answer)
    answer.close()


def run_in_child(work: Callable, args: tuple, what: str, *, timeout_s: float):
    """``work(*args)`` in a fresh Python process, its return value sent back (``work`` and the value pickled).

    The child is a plain subprocess (:data:`CHILD_COMMAND`), not a :mod:`multiprocessing` one: those
    share a semaphore-tracking helper process whose death (any child can die) made its relaunched
    successor print a warning and a ``KeyError`` traceback per semaphore, on a run that had succeeded.
    Never hangs the parent: raises :class:`~deqlab.errors.DeqlabError` when the child cannot be started
    (no process left under ``ulimit -u``), (and ends the child) when the child exits without an answer (killed by a signal, e.g. the out-of-memory killer), when ``work``
    raised, or when it runs past ``timeout_s``.
    """
    import pickle
    import subprocess

    from deqlab.errors import DeqlabError

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}   # deqlab as this process sees it
    try:
        proc = subprocess.Popen([sys.executable, "-c", CHILD_COMMAND], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
    except OSError as exc:   # (it read "cannot write: Resource temporarily unavailable", a disk problem)
        hint = " (a limit on processes, such as ulimit -u?)" if exc.errno == errno.EAGAIN else ""
        raise DeqlabError(f"{what}: cannot start the child process: {exc.strerror or exc}{hint}") from None
    try:
        out, err = proc.communicate(pickle.dumps((work, args)), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise DeqlabError(f"{what}: no result within {timeout_s:g} s; the child process was stopped") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        status, value = pickle.loads(out)
    except Exception:   # no answer (or half of one): the child died
        code = proc.returncode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        last = err.decode(errors="replace").strip().splitlines()[-1:] if code >= 0 else []
        raise DeqlabError(f"{what}: the child process {how} before reporting"
                          + (" (signal 9: the out-of-memory killer?)" if code == -9 else "")
                          + (f": {last[0]}" if last else "")) from None
    if status != "ok":
        raise DeqlabError(f"{what}: the child process failed: {value}")
    return value

