"""Batched solvers for ``z = f(z)`` sharing one stopping rule and one result object.

See :mod:`deqlab.solvers.result` for the rule and :data:`deqlab.solvers.registry.SOLVERS` for the names.
"""

from deqlab.solvers.anderson import anderson
from deqlab.solvers.broyden import broyden
from deqlab.solvers.fixed_point import fixed_point_iteration
from deqlab.solvers.prox import NONLINEARITIES, get_nonlinearity
from deqlab.solvers.newton import newton
from deqlab.solvers.registry import SOLVERS, get_solver
from deqlab.solvers.result import SolverResult, SolverStatus
from deqlab.solvers.scipy_root import scipy_fsolve, scipy_root
from deqlab.solvers.splitting import SPLITTING_SOLVERS, douglas_rachford, forward_backward, peaceman_rachford
from deqlab.solvers.survey import SurveyedPoint, survey_fixed_points

__all__ = [
    "NONLINEARITIES",
    "SOLVERS",
    "SPLITTING_SOLVERS",
    "douglas_rachford",
    "forward_backward",
    "get_nonlinearity",
    "peaceman_rachford",
    "SolverResult",
    "SolverStatus",
    "SurveyedPoint",
    "anderson",
    "broyden",
    "fixed_point_iteration",
    "get_solver",
    "newton",
    "scipy_fsolve",
    "scipy_root",
    "survey_fixed_points",
]
