"""Element-wise nonlinearities as proximal operators, ``σ = prox_f`` (Winston & Kolter 2020, §3).

The splitting solvers (:mod:`deqlab.solvers.splitting`) need ``prox_{αf}`` for any step ``α``; the
monotone DEQ (:mod:`deqlab.models.mondeq`) uses ``σ`` itself. Living beside the solvers keeps the
import graph one-way: models → implicit → solvers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from deqlab.errors import InputError

PROX_MAX_NEWTON = 60


# --- nonlinearities as proximal operators ----------------------------------------------------------

@dataclass(frozen=True)
class ProxNonlinearity:
    """``σ = prox_f`` for a closed proper convex separable ``f``.

    Attributes:
        name: config name.
        sigma: ``σ(v)`` (differentiable, used in the layer ``z = σ(Wz + Ux + b)``).
        dsigma: ``σ'(v)`` element-wise (the diagonal of the layer's Jacobian factor).
        f: the convex function (element-wise, summed by :meth:`f_value`), ``+∞`` off its domain; on the
            input's device except softplus's ``Li₂``, which scipy evaluates on the host (moved back).
        formula: ``f`` in words, for tables and docs.
        alpha_free: ``prox_{αf} = σ`` for every ``α`` (true for indicator functions: ReLU).
    """

    name: str
    sigma: Callable[[torch.Tensor], torch.Tensor]
    dsigma: Callable[[torch.Tensor], torch.Tensor]
    f: Callable[[torch.Tensor], torch.Tensor]
    formula: str
    alpha_free: bool = False

    def f_value(self, z: torch.Tensor) -> torch.Tensor:
        """``f(z) = Σ_i f(z_i)`` over the last dimension."""
        return self.f(z).sum(-1)

    def prox(self, v: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """``prox_{αf}(v)`` element-wise; ``α = 1`` (or ReLU) is ``σ(v)`` exactly."""
        if not alpha > 0:
            raise InputError(f"alpha must be > 0, got {alpha}")
        if self.alpha_free or alpha == 1.0:
            return self.sigma(v)
        return self.sigma(_prox_argument(self, v, float(alpha)))


def _prox_argument(nl: ProxNonlinearity, v: torch.Tensor, alpha: float) -> torch.Tensor:
    """The ``t`` with ``(1 − α) σ(t) + α t = v`` by Newton safeguarded with a shrinking bracket.

    ``g(t) = (1−α)σ(t) + αt − v`` has ``μ ≤ g' ≤ M`` with ``μ = min(1, α)``, ``M = max(1, α)``, so
    the root lies within ``|g(t₀)|/μ`` of any ``t₀``: that is the initial bracket. A Newton step that
    leaves the bracket is replaced by its midpoint; one that lands on the bracket's end is kept, since
    that end is the current point when the step is below its rounding (as ``t`` converges): taken as
    outside, it threw a converged entry back to the middle of the bracket, and softplus at ``α = 0.5``
    took 53 iterations instead of 5.

    An entry is done when its step is a few ulps of ``t``, or when ``g(t)`` is at the rounding level of
    its own terms, ``|g| ≤ 4 eps (|(1−α)σ(t)| + α|t| + |v|)``: no step can then tell the root from ``t``
    (at ``α = 10³`` the steps of a tanh entry went on by 4e-15 at ``t = −0.066``, ~4 ulps of the
    tolerance, to the iteration cap of :data:`PROX_MAX_NEWTON`).
    """
    v = v.detach()
    mu = min(1.0, alpha)
    t = v.clone()                                        # exact when α = 1
    s = nl.sigma(t)
    g = (1 - alpha) * s + alpha * t - v
    width = g.abs() / mu
    lo, hi = t - width, t + width
    tol = 4 * torch.finfo(v.dtype).eps
    for _ in range(PROX_MAX_NEWTON):
        lo = torch.where(g < 0, t, lo)
        hi = torch.where(g > 0, t, hi)
        step = g / ((1 - alpha) * nl.dsigma(t) + alpha)
        t_new = t - step
        outside = (t_new < lo) | (t_new > hi)
        t_new = torch.where(outside, (lo + hi) / 2, t_new)
        moved = (t_new - t).abs()
        t = t_new
        s = nl.sigma(t)
        g = (1 - alpha) * s + alpha * t - v
        settled = moved <= tol * (1 + t.abs())
        at_rounding = g.abs() <= tol * (((1 - alpha) * s).abs() + alpha * t.abs() + v.abs())
        if bool((settled | at_rounding).all()):
            break
    return t


def _tanh_f(z: torch.Tensor) -> torch.Tensor:
    inside = z.abs() <= 1
    zc = z.clamp(-1, 1)
    val = 0.5 * (torch.xlogy(1 + zc, 1 + zc) + torch.xlogy(1 - zc, 1 - zc)) - zc**2 / 2
    return torch.where(inside, val, torch.full_like(z, math.inf))


def _softplus_f(z: torch.Tensor) -> torch.Tensor:
    """``Li₂(e^{−z})`` by scipy's ``spence``: evaluated on the host (``z`` is copied with
    ``.detach().cpu()`` in float64, the value copied back to ``z.device`` and ``z.dtype``); not differentiable."""
    import numpy as np
    from scipy.special import spence  # spence(x) = Li₂(1 − x)

    zc = z.detach().clamp_min(0).to(torch.float64).cpu().numpy()  # device -> host
    val = torch.as_tensor(spence(1 - np.exp(-zc)), dtype=z.dtype, device=z.device)  # host -> z's device
    return torch.where(z >= 0, val, torch.full_like(z, math.inf))


def _relu_f(z: torch.Tensor) -> torch.Tensor:
    return torch.where(z >= 0, torch.zeros_like(z), torch.full_like(z, math.inf))


NONLINEARITIES: dict[str, ProxNonlinearity] = {
    "identity": ProxNonlinearity(
        "identity", lambda v: v, torch.ones_like, torch.zeros_like,
        "0 (the linear monDEQ: z* solves (I - W) z = U x + b)", alpha_free=True,
    ),
    "relu": ProxNonlinearity(
        "relu", torch.relu, lambda v: (v > 0).to(v.dtype), _relu_f,
        "indicator of z >= 0 (0 there, +inf elsewhere)", alpha_free=True,
    ),
    "tanh": ProxNonlinearity(
        "tanh", torch.tanh, lambda v: 1 - torch.tanh(v) ** 2, _tanh_f,
        "((1+z)log(1+z) + (1-z)log(1-z))/2 - z^2/2 on [-1, 1]",
    ),
    "softplus": ProxNonlinearity(
        "softplus", nn.functional.softplus, torch.sigmoid, _softplus_f,
        "Li2(exp(-z)) on [0, inf)",
    ),
}


def get_nonlinearity(name: str) -> ProxNonlinearity:
    try:
        return NONLINEARITIES[name]
    except KeyError:
        raise InputError(f"unknown nonlinearity {name!r}; choose one of: {', '.join(NONLINEARITIES)}") from None
