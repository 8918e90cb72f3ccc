"""A tanh DEQ classifier built from the generic layer :class:`deqlab.implicit.DEQ`: the map a user would
write, ``f(z, x) = tanh(W z + U x + b)``, and a linear readout. Used by ``deqlab train digits`` and
``deqlab bench curvature``. Shapes: ``x (batch, n_x) -> logits (batch, n_y)``; ``z* (batch, n_z)``.
"""

from __future__ import annotations

import torch
from torch import nn

from deqlab.implicit.deq import DEQ
from deqlab.implicit.layer import SolveOptions


class TanhCell(nn.Module):
    """``f(z, x) = tanh(W z + U x + b)`` with ``W`` unconstrained (float64)."""

    def __init__(self, n_z: int, n_x: int):
        super().__init__()
        self.W = nn.Linear(n_z, n_z, bias=False, dtype=torch.float64)
        self.U = nn.Linear(n_x, n_z, dtype=torch.float64)

    def forward(self, z, x):
        return torch.tanh(self.W(z) + self.U(x))


class TanhDEQClassifier(nn.Module):
    """``logits = W_y z* + b_y`` with ``z* = tanh(W z* + U x + b)``."""

    def __init__(self, n_z: int, n_x: int, n_y: int, opts: SolveOptions):
        super().__init__()
        self.deq = DEQ(TanhCell(n_z, n_x), n_z, opts=opts)
        self.W_y = nn.Linear(n_z, n_y, dtype=torch.float64)

    def forward(self, x):
        return self.W_y(self.deq(x))
