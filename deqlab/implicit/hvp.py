"""Matrix-free Hessian-vector products of a DEQ loss (GUIDE §5), for models too big for a dense ``H``.

With the Lagrangian ``𝓛(θ, h) = ℓ(θ, h) + λᵀ f(θ, h)`` (λ fixed, ``(I − J)ᵀλ = ∇ₕℓ``) the exact Hessian
is ``H = [I; Z]ᵀ ∇²𝓛 [I; Z]`` (seed 000 §5 extended to a loss with its own parameters), so ::

    t  = Z v = (I − J)⁻¹ (∂f/∂θ) v          one tangent solve (JVP of f for the right-hand side)
    (w_θ, w_h) = ∇²𝓛 · (v, t)               one forward-over-reverse product of 𝓛
    Hv = w_θ + (∂f/∂θ)ᵀ (I − J)⁻ᵀ w_h        one more adjoint solve and one VJP of f

No ``P×P`` or ``N×P`` object is formed; memory is ``O(P + batch·N²)``: one per-sample ``N×N``
factorisation (of ``I − W_z D`` on the structured path, factored in place, of ``I − J`` on the
autodiff path, where the iterative ``linear`` solvers use it only for the conditioning check), and it never
grows with the solver's iteration count.
``linear`` can also name a registered solver (``"anderson"`` …): the adjoint/tangent systems are then
solved as the linear fixed points ``λ = Jᵀλ + g``, ``t = J t + r`` by VJPs/JVPs only.

``θ`` is flattened as in :mod:`deqlab.implicit.params`.
"""

from __future__ import annotations

import torch

from deqlab.errors import InputError
from deqlab.implicit.conditioning import pivot_condition, require_invertible, require_well_conditioned
from deqlab.implicit.hessian import TIGHT, equilibrium
from deqlab.implicit.layer import SolveOptions, options_or, tanh_map
from deqlab.implicit.params import check_groups, check_problem, flatten, loss_at, unflatten
from deqlab.solver_options import SOLVER_OPTIONS
from deqlab.solvers.result import all_finite, describe


