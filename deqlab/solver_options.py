"""What each registered solver accepts, and the checks of those options (standard library only).

The solvers (``deqlab.solvers.<name>``) and the typed settings of the command line
(:class:`deqlab.settings.solver.SolverSettings`) both check options here (a module outside
:mod:`deqlab.solvers`, whose ``__init__`` imports torch), so a bad option is refused
with the same one-line :class:`~deqlab.errors.InputError` whichever door it came through, and the
command line can refuse it before importing torch.
"""

from __future__ import annotations

import math
import numbers

from deqlab.errors import InputError

#: registry name → the options the solver takes beyond the shared ``atol``, ``rtol``, ``max_iter``.
SOLVER_OPTIONS: dict[str, tuple[str, ...]] = {
    "fixed_point": ("damping",),
    "anderson": ("memory", "lam", "beta"),
    "broyden": ("memory",),
    "newton": (),
    "fsolve": ("xtol",),
    "root": ("xtol",),
}
SOLVER_NAMES = tuple(SOLVER_OPTIONS)
#: the registered solvers that are scipy's MINPACK per sample on the host (small systems only)
SCIPY_SOLVERS = ("fsolve", "root")


def _finite(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def check_rtol(key: str, rtol: float) -> None:
    """A relative tolerance of the stopping rule must be below 1: at ``rtol ≥ 1`` the start ``z = 0``
    meets ``‖f(z) − z‖ ≤ rtol‖f(z)‖`` already, so every solve would "converge" without a step."""
    if rtol >= 1:
        raise InputError(f"{key} must be < 1 (at rtol >= 1 the start z = 0 already meets ||f(z) - z|| <= rtol ||f(z)||), got {rtol:g}")


def check_stopping_rule(atol, rtol, max_iter, *, prefix: str = "") -> None:
    """``‖f(z) − z‖ ≤ atol + rtol‖f(z)‖`` needs ``atol, rtol ≥ 0``, not both 0, ``rtol < 1`` and ``max_iter ≥ 1``."""
    a, r = _finite(f"{prefix}atol", atol), _finite(f"{prefix}rtol", rtol)
    if a < 0 or r < 0 or (a == 0 and r == 0):
        raise InputError(f"{prefix}atol and {prefix}rtol must be >= 0 and not both 0 (atol={a:g}, rtol={r:g})")
    check_rtol(f"{prefix}rtol", r)
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise InputError(f"{prefix}max_iter must be an integer >= 1, got {max_iter!r}")


def check_solver_options(name: str, options: dict, *, prefix: str = "") -> None:
    """Refuse an unknown solver, an option it does not take, or an option value out of its domain."""
    if name not in SOLVER_OPTIONS:
        raise InputError(f"unknown solver {name!r}; choose one of: {', '.join(SOLVER_NAMES)}")
    for key, value in options.items():
        if key not in SOLVER_OPTIONS[name]:
            takes = ", ".join(SOLVER_OPTIONS[name]) or "no options beyond atol, rtol, max_iter"
            raise InputError(f"solver {name!r} takes no option {prefix}{key} (it takes: {takes})")
        if key == "memory":
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= 10_000:
                raise InputError(f"{prefix}memory must be an integer in [1, 10000], got {value!r}")
        elif key in ("damping", "beta"):
            if not 0 < _finite(f"{prefix}{key}", value) <= 1:
                raise InputError(f"{prefix}{key} must lie in (0, 1], got {value!r}")
        elif key in ("lam", "xtol"):
            if not 0 <= _finite(f"{prefix}{key}", value) <= 1:
                raise InputError(f"{prefix}{key} must lie in [0, 1], got {value!r}")
