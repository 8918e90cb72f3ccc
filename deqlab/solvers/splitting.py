"""Operator-splitting solvers for monotone DEQs (Winston & Kolter, NeurIPS 2020, Sec. 4; seed 003).

The equilibrium ``z = σ(W z + c)`` with ``c = U x + b`` (shape ``(batch, n)``) and ``σ = prox_f`` is
the zero of ``F + ∂f`` with ``F(z) = (I − W) z − c``. Each method below takes the structure
``(W, c, σ)`` rather than a black-box map, and a step ``α > 0``:

* forward-backward (FB): ``z⁺ = prox_{αf}((1 − α) z + α (W z + c))``; converges for
  ``α < 2m/‖I − W‖₂²`` where ``m = λ_min(sym(I − W))`` (for ``α = 1`` it is plain fixed-point
  iteration of the layer).
* Peaceman–Rachford (PR), with the resolvent ``V = (I + α(I − W))⁻¹``::

      u½ = 2z − u,   z½ = V(u½ + α c),   u⁺ = 2z½ − u½,   z⁺ = prox_{αf}(u⁺);

  converges for every ``α > 0`` when ``I − W ⪰ mI``, ``m > 0``.
* Douglas–Rachford (DR): the same half steps with the averaged update ``u⁺ = u + z½ − z``;
  converges for every ``α > 0``.

The resolvent ``V = (I + α(I − W))⁻¹`` is prepared once per call and reused for every iteration
and every sample (:class:`Resolvent`): as an explicit inverse when ``n ≤ 8·batch`` (then each
iteration is one ``(batch × n)(n × n)`` product, which runs at GEMM speed, where ``lu_solve`` on
``batch`` right-hand sides took 1.8× as long), else as LU factors (``torch.linalg.lu_factor``; the
matrix is not symmetric when ``B ≠ Bᵀ``), whose set-up costs ``(2/3)n³`` instead of ``2n³`` flops.
The extra ``(4/3)n³`` of the inverse pays for itself after a number of iterations that grows
with ``n/batch``; measured (batch 64, 1 thread, whole PR solves to rtol 1e-4, inverse / LU time):
0.95 at ``n = 256`` with 10 iterations, 0.72 with 25; 1.22 at ``n = 512`` with 10 iterations, 0.83
with 25 (monDEQs with the small margin ``m = 0.05`` of ``deqlab mondeq`` need 25 or more).

``prox_{αf}`` is ``σ`` only for ReLU (an indicator function); for tanh and softplus it is computed by
:meth:`deqlab.models.mondeq.ProxNonlinearity.prox`.

Stopping rule: the shared one of :mod:`deqlab.solvers.result`, on the layer map ``f(z) = σ(Wz + c)``
(``‖f(z) − z‖ ≤ atol + rtol‖f(z)‖``), so iteration counts compare directly with Anderson and
fixed-point iteration. Winston & Kolter's code stops on ``‖z⁺ − z‖/(1e−6 + ‖z⁺‖)`` instead.
Forward-backward checks its iterate ``z`` (the product ``W z`` is its own step). PR and DR check
the resolvent output ``z½`` and get ``W z½`` for free from the resolvent equation
``(I + α(I − W)) z½ = u½ + αc``: ``W z½ + c = ((1 + α) z½ − u½)/α``, exact up to the round-off of
the solve (``≈ eps · cond(I + α(I − W))``), so each iteration costs one product with ``V`` and no
product with ``W``. The loop carries the reflected iterate ``w = u½ = 2z − u`` (:func:`_rachford`):
for ReLU a PR iteration is then the product, ``W z½ + c``, ``σ``, the stopping rule and
``|w − 2z½|``; its iterates equal the textbook loop's bit for bit. ``n_fevals`` counts
evaluations of ``f``; ``extras`` holds ``alpha``, ``factorizations`` and ``resolvent``
(``"inverse"`` or ``"lu"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from deqlab.errors import InputError
from deqlab.solvers.prox import NONLINEARITIES, ProxNonlinearity, get_nonlinearity
from deqlab.solvers.result import Monitor, SolverResult, describe


def _nl(nonlinearity: str | ProxNonlinearity) -> ProxNonlinearity:
    return get_nonlinearity(nonlinearity) if isinstance(nonlinearity, str) else nonlinearity


def _check(W: torch.Tensor, c: torch.Tensor, alpha: float, z0: torch.Tensor | None = None) -> None:
    if not 0 < alpha < math.inf:
        raise InputError(f"alpha must be a finite number > 0, got {alpha}")
    n = W.shape[0]
    if W.shape != (n, n) or c.ndim != 2 or c.shape[1] != n:
        raise InputError(f"W must be (n, n) and c (batch, n); got W {tuple(W.shape)}, c {tuple(c.shape)}")
    if z0 is not None and z0.shape != c.shape:
        raise InputError(f"z0 must have the shape of c, {tuple(c.shape)}; got {tuple(z0.shape)}")
    given = (W, c) if z0 is None else (W, c, z0)
    if len({t.dtype for t in given}) != 1 or len({t.device for t in given}) != 1:
        raise InputError("W, c and z0 must share one dtype and device, got " + ", ".join(map(describe, given)))


def layer_map(W: torch.Tensor, c: torch.Tensor, nonlinearity: str | ProxNonlinearity) -> Callable:
    """The layer ``f(z) = σ(W z + c)`` as a batched map, for the black-box solvers."""
    nl = _nl(nonlinearity)
    return lambda z: nl.sigma(z @ W.T + c)


RESOLVENT_METHODS = ("auto", "inverse", "lu")


def resolvent_method(n: int, batch: int, method: str = "auto") -> str:
    """``"inverse"`` or ``"lu"`` for ``method="auto"``: the inverse when ``n ≤ 8·batch`` (module docstring)."""
    if method not in RESOLVENT_METHODS:
        raise InputError(f"unknown resolvent method {method!r}; choose one of: {', '.join(RESOLVENT_METHODS)}")
    if method == "auto":
        return "inverse" if n <= 8 * batch else "lu"
    return method


class Resolvent:
    """``v ↦ (I + α(I − W))⁻¹ v`` for a batch ``v (batch, n)``, from one explicit inverse
    (``method="inverse"``) or one LU factorisation (``method="lu"``), computed once."""

    def __init__(self, W: torch.Tensor, alpha: float, method: str = "lu"):
        n = W.shape[0]
        eye = torch.eye(n, dtype=W.dtype, device=W.device)
        self.method = resolvent_method(n, 1, method)
        A = eye + alpha * (eye - W)
        if self.method == "inverse":
            inverse, info = torch.linalg.inv_ex(A)
            self.inverse_t = inverse.T.contiguous()   # v @ Vᵀ = (V vᵀ)ᵀ, row-major GEMM
        else:
            self.LU, self.pivots, info = torch.linalg.lu_factor_ex(A)
        if int(info) != 0:
            # never for a monotone W (sym(I − W) ⪰ mI makes I + α(I − W) positive definite in its symmetric part)
            raise InputError(f"I + alpha (I - W) is singular (alpha = {alpha:g}): W is not monotone, "
                             "the splitting methods need sym(I - W) positive definite")

    def __call__(self, v: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        """``V v`` per row of ``v``; with ``shift`` (``(batch, n)``, already multiplied by ``V``),
        ``V v + shift`` (for the inverse: one fused ``addmm``)."""
        if self.method == "inverse":
            return v @ self.inverse_t if shift is None else torch.addmm(shift, v, self.inverse_t)
        out = torch.linalg.lu_solve(self.LU, self.pivots, v.T).T
        return out if shift is None else out + shift

    def transposed(self, v: torch.Tensor) -> torch.Tensor:
        """``v ↦ (I + α(I − Wᵀ))⁻¹ v`` from the same factors."""
        if self.method == "inverse":
            return v @ self.inverse_t.T
        return torch.linalg.lu_solve(self.LU, self.pivots, v.T, adjoint=True).T


@torch.no_grad()
def forward_backward(
    W: torch.Tensor,
    c: torch.Tensor,
    z0: torch.Tensor,
    *,
    nonlinearity: str | ProxNonlinearity = "relu",
    alpha: float = 0.5,
    atol: float = 1e-8,
    rtol: float = 0.0,
    max_iter: int = 500,
) -> SolverResult:
    """Forward-backward splitting ``z⁺ = prox_{αf}((1 − α) z + α (W z + c))``.

    Args:
        W: ``(n, n)``; c: ``U x + b``, ``(batch, n)``; z0: start ``(batch, n)``.
        nonlinearity: ``σ = prox_f`` (name or :class:`ProxNonlinearity`).
        alpha: step ``α > 0``; convergence is guaranteed for ``α < 2m/‖I − W‖₂²``
            (:func:`deqlab.models.mondeq.forward_backward_bound`; not computed here: it needs an SVD).
    """
    _check(W, c, alpha, z0)
    nl = _nl(nonlinearity)
    monitor = Monitor(z0, atol=atol, rtol=rtol, max_iter=max_iter, solver="forward_backward")
    z = z0
    steps = 0
    for steps in range(1, max_iter + 1):
        v = z @ W.T + c
        monitor.n_fevals += 1
        monitor.observe(z, nl.sigma(v))
        if monitor.done or monitor.hopeless:
            break
        z = nl.prox((1 - alpha) * z + alpha * v, alpha)
    return monitor.result(steps, alpha=alpha, factorizations=0)


def _reflection(nl: ProxNonlinearity, alpha: float) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``u ↦ 2 prox_{αf}(u) − u`` in one elementwise pass where ``σ`` allows it exactly, else ``None``.

    ReLU: ``2 max(u, 0) − u = |u|``; identity: ``2u − u = u``. Both equal the rounded
    ``fl(2 prox(u) − u)`` bit for bit (``2u`` is exact and ``2u − u = u``, ``0 − u = −u`` are exact),
    so the iterates do not change, only the number of passes over ``(batch, n)``.
    """
    if nl.alpha_free and nl.sigma is torch.relu:
        return torch.abs
    if nl.alpha_free and nl is NONLINEARITIES["identity"]:
        return lambda u: u
    return None


