"""Which fixed point did each solver find? (issue 11 item 3)

``z = f(z)`` can have several solutions; near a fold (a real eigenvalue of ``J = ∂f/∂z`` close to +1)
two of them lie 1e-3 … 1e-2 apart, and solvers started from the same point land on either: quasi-Newton
methods (Anderson, Broyden) and Newton also converge to *repelling* fixed points (``ρ(J) > 1``), which
the weight-tied iteration ``z ← f(z)`` never reaches. "converged" alone does not say which point.

:func:`survey_fixed_points` runs registered solvers from the same start and reports, per solver, its
point's distance from a reference equilibrium, ``ρ(J)`` and ``cond₂(I − J)`` there, and whether it is
the *same* point. Two points count as the same when their distance is within the first-order
uncertainty of both solves::

    ‖z_a − z_b‖ ≤ SAME_POINT_FACTOR · (r_a + r_b) / σ_min(I − J(z_ref)) + SAME_POINT_FACTOR · ε · (1 + ‖z_ref‖)

(``r`` the residuals ``‖f(z) − z‖``: a point with residual ``r`` lies within ``r/σ_min(I − J)`` of the
fixed point it approximates, to first order), per sample, with ``ε`` the dtype's machine epsilon.
``J`` is formed densely per sample (:func:`deqlab.solvers.newton.batched_jacobian`): small ``n``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from deqlab.solvers.newton import batched_jacobian
from deqlab.solvers.registry import get_solver
from deqlab.solvers.result import SolverResult

#: Slack on the first-order distance bound before two points are called different.
SAME_POINT_FACTOR = 100.0


@dataclass
class PointDiagnostics:
    """Per-sample ``ρ(J)``, ``cond₂(I − J)`` and ``σ_min(I − J)`` at a point ``z`` ``(batch, n)``; shapes ``(batch,)``."""

    rho: torch.Tensor
    cond: torch.Tensor
    sigma_min: torch.Tensor


def point_diagnostics(f: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> PointDiagnostics:
    """``ρ(J)``, ``cond₂(I − J)``, ``σ_min(I − J)`` per sample at ``z``, ``J = ∂f/∂z`` (NaN where ``z`` is not finite)."""
    B, n = z.shape
    nan = torch.full((B,), float("nan"), dtype=torch.float64, device=z.device)
    if not torch.isfinite(z).all():
        return PointDiagnostics(nan, nan.clone(), nan.clone())
    J = batched_jacobian(f, z).to(torch.float64)   # (detaches z and grads f itself; J holds no graph)
    if not torch.isfinite(J).all():
        return PointDiagnostics(nan, nan.clone(), nan.clone())
    sv = torch.linalg.svdvals(torch.eye(n, dtype=torch.float64, device=J.device) - J)
    rho = torch.linalg.eigvals(J).abs().amax(dim=1)
    return PointDiagnostics(rho, sv[:, 0] / sv[:, -1], sv[:, -1])


@dataclass
class SurveyedPoint:
    """One solver's outcome, placed relative to the reference equilibrium.

    Attributes:
        solver: registry name.
        result: its :class:`SolverResult` (``None`` when it raised; ``error`` then says why).
        distance: ``max_b ‖z_b − z_ref,b‖₂``.
        rho, cond: ``max_b ρ(J_b)``, ``max_b cond₂(I − J_b)`` at its point.
        same_point: every sample is within the first-order bound of the module docstring.
        error: the solver's exception message, if it raised.
    """

    solver: str
    result: SolverResult | None
    distance: float
    rho: float
    cond: float
    same_point: bool
    error: str = ""

    @property
    def converged(self) -> bool:
        return self.result is not None and self.result.all_converged

    @property
    def attracting(self) -> bool:
        """Converged to a point where ``ρ(J) < 1`` (the weight-tied iteration reaches it locally)."""
        return self.converged and self.rho < 1


def survey_fixed_points(
    f: Callable[[torch.Tensor], torch.Tensor],
    z0: torch.Tensor,
    reference: SolverResult,
    names,
    *,
    atol: float,
    rtol: float = 0.0,
    max_iter: int = 500,
    options: dict | None = None,
    known: dict[str, SolverResult] | None = None,
) -> list[SurveyedPoint]:
    """Run each solver in ``names`` on ``z = f(z)`` from ``z0`` ``(batch, n)`` and place its point
    relative to ``reference.z``. ``options`` go to the reference's own solver only (e.g. ``memory``);
    ``known`` maps solver names to results already computed (not rerun)."""
    known = dict(known or {})
    ref_diag = point_diagnostics(f, reference.z.to(z0.dtype))
    out = []
    for name in names:
        if name in known:
            res = known[name]
        else:
            try:
                kw = dict(options or {}) if name == reference.solver else {}
                res = get_solver(name)(f, z0, atol=atol, rtol=rtol, max_iter=max_iter, **kw)
            except (ValueError, RuntimeError, ArithmeticError) as exc:
                out.append(SurveyedPoint(name, None, float("nan"), float("nan"), float("nan"), False,
                                         " ".join(str(exc).split())[:160]))
                continue
        out.append(place_point(f, name, res, reference, ref_diag))
    return out


def place_point(f: Callable, name: str, res: SolverResult, reference: SolverResult,
                ref_diag: PointDiagnostics | None = None) -> SurveyedPoint:
    """One solver's result placed relative to ``reference`` (same map ``f``; ``ref_diag`` =
    :func:`point_diagnostics` at the reference, computed when omitted)."""
    if ref_diag is None:
        ref_diag = point_diagnostics(f, reference.z.to(res.z.dtype))
    eps = torch.finfo(res.z.dtype).eps
    ref_z = reference.z.to(torch.float64)
    diag = point_diagnostics(f, res.z)
    dist = torch.linalg.vector_norm(res.z.to(torch.float64) - ref_z, dim=-1)
    bound = (SAME_POINT_FACTOR * (res.residual.to(torch.float64) + reference.residual.to(torch.float64))
             / ref_diag.sigma_min + SAME_POINT_FACTOR * eps * (1 + torch.linalg.vector_norm(ref_z, dim=-1)))
    same = bool((dist <= bound).all())
    return SurveyedPoint(name, res, float(dist.max()), float(diag.rho.max()), float(diag.cond.max()), same)


def point_verdict(p: SurveyedPoint) -> str:
    """A short table cell: ``same``, ``OTHER`` (another equilibrium), ``none`` (not converged), ``FAILED``."""
    if p.result is None:
        return "FAILED"
    if not p.converged:
        return "none"
    return "same" if p.same_point else "OTHER"


def describe_alternatives(points: list[SurveyedPoint]) -> str:
    """One sentence on the attracting fixed points other solvers reached (for refusal messages)."""
    other = [p for p in points if p.attracting and not p.same_point]
    if not other:
        tried = ", ".join(p.solver for p in points)
        return f"no registered solver ({tried}) reached an attracting fixed point"
    groups: dict[tuple, list[str]] = {}
    for p in other:
        groups.setdefault((round(p.rho, 4), f"{p.distance:.3g}"), []).append(p.solver)
    parts = [f"{', '.join(names)} reach{'es' if len(names) == 1 else ''} an attracting fixed point "
             f"(rho(J) = {rho:.4f}, {dist} away)" for (rho, dist), names in groups.items()]
    return "; ".join(parts)
