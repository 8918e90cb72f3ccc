"""Implicit differentiation of DEQs: the IFT layer, the exact Hessian, HVPs and spectra (seeds 000/001).

Public API (re-exported here; the README's examples use only these)::

    from deqlab.implicit import (DEQ, SolveStats, LossHessian, fixed_point, SolveOptions, deq_hessian,
                                 deq_hessian_parts, deq_gradient, DEQHessianOperator, extreme_eigenvalues,
                                 hutchinson_trace, spectral_density, model_params, flatten, unflatten, GROUPS)

- :class:`DEQ`: any user ``nn.Module`` map ``f(z, x)`` as an implicit layer (registry solver, exact
  derivatives of every order through :func:`fixed_point`; approximate Jacobian-free/phantom backwards
  labelled as such), :class:`SolveStats` its last forward solve.
- :class:`LossHessian`: the loss Hessian of any model with DEQ layers as a scipy ``LinearOperator`` (HVPs
  exact through the implicit layers; eigsh extremes, Hutchinson trace, SLQ density); :func:`negative_share`
  and :func:`negative_mass` of a :class:`SpectralDensity` (:func:`spectral_density`, stochastic Lanczos).

- :func:`fixed_point`: a differentiable fixed point ``z* = f(z*, θ)`` with implicit rules of every order
  (``torch.autograd`` and ``torch.func``), :class:`SolveOptions` choosing the solver by registry name.
- :func:`deq_hessian` / :func:`deq_hessian_parts`: the dense closed-form Hessian of the tanh DEQ's loss
  (Term A + Term B, readout blocks), :func:`deq_gradient` its implicit gradient.
- :class:`DEQHessianOperator`: matrix-free ``v ↦ Hv``; :func:`extreme_eigenvalues` (scipy ``eigsh`` on a
  ``LinearOperator``) and :func:`hutchinson_trace` on any such operator.
- :func:`model_params`, :func:`flatten`, :func:`unflatten`, :data:`GROUPS`: the flattening order of ``θ``.
- :func:`polish_tanh_equilibrium`: chord steps with an extended-precision residual that bring a solver's
  ``z*`` to the accuracy its conditioning allows (``solve_equilibrium`` applies it by default).

Private modules, one idea each: ``deq`` (the user-module layer), ``curvature`` (model loss Hessians),
``layer`` (IFT layer), ``hessian`` (closed form), ``hvp``, ``spectrum``, ``params``, ``polish`` (refining ``z*``),
``mondeq`` (monDEQ backward), ``ren`` (REN triangular backward), ``first_order`` (refusing the
derivatives those two first-order backwards cannot give), ``secant_pairs`` (pairs of a
DEQ's loss for :mod:`deqlab.lowrank`), ``pitfalls`` (the seed's wrong variant, kept to be shown wrong).
"""

from deqlab.implicit.curvature import LossHessian, negative_mass, negative_share
from deqlab.implicit.deq import BACKWARDS, DEQ, SolveStats
from deqlab.implicit.hessian import deq_gradient, deq_hessian, deq_hessian_parts
from deqlab.implicit.hvp import DEQHessianOperator
from deqlab.implicit.layer import SolveOptions, fixed_point
from deqlab.implicit.params import GROUPS, flatten, model_params, unflatten
from deqlab.implicit.polish import polish_tanh_equilibrium
from deqlab.implicit.spectrum import SpectralDensity, extreme_eigenvalues, hutchinson_trace, spectral_density

__all__ = [
    "BACKWARDS", "DEQ", "DEQHessianOperator", "GROUPS", "LossHessian", "SolveOptions", "SolveStats", "SpectralDensity",
    "deq_gradient", "deq_hessian", "deq_hessian_parts", "extreme_eigenvalues", "fixed_point", "flatten",
    "hutchinson_trace", "model_params", "negative_mass", "negative_share", "polish_tanh_equilibrium",
    "spectral_density", "unflatten",
]