class DEQHessianOperator:
    """``v ↦ H v`` (and the gradient) of ``L(θ) = ½ Σ_s ‖W_y h*_s + b_y − y_s‖²`` at one ``θ``.

    Args:
        params: named parameters (:func:`deqlab.implicit.params.model_params`).
        groups: the groups forming ``θ``.
        x ``(B, d)``, y ``(B, n_y)``: inputs and targets.
        z_star: the fixed point ``(B, N)``; solved with ``opts`` when omitted.
        mode: ``"structured"`` (the tanh DEQ's products written out: two triangular solves with one
            per-sample LU of ``I − W_z D`` and a few ``B×N×N`` products per HVP) or ``"autodiff"``
            (any ``f``: ``torch.func`` JVP/VJP/forward-over-reverse of the Lagrangian, as above).
        linear: for ``mode="autodiff"``: ``"lu"`` (dense per-sample ``N×N`` LU of ``I − J``, factored
            once) or a registered solver name (linear fixed-point solves by products with ``J``; ``I − J`` is
            still factored once, at set-up, for the conditioning check that every implicit derivative passes).
        opts: forward solve options (and, for an iterative ``linear``, the linear solves' tolerances).
    """

    def __init__(self, params, groups, x, y, *, z_star=None, mode: str = "structured", linear: str = "lu",
                 opts: SolveOptions | None = None):
        if mode not in ("structured", "autodiff"):
            raise InputError(f"mode must be 'structured' or 'autodiff', got {mode!r}")
        if linear != "lu" and linear not in SOLVER_OPTIONS:
            raise InputError(f"linear must be 'lu' or a registered solver ({', '.join(SOLVER_OPTIONS)}), got {linear!r}")
        self.mode = mode
        self.groups = check_groups(groups)
        self.params = {k: v.detach() for k, v in params.items()}
        self.x, self.y = x.detach(), y.detach()
        check_problem(self.params, self.x, self.y, z_star)
        self.theta = flatten(self.params, self.groups)
        self.opts = options_or(opts, TIGHT)
        p = self.params
        self.h = equilibrium(p["W_z"], p["b_z"], p["U_z"], self.x, z_star, opts=self.opts)
        self.linear = linear
        self.n_hvp = 0
        if mode == "structured":  # one factorisation, of I − W D; never I − J
            self._setup_structured()
            return
        s1 = 1 - self.h**2
        J = s1[:, :, None] * p["W_z"]  # (B, N, N), J_s = D_s W_z
        # The conditioning check of every implicit derivative, for the iterative solves too: they stop on the
        # residual, so at cond(I − J) = 1e15 Broyden "converged" and returned an HVP 6% off, where the LU routes
        # refuse. (J is held densely anyway: one LU of it at set-up, kept only for linear="lu".)
        eye = torch.eye(self.h.shape[1], dtype=self.h.dtype, device=self.h.device)
        lu, pivots, info = torch.linalg.lu_factor_ex(eye - J)
        require_invertible(info, "I − J")
        require_well_conditioned(pivot_condition(lu), lu.dtype, "I − J")
        if linear == "lu":
            self._lu = (lu, pivots)
        else:
            del lu, pivots
            self.J = J  # the iterative linear solves apply J and Jᵀ
        g_h = torch.func.grad(self._loss, argnums=1)(self.theta, self.h)
        self.lam = self.solve_adjoint(g_h)

    # pure functions of (θ, h)
    def _f(self, theta, h):
        p = unflatten(theta, self.params, self.groups)
        return tanh_map(h, p["W_z"], p["b_z"], p["U_z"], self.x)

    def _loss(self, theta, h):
        return loss_at(unflatten(theta, self.params, self.groups), h, self.y)

    def _lagrangian(self, theta, h):
        return self._loss(theta, h) + (self.lam * self._f(theta, h)).sum()

    @property
    def size(self) -> int:
        return self.theta.numel()

    @property
    def device(self) -> torch.device:
        """Where ``θ`` lives: every product is computed there (``v`` must live there too)."""
        return self.theta.device

    def solve_adjoint(self, g: torch.Tensor) -> torch.Tensor:
        """``(I − J)⁻ᵀ g`` per sample; ``g`` ``(B, N)``."""
        if self.mode == "structured":  # λ = g + Wᵀμ, μ = Dλ = Mᵀ D g  (M = (I − W D)⁻¹)
            mu = torch.linalg.lu_solve(*self._luM, (self._s1 * g)[:, :, None], adjoint=True)[..., 0]
            return g + mu @ self.params["W_z"]
        if self.linear == "lu":
            return torch.linalg.lu_solve(*self._lu, g[:, :, None], adjoint=True)[..., 0]
        return self._iterate(lambda lam: torch.einsum("sij,si->sj", self.J, lam) + g, g)

    def solve_tangent(self, r: torch.Tensor) -> torch.Tensor:
        """``(I − J)⁻¹ r`` per sample; ``r`` ``(B, N)``."""
        if self.mode == "structured":  # t = r + D a, (I − W D) a = W r
            a = torch.linalg.lu_solve(*self._luM, (r @ self.params["W_z"].T)[:, :, None])[..., 0]
            return r + self._s1 * a
        if self.linear == "lu":
            return torch.linalg.lu_solve(*self._lu, r[:, :, None])[..., 0]
        return self._iterate(lambda t: torch.einsum("sij,sj->si", self.J, t) + r, r)

    def _iterate(self, G, start):
        o = self.opts
        # the forward solver's options, where this one takes them
        options = tuple((k, v) for k, v in dict(o.options).items() if k in SOLVER_OPTIONS[self.linear])
        linear = SolveOptions(solver=self.linear, linear_solver=self.linear, atol=o.atol, rtol=o.rtol,
                              max_iter=o.max_iter, options=options, on_fail=o.on_fail)
        return linear.solve(G, start, linear=True).z

    # --- structured tanh path: all products written out (module docstring of deqlab.implicit.hessian) ---
    def _setup_structured(self):
        """Factor ``I − W D`` per sample in place (the only ``B·N²`` buffer kept) and solve for ``λ``.

        ``∇ₕℓ = r W_y`` is written out (no autodiff); ``μ = Dλ = Mᵀ D ∇ₕℓ``, ``λ = ∇ₕℓ + Wᵀμ``.
        """
        p, h = self.params, self.h
        B, N = h.shape
        self._s1 = 1 - h * h
        self._s2 = -2 * h * self._s1
        # I − W D, (B, N, N), stored column-major (LAPACK's layout, so no solve copies the factors)
        A = torch.empty(B, N, N, dtype=h.dtype, device=h.device).mT
        torch.mul(p["W_z"], -self._s1[:, None, :], out=A)
        A.diagonal(dim1=-2, dim2=-1).add_(1)
        pivots = torch.empty(B, N, dtype=torch.int32, device=h.device)
        info = torch.empty(B, dtype=torch.int32, device=h.device)
        torch.linalg.lu_factor_ex(A, out=(A, pivots, info))  # in place: no second B·N² buffer
        require_invertible(info, "I − W_z D")
        require_well_conditioned(pivot_condition(A), A.dtype, "I − W_z D")
        self._luM = (A, pivots)
        self._r = h @ p["W_y"].T + p["b_y"] - self.y
        self._hx1 = torch.cat([h, self.x, torch.ones(B, 1, dtype=h.dtype, device=h.device)], 1)  # the rows of A_θ's factors
        g_h = self._r @ p["W_y"]
        self._mu = torch.linalg.lu_solve(*self._luM, (self._s1 * g_h)[:, :, None], adjoint=True)[..., 0]
        self.lam = g_h + self._mu @ p["W_z"]
        self._lam_s2 = self.lam * self._s2

    def _pieces(self, v):
        """``v`` split into all five groups (zeros for groups not in ``θ``)."""
        if not hasattr(self, "_zero_parts"):  # read-only zeros, made once per operator
            self._zero_parts = {g: torch.zeros_like(t) for g, t in self.params.items() if g not in self.groups}
        out = dict(self._zero_parts)
        start = 0
        for g in self.groups:
            n = self.params[g].numel()
            out[g] = v[start : start + n].reshape(self.params[g].shape)
            start += n
        return out

    def _join(self, parts):
        return torch.cat([parts[g].reshape(-1) for g in self.groups])

    def _matvec_structured(self, v):
        p, h, x, s1, r, mu = self.params, self.h, self.x, self._s1, self._r, self._mu
        N, d_x = h.shape[1], x.shape[1]
        d = self._pieces(v)
        readout = "W_y" in self.groups or "b_y" in self.groups
        # A_θ v = h dW_zᵀ + x dU_zᵀ + db_z as one product [h, x, 1] @ [dW_z, dU_z, db_z]ᵀ
        e = self._hx1 @ torch.cat([d["W_z"], d["U_z"], d["b_z"][:, None]], 1).T
        zeta = torch.linalg.lu_solve(*self._luM, e[:, :, None])[..., 0]  # da = M A_θ v
        t = s1 * zeta  # Z v
        q = t @ p["W_y"].T  # total dŷ
        if readout:
            q = q + h @ d["W_y"].T + d["b_y"]
        w = q @ p["W_y"] + mu @ d["W_z"]
        if readout:
            w = w + r @ d["W_y"]
        w = torch.addcmul(self._lam_s2 * zeta, s1, w)  # D(·) + λ σ''(a) ζ
        om = torch.linalg.lu_solve(*self._luM, w[:, :, None], adjoint=True)[..., 0]  # Mᵀ w
        A_t_om = om.T @ self._hx1  # A_θᵀ ω as one product: [Ωᵀh, Ωᵀx, Σ_s ω_s]
        parts = {"W_z": A_t_om[:, :N] + mu.T @ t, "b_z": A_t_om[:, -1], "U_z": A_t_om[:, N : N + d_x]}
        if readout:
            parts |= {"W_y": q.T @ h + r.T @ t, "b_y": q.sum(0)}
        return self._join(parts)

    def gradient(self) -> torch.Tensor:
        """``∇_θL = ∇_θℓ + (∂f/∂θ)ᵀλ``, ``(P,)``."""
        if self.mode == "structured":
            mu, r, h = self._mu, self._r, self.h
            return self._join({"W_z": mu.T @ h, "b_z": mu.sum(0), "U_z": mu.T @ self.x, "W_y": r.T @ h, "b_y": r.sum(0)})
        g_t = torch.func.grad(self._loss, argnums=0)(self.theta, self.h)
        _, vjp = torch.func.vjp(lambda t: self._f(t, self.h), self.theta)
        return g_t + vjp(self.lam)[0]

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``v`` ``(P,)``: one tangent solve, one second-order product, one adjoint solve.

        ``v``: a real tensor of ``P`` finite values (any device and floating dtype: it is moved to ``θ``'s);
        anything else is refused with :class:`InputError` rather than failing inside the products."""
        if not isinstance(v, torch.Tensor) or not v.is_floating_point() or tuple(v.shape) != (self.size,):
            scipy = ("; for NumPy vectors (scipy) wrap it: deqlab.implicit.spectrum.as_linear_operator(op.matvec, op.size)"
                     if not isinstance(v, torch.Tensor) else "")
            raise InputError(f"v must be a real floating torch tensor of shape ({self.size},) (P, the size of θ); "
                             f"got {describe(v)}{scipy}")
        v = v.to(self.theta.device, self.theta.dtype)
        if not all_finite(v):
            raise InputError("v contains NaN or infinite values")
        self.n_hvp += 1
        if self.mode == "structured":
            return self._matvec_structured(v)
        r = torch.func.jvp(lambda t: self._f(t, self.h), (self.theta,), (v,))[1]
        t = self.solve_tangent(r)
        grad_L = torch.func.grad(self._lagrangian, argnums=(0, 1))
        _, (w_t, w_h) = torch.func.jvp(grad_L, (self.theta, self.h), (v, t))
        mu = self.solve_adjoint(w_h)
        _, vjp = torch.func.vjp(lambda th: self._f(th, self.h), self.theta)
        return w_t + vjp(mu)[0]

    def dense(self) -> torch.Tensor:
        """``H`` column by column from :meth:`matvec` (tests and small models only)."""
        eye = torch.eye(self.size, dtype=self.theta.dtype, device=self.theta.device)
        return torch.stack([self.matvec(e) for e in eye], dim=1)


def fd_hvp(params, groups, x, y, v: torch.Tensor, *, step: float = 1e-5, opts: SolveOptions | None = None) -> torch.Tensor:
    """Central difference of the implicit gradient along ``v``: ``(∇L(θ + εv) − ∇L(θ − εv)) / 2ε``."""
    from deqlab.implicit.hessian import deq_gradient

    theta = flatten(params, groups)
    opts = options_or(opts, TIGHT)

    def grad_at(th):
        p = unflatten(th, params, groups)
        return deq_gradient(p["W_z"], p["b_z"], p["U_z"], p["W_y"], p["b_y"], x, y, groups=groups, opts=opts)

    return (grad_at(theta + step * v) - grad_at(theta - step * v)) / (2 * step)
