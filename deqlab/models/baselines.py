"""Baseline sequence models for system identification, with the REN's interface
``model(u (batch, steps, n_u), state=None) -> (y (batch, steps, n_y), final state)``,
``initial_state(batch)``, ``detach_state(state)`` and ``lipschitz_bound()`` (None: no guarantee).

- :class:`LSTMModel`: ``torch.nn.LSTM`` (one layer, hidden ``n_h``) + linear readout of ``h_k``.
  Output at step ``k`` uses ``u_k`` (``y_k = C h_k``, ``h_k`` after reading ``u_k``), like the REN's
  ``D₂₂`` feed-through.
- :class:`ElmanRNN`: ``h_k = tanh(W_h h_{k−1} + W_u u_k + b)``, ``y_k = C h_k + c``.
- :class:`LinearStateSpace`: ``x⁺ = A x + B u + b_x``, ``y = C x + D u + b_y`` (``A`` free, initialised
  to ``ρ·I`` plus noise so that training starts from a stable model).
"""

from __future__ import annotations

import torch
from torch import nn


class LSTMModel(nn.Module):
    """One-layer LSTM with hidden size ``n_h`` and a linear readout of ``h_k``; state ``(h, c)``, each
    ``(1, batch, n_h)``; no Lipschitz guarantee."""

    def __init__(self, n_u: int, n_h: int, n_y: int, *, dtype=torch.float64):
        super().__init__()
        self.n_u, self.n_h, self.n_y = n_u, n_h, n_y
        self.lstm = nn.LSTM(n_u, n_h, batch_first=True, dtype=dtype)
        self.readout = nn.Linear(n_h, n_y, dtype=dtype)

    def initial_state(self, batch: int):
        z = torch.zeros(1, batch, self.n_h, dtype=self.readout.weight.dtype, device=self.readout.weight.device)
        return (z, z.clone())

    @staticmethod
    def detach_state(state):
        return tuple(s.detach() for s in state)

    def forward(self, u: torch.Tensor, state=None):
        h, state = self.lstm(u, state if state is not None else self.initial_state(u.shape[0]))
        return self.readout(h), state

    def lipschitz_bound(self):
        return None


class ElmanRNN(nn.Module):
    """``h_k = tanh(W_h h_{k−1} + W_u u_k + b)``, ``y_k = C h_k + c``; state ``(1, batch, n_h)``; no
    Lipschitz guarantee."""

    def __init__(self, n_u: int, n_h: int, n_y: int, *, dtype=torch.float64):
        super().__init__()
        self.n_u, self.n_h, self.n_y = n_u, n_h, n_y
        self.rnn = nn.RNN(n_u, n_h, nonlinearity="tanh", batch_first=True, dtype=dtype)
        self.readout = nn.Linear(n_h, n_y, dtype=dtype)

    def initial_state(self, batch: int):
        return torch.zeros(1, batch, self.n_h, dtype=self.readout.weight.dtype, device=self.readout.weight.device)

    @staticmethod
    def detach_state(state):
        return state.detach()

    def forward(self, u: torch.Tensor, state=None):
        h, state = self.rnn(u, state if state is not None else self.initial_state(u.shape[0]))
        return self.readout(h), state

    def lipschitz_bound(self):
        return None


class LinearStateSpace(nn.Module):
    """``x⁺ = A x + B u + b_x``, ``y = C x + D u + b_y`` with free ``A`` (initialised ``ρ I`` + noise);
    state ``(batch, n_x)``; no Lipschitz guarantee (``A`` is not constrained)."""

    def __init__(self, n_u: int, n_x: int, n_y: int, *, rho: float = 0.9, dtype=torch.float64):
        super().__init__()
        self.n_u, self.n_x, self.n_y = n_u, n_x, n_y
        eye = torch.eye(n_x, dtype=dtype)
        self.A = nn.Parameter(rho * eye + 0.01 * torch.randn(n_x, n_x, dtype=dtype))
        self.B = nn.Parameter(torch.randn(n_x, n_u, dtype=dtype) / n_x**0.5)
        self.C = nn.Parameter(torch.randn(n_y, n_x, dtype=dtype) / n_x**0.5)
        self.D = nn.Parameter(torch.zeros(n_y, n_u, dtype=dtype))
        self.bx = nn.Parameter(torch.zeros(n_x, dtype=dtype))
        self.by = nn.Parameter(torch.zeros(n_y, dtype=dtype))

    def initial_state(self, batch: int):
        return torch.zeros(batch, self.n_x, dtype=self.A.dtype, device=self.A.device)

    @staticmethod
    def detach_state(state):
        return state.detach()

    def forward(self, u: torch.Tensor, state=None):
        x = self.initial_state(u.shape[0]) if state is None else state
        drive = u @ self.B.T + self.bx  # (batch, steps, n_x)
        ys = []
        for k in range(u.shape[1]):
            ys.append(x @ self.C.T)
            x = x @ self.A.T + drive[:, k]
        y = torch.stack(ys, dim=1) + u @ self.D.T + self.by
        return y, x

    def lipschitz_bound(self):
        return None
