"""Settings of a root solver for ``z = f(z)``, chosen by name from deqlab's registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from deqlab.settings.checks import stopping_rule_range
from deqlab.solver_options import SOLVER_OPTIONS, check_solver_options, check_stopping_rule


@dataclass
class SolverSettings:
    """A registered solver (``name``) with the shared stopping rule and its own options.

    ``‖f(z) − z‖ ≤ atol + rtol‖f(z)‖`` per sample, at most ``max_iter`` iterations. The options a
    solver does not take stay ``None``; one it does take but left ``None`` gets the solver's default.
    On the command line ``solver=<name>`` picks a preset from ``configs/solver/<name>.yaml``.
    """

    name: str = "anderson"
    atol: float = 1e-10
    rtol: float = 0.0
    max_iter: int = 500
    memory: Optional[int] = None     # anderson, broyden: past iterates kept
    lam: Optional[float] = None      # anderson: relative Tikhonov regularisation
    beta: Optional[float] = None     # anderson: mixing in (0, 1]
    damping: Optional[float] = None  # fixed_point: z <- (1 - damping) z + damping f(z)
    xtol: Optional[float] = None     # fsolve, root: MINPACK's step tolerance

    def __post_init__(self) -> None:
        check_stopping_rule(self.atol, self.rtol, self.max_iter, prefix="solver.")
        stopping_rule_range("solver.", self.atol, self.rtol)
        if self.max_iter > 10_000_000:
            from deqlab.errors import InputError

            raise InputError(f"solver.max_iter must be <= 10000000, got {self.max_iter}")
        from deqlab.errors import InputError

        try:
            check_solver_options(self.name, self.options(), prefix="solver.")
        except InputError as exc:
            if all(k in SOLVER_OPTIONS.get(self.name, self.options()) for k in self.options()):
                raise
            # an option of another solver: solver.name=anderson after the default fsolve preset kept its xtol, and
            # the refusal named only xtol, an option the user never set
            raise InputError(f"{exc}; solver={self.name} picks the solver with its own options (solver.name={self.name} "
                             f"keeps those of the solver before it)") from None

    @classmethod
    def preset(cls, name: str, **changes) -> "SolverSettings":
        """The named preset of :data:`PRESETS` (what ``solver=<name>`` selects), with ``changes``."""
        if name not in PRESETS:
            from deqlab.errors import InputError

            raise InputError(f"unknown solver {name!r}; choose one of: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **changes})

    def options(self) -> dict:
        """The solver-specific options that are set: keyword arguments for the solver."""
        names = {"memory", "lam", "beta", "damping", "xtol"}
        return {k: getattr(self, k) for k in sorted(names) if getattr(self, k) is not None}

    def keywords(self) -> dict:
        """Every keyword argument of ``get_solver(name)(f, z0, **keywords)``."""
        return {"atol": self.atol, "rtol": self.rtol, "max_iter": self.max_iter, **self.options()}


SOLVER_NAMES = tuple(SOLVER_OPTIONS)

#: ``solver=<name>`` on the command line selects one of these (Hydra group ``solver``).
PRESETS: dict[str, dict] = {
    # fixed-point iteration z <- (1-damping) z + damping f(z)
    "fixed_point": dict(name="fixed_point", atol=1e-10, rtol=0.0, max_iter=2000, damping=1.0),
    # Anderson acceleration (type II); memory 10 beat 5, 20 and 30 on bench solvers' problems
    "anderson": dict(name="anderson", atol=1e-10, rtol=0.0, max_iter=500, memory=10, lam=1e-8, beta=1.0),
    # limited-memory good Broyden on g(z) = f(z) - z
    "broyden": dict(name="broyden", atol=1e-10, rtol=0.0, max_iter=500, memory=50),
    # Newton with the exact dense Jacobian: small systems only
    "newton": dict(name="newton", atol=1e-10, rtol=0.0, max_iter=50),
    # scipy.optimize.fsolve (MINPACK hybrd) per sample in float64: the lecture's reference
    "fsolve": dict(name="fsolve", atol=1e-10, rtol=0.0, max_iter=200, xtol=1e-13),
    # scipy.optimize.root(method="hybr") per sample in float64
    "root": dict(name="root", atol=1e-10, rtol=0.0, max_iter=200, xtol=1e-13),
}
