"""Elementwise activations with analytic derivatives ``A, A', A'', A'''`` (seed 002, eq. 1).

The forward recursions of :mod:`deqlab.nethessian.forward` need, at every pre-activation
``z`` of shape ``(batch, n)``, the values ``A(z), A'(z), A''(z), A'''(z)`` (up to the order the
requested quantity needs). An :class:`Activation` supplies them in closed form; the registry
maps ``torch.nn`` module types to a factory that reads the module's own settings (``Softplus``'s
``beta`` and ``threshold``, ``GELU``'s ``approximate``).

Supported out of the box: ``nn.Tanh``, ``nn.Sigmoid``, ``nn.Softplus`` (with torch's linear
branch above ``threshold``, so the derivatives agree with autograd exactly), ``nn.SiLU``,
``nn.GELU(approximate="none")``, ``nn.Identity``, and two defined here: :class:`Sin` (the usual
SIREN/PINN activation, stationary at ``π/2 + kπ``) and :class:`Gaussian` ``exp(−z²)`` (stationary at
``z = 0``, a float: there the seed's ``A'``-division forms eqs. (20)–(21) give ``0/0``; at ``sin``'s
stationary points they do not, since ``cos(fl(π/2)) ≈ 6e-17 ≠ 0`` and the division is then exact
to round-off). Activations without a third derivative
(``ReLU``, ``LeakyReLU``, ``ELU`` with ``alpha != 1``, ``Hardtanh``, ...) are refused by name.
Register more with :func:`register_activation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from deqlab.errors import ConfigError, InputError

#: ``derivatives(z, order)`` → ``[A(z), A'(z), ..., A^(order)(z)]``, each shaped like ``z``.
DerivativeFn = Callable[[torch.Tensor, int], list]


@dataclass(frozen=True)
class Activation:
    """An elementwise ``A`` with its derivatives up to third order.

    Attributes:
        name: readable name (used in messages and tables).
        derivatives: ``derivatives(z, order)`` returns the list ``[A, A', …, A^(order)]`` evaluated
            at ``z`` (any shape), ``order`` in ``0..3``.
    """

    name: str
    derivatives: DerivativeFn

    def __call__(self, z: torch.Tensor, order: int = 0) -> list:
        if not 0 <= order <= 3:
            raise InputError(f"order must be in 0..3, got {order}")
        return self.derivatives(z, order)[: order + 1]


class Sin(nn.Module):
    """``A(z) = sin(ω z)`` as an ``nn.Module`` (torch has none); ``ω = 1`` by default."""

    def __init__(self, omega: float = 1.0):
        super().__init__()
        self.omega = float(omega)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega * z)

    def extra_repr(self) -> str:
        return f"omega={self.omega}"


def _tanh(z, order):
    t = torch.tanh(z)
    if order == 0:
        return [t]
    d1 = 1 - t * t
    d2 = -2 * t * d1
    if order < 3:
        return [t, d1, d2]
    d3 = d1 * (4 * t * t - 2 * d1)  # d/dz(-2 t (1-t²)) = -2(1-t²)² + 4 t²(1-t²)
    return [t, d1, d2, d3]


def _sigmoid(z, order):
    s = torch.sigmoid(z)
    d1 = s * (1 - s)
    d2 = d1 * (1 - 2 * s)
    d3 = d2 * (1 - 2 * s) - 2 * d1 * d1
    return [s, d1, d2, d3]


def _softplus(beta: float, threshold: float) -> DerivativeFn:
    # torch: softplus(z) = log(1 + exp(βz))/β where βz <= threshold, else z (autograd follows the same branches)
    def derivatives(z, order):
        linear = beta * z > threshold
        s = torch.sigmoid(beta * z)
        value = torch.where(linear, z, nn.functional.softplus(z, beta=beta, threshold=threshold))
        d1 = torch.where(linear, torch.ones_like(z), s)
        p = s * (1 - s)
        d2 = torch.where(linear, torch.zeros_like(z), beta * p)
        d3 = torch.where(linear, torch.zeros_like(z), beta * beta * p * (1 - 2 * s))
        return [value, d1, d2, d3]

    return derivatives


def _silu(z, order):
    s = torch.sigmoid(z)
    p = s * (1 - s)  # σ'
    q = 1 - 2 * s  # σ''/σ'
    d1 = s + z * p
    d2 = 2 * p + z * p * q
    d3 = 3 * p * q + z * p * (q * q - 2 * p)
    return [z * s, d1, d2, d3]


def _gelu(z, order):
    # A = z Φ(z); A' = Φ + zφ; A'' = φ(2 − z²); A''' = φ(z³ − 4z), with φ' = −zφ
    phi = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    return [z * Phi, Phi + z * phi, phi * (2 - z * z), phi * (z * z * z - 4 * z)]


def _sin(omega: float) -> DerivativeFn:
    def derivatives(z, order):
        s, c = torch.sin(omega * z), torch.cos(omega * z)
        return [s, omega * c, -omega**2 * s, -omega**3 * c]

    return derivatives


class Gaussian(nn.Module):
    """``A(z) = exp(−z²)`` (RBF-type activation); ``A'(0) = 0`` exactly: a stationary point at a float."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.exp(-z * z)


def _gaussian(z, order):
    e = torch.exp(-z * z)
    return [e, -2 * z * e, (4 * z * z - 2) * e, (12 * z - 8 * z * z * z) * e]


def _identity(z, order):
    zero = torch.zeros_like(z)
    return [z, torch.ones_like(z), zero, zero]


def _gelu_factory(m: nn.GELU) -> Activation:
    if m.approximate != "none":
        raise ConfigError(
            f"GELU(approximate={m.approximate!r}) is not supported; use GELU(approximate='none') (exact erf form)"
        )
    return Activation("gelu", _gelu)


_REGISTRY: dict[type, Callable[[nn.Module], Activation]] = {
    nn.Tanh: lambda m: Activation("tanh", _tanh),
    nn.Sigmoid: lambda m: Activation("sigmoid", _sigmoid),
    nn.Softplus: lambda m: Activation(f"softplus(beta={m.beta:g})", _softplus(float(m.beta), float(m.threshold))),
    nn.SiLU: lambda m: Activation("silu", _silu),
    nn.GELU: _gelu_factory,
    nn.Identity: lambda m: Activation("identity", _identity),
    Gaussian: lambda m: Activation("gaussian", _gaussian),
    Sin: lambda m: Activation(f"sin(omega={m.omega:g})" if m.omega != 1 else "sin", _sin(m.omega)),
}

#: Config names → module constructors (used by the CLI and the experiments).
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "sin": Sin,
    "gaussian": Gaussian,
}


def register_activation(module_type: type, factory: Callable[[nn.Module], Activation]) -> None:
    """Teach the recursions a new elementwise module: ``factory(module) -> Activation``."""
    _REGISTRY[module_type] = factory


def supported_modules() -> list[str]:
    """Names of the supported module types (for error messages)."""
    return sorted(t.__name__ for t in _REGISTRY)


def activation_of(module: nn.Module) -> Activation:
    """The :class:`Activation` of an elementwise module; :class:`ConfigError` naming it if unknown."""
    factory = _REGISTRY.get(type(module))
    if factory is None:
        raise ConfigError(
            f"unsupported layer {type(module).__name__} ({module!r}): no analytic A', A'', A''' known; "
            f"supported: Linear, {', '.join(supported_modules())} (or register_activation)"
        )
    return factory(module)
