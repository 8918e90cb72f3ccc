"""The shared bench helpers: thread pinning covers torch AND the BLAS pools, and is undone afterwards."""

from __future__ import annotations

import math

import numpy  # noqa: F401  (load both OpenBLAS copies first, so the counts before and after match)
import pytest
import scipy.linalg  # noqa: F401
import torch
from threadpoolctl import threadpool_info

from deqlab.benchmarks import blas_threads, pinned_threads, verdict
from tests.helpers import devices


def _blas_counts() -> list[int]:
    return [int(p["num_threads"]) for p in threadpool_info() if p["user_api"] == "blas"]


def test_pinned_threads_pins_torch_and_blas_then_restores():
    before_torch, before_blas = torch.get_num_threads(), _blas_counts()
    assert before_blas, "numpy's BLAS should be visible to threadpoolctl"
    with pinned_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
        assert set(_blas_counts()) == {1}
        assert "openblas=1" in blas_threads() or "mkl=1" in blas_threads()
    assert torch.get_num_threads() == before_torch
    assert _blas_counts() == before_blas


def test_pinned_threads_none_leaves_defaults():
    before_torch, before_blas = torch.get_num_threads(), _blas_counts()
    with pinned_threads(None) as n:
        assert n == before_torch and _blas_counts() == before_blas
    assert torch.get_num_threads() == before_torch


def test_verdict():
    assert verdict(1.0, 1.3) == "met"
    assert verdict(1.31, 1.3) == "not met"
    assert verdict(math.nan, 1.3) == "n/a"


def test_interleaved_medians_runs_every_method_in_turn():
    from deqlab.benchmarks import interleaved_medians

    order = []
    out = interleaved_medians({"a": lambda: order.append("a") or 1, "b": lambda: order.append("b") or 2}, repeats=3, warmup=1)
    assert order == ["a", "b"] * 4
    assert out["a"][1] == 1 and out["b"][1] == 2 and out["a"][0] >= 0


def test_interleaved_medians_repeats_short_calls_within_a_sample_and_reports_cpu_time():
    """A call shorter than ``min_sample_s`` runs several times per sample (time per call reported);
    a long one once per sample; ``cpu`` gets a CPU-clock median per method."""
    import time

    from deqlab.benchmarks import interleaved_medians

    counts = {"short": 0, "long": 0}

    def short():
        counts["short"] += 1

    def long():
        counts["long"] += 1
        time.sleep(0.03)

    cpu = {}
    out = interleaved_medians({"short": short, "long": long}, repeats=2, warmup=1, cpu=cpu, min_sample_s=0.02)
    assert counts["long"] == 3  # one warm-up, one call per sample
    assert counts["short"] > 3 * 10  # many calls per sample
    assert out["long"][0] >= 0.03 and out["short"][0] < 0.02 / 10
    assert set(cpu) == {"short", "long"} and cpu["long"] < 0.03  # sleeping is not CPU time


@pytest.mark.parametrize("device", devices)
def test_stopwatch_times_the_work_not_its_launch(device):
    """On the CPU the host clock; on a GPU, CUDA events: a kernel that spins for tens of milliseconds is
    counted in full although the host returns from launching it at once."""
    import time

    from deqlab.benchmarks import Stopwatch, median_time

    if device == "cpu":
        with Stopwatch(device) as watch:
            time.sleep(0.03)
        assert 0.03 <= watch.seconds < 1.0
        return
    torch.zeros(1, device=device)  # initialise CUDA outside the timing
    start = time.perf_counter()
    with Stopwatch(device) as watch:
        torch.cuda._sleep(100_000_000)  # ~0.05 s of GPU clock cycles
        launched = time.perf_counter() - start
    assert watch.seconds > 0.01 and watch.seconds > 5 * launched
    assert median_time(lambda: torch.cuda._sleep(100_000_000), 3, 1, device)[0] > 0.01


def test_timers_hand_back_the_samples_behind_their_medians():
    """``samples=``: every timed call's seconds, in order; the returned median is theirs (what a bench's
    ``.npz`` holds must recompute the median its table prints)."""
    import statistics

    from deqlab.benchmarks import interleaved_medians, median_time
    per_name: dict = {}
    timed = interleaved_medians({"a": lambda: sum(range(100)), "b": lambda: sum(range(1000))}, 7, samples=per_name)
    assert sorted(per_name) == ["a", "b"] and all(len(v) == 7 for v in per_name.values())
    assert all(timed[k][0] == statistics.median(per_name[k]) for k in per_name)
    flat: list = []
    median, _ = median_time(lambda: sum(range(100)), 5, samples=flat)
    assert len(flat) == 5 and median == statistics.median(flat)


def test_a_timed_call_never_runs_while_the_previous_output_is_alive():
    """Every call of ``timings``/``interleaved_medians`` finds the previous call's output released (a
    13.8 MB output allocated while the last was alive got freshly mapped, kernel-zeroed pages in some
    calls and recycled ones in others: 2.3 against 5-7 ms for the same product); the last output is
    still returned."""
    import weakref

    from deqlab.benchmarks import interleaved_medians, timings

    class Output:
        pass

    alive_at_call = []
    last = []

    def fn():
        alive_at_call.append(last[-1]() is not None if last else False)
        out = Output()
        last.append(weakref.ref(out))
        return out

    times, out = timings(fn, repeats=3, warmup=2)
    assert len(alive_at_call) == 5 and not any(alive_at_call) and last[-1]() is out
    alive_at_call.clear()
    last.clear()
    result = interleaved_medians({"a": fn}, repeats=3, warmup=1, min_sample_s=1.0)
    assert len(alive_at_call) > 4 and not any(alive_at_call) and last[-1]() is result["a"][1]
