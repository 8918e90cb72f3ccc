"""The lecture's weight-tied, input-injected tanh network and its equilibrium (seed 003).

    z^{l+1} = tanh(W_z z^l + U_z x + b_z),    ŷ = W_y z + b_y,

with ``W_z ∈ R^{n_z×n_z}`` (``nn.Linear(n_z, n_z)``, whose bias is ``b_z``), ``U_z ∈ R^{n_z×n_x}``
(no bias) and the readout ``W_y ∈ R^{n_y×n_z}``. The layers are created in the slides' order
(``W_z``, optional ``normal_`` re-init of ``W_z.weight``, ``U_z``, ``W_y``) so a seeded generator
reproduces the same draws as the slides' code under the same torch seed.

Shapes: ``x`` is ``(batch, n_x)``, ``z`` is ``(batch, n_z)``.
"""

from __future__ import annotations

import torch
from torch import nn

from deqlab.errors import InputError, require_count, require_real_dtype

INITS = ("default", "normal")


class TanhDEQ(nn.Module):
    """``z = tanh(W_z z + U_z x + b_z)`` with a linear readout.

    Args:
        n_z: hidden size; n_x: input size; n_y: output size.
        init: ``"default"`` (PyTorch's ``nn.Linear`` init, ``U(−1/√n_z, 1/√n_z)``) or ``"normal"``
            (``nn.init.normal_(W_z.weight)``: entries ``N(0, 1)``, spectral radius ≈ √n_z).
        dtype: parameter dtype.
    """

    def __init__(self, n_z: int = 10, n_x: int = 3, n_y: int = 1, *, init: str = "default", dtype=torch.float32):
        super().__init__()
        n_z, n_x, n_y = (require_count(name, v) for name, v in (("n_z", n_z), ("n_x", n_x), ("n_y", n_y)))
        require_real_dtype(dtype)
        if init not in INITS:
            raise InputError(f"unknown init {init!r}; choose one of: {', '.join(INITS)}")
        self.n_z, self.n_x, self.n_y, self.init = n_z, n_x, n_y, init
        self.W_z = nn.Linear(self.n_z, self.n_z, bias=True, dtype=dtype)
        if init == "normal":
            nn.init.normal_(self.W_z.weight)
        self.U_z = nn.Linear(self.n_x, self.n_z, bias=False, dtype=dtype)
        self.W_y = nn.Linear(self.n_z, self.n_y, bias=True, dtype=dtype)

    def f(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One layer ``tanh(W_z z + U_z x + b_z)``; ``(batch, n_z), (batch, n_x) -> (batch, n_z)``."""
        return torch.tanh(self.W_z(z) + self.U_z(x))

    def unrolled(self, x: torch.Tensor, layers: int, z0: torch.Tensor | None = None) -> torch.Tensor:
        """``z^L`` after ``L = layers`` weight-tied layers from ``z⁰`` (zeros by default)."""
        layers = require_count("layers", layers, minimum=0)   # (2.5 was range()'s TypeError)
        z = torch.zeros(x.shape[0], self.n_z, dtype=x.dtype, device=x.device) if z0 is None else z0
        for _ in range(layers):
            z = self.f(z, x)
        return z

    def unrolled_path(self, x: torch.Tensor, layers: int) -> torch.Tensor:
        """All iterates ``z⁰ … z^L`` stacked: ``(layers + 1, batch, n_z)``."""
        layers = require_count("layers", layers, minimum=0)   # (−1 gave the start alone, 2.5 a TypeError)
        z = torch.zeros(x.shape[0], self.n_z, dtype=x.dtype, device=x.device)
        path = [z]
        for _ in range(layers):
            z = self.f(z, x)
            path.append(z)
        return torch.stack(path)

    def readout(self, z: torch.Tensor) -> torch.Tensor:
        """``ŷ = W_y z + b_y``; ``(batch, n_z) -> (batch, n_y)``."""
        return self.W_y(z)

    def weight_matrix(self) -> torch.Tensor:
        """``W_z`` as a detached ``(n_z, n_z)`` tensor."""
        return self.W_z.weight.detach()
