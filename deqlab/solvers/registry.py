"""Config name → solver function, for every solver of ``z = f(z)`` with the common signature
``solver(f, z0, *, atol, rtol, max_iter, **options) -> SolverResult``.

Splitting methods for monotone DEQs need the operator structure, not just ``f``; they live in
their own module and registry.
"""

from __future__ import annotations

from typing import Callable

from deqlab.errors import InputError
from deqlab.solvers.anderson import anderson
from deqlab.solvers.broyden import broyden
from deqlab.solvers.fixed_point import fixed_point_iteration
from deqlab.solvers.newton import newton
from deqlab.solvers.result import SolverResult
from deqlab.solvers.scipy_root import scipy_fsolve, scipy_root

Solver = Callable[..., SolverResult]

SOLVERS: dict[str, Solver] = {
    "fixed_point": fixed_point_iteration,
    "anderson": anderson,
    "broyden": broyden,
    "newton": newton,
    "fsolve": scipy_fsolve,
    "root": scipy_root,
}


def get_solver(name: str) -> Solver:
    """The solver registered under ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        return SOLVERS[name]
    except KeyError:
        raise InputError(f"unknown solver {name!r}; choose one of: {', '.join(SOLVERS)}") from None


def configured_solver(name: str, **options) -> Solver:
    """``get_solver(name)`` with its options bound (a ``solver=`` preset of ``deqlab/settings/solver.py``,
    as ``deqlab converge`` builds it; nothing is instantiated from a config).

    The returned callable has the solver's signature ``(f, z0) -> SolverResult`` (options can still
    be overridden by keyword) and carries ``.name``.
    """
    import functools

    solver = functools.partial(get_solver(name), **options)
    solver.name = name  # type: ignore[attr-defined]
    return solver
