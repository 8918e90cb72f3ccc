"""Domain checks shared by the settings dataclasses: each raises :class:`~deqlab.errors.InputError`
with one line naming the key, what it must be, and what it got.

Types are already enforced by OmegaConf's structured mode when settings come from the command line;
these checks add the domain (ranges, finiteness, choices, sizes that fit) and hold for settings built
directly in Python too. Standard library only: answering bad input must not wait for torch.
"""

from __future__ import annotations

import math
import os
import re
import sys
from typing import Iterable, Sequence

from deqlab.errors import InputError
from deqlab.solver_options import check_rtol

#: torch.manual_seed and Python's random take any int64; NumPy's legacy RandomState needs < 2**32.
INT64_MAX = 2**63 - 1
NUMPY_SEED_MAX = 2**32 - 1
#: loop counts (layers, steps, epochs, probes...) above this are surely typos, and would run for hours.
MAX_LOOP = 1_000_000
DTYPES = ("float32", "float64")
#: the smallest normal float64: a positive value below it is subnormal, kept to fewer than 53 bits
#: (5e-324 holds one), and any arithmetic on it rounds to 0 or loses what is left.
SMALLEST_NORMAL = sys.float_info.min
#: float64's machine epsilon: a term below it, added to 1, rounds away.
EPSILON = sys.float_info.epsilon
#: the same per dtype of :data:`DTYPES` (numpy's finfo(...).eps; settings import no numpy).
DTYPE_EPSILON = {"float32": 2.0**-23, "float64": EPSILON}
#: the stopping rule ``||f(z) - z|| <= atol + rtol ||f(z)||`` of the command line: an absolute residual
#: above 1 is no solve at the scale of these models' states (tanh's entries lie in [-1, 1]); a
#: relative residual above 1/2 leaves z without one correct bit of f(z).
MAX_ATOL = 1.0
MAX_RTOL = 0.5
_ATOL_WHY = "an absolute residual above 1 is no solve at the scale of z"
_RTOL_WHY = "above 1/2, z need not hold one correct bit of f(z)"


