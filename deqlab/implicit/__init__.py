"""Implicit differentiation of DEQs: the IFT layer, the exact Hessian, HVPs and spectra (seeds 000/001).

Public entry points: :class:`deqlab.implicit.DEQ` (any user ``nn.Module`` map ``f(z, x)`` as an implicit
layer, exact derivatives of every order), :func:`deqlab.implicit.hessian.deq_hessian` (dense closed
form, tanh DEQ), :class:`deqlab.implicit.hvp.DEQHessianOperator` (matrix-free ``v ↦ Hv``),
:func:`deqlab.implicit.layer.fixed_point` (differentiable fixed point, any order, torch.func-ready).
The flattening order of ``θ`` is documented in :mod:`deqlab.implicit.params`.
"""

from deqlab.implicit.deq import BACKWARDS, DEQ, SolveStats
from deqlab.implicit.layer import SolveOptions, fixed_point

__all__ = ["BACKWARDS", "DEQ", "SolveOptions", "SolveStats", "fixed_point"]