def _rachford(W, c, z0, *, nonlinearity, alpha, atol, rtol, max_iter, averaged: bool, name: str,
              resolvent: str = "auto") -> SolverResult:
    """PR (``averaged=False``) or DR, written in terms of ``w = u½ = 2z − u`` (the reflected iterate).

    PR: ``z½ = V w + V(αc)``, ``u⁺ = 2z½ − w``, ``w⁺ = 2 prox(u⁺) − u⁺``: with ``-u⁺ = w − 2z½``
    (one pass, ``2z½`` exact, so ``fl(w − 2z½) = −fl(2z½ − w)``) and, for ReLU, ``w⁺ = |u⁺| = |w − 2z½|``
    (:func:`_reflection`), an iteration is the product, the layer pre-activation, ``σ``, the stopping
    rule and two passes. DR keeps ``u`` and ``z = prox(u)``: ``w = 2z − u`` (ReLU: ``|u|``),
    ``u⁺ = (z½ − z) + u``. Every rounded iterate equals the textbook loop's, bit for bit. The layer
    pre-activation ``W z½ + c = ((1 + α) z½ − w)/α = w + ((1 + α)/α)(z½ − w)`` is one ``torch.lerp``
    (one pass instead of two); it rounds differently from ``(1 + α)/α · z½ − w/α``, which moves the
    residual trace by round-off only (≤ 3e-15 of each sample's largest residual on 1321 solves of
    the splitting tests' kind, with the same iteration counts and the same returned points).
    """
    _check(W, c, alpha, z0)
    nl = _nl(nonlinearity)
    monitor = Monitor(z0, atol=atol, rtol=rtol, max_iter=max_iter, solver=name)
    if W.dtype not in (torch.float32, torch.float64):   # (torch's "linalg.inv: Low precision dtypes not supported")
        raise InputError(f"{name} solves its resolvent in float32 or float64; W is {describe(W)}")
    V = Resolvent(W, alpha, resolvent_method(W.shape[0], c.shape[0], resolvent))
    shift = V(alpha * c)                            # V(αc), once: z½ = V u½ + V(αc)
    reflect = _reflection(nl, alpha)

    def reflected(u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``u½ = 2z − u`` for ``z = prox(u)``: one pass where :func:`_reflection` has the form."""
        return reflect(u) if reflect is not None else z.mul(2).sub_(u)

    u = z0.clone()
    z = nl.prox(u, alpha)
    w = reflected(u, z)
    # σ applied in place on the pre-activation, which nothing else reads (ReLU), and f(z½) − z½ written
    # into one buffer: fewer allocations per step (each ~1.8 µs at (64, 256), against a ~270 µs floor).
    activate = torch.relu_ if nl.sigma is torch.relu else nl.sigma
    difference = torch.empty_like(u)
    steps = 0
    for steps in range(1, max_iter + 1):
        # Beyond the product, an iteration is a handful of elementwise passes over (batch, n),
        # which is what separates it from its floor: each form below is the one with fewest passes.
        z_half = V(w, shift)
        # W z½ + c = ((1 + α) z½ − u½)/α from the resolvent equation (module docstring): no product with W.
        f_half = activate(torch.lerp(w, z_half, (1 + alpha) / alpha))    # σ(w + (1 + α)/α · (z½ − w))
        monitor.n_fevals += 1
        # (z½ is never modified in place: the Monitor holds it; the difference buffer it only reads)
        monitor.observe(z_half, f_half, difference=torch.sub(f_half, z_half, out=difference))
        if monitor.done or monitor.hopeless:
            break
        if averaged:
            # (never in place on u: prox may return its argument, so z can be u)
            u = torch.sub(z_half, z).add_(u)
            z = nl.prox(u, alpha)
            w = reflected(u, z)
        else:
            if reflect is torch.abs:
                w = w.sub_(z_half, alpha=2).abs_()                                    # |u⁺| = |w − 2z½|
            else:
                u = torch.sub(w, z_half, alpha=2).neg_()                              # u⁺ = −(w − 2z½)
                z = nl.prox(u, alpha)
                w = reflected(u, z)
    return monitor.result(steps, alpha=alpha, factorizations=1, resolvent=V.method)


@torch.no_grad()
def peaceman_rachford(
    W: torch.Tensor,
    c: torch.Tensor,
    z0: torch.Tensor,
    *,
    nonlinearity: str | ProxNonlinearity = "relu",
    alpha: float = 1.0,
    atol: float = 1e-8,
    rtol: float = 0.0,
    max_iter: int = 500,
    resolvent: str = "auto",
) -> SolverResult:
    """Peaceman–Rachford splitting; ``u⁰ = z0``, ``z⁰ = prox_{αf}(u⁰)`` (arguments as :func:`forward_backward`;
    ``resolvent``: ``"auto"``, ``"inverse"`` or ``"lu"``, see :class:`Resolvent`)."""
    return _rachford(W, c, z0, nonlinearity=nonlinearity, alpha=alpha, atol=atol, rtol=rtol, max_iter=max_iter,
                     averaged=False, name="peaceman_rachford", resolvent=resolvent)


@torch.no_grad()
def douglas_rachford(
    W: torch.Tensor,
    c: torch.Tensor,
    z0: torch.Tensor,
    *,
    nonlinearity: str | ProxNonlinearity = "relu",
    alpha: float = 1.0,
    atol: float = 1e-8,
    rtol: float = 0.0,
    max_iter: int = 500,
    resolvent: str = "auto",
) -> SolverResult:
    """Douglas–Rachford splitting ``u⁺ = u + z½ − z`` (arguments as :func:`forward_backward`)."""
    return _rachford(W, c, z0, nonlinearity=nonlinearity, alpha=alpha, atol=atol, rtol=rtol, max_iter=max_iter,
                     averaged=True, name="douglas_rachford", resolvent=resolvent)


@torch.no_grad()
def pitfall_forward_backward_sigma(
    W: torch.Tensor,
    c: torch.Tensor,
    z0: torch.Tensor,
    *,
    nonlinearity: str | ProxNonlinearity = "tanh",
    alpha: float = 0.5,
    iterations: int = 2000,
) -> torch.Tensor:
    """PITFALL, do not use: ``z⁺ = σ((1 − α) z + α (W z + c))`` with ``σ`` in place of ``prox_{αf}``.

    The update as often written (it is right for ReLU, whose ``prox_{αf} = σ`` for all ``α``). For
    tanh or softplus and ``α ≠ 1`` its fixed point solves ``σ⁻¹(z) = (1 − α) z + α (W z + c)``, not
    the layer's ``σ⁻¹(z) = W z + c``: it converges to the wrong point (``tests/test_splitting.py``).
    Returns the last iterate ``(batch, n)``.
    """
    _check(W, c, alpha)
    nl = _nl(nonlinearity)
    z = z0
    for _ in range(iterations):
        z = nl.sigma((1 - alpha) * z + alpha * (z @ W.T + c))
    return z


@torch.no_grad()
def peaceman_rachford_backward(
    W: torch.Tensor,
    d: torch.Tensor,
    v: torch.Tensor,
    *,
    alpha: float = 1.0,
    atol: float = 1e-12,
    rtol: float = 0.0,
    max_iter: int = 1000,
    resolvent: Resolvent | None = None,
) -> SolverResult:
    """The implicit backward ``g = (I − Wᵀ D)⁻¹ v`` by Peaceman–Rachford (Winston & Kolter 2020, Sec. 4).

    With ``D = diag(d)``, ``d = σ'(W z* + c) ∈ [0, 1]`` (``(batch, n)``) and ``ũ = D g``, the equation
    ``g − Wᵀ D g = v`` becomes ``0 ∈ (I − Wᵀ) ũ − v + ∂f̃(ũ)`` with the convex
    ``f̃(ũ) = ½ ũᵀ (D⁻¹ − I) ũ`` (``ũᵢ = 0`` where ``dᵢ = 0``): again a strongly monotone plus a
    proximable operator. ``prox_{αf̃}(u)ᵢ = dᵢ uᵢ / (dᵢ + α(1 − dᵢ))`` and the resolvent of
    ``I − Wᵀ`` is the transpose of the forward one, so the same LU factors serve (pass the forward's
    ``resolvent`` to reuse them). Then ``g = v + Wᵀ ũ``. The stopping rule is the shared one on the
    linear map ``g ↦ v + Wᵀ(d ⊙ g)``. Returns a :class:`SolverResult` whose ``z`` is ``g`` ``(batch, n)``.
    """
    _check(W, v, alpha)
    monitor = Monitor(v, atol=atol, rtol=rtol, max_iter=max_iter, solver="peaceman_rachford_backward")
    res = resolvent or Resolvent(W, alpha)
    shrink = d / (d + alpha * (1 - d))
    u = torch.zeros_like(v)
    ut = torch.zeros_like(v)
    steps = 0
    for steps in range(1, max_iter + 1):
        g = v + ut @ W
        monitor.n_fevals += 1
        monitor.observe(g, v + (d * g) @ W)
        if monitor.done or monitor.hopeless:
            break
        u_half = 2 * ut - u
        ut_half = res.transposed(u_half + alpha * v)
        u = 2 * ut_half - u_half
        ut = shrink * u
    return monitor.result(steps, alpha=alpha, factorizations=0 if resolvent is not None else 1)


SplittingSolver = Callable[..., SolverResult]

#: Config name → splitting solver ``(W, c, z0, *, nonlinearity, alpha, atol, rtol, max_iter)``.
SPLITTING_SOLVERS: dict[str, SplittingSolver] = {
    "forward_backward": forward_backward,
    "peaceman_rachford": peaceman_rachford,
    "douglas_rachford": douglas_rachford,
}


def get_splitting_solver(name: str) -> SplittingSolver:
    try:
        return SPLITTING_SOLVERS[name]
    except KeyError:
        raise InputError(f"unknown splitting solver {name!r}; choose one of: {', '.join(SPLITTING_SOLVERS)}") from None
