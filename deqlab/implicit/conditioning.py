"""How far an implicit derivative can be trusted: the condition number of ``I − J`` at the fixed point.

Every implicit derivative solves with ``I − J`` (``J = ∂f/∂z`` at ``z*``), so its relative error is about
``cond(I − J)·eps`` however exact the formula: the library audit measured, on a scalar fold against
mpmath at 50 digits, 8e-4 at ``cond = 1e13`` and 10 % at ``1e15`` in float64, returned without a word.
A derivative whose error bound ``cond·eps`` exceeds :data:`MAX_COND_EPS` is refused with
:class:`~deqlab.errors.IllConditionedError` instead (float64: ``cond > 4.5e13``; float32: ``cond > 8.4e4``).

A singular ``I − J`` (``info > 0`` of a factorisation) is refused first, by :func:`require_invertible`.
The estimates cost ``O(B·N)`` or ``O(B·N²)`` beside the ``O(B·N³)`` factorisation they read:

* :func:`inverse_condition`: ``‖A‖∞ ‖A⁻¹‖∞`` from an explicit inverse, exact in the ∞-norm.
* :func:`pivot_condition`: ``max|u_ii| / min|u_ii|`` of an LU factorisation with partial pivoting,
  a lower estimate of the condition number (``‖A⁻¹‖ ≥ 1/min|u_ii|`` for the last pivot, and in practice
  for all): a refusal by it is certain to concern an ill-conditioned matrix.
* :func:`require_well_conditioned_solution`: for an iterative solve, which has no factors, a bound from below
  read off its right-hand side and solution (two more evaluations of the affine map).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from deqlab.errors import IllConditionedError
from deqlab.solvers.result import row_norms

#: The largest relative-error bound ``cond(I − J)·eps`` an implicit derivative is returned with.
MAX_COND_EPS = 1e-2


def inverse_condition(A: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """``cond∞(A) = ‖A‖∞ ‖A⁻¹‖∞`` per matrix of a batch ``(..., N, N)``, given ``A⁻¹``; ``(...)``."""
    return A.abs().sum(-1).amax(-1) * inverse.abs().sum(-1).amax(-1)


def pivot_condition(lu: torch.Tensor) -> torch.Tensor:
    """``max|u_ii| / min|u_ii|`` of packed LU factors ``(..., N, N)`` (``torch.linalg.lu_factor``); ``(...)``,
    ``inf`` for a zero pivot."""
    pivots = lu.diagonal(dim1=-2, dim2=-1).abs()
    return pivots.amax(-1) / pivots.amin(-1)


def require_invertible(info: torch.Tensor, what: str) -> None:
    """:class:`IllConditionedError` naming the first sample whose ``what`` is singular (``info > 0`` of torch's
    ``inv_ex``/``solve_ex``/``lu_factor_ex``): torch's own ``LinAlgError`` ('the input matrix is singular') came
    out of :func:`~deqlab.implicit.hessian.deq_hessian`, ``deq_gradient`` and the HVP operators at such a point."""
    bad = (info > 0).reshape(-1)
    if bool(bad.any()):
        s = int(bad.nonzero()[0, 0])
        raise IllConditionedError(f"{what} is singular at sample {s}: the DEQ's Jacobian has an eigenvalue 1 there, "
                                  "so the implicit derivatives do not exist")


def require_well_conditioned(cond: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """:class:`IllConditionedError` naming the first sample whose ``cond`` (a tensor of per-sample estimates)
    times ``eps`` of ``dtype`` exceeds :data:`MAX_COND_EPS`, or is NaN."""
    eps = torch.finfo(dtype).eps
    flat = cond.detach().reshape(-1)
    bad = ~(flat <= MAX_COND_EPS / eps)
    if bool(bad.any()):
        s = int(bad.nonzero()[0, 0])
        value = float(flat[s])
        raise IllConditionedError(
            f"{what} is ill-conditioned at sample {s} (condition number about {value:.1e} in "
            f"{str(dtype).removeprefix('torch.')}): the implicit derivatives there would carry relative errors up to "
            f"about {value * eps:.0e}, so none are returned (the Jacobian has an eigenvalue near 1)")


def require_well_conditioned_solution(F: Callable, t: torch.Tensor, how: str, what: str = "I − ∂f/∂z") -> None:
    """:class:`IllConditionedError` when the affine ``F(u) = A u + r`` whose fixed point ``t`` (``(batch, n)``)
    an iterative solve (``how``, e.g. "its linear solve with broyden") just found is provably too ill-conditioned
    for ``t`` to be returned; ``what`` names ``I − A`` in the message. Two more evaluations of ``F``.

    The solve's residual met the rule, but ``t`` itself is only as good as ``cond(I − A)·eps`` allows: a DEQ
    near a fold (cond 5e14) gave an adjoint 5 % off through broyden, without a word, where the factorising
    routes refuse (:func:`pivot_condition`, :func:`inverse_condition`). An iterative solve has no factors to
    read, so the condition number of the joint system (all rows) is bounded from below by what it computed::

        cond(I − A) = ‖I − A‖ ‖(I − A)⁻¹‖  ≥  (‖(I − A) r‖ / ‖r‖) · (‖t‖ / ‖r‖),   (I − A) r = 2r − F(r)

    (Frobenius norms over the batch, valid whether or not ``F`` couples the rows). Only a bound from below:
    a refusal is certain to concern an ill-conditioned system, and a right-hand side nearly orthogonal to
    ``(I − A)``'s smallest singular direction lets one through."""
    with torch.no_grad():
        r = F(torch.zeros_like(t))
        r_norm = float(row_norms(r.reshape(1, -1)))
        if not r_norm > 0:   # (t = 0: nothing was amplified)
            return
        lower = (float(row_norms((2 * r - F(r)).reshape(1, -1))) / r_norm) * (float(row_norms(t.reshape(1, -1))) / r_norm)
    eps = torch.finfo(t.dtype).eps
    if lower * eps > MAX_COND_EPS:
        raise IllConditionedError(
            f"{what} is ill-conditioned at the fixed point: {how} shows a condition number of at least {lower:.1e} "
            f"in {str(t.dtype).removeprefix('torch.')}, so the implicit derivatives would carry relative errors up to "
            f"about {lower * eps:.0e}; none are returned (the Jacobian has an eigenvalue near 1)")
