"""Monotone operator equilibrium networks (monDEQ; Winston & Kolter, NeurIPS 2020; seed 003).

The layer is ``z = σ(W z + U x + b)`` with the weight parametrised as

    W = (1 − m) I − AᵀA + B − Bᵀ,        A ∈ R^{k×n}, B ∈ R^{n×n}, m > 0,

so that ``sym(I − W) = m I + AᵀA ⪰ m I`` (the skew part ``B − Bᵀ`` drops out of the symmetric
part). Then ``F(z) = (I − W) z − (U x + b)`` is ``m``-strongly monotone and Lipschitz with constant
``L = ‖I − W‖₂``, and with ``σ = prox_f`` for a closed proper convex ``f`` the equilibrium is the
unique zero of ``F + ∂f`` (Winston & Kolter 2020, Theorem 1): it exists and is unique for every
input.

Nonlinearities as proximal operators (``prox_{αf}(v) = argmin_z ½‖v − z‖² + α f(z)``, separable):

* identity: ``f ≡ 0`` (the linear monDEQ, ``(I − W) z* = U x + b``); ``prox_{αf}`` = identity.
* ReLU: ``f`` = indicator of ``{z ≥ 0}``; ``prox_{αf} = ReLU`` for every ``α > 0``.
* tanh: ``f(z) = ½[(1+z)log(1+z) + (1−z)log(1−z)] − z²/2`` on ``[−1, 1]`` (+∞ outside);
  ``f'(z) = artanh z − z``, ``f'' = z²/(1−z²) ≥ 0``.
* softplus ``log(1 + eᵛ)``: ``f(z) = Li₂(e^{−z})`` on ``[0, ∞)`` (+∞ below);
  ``f'(z) = log(1 − e^{−z})``, ``f'' = 1/(eᶻ − 1) > 0``.

In each case ``σ = prox_f = prox_{1·f}``. The splitting methods need ``prox_{αf}`` for a step
``α``: only for ReLU is it ``σ`` itself. For an invertible ``σ`` the optimality condition
``v = z + α(σ⁻¹(z) − z)`` with ``z = σ(t)`` becomes the scalar equation

    (1 − α) σ(t) + α t = v,         g'(t) = (1 − α) σ'(t) + α ∈ [min(1, α), max(1, α)],

(as ``σ' ∈ (0, 1]``), which is strictly increasing and bi-Lipschitz: solved here element-wise by
safeguarded Newton, then ``prox_{αf}(v) = σ(t)``. Using ``σ`` in place of ``prox_{αf}`` for tanh
or softplus with ``α ≠ 1`` converges to a *different* point (a named pitfall, tested to be wrong).

Shapes: ``x`` is ``(batch, n_x)``, ``z`` is ``(batch, n_z)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deqlab.errors import InputError, require_count, require_number, require_real_dtype
from deqlab.implicit.mondeq import implicit_equilibrium
from deqlab.solvers.prox import NONLINEARITIES, ProxNonlinearity, get_nonlinearity  # noqa: F401  (re-exported)
from deqlab.solvers.result import all_finite, describe

#: Newton iterations of the element-wise prox equation (it converges in a handful; this is a cap).


def mondeq_weight(A: torch.Tensor, B: torch.Tensor, m: float) -> torch.Tensor:
    """``W = (1 − m) I − AᵀA + B − Bᵀ``; ``A`` is ``(k, n)``, ``B`` is ``(n, n)``, returns ``(n, n)``.

    Guarantees ``λ_min((I − W) + (I − W)ᵀ)/2 = m + λ_min(AᵀA) ≥ m``.
    """
    if not 0 < m < math.inf:   # (m = inf made (1 − m)·I NaN off the diagonal, 0·inf: a NaN weight without a word)
        raise InputError(f"m must be a finite number > 0, got {m}")
    n = B.shape[0]
    if B.shape != (n, n) or A.ndim != 2 or A.shape[1] != n:
        raise InputError(f"A must be (k, n) and B (n, n); got A {tuple(A.shape)}, B {tuple(B.shape)}")
    eye = torch.eye(n, dtype=B.dtype, device=B.device)
    return (1 - m) * eye - A.T @ A + B - B.T


def _square(W) -> torch.Tensor:
    """``W`` if it is a finite real square matrix (a tensor); else :class:`InputError` (NaN reached
    ``eigvalsh`` as torch's LinAlgError 'failed to converge', a non-square one a broadcasting RuntimeError)."""
    if not isinstance(W, torch.Tensor) or W.ndim != 2 or W.shape[0] != W.shape[1] or W.is_complex():
        raise InputError(f"W must be a real square matrix (n, n), got {describe(W)}")
    if not all_finite(W):
        raise InputError("W contains NaN or infinite values")
    return W


def monotonicity(W: torch.Tensor) -> float:
    """``λ_min(sym(I − W))``: the largest ``m`` with ``I − W ⪰ m I`` (negative: not monotone)."""
    W = _square(W)
    eye = torch.eye(W.shape[0], dtype=torch.float64, device=W.device)
    M = eye - W.detach().to(torch.float64)
    return float(torch.linalg.eigvalsh((M + M.T) / 2).min())


def lipschitz(W: torch.Tensor) -> float:
    """``L = ‖I − W‖₂`` (largest singular value), the Lipschitz constant of ``F``."""
    W = _square(W)
    eye = torch.eye(W.shape[0], dtype=torch.float64, device=W.device)
    return float(torch.linalg.matrix_norm(eye - W.detach().to(torch.float64), ord=2))


def forward_backward_bound(W: torch.Tensor, m: float | None = None) -> float:
    """The forward-backward step bound ``2m/‖I − W‖₂²`` (``m`` defaults to ``λ_min(sym(I − W))``).

    Forward-backward converges for ``0 < α < 2m/L²`` (Winston & Kolter 2020, Sec. 4); with
    ``m ≤ 0`` there is no such ``α`` and the bound is 0; with ``W = I`` (``L = 0``) and ``m > 0`` every ``α`` is
    one, and the bound is ``inf``.
    """
    # (a given m <= 0 returned the bound 0 without a word)
    m = monotonicity(W) if m is None else require_number("m", m)
    L = lipschitz(W)
    if L == 0:   # (a ZeroDivisionError)
        return math.inf if m > 0 else 0.0
    return max(0.0, 2.0 * m / L ** 2)


# --- the model ------------------------------------------------------------------------------------

class _ProxLayerDEQ(nn.Module):
    """What monotone and unconstrained layers share: ``z = σ(W z + U x + b)`` with a readout, solved
    by :func:`deqlab.implicit.mondeq.implicit_equilibrium`. Subclasses define ``weight()``
    and own ``nl`` (the prox nonlinearity), ``U`` (``nn.Linear(n_x, n_z)``) and ``W_y``."""

    def weight(self) -> torch.Tensor:
        raise NotImplementedError

    def injection(self, x: torch.Tensor) -> torch.Tensor:
        """``U x + b``: ``(batch, n_x) -> (batch, n_z)``. ``x`` must be a finite ``(batch, n_x)`` tensor in the
        layer's dtype and on its device (else :class:`InputError`, not torch's "mat1 and mat2" message)."""
        weight = self.U.weight
        if (not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != weight.shape[1]
                or x.dtype != weight.dtype or x.device != weight.device):
            raise InputError(f"x must be (batch, n_x = {weight.shape[1]}) {str(weight.dtype).removeprefix('torch.')} "
                             f"on {weight.device}, got {describe(x)}")
        if not all_finite(x):
            raise InputError("x contains NaN or infinite values")
        return self.U(x)

    def f(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One layer ``σ(W z + U x + b)``."""
        return self.nl.sigma(z @ self.weight().T + self.injection(x))

    def readout(self, z: torch.Tensor) -> torch.Tensor:
        return self.W_y(z)

    def forward(self, x: torch.Tensor, **solve_options) -> torch.Tensor:
        """The equilibrium ``z* (batch, n_z)``, differentiable by the implicit backward.

        ``solve_options`` go to :func:`deqlab.implicit.mondeq.solve_equilibrium` (``method``,
        ``alpha``, ``atol``, ...). The solver result is kept in ``self.last_result``.
        """

        z, self.last_result = implicit_equilibrium(self, x, **solve_options)
        return z


class MonDEQ(_ProxLayerDEQ):
    """``z = σ(W z + U x + b)``, ``W = (1 − m)I − AᵀA + B − Bᵀ``, readout ``ŷ = W_y z + b_y``.

    Args:
        n_z, n_x, n_y: hidden, input and output sizes.
        m: monotonicity margin ``m > 0``.
        nonlinearity: ``relu`` | ``tanh`` | ``softplus`` (see :data:`NONLINEARITIES`).
        init_scale: ``A`` and ``B`` entries ``U(−s/√n_z, s/√n_z)`` (``s = 1``: ``nn.Linear``'s init).
        dtype: parameter dtype.
    Parameters: ``A (n_z, n_z)``, ``B (n_z, n_z)``, ``U (n_z, n_x)``, ``b (n_z,)``, readout ``W_y``.
    """

    def __init__(self, n_z: int, n_x: int, n_y: int = 1, *, m: float = 0.05, nonlinearity: str = "relu",
                 init_scale: float = 1.0, dtype=torch.float64):
        super().__init__()
        n_z, n_x, n_y = (require_count(name, v) for name, v in (("n_z", n_z), ("n_x", n_x), ("n_y", n_y)))
        m = require_number("m", m)   # (m = inf made W's diagonal −inf)
        init_scale = require_number("init_scale", init_scale, inclusive=True)
        require_real_dtype(dtype)
        self.n_z, self.n_x, self.n_y, self.m = n_z, n_x, n_y, m
        self.nl = get_nonlinearity(nonlinearity)
        bound = init_scale / math.sqrt(n_z)
        self.A = nn.Parameter(torch.empty(n_z, n_z, dtype=dtype).uniform_(-bound, bound))
        self.B = nn.Parameter(torch.empty(n_z, n_z, dtype=dtype).uniform_(-bound, bound))
        self.U = nn.Linear(n_x, n_z, bias=True, dtype=dtype)
        self.W_y = nn.Linear(n_z, n_y, bias=True, dtype=dtype)

    def weight(self) -> torch.Tensor:
        """``W`` as a differentiable ``(n_z, n_z)`` tensor."""
        return mondeq_weight(self.A, self.B, self.m)

class UnconstrainedDEQ(_ProxLayerDEQ):
    """The same layer with a free ``W`` (no monotonicity): ``z = σ(W z + U x + b)``.

    ``init``: ``"default"`` (``nn.Linear``'s uniform init), ``"normal"`` (``nn.init.normal_``, the
    slides' failing case) or a given ``(n_z, n_z)`` tensor to start from (e.g. a monotone ``W``).
    """

    def __init__(self, n_z: int, n_x: int, n_y: int = 1, *, nonlinearity: str = "relu",
                 init: "str | torch.Tensor" = "default", dtype=torch.float64):
        super().__init__()
        self.n_z, self.n_x, self.n_y = int(n_z), int(n_x), int(n_y)
        self.nl = get_nonlinearity(nonlinearity)
        self.W = nn.Linear(n_z, n_z, bias=False, dtype=dtype)
        if isinstance(init, torch.Tensor):
            with torch.no_grad():
                self.W.weight.copy_(init)
        elif init == "normal":
            nn.init.normal_(self.W.weight)
        elif init != "default":
            raise InputError(f"unknown init {init!r}; choose default, normal or a tensor")
        self.U = nn.Linear(n_x, n_z, bias=True, dtype=dtype)
        self.W_y = nn.Linear(n_z, n_y, bias=True, dtype=dtype)

    def weight(self) -> torch.Tensor:
        return self.W.weight
