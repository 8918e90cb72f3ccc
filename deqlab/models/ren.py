"""Recurrent Equilibrium Networks (Revay, Wang & Manchester, CDC 2021; and the long version
"Recurrent Equilibrium Networks: Flexible dynamic models with guaranteed stability and robustness",
IEEE TAC 2023, arXiv:2104.05942), by the *direct parametrisation*: every value of the free
parameters gives a model that is contracting (:class:`ContractingREN`) or, in addition, has an
incremental ℓ₂ gain (Lipschitz bound) at most ``γ`` (:class:`LipschitzREN`).

Model (explicit form, one time step, ``σ`` slope-restricted in ``[0, 1]``: tanh or ReLU)::

    v  = C₁ x + D₁₁ w + D₁₂ u + b_v          (batch, n_v)
    w  = σ(v)                                 D₁₁ strictly lower-triangular: solved row by row
    x⁺ = A x + B₁ w + B₂ u + b_x              (batch, n_x)
    y  = C₂ x + D₂₁ w + D₂₂ u + b_y           (batch, n_y)

It comes from the implicit form ``E x⁺ = F x + B₁ᵢ w + B₂ᵢ u``, ``Λ v = C₁ᵢ x + D₁₁ᵢ w + D₁₂ᵢ u``
(``A = E⁻¹F``, ``B = E⁻¹Bᵢ``, ``C₁ = Λ⁻¹C₁ᵢ``, ``D₁ⱼ = Λ⁻¹D₁ⱼᵢ``) whose matrices are read off one
positive-definite matrix ``H`` of size ``2n_x + n_v``, split into blocks ``(n_x, n_v, n_x)``::

    H = [[E + Eᵀ − P/ᾱ²,  −C₁ᵢᵀ,                 Fᵀ  ],
         [−C₁ᵢ,            2Λ − D₁₁ᵢ − D₁₁ᵢᵀ,     B₁ᵢᵀ],
         [F,               B₁ᵢ,                   P   ]]

    P = H₃₃, F = H₃₁, B₁ᵢ = H₃₂, C₁ᵢ = −H₂₁, E = ½(H₁₁ + P/ᾱ² + Y₁ − Y₁ᵀ),
    Λ = ½ diag(H₂₂), D₁₁ᵢ = −tril(H₂₂, −1).

**Contraction** (``H = XᵀX + εI``). With ``W = 2Λ − D₁₁ᵢ − D₁₁ᵢᵀ`` the incremental sector bound of
``σ`` gives ``−2Δwᵀ C₁ᵢ Δx + Δwᵀ W Δw ≤ 0``; the Schur complement of ``H ≻ 0`` then gives
``‖EΔx⁺‖²_{P⁻¹} ≤ Δxᵀ(E + Eᵀ − P/ᾱ²)Δx ≤ ᾱ² ‖EΔx‖²_{P⁻¹}``, i.e. with the metric ``P̄ = EᵀP⁻¹E``::

    ‖Δx⁺‖²_P̄ ≤ ᾱ² ‖Δx‖²_P̄      for any two states under the same input.

**Lipschitz bound γ** (the (Q, S, R) = (−I/γ, 0, γI) robust REN of the TAC paper, eqs. 28–33;
as in RobustNeuralNetworks.jl ``GeneralRENParams`` / ``LipschitzRENParams``). Free ``X₃, Y₃, Z₃``
give ``M = X₃ᵀX₃ + Y₃ − Y₃ᵀ + Z₃ᵀZ₃ + εI`` and the Cayley-type contraction
``N = [(I − M)(I + M)⁻¹; −2Z₃(I + M)⁻¹]`` (``n_y ≥ n_u``; the transposed form otherwise), ``‖N‖₂ < 1``,
so ``D₂₂ = γN`` has ``‖D₂₂‖₂ < γ``. With ``C₂ᵢ = −D₂₂ᵀC₂/γ``, ``D₂₁ᵢ = −D₂₂ᵀD₂₁/γ − D₁₂ᵢᵀ``,
``R̃ = γI − D₂₂ᵀD₂₂/γ ≻ 0``::

    H = XᵀX + εI + [C₂ᵢ D₂₁ᵢ B₂ᵢᵀ]ᵀ R̃⁻¹ [C₂ᵢ D₂₁ᵢ B₂ᵢᵀ] + (1/γ)[C₂ D₂₁ 0]ᵀ[C₂ D₂₁ 0]   (ᾱ = 1)

and ``H ≻ 0`` is then the robust LMI, whose consequence (tested) is the dissipation inequality
``‖Δx⁺‖²_P̄ − ‖Δx‖²_P̄ ≤ γ‖Δu‖² − ‖Δy‖²/γ`` at every step; summed from equal initial states,
``‖Δy‖_ℓ₂ ≤ γ ‖Δu‖_ℓ₂`` over any horizon.

Shapes: inputs ``u`` (batch, steps, n_u) → outputs (batch, steps, n_y); state (batch, n_x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deqlab.errors import InputError, require_number
from deqlab.solvers.result import describe
from deqlab.implicit.ren import ACTIVATIONS, equilibrium_layer, equilibrium_layer_fast  # noqa: F401  (re-exported)

#: how gradients pass the equilibrium layer: ``implicit`` (:func:`equilibrium_layer_fast`, implicit
#: function theorem, first derivatives) or ``autograd`` (through the row loop; any order)
EQUILIBRIUM_BACKWARDS = ("implicit", "autograd")


@dataclass
class ExplicitREN:
    """The explicit model plus the certificate matrices ``E`` (n_x, n_x), ``P`` (n_x, n_x) and the
    diagonal ``Λ`` (n_v,) of the implicit form, and ``H`` (the LMI matrix, built ``≻ 0``)."""

    A: torch.Tensor
    B1: torch.Tensor
    B2: torch.Tensor
    C1: torch.Tensor
    D11: torch.Tensor
    D12: torch.Tensor
    C2: torch.Tensor
    D21: torch.Tensor
    D22: torch.Tensor
    bx: torch.Tensor
    bv: torch.Tensor
    by: torch.Tensor
    E: torch.Tensor
    P: torch.Tensor
    Lambda: torch.Tensor
    H: torch.Tensor

    def metric(self) -> torch.Tensor:
        """The contraction metric ``P̄ = EᵀP⁻¹E`` (n_x, n_x)."""
        return self.E.T @ torch.linalg.solve(self.P, self.E)


def slow_init(n_x: int, n_v: int, rho: float, noise: float) -> torch.Tensor:
    """An ``X`` whose REN starts near ``A = ρI`` (slow, stable dynamics; useful when the sample time is
    short compared to the system's time constants): with blocks ``(n_x, n_v, n_x)``,
    ``X = [[I, 0, ρI], [0, √2 I, 0], [0, 0, √(1−ρ²) I]] + noise·glorot`` gives, at zero noise,
    ``H₁₁ = H₃₃ = I``, ``H₃₁ = ρI``, ``H₂₂ = 2I`` → ``E = I`` (ᾱ = 1, Y₁ = 0), ``F = ρI``, ``Λ = I``.
    Like Julia's ``init = :cholesky`` option, only the starting point changes, never the guarantee."""
    if not 0.0 <= rho < 1.0:
        raise InputError(f"init_rho must lie in [0, 1), got {rho}")
    n = 2 * n_x + n_v
    X = torch.zeros(n, n, dtype=torch.float64)
    ix, iv, ip = slice(0, n_x), slice(n_x, n_x + n_v), slice(n_x + n_v, n)
    X[ix, ix] = torch.eye(n_x, dtype=torch.float64)
    X[ix, ip] = rho * torch.eye(n_x, dtype=torch.float64)
    X[iv, iv] = 2**0.5 * torch.eye(n_v, dtype=torch.float64)
    X[ip, ip] = (1 - rho**2) ** 0.5 * torch.eye(n_x, dtype=torch.float64)
    return X + noise * _glorot(n, n)


def _glorot(rows: int, cols: int, generator=None) -> torch.Tensor:
    return torch.randn(rows, cols, generator=generator, dtype=torch.float64) * (2.0 / (rows + cols)) ** 0.5


class _RENBase(nn.Module):
    """Shared direct parametrisation; subclasses define ``_h_and_d22``."""

    def __init__(self, n_u: int, n_x: int, n_v: int, n_y: int, *, activation: str = "tanh",
                 eps: float = 1e-6, alpha_bar: float = 1.0, init_scale: float = 1.0, init_rho: float | None = None,
                 equilibrium_backward: str = "implicit", dtype=torch.float64):
        super().__init__()
        sizes = {"n_u": n_u, "n_x": n_x, "n_v": n_v, "n_y": n_y}
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in sizes.values()):
            raise InputError("REN sizes must be integers >= 1, got " + ", ".join(f"{k}={v!r}" for k, v in sizes.items()))
        if activation not in ACTIVATIONS:
            raise InputError(f"unknown activation {activation!r}; choose one of: {', '.join(ACTIVATIONS)}")
        if not 0.0 < alpha_bar <= 1.0:
            raise InputError(f"alpha_bar must lie in (0, 1], got {alpha_bar}")
        if equilibrium_backward not in EQUILIBRIUM_BACKWARDS:
            raise InputError(f"equilibrium_backward must be one of {EQUILIBRIUM_BACKWARDS}, got {equilibrium_backward!r}")
        self.equilibrium_backward = equilibrium_backward
        self.n_u, self.n_x, self.n_v, self.n_y = n_u, n_x, n_v, n_y
        self.activation, self.eps, self.alpha_bar = activation, eps, alpha_bar
        n = 2 * n_x + n_v
        p = lambda t: nn.Parameter(t.to(dtype))  # noqa: E731
        self.X = p(_glorot(n, n) * init_scale if init_rho is None else slow_init(n_x, n_v, init_rho, init_scale))
        self.Y1 = p(_glorot(n_x, n_x))
        self.B2 = p(_glorot(n_x, n_u))
        self.C2 = p(_glorot(n_y, n_x))
        self.D12 = p(_glorot(n_v, n_u))
        self.D21 = p(_glorot(n_y, n_v))
        self.bx = p(torch.zeros(n_x))
        self.bv = p(torch.randn(n_v, dtype=torch.float64) * 0.1)
        self.by = p(torch.zeros(n_y))

    def _h_and_d22(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def explicit(self) -> ExplicitREN:
        """Direct parameters → explicit model (the map described in the module docstring)."""
        n_x, n_v = self.n_x, self.n_v
        H, D22 = self._h_and_d22()
        H11 = H[:n_x, :n_x]
        H21 = H[n_x:n_x + n_v, :n_x]
        H22 = H[n_x:n_x + n_v, n_x:n_x + n_v]
        H31 = H[n_x + n_v:, :n_x]
        H32 = H[n_x + n_v:, n_x:n_x + n_v]
        P = H[n_x + n_v:, n_x + n_v:]
        E = 0.5 * (H11 + P / self.alpha_bar**2 + self.Y1 - self.Y1.T)
        lam = 0.5 * torch.diagonal(H22)
        A = torch.linalg.solve(E, H31)
        B1 = torch.linalg.solve(E, H32)
        B2 = torch.linalg.solve(E, self.B2)
        bx = torch.linalg.solve(E, self.bx.unsqueeze(-1)).squeeze(-1)
        C1 = -H21 / lam[:, None]
        D11 = -torch.tril(H22, -1) / lam[:, None]
        D12 = self.D12 / lam[:, None]
        return ExplicitREN(A=A, B1=B1, B2=B2, C1=C1, D11=D11, D12=D12, C2=self.C2, D21=self.D21, D22=D22,
                           bx=bx, bv=self.bv, by=self.by, E=E, P=P, Lambda=lam, H=H)

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.n_x, dtype=self.X.dtype, device=self.X.device)

    @staticmethod
    def detach_state(state: torch.Tensor) -> torch.Tensor:
        return state.detach()

    def step(self, m: ExplicitREN, x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``x`` (batch, n_x), ``u`` (batch, n_u) → ``(y, x⁺)``."""
        pre = x @ m.C1.T + u @ m.D12.T + m.bv
        if self.equilibrium_backward == "implicit":
            w = equilibrium_layer_fast(pre, m.D11, self.activation)
        else:
            w = equilibrium_layer(pre, m.D11, ACTIVATIONS[self.activation])
        y = x @ m.C2.T + w @ m.D21.T + u @ m.D22.T + m.by
        x_next = x @ m.A.T + w @ m.B1.T + u @ m.B2.T + m.bx
        return y, x_next

    def forward(self, u: torch.Tensor, state: torch.Tensor | None = None,
                return_states: bool = False):
        """``u`` (batch, steps, n_u) from ``state`` (batch, n_x; zeros if None) →
        ``(y (batch, steps, n_y), final state)``; with ``return_states`` also the states
        (batch, steps + 1, n_x)."""
        self._check_input(u, state)
        m = self.explicit()
        x = self.initial_state(u.shape[0]) if state is None else state
        ys, xs = [], [x]
        for k in range(u.shape[1]):
            y, x = self.step(m, x, u[:, k])
            ys.append(y)
            if return_states:
                xs.append(x)
        out = (torch.stack(ys, dim=1), x)
        return (*out, torch.stack(xs, dim=1)) if return_states else out

    def _check_input(self, u, state) -> None:
        """``u`` must be ``(batch, steps ≥ 1, n_u)`` and ``state`` ``(batch, n_x)``, both in the parameters'
        dtype and on their device (a mismatch was a matrix-product error inside the first step)."""
        p = self.X
        if not isinstance(u, torch.Tensor) or u.ndim != 3 or u.shape[1] < 1 or u.shape[2] != self.n_u:
            raise InputError(f"u must be a tensor (batch, steps >= 1, n_u = {self.n_u}), got {describe(u)}")
        if u.dtype != p.dtype or u.device != p.device:
            raise InputError(f"u must be {str(p.dtype).removeprefix('torch.')} on {p.device} like the REN's "
                             f"parameters, got {describe(u)}")
        if state is not None and (not isinstance(state, torch.Tensor) or tuple(state.shape) != (u.shape[0], self.n_x)
                                  or state.dtype != p.dtype or state.device != p.device):
            raise InputError(f"state must be ({u.shape[0]}, n_x = {self.n_x}) like u's batch and the parameters, "
                             f"got {describe(state)}")

    def lipschitz_bound(self) -> float | None:
        """The guaranteed bound on ``‖Δy‖_ℓ₂/‖Δu‖_ℓ₂`` (None: only contraction is guaranteed)."""
        return None


class ContractingREN(_RENBase):
    """Contracting REN: ``H = XᵀX + εI`` and a free ``D₂₂`` (n_y, n_u).

    Every parameter value gives ``‖Δx⁺‖²_P̄ ≤ ᾱ²‖Δx‖²_P̄`` (module docstring). Free parameters:
    ``X (2n_x+n_v)², Y₁, B₂, C₂, D₁₂, D₂₁, D₂₂, b_x, b_v, b_y``.
    """

    def __init__(self, n_u: int, n_x: int, n_v: int, n_y: int, **kw):
        super().__init__(n_u, n_x, n_v, n_y, **kw)
        self.D22 = nn.Parameter(torch.zeros(n_y, n_u, dtype=self.X.dtype, device=self.X.device))

    def _h_and_d22(self):
        n = self.X.shape[0]
        H = self.X.T @ self.X + self.eps * torch.eye(n, dtype=self.X.dtype, device=self.X.device)
        return H, self.D22


class LipschitzREN(_RENBase):
    """REN with incremental ℓ₂ gain ``≤ γ`` (Lipschitz bound) from equal initial states; also contracting.

    Free parameters: those of :class:`ContractingREN` without ``D₂₂``, plus ``X₃, Y₃`` (n_min, n_min)
    and ``Z₃`` (|n_y − n_u|, n_min) with ``n_min = min(n_u, n_y)``. ``ᾱ`` is fixed to 1.
    """

    def __init__(self, n_u: int, n_x: int, n_v: int, n_y: int, *, gamma: float, **kw):
        gamma = require_number("gamma", gamma)
        kw["alpha_bar"] = 1.0
        super().__init__(n_u, n_x, n_v, n_y, **kw)
        self.gamma = gamma
        n_min, n_diff = min(n_u, n_y), abs(n_y - n_u)
        self.X3 = nn.Parameter(_glorot(n_min, n_min).to(self.X.dtype))
        self.Y3 = nn.Parameter(_glorot(n_min, n_min).to(self.X.dtype))
        self.Z3 = nn.Parameter(_glorot(n_diff, n_min).to(self.X.dtype))

    def feedthrough(self) -> torch.Tensor:
        """``D₂₂ = γN`` with ``‖N‖₂ < 1`` (Cayley-type map of ``X₃, Y₃, Z₃``), shape (n_y, n_u)."""
        n_min = self.X3.shape[0]
        eye = torch.eye(n_min, dtype=self.X.dtype, device=self.X.device)
        M = self.X3.T @ self.X3 + self.Y3 - self.Y3.T + self.Z3.T @ self.Z3 + self.eps * eye
        if self.n_y >= self.n_u:
            inv = torch.linalg.inv(eye + M)
            N = torch.cat([(eye - M) @ inv, -2.0 * self.Z3 @ inv], dim=0)
        else:
            inv = torch.linalg.inv(eye + M)
            N = torch.cat([inv @ (eye - M), -2.0 * inv @ self.Z3.T], dim=1)
        return self.gamma * N

    def _h_and_d22(self):
        g = self.gamma
        n = self.X.shape[0]
        D22 = self.feedthrough()
        C2_imp = -(D22.T @ self.C2) / g
        D21_imp = -(D22.T @ self.D21) / g - self.D12.T
        R_tilde = g * torch.eye(self.n_u, dtype=D22.dtype, device=D22.device) - D22.T @ D22 / g
        right = torch.cat([C2_imp, D21_imp, self.B2.T], dim=1)  # (n_u, 2n_x + n_v)
        zeros = torch.zeros(self.n_y, self.n_x, dtype=D22.dtype, device=D22.device)
        out = torch.cat([self.C2, self.D21, zeros], dim=1)  # (n_y, 2n_x + n_v)
        H = (self.X.T @ self.X + self.eps * torch.eye(n, dtype=D22.dtype, device=D22.device)
             + right.T @ torch.linalg.solve(R_tilde, right) + out.T @ out / g)
        return H, D22

    def lipschitz_bound(self) -> float:
        return self.gamma


def contraction_lmi(m: ExplicitREN, alpha_bar: float = 1.0) -> torch.Tensor:
    """Rebuild the contraction LMI matrix from the *explicit* model and its certificate
    (independent of how ``H`` was built)::

        [[E + Eᵀ − P/ᾱ², −C₁ᵢᵀ, Fᵀ], [−C₁ᵢ, 2Λ − D₁₁ᵢ − D₁₁ᵢᵀ, B₁ᵢᵀ], [F, B₁ᵢ, P]]

    with ``F = EA``, ``B₁ᵢ = EB₁``, ``C₁ᵢ = ΛC₁``, ``D₁₁ᵢ = ΛD₁₁``.
    """
    L = torch.diag(m.Lambda)
    F, B1i = m.E @ m.A, m.E @ m.B1
    C1i, D11i = L @ m.C1, L @ m.D11
    W = 2 * L - D11i - D11i.T
    return torch.cat([
        torch.cat([m.E + m.E.T - m.P / alpha_bar**2, -C1i.T, F.T], dim=1),
        torch.cat([-C1i, W, B1i.T], dim=1),
        torch.cat([F, B1i, m.P], dim=1),
    ], dim=0)


def lipschitz_lmi(m: ExplicitREN, gamma: float) -> torch.Tensor:
    """The robust (Lipschitz ``γ``) LMI rebuilt from the explicit model: the contraction LMI minus
    ``[C₂ᵢ D₂₁ᵢ B₂ᵢᵀ]ᵀ R̃⁻¹ [·]`` and ``(1/γ)[C₂ D₂₁ 0]ᵀ[·]``. Positive definite ⟺ the certificate holds."""
    L = torch.diag(m.Lambda)
    n_y, n_x = m.C2.shape
    n_u = m.D22.shape[1]
    C2_imp = -(m.D22.T @ m.C2) / gamma
    D21_imp = -(m.D22.T @ m.D21) / gamma - (L @ m.D12).T
    R_tilde = gamma * torch.eye(n_u, dtype=m.A.dtype, device=m.A.device) - m.D22.T @ m.D22 / gamma
    right = torch.cat([C2_imp, D21_imp, (m.E @ m.B2).T], dim=1)
    out = torch.cat([m.C2, m.D21, torch.zeros(n_y, n_x, dtype=m.A.dtype, device=m.A.device)], dim=1)
    return contraction_lmi(m) - right.T @ torch.linalg.solve(R_tilde, right) - out.T @ out / gamma
