"""Settings of the models that several commands share, and the names the library registers.

The name tuples mirror the library's registries (``deqlab.models.tanh_deq.INITS``,
``deqlab.solvers.prox.NONLINEARITIES``, ``deqlab.nethessian.ACTIVATIONS``); ``tests/test_settings.py``
checks they agree. They are repeated here so that a typo is refused before torch is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from deqlab.settings import checks

TANH_INITS = ("default", "normal")
PROX_NONLINEARITIES = ("identity", "relu", "tanh", "softplus")
MLP_ACTIVATIONS = ("tanh", "sigmoid", "softplus", "silu", "gelu", "sin", "gaussian")
#: the largest width a dense (n x n) layer may have before the memory guard has to decide
MAX_WIDTH = 100_000


@dataclass
class TanhDEQSettings:
    """``z = tanh(W_z z + U_z x + b_z)``, ``y = W_y z + b_y`` (seed 003's example)."""

    n_z: int = 10
    n_x: int = 3          # the input sequence of length T = 3, injected whole
    n_y: int = 1
    init: str = "default"  # default: nn.Linear's init; normal: nn.init.normal_(W_z.weight)

    def __post_init__(self) -> None:
        for key in ("n_z", "n_x", "n_y"):
            checks.count(f"model.{key}", getattr(self, key), maximum=MAX_WIDTH)
        checks.choice("model.init", self.init, TANH_INITS)

    def parameter_count(self) -> int:
        n, d, k = self.n_z, self.n_x, self.n_y
        return n * n + n + n * d + k * n + k


@dataclass
class MonDEQSettings:
    """monDEQ ``z = σ(W z + U x + b)``, ``W = (1 − m)I − AᵀA + B − Bᵀ`` (Winston & Kolter 2020)."""

    n_z: int = 32
    m: float = 0.05             # monotonicity margin: I - W >= m I (must be > 0)
    nonlinearity: str = "relu"  # relu | tanh | softplus | identity (each is prox_f of a convex f)
    init_scale: float = 1.0     # A, B entries ~ U(-s/sqrt(n_z), s/sqrt(n_z))

    def __post_init__(self) -> None:
        checks.count("model.n_z", self.n_z, maximum=MAX_WIDTH)
        checks.margin("model.m", self.m, maximum=1e3)
        checks.choice("model.nonlinearity", self.nonlinearity, PROX_NONLINEARITIES)
        checks.number("model.init_scale", self.init_scale, minimum=0.0, maximum=1e3, exclusive=True)


@dataclass
class MLPSettings:
    """``Linear(d, h₁) → σ → … → Linear(h_last, n_out)``."""

    d: int = 4
    hidden: List[int] = field(default_factory=lambda: [16, 16])
    n_out: int = 2
    activation: str = "tanh"

    def __post_init__(self) -> None:
        checks.count("mlp.d", self.d, maximum=MAX_WIDTH)
        checks.counts("mlp.hidden", self.hidden, maximum=MAX_WIDTH)
        checks.count("mlp.n_out", self.n_out, maximum=MAX_WIDTH)
        checks.choice("mlp.activation", self.activation, MLP_ACTIVATIONS)

    def parameter_count(self) -> int:
        widths = [self.d, *self.hidden, self.n_out]
        return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