def integer(key: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{key} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise InputError(f"{key} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InputError(f"{key} must be <= {maximum}, got {value}")
    return value


def seed(key: str, value, *, numpy: bool = False) -> int:
    """A seed: ``0 ≤ seed ≤ 2⁶³ − 1`` (torch), or ``≤ 2³² − 1`` where NumPy's ``RandomState`` uses it."""
    return integer(key, value, minimum=0, maximum=NUMPY_SEED_MAX if numpy else INT64_MAX)


def count(key: str, value, *, minimum: int = 1, maximum: int = MAX_LOOP) -> int:
    """A size or loop count with a sane upper bound."""
    return integer(key, value, minimum=minimum, maximum=maximum)


def number(key: str, value, *, minimum: float | None = None, maximum: float | None = None,
           exclusive: bool = False) -> float:
    """A finite float in ``[minimum, maximum]`` (``(minimum, maximum]`` when ``exclusive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{key} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{key} must be finite, got {value}")
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        raise InputError(f"{key} must be {'>' if exclusive else '>='} {minimum:g}, got {value:g}")
    if exclusive and minimum == 0 and value < SMALLEST_NORMAL:
        raise InputError(f"{key} must be >= {SMALLEST_NORMAL:.1e} (a smaller positive number is subnormal: "
                         f"it has lost its precision and rounds to 0 in float32), got {value!r}")
    if maximum is not None and value > maximum:
        raise InputError(f"{key} must be <= {maximum:g}, got {value:g}")
    return value


def step(key: str, value) -> float:
    """A finite-difference step: a number in ``[EPSILON, 1]``. Below float64's epsilon ``θ + step`` rounds
    to ``θ`` for a parameter near 1: the differences are 0 (``fd_step=1e-300`` reported a 100% error of the
    finite differences, ``deq.eps=1e-300`` pairs of zeros and NaN residuals, both exit 0)."""
    value = number(key, value, minimum=0.0, maximum=1.0, exclusive=True)
    if value < EPSILON:
        raise InputError(f"{key} must be >= {EPSILON:.1e} (float64's epsilon: a smaller step added to a parameter "
                         f"near 1 rounds away), got {value!r}")
    return value


def choice(key: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise InputError(f"unknown {key} {value!r}; choose one of: {', '.join(choices)}")
    return value


def choices(key: str, values: Iterable, allowed: Sequence[str]) -> list[str]:
    """A non-empty list whose items all come from ``allowed``, none twice (a repeat would run or print
    the same thing twice, or hide a typo for another entry)."""
    items = list(values)
    if not items:
        raise InputError(f"{key} must name at least one of: {', '.join(allowed)}")
    for i, item in enumerate(items):
        if item not in allowed:
            raise InputError(f"unknown {key} entry {item!r}; choose from: {', '.join(allowed)}")
        if item in items[:i]:
            raise InputError(f"{key} names {item!r} twice")
    return items


def counts(key: str, values: Iterable, *, minimum: int = 1, maximum: int = MAX_LOOP, distinct: bool = False) -> list[int]:
    """A non-empty list of integers in ``[minimum, maximum]``; ``distinct``: none twice (:func:`without_repeats`)."""
    items = list(values)
    if not items:
        raise InputError(f"{key} must be a non-empty list of integers >= {minimum}")
    for i, v in enumerate(items):
        integer(f"{key}[{i}]", v, minimum=minimum, maximum=maximum)
    return without_repeats(key, items) if distinct else items


def margin(key: str, value, *, maximum: float) -> float:
    """The monotonicity margin ``m`` of a monotone DEQ, ``W = (1 − m)I − AᵀA + B − Bᵀ``: ``ε ≤ m ≤ maximum``
    (below float64's epsilon ``1 − m`` rounds to 1 and ``W`` keeps no margin)."""
    if isinstance(value, float) and 0 < value < EPSILON:   # (before number(): a subnormal m gets this reason too)
        raise InputError(f"{key} must be >= {EPSILON:.1e} (below float64's epsilon 1 - m rounds to 1 "
                         f"and W keeps no margin), got {value!r}")
    return number(key, value, minimum=0.0, maximum=maximum, exclusive=True)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads(key: str, value, *, minimum: int = 1) -> int:
    """A thread count (``0`` where ``minimum`` is 0: the library's default) at most the CPUs this process may use.

    More threads than CPUs only take turns: every BLAS call then waits on its slowest thread
    (``mondeq threads=256`` on 2 CPUs ran over 110 s, against 20 s at 16), and a bench pinned that way times the
    contention, not the method."""
    value = integer(key, value, minimum=minimum)
    cpus = usable_cpus()
    if value > cpus:
        raise InputError(f"{key} must be <= {cpus}, the CPUs this process may use, got {value} "
                         "(more threads than CPUs only take turns)")
    return value


def numbers(key: str, values: Iterable, *, minimum: float | None = None, maximum: float | None = None,
            exclusive: bool = False, distinct: bool = False) -> list[float]:
    """A non-empty list of numbers in the range of :func:`number`; ``distinct``: none twice (:func:`without_repeats`)."""
    items = list(values)
    if not items:
        raise InputError(f"{key} must be a non-empty list of numbers")
    items = [number(f"{key}[{i}]", v, minimum=minimum, maximum=maximum, exclusive=exclusive) for i, v in enumerate(items)]
    return without_repeats(key, items) if distinct else items


def without_repeats(key: str, items: list) -> list:
    """``items`` if no value comes twice. For a list of cases (sizes, step lengths, depths, seeds) a repeat runs
    and prints the same case twice, weighs it twice in a summary over the list, or hides a typo for another
    value; lists whose entries are not cases (layer widths, the data split) do not ask for this."""
    for i, item in enumerate(items):
        if item in items[:i]:
            raise InputError(f"{key} lists {item:g} twice")
    return items


def device(key: str, value) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when there is one). Whether CUDA is there is
    checked by the command line, which must import torch to know."""
    if not isinstance(value, str) or not re.fullmatch(r"cpu|auto|cuda(:[0-9]{1,3})?", value):
        raise InputError(f"{key} must be cpu, cuda, cuda:N or auto, got {value!r}")
    return value


def _tolerance_range(key: str, value: float, maximum: float, why: str) -> None:
    if value > maximum:
        raise InputError(f"{key} must lie in [0, {maximum:g}] ({why}), got {value:g}")
    if 0 < value < SMALLEST_NORMAL:
        raise InputError(f"{key} must be 0 or >= {SMALLEST_NORMAL:.1e} (a smaller positive number is subnormal), got {value!r}")


def stopping_rule_range(prefix: str, atol: float, rtol: float) -> None:
    """The command line's range of the stopping rule ``‖f(z) − z‖ ≤ atol + rtol‖f(z)‖`` (finite,
    ``≥ 0`` and ``rtol < 1`` are the library's checks): ``atol ≤ MAX_ATOL``, ``rtol ≤ MAX_RTOL``, no
    subnormal value."""
    check_rtol(f"{prefix}rtol", rtol)
    _tolerance_range(f"{prefix}atol", atol, MAX_ATOL, _ATOL_WHY)
    _tolerance_range(f"{prefix}rtol", rtol, MAX_RTOL, _RTOL_WHY)


def relative_tolerance(key: str, value) -> float:
    """The ``rtol`` of a stopping rule ``‖f(z) − z‖ ≤ rtol‖f(z)‖`` that stands alone (no ``atol``):
    a finite number in ``(0, MAX_RTOL]`` (at ``rtol ≥ 1`` the start ``z = 0`` already meets it)."""
    value = number(key, value, minimum=0.0, exclusive=True)
    check_rtol(key, value)
    _tolerance_range(key, value, MAX_RTOL, _RTOL_WHY)
    return value


def tolerances(prefix: str, atol: float, rtol: float) -> None:
    """The shared stopping rule ``‖f(z) − z‖ ≤ atol + rtol‖f(z)‖`` needs one of them > 0."""
    number(f"{prefix}atol", atol, minimum=0.0)
    number(f"{prefix}rtol", rtol, minimum=0.0)
    if atol == 0 and rtol == 0:
        raise InputError(f"{prefix}atol and {prefix}rtol cannot both be 0")
    stopping_rule_range(prefix, atol, rtol)
