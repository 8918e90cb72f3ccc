"""Domain checks shared by the settings dataclasses: each raises :class:`~deqlab.errors.InputError`
with one line naming the key, what it must be, and what it got.

Types are already enforced by OmegaConf's structured mode when settings come from the command line;
these checks add the domain (ranges, finiteness, choices, sizes that fit) and hold for settings built
directly in Python too. Standard library only: answering bad input must not wait for torch.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

from deqlab.errors import InputError
from deqlab.solver_options import check_rtol

#: torch.manual_seed and Python's random take any int64; NumPy's legacy RandomState needs < 2**32.
INT64_MAX = 2**63 - 1
NUMPY_SEED_MAX = 2**32 - 1
#: loop counts (layers, steps, epochs, probes...) above this are surely typos, and would run for hours.
MAX_LOOP = 1_000_000
DTYPES = ("float32", "float64")


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
    if maximum is not None and value > maximum:
        raise InputError(f"{key} must be <= {maximum:g}, got {value:g}")
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


def counts(key: str, values: Iterable, *, minimum: int = 1, maximum: int = MAX_LOOP) -> list[int]:
    items = list(values)
    if not items:
        raise InputError(f"{key} must be a non-empty list of integers >= {minimum}")
    for i, v in enumerate(items):
        integer(f"{key}[{i}]", v, minimum=minimum, maximum=maximum)
    return items


def numbers(key: str, values: Iterable, *, minimum: float | None = None, maximum: float | None = None,
            exclusive: bool = False) -> list[float]:
    items = list(values)
    if not items:
        raise InputError(f"{key} must be a non-empty list of numbers")
    return [number(f"{key}[{i}]", v, minimum=minimum, maximum=maximum, exclusive=exclusive) for i, v in enumerate(items)]


def device(key: str, value) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when there is one). Whether CUDA is there is
    checked by the command line, which must import torch to know."""
    if not isinstance(value, str) or not re.fullmatch(r"cpu|auto|cuda(:[0-9]{1,3})?", value):
        raise InputError(f"{key} must be cpu, cuda, cuda:N or auto, got {value!r}")
    return value


def relative_tolerance(key: str, value) -> float:
    """The ``rtol`` of a stopping rule ``‖f(z) − z‖ ≤ rtol‖f(z)‖`` that stands alone (no ``atol``):
    a finite number in ``(0, 1)`` (at ``rtol ≥ 1`` the start ``z = 0`` already meets it)."""
    value = number(key, value, minimum=0.0, maximum=1.0, exclusive=True)
    check_rtol(key, value)
    return value


def tolerances(prefix: str, atol: float, rtol: float) -> None:
    """The shared stopping rule ``‖f(z) − z‖ ≤ atol + rtol‖f(z)‖`` needs one of them > 0."""
    number(f"{prefix}atol", atol, minimum=0.0, maximum=1.0)
    number(f"{prefix}rtol", rtol, minimum=0.0, maximum=1.0)
    if atol == 0 and rtol == 0:
        raise InputError(f"{prefix}atol and {prefix}rtol cannot both be 0")
    check_rtol(f"{prefix}rtol", rtol)
