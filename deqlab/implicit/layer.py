"""An implicit (fixed-point) layer whose derivatives of every order come from the implicit function theorem.

``z* = fixed_point(F, z0, *args)`` returns the solution of ``z = F(z, *args)`` (shape ``(batch, n)``),
found by any registered solver **without** building an autograd graph. Its derivatives are

* backward (VJP), seeds 000/001 §1: ``λ = (I − J)⁻ᵀ g`` with ``J = ∂F/∂z`` at ``z*``, then
  ``∂L/∂args = (∂F/∂args)ᵀ λ``. The adjoint ``λ`` is itself the fixed point of the *linear* map
  ``λ ↦ Jᵀλ + g``, so it is computed by the same Function (:class:`FixedPoint`) applied to that map;
* forward (JVP): ``ż = (I − J)⁻¹ (∂F/∂args · ȧrgs)``, again a fixed point of ``t ↦ J t + r``;
* vmap: the mapped dimension is folded into the solver's batch dimension (one joint solve).

Because the backward and the JVP are written with differentiable operations (``torch.func.vjp``/``jvp``)
and with :class:`FixedPoint` itself, differentiating them again recurses through the same rules:
double backward, ``gradgradcheck`` and every ``torch.func`` transform (``grad``, ``jacrev``, ``jacfwd``,
``vmap``, ``hessian``, every pairing of ``jacfwd``/``jacrev``, plain ``torch.autograd.forward_ad``) are
exact up to the solver tolerance, at any order, and memory never grows with the number of solver
iterations (no iteration is ever recorded). Forward-over-forward needs care: see :meth:`FixedPoint.jvp`.

``F`` must be a pure function of its tensor arguments (``torch.func`` style) acting on ``(batch, n)``.
Samples may be coupled (through ``args`` or tensors ``F`` holds): the solvers apply the stopping rule per
row, so every converged solve is checked on the whole batch once more and, where ``F`` moved a row that
had stopped, solved again as one system (:func:`_rows_checked`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from deqlab.errors import DeqlabError, InputError, NotConvergedError
from deqlab.implicit.closure import require_closed_map
from deqlab.implicit.conditioning import require_well_conditioned_solution
from deqlab.solver_options import check_solver_options, check_stopping_rule
from deqlab.solvers.registry import SOLVERS, get_solver
from deqlab.solvers.result import SolverStatus, row_norms, rule_bound


@dataclass(frozen=True)
class SolveOptions:
    """How every solve of the layer (forward, adjoint, tangent; all orders) is done.

    Attributes:
        solver: registry name (``deqlab.solvers.registry.SOLVERS``) for the forward solve.
        linear_solver: registry name for the adjoint/tangent solves (linear fixed points).
        atol, rtol, max_iter: the shared stopping rule (``‖F(z) − z‖ ≤ atol + rtol‖F(z)‖``); the linear
            solves apply it to their solution divided by ``‖rhs‖`` per row (see :meth:`solve`).
        options: extra keyword options of the solvers (e.g. ``memory``).
        on_fail: ``"raise"`` (:class:`NotConvergedError`) or ``"ignore"`` when a solve does not converge.
    """

    solver: str = "anderson"
    linear_solver: str = "anderson"
    atol: float = 1e-12
    rtol: float = 0.0
    max_iter: int = 500
    options: tuple = field(default_factory=tuple)
    on_fail: str = "raise"

    def __post_init__(self) -> None:
        """Refused here, when the options are made, not at the first solve (or, for the linear solver,
        at the first backward): unknown solvers, a meaningless stopping rule, an unknown ``on_fail``."""
        for name, what in ((self.solver, "solver"), (self.linear_solver, "linear solver")):
            if name not in SOLVERS:
                raise InputError(f"unknown {what} {name!r}; choose one of: {', '.join(SOLVERS)}")
        check_stopping_rule(self.atol, self.rtol, self.max_iter)
        try:
            options = dict(self.options)
        except (TypeError, ValueError):
            raise InputError(f"options must be a mapping (or pairs) of solver options, got {self.options!r}") from None
        # every solve passes the same options: each must be one that both solvers take (memory=2.5, or
        # damping for an anderson linear solver, failed only at the first solve or the first backward)
        for name in dict.fromkeys((self.solver, self.linear_solver)):
            check_solver_options(name, options)
        if self.on_fail not in ("raise", "ignore"):
            raise InputError(f"on_fail must be 'raise' or 'ignore', got {self.on_fail!r}")

    def solve(self, F: Callable, z0: torch.Tensor, *, linear: bool):
        """The fixed point of ``F`` from ``z0`` (a :class:`~deqlab.solvers.result.SolverResult`).

        ``linear``: ``F`` is affine, ``F(t) = A t + r`` (the adjoint and tangent maps), and is solved by
        ``linear_solver`` on rows scaled by ``s_b = ‖r_b‖`` (:func:`_scaled_by_rhs`): its solution
        is proportional to ``r``, so the absolute ``atol`` would leave a small right-hand side (the
        cotangent of a loss of 1e-13, say) without a single correct digit (its gradient came back 0), and
        a large one (a loss of 1e6) out of float64's reach.

        Every converged solve of a batch is checked once more, whole (:func:`_rows_checked`): the solvers
        stop each row when it meets the rule, which is right only for a ``F`` that treats rows
        independently; a ``F`` that couples them re-solves the batch as one system."""
        name = self.linear_solver if linear else self.solver
        scale = None
        affine = F   # (the map as given: the check of a linear solve reads it unscaled)
        if linear:
            F, z0, scale = _scaled_by_rhs(F, z0)
        solve = lambda G, start, atol=self.atol, rtol=self.rtol: get_solver(name)(  # noqa: E731
            G, start, atol=atol, rtol=rtol, max_iter=self.max_iter, **dict(self.options))
        res = _rows_checked(solve(F, z0), F, solve, self.atol, self.rtol)
        if scale is not None:
            res = dataclasses.replace(res, z=res.z * scale)
        self.require_usable(res, affine, linear=linear)
        return res

    def require_usable(self, res, F: Callable, *, linear: bool) -> None:
        """With ``on_fail="raise"``: :class:`NotConvergedError` for a solve ``res`` of ``z = F(z)`` that did not
        converge and, for a linear one, :class:`~deqlab.errors.IllConditionedError` where its solution is
        provably too ill-conditioned to be returned (:func:`~deqlab.implicit.conditioning.require_well_conditioned_solution`)."""
        if self.on_fail != "raise":
            return
        if not res.all_converged:
            raise self.failure(res, linear=linear)
        if linear:
            require_well_conditioned_solution(F, res.z, f"its linear solve with {self.linear_solver}")

    def failure(self, res, *, linear: bool) -> NotConvergedError:
        """The error for a solve (``res``, a :class:`~deqlab.solvers.result.SolverResult`) that did not
        converge; its message says when ``atol`` is below the dtype's resolution at ``z``."""
        name = self.linear_solver if linear else self.solver
        kind = "adjoint/tangent (linear)" if linear else "forward"
        scaled = " (of the solution divided by ‖rhs‖ per row)" if linear else ""
        return NotConvergedError(f"{kind} solve with {name} did not converge: {res.message}, residual "
                                 f"{res.max_residual:.3e}{scaled}")


def version_of(z: torch.Tensor) -> int | None:
    """``z``'s version counter (bumped by every in-place operation on it), or ``None`` where it has none (an
    inference tensor; a ``torch.func`` wrapper)."""
    try:
        return None if z.is_inference() else z._version
    except (RuntimeError, AttributeError):
        return None


def require_unmodified(t: torch.Tensor, before: int | None, call: str, name: str = "z") -> None:
    """:class:`InputError` if the input ``name`` (``t``) moved from version ``before`` (:func:`version_of`, taken
    before ``call`` evaluated it): the solvers keep every iterate (Anderson's history, the best point), and a map
    doing ``z.mul_(0.5)`` made the forward solve 'not converge' after 500 steps with no word of why (an ``x``
    changed in place changes the map itself)."""
    if before is not None and version_of(t) != before:
        raise InputError(f"{call} modified its input {name} in place (an in-place operation such as {name}.mul_() or "
                         f"{name} += ...): the solver evaluates it again and again, so it must leave {name} as it is: "
                         f"use {name} * ... or {name}.clone()")


def _rows_checked(res, F: Callable, solve: Callable, atol: float, rtol: float):
    """``res`` if every row of its ``z`` meets the stopping rule when ``F`` is evaluated on the whole batch at
    once (one more evaluation, counted in ``n_fevals``); else the solution of the batch as *one* system.

    The solvers freeze a row that meets the rule and iterate the others. When ``F`` couples the rows (a
    mean over the batch, a batch norm with batch statistics, samples mixed through ``args`` or tensors
    ``F`` holds), the others' later moves shift a frozen row's fixed point, and the "converged" ``z`` was
    not one: the forward point drifted, and an adjoint whose right-hand side is zero in some rows (one
    column of a Jacobian by ``jacrev``) kept those rows at 0: ``jacrev`` of a DEQ with ``f(z) + mean(z)``
    was 4% off. Solving ``vec(z) = vec(F(z))`` as one row from the point reached is right for any ``F``;
    the per-row rule is then checked at its solution.

    With ``rtol > 0`` the joint solve stops at the smallest per-row bound ``atol + rtol‖F(z)_b‖`` (absolute):
    under the joint rule ``‖vec(F(z) − z)‖ ≤ atol + rtol‖vec F(z)‖`` a row much smaller than the others kept
    too few digits, and a batch with rows of sizes 1 and 0.002 raised NotConvergedError ('solved as one
    system: converged')."""
    if not res.all_converged or res.z.shape[0] < 2:
        return res
    residual, ok, bound = _rule_by_row(F, res.z, atol, rtol)
    if bool(ok.all()):
        return dataclasses.replace(res, n_fevals=res.n_fevals + 1)
    shape = res.z.shape
    tightest = float(bound.min()) if rtol > 0 else 0.0
    joint_rule = {"atol": 0.5 * tightest, "rtol": 0.0} if 0 < tightest < float("inf") else {}
    joint = solve(lambda u: F(u.reshape(shape)).reshape(1, -1), res.z.reshape(1, -1), **joint_rule)
    z = joint.z.reshape(shape)
    residual, ok, _ = _rule_by_row(F, z, atol, rtol)
    done = bool(ok.all())
    return dataclasses.replace(
        res, z=z, converged=ok, residual=residual, n_steps=res.n_steps + joint.n_steps,
        n_fevals=res.n_fevals + joint.n_fevals + 2, status=SolverStatus.CONVERGED if done else joint.status,
        message="converged" if done else f"F couples the batch's rows; solved as one system: {joint.message}")


def _rule_by_row(F: Callable, z: torch.Tensor, atol: float, rtol: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(‖F(z) − z‖ per row, whether each row meets the stopping rule, its bound atol + rtol‖F(z)‖)`` with ``F``
    evaluated on all of ``z``."""
    with torch.no_grad():
        fz = F(z)
        residual, fnorm = row_norms(fz - z), row_norms(fz)   # (as the solvers' Monitor: no underflow to 0)
        bound = rule_bound(fnorm, atol, rtol)
        return residual, (residual <= bound) & torch.isfinite(fnorm) & torch.isfinite(residual), bound


def _scaled_by_rhs(F: Callable, z0: torch.Tensor):
    """``(G, z0 / s, s)`` for an affine ``F(t) = A t + r`` with ``G(u) = F(s u) / s`` and ``s_b = ‖r_b‖`` per row
    (``1`` where ``r_b = 0`` or its norm is not finite): ``G``'s fixed point is ``t*/s``, so the stopping rule
    bounds the error of ``t*`` relative to ``‖r_b‖``, as the solution is linear in ``r``. (With ``s_b = min(‖r_b‖,
    1)`` the rule stayed absolute above 1, which float64 cannot meet once ``‖t*‖ ≳ 1e4``: the gradient of
    ``1e6 · L`` raised NotConvergedError where that of ``L`` was fine.) ``s`` is ``None`` (and ``F`` returned as it
    is) when every row has ``s_b = 1``."""
    with torch.no_grad():
        r = F(torch.zeros_like(z0))
        # (torch.linalg.vector_norm underflows: a loss scaled by 1e-170 gave r_b 'norm 0', so the absolute atol was
        # kept and the solve stopped at its start 0: the gradient came back exactly 0)
        s = row_norms(r)[:, None]
        s = torch.where((s > 0) & torch.isfinite(s), s, torch.ones_like(s))
    if bool((s == 1).all()):
        return F, z0, None
    return (lambda u: F(u * s) / s), z0 / s, s


def _adjoint_map(F: Callable) -> Callable:
    """``G(λ, z, g, *args) = (∂F/∂z)ᵀλ + g``: its fixed point is ``λ = (I − J)⁻ᵀ g``."""

    def G(lam, z, g, *args):
        _, vjp_fn = torch.func.vjp(lambda zz: F(zz, *args), z)
        return vjp_fn(lam)[0] + g

    return G


def _jvp_by_reverse(f: Callable, primals: tuple, tangents: tuple) -> torch.Tensor:
    """``(∂f/∂primals)·tangents`` by two reverse passes (the VJP ``u ↦ Jᵀu`` is linear in ``u``, and
    its own VJP against the tangents is ``J·tangents``). Used where PyTorch forbids a forward-mode
    level: inside a jvp rule called by ``torch.autograd.forward_ad``, which allows one dual level only."""
    out, vjp_fn = torch.func.vjp(f, *primals)
    _, vjp_of_vjp = torch.func.vjp(vjp_fn, torch.zeros_like(out))
    return vjp_of_vjp(tuple(tangents))[0]


def _tangent_map(F: Callable, *, forward_mode: bool = True) -> Callable:
    """``T(t, z, r, *args) = (∂F/∂z) t + r``: its fixed point is ``t = (I − J)⁻¹ r``.

    ``forward_mode=False`` forms ``(∂F/∂z) t`` by :func:`_jvp_by_reverse` (no dual level)."""

    def T(t, z, r, *args):
        if not forward_mode:
            return _jvp_by_reverse(lambda zz: F(zz, *args), (z,), (t,)) + r
        return torch.func.jvp(lambda zz: F(zz, *args), (z,), (t,))[1] + r

    return T


class FixedPoint(torch.autograd.Function):
    """``z* = F(z*, *args)``; see the module docstring. Call through :func:`fixed_point`.

    ``apply(F, z0, opts, linear, *args)``: ``F`` a pure map, ``z0`` the start ``(batch, n)`` (no gradient
    flows to it: ``z*`` does not depend on the start), ``opts`` a :class:`SolveOptions`, ``linear``
    whether ``F`` is linear in ``z`` (selects ``opts.linear_solver``).
    """

    @staticmethod
    def forward(F, z0, opts, linear, *args):
        _refuse_legacy_vmap(z0, args)

        def evaluated(z):
            before = version_of(z)
            fz = F(z, *args)
            require_unmodified(z, before, "F(z, *args)")
            return fz

        # Checked once per solve, not per evaluation (the arguments are the same tensors throughout), and before
        # the solve's own verdict: such a map seldom converges, and 'not converged' would hide the cause.
        held = [(i, a, version_of(a)) for i, a in enumerate(args) if isinstance(a, torch.Tensor)]

        def require_arguments_unmodified():
            if moved := [i for i, a, v in held if v is not None and version_of(a) != v]:
                raise InputError(f"F(z, *args) modified its argument(s) {', '.join(f'args[{i}]' for i in moved)} in "
                                 "place during the solve: the fixed point of a map that changes as it is iterated is "
                                 "no fixed point of F; leave its arguments as they are")

        try:
            with torch.no_grad():
                res = opts.solve(evaluated, z0.detach(), linear=linear)
        except InputError:
            raise   # (the map's own refusal, e.g. the DEQ's, names the cause already)
        except DeqlabError:
            require_arguments_unmodified()
            raise
        require_arguments_unmodified()
        return res.z

    @staticmethod
    def setup_context(ctx, inputs, output):
        F, _, opts, linear, *args = inputs
        ctx.F, ctx.opts, ctx.linear = F, opts, linear
        # An argument without a tangent reaches jvp as None, not as zeros: it is then held, not
        # differentiated (tangent_part; torch refuses a tangent for a BatchNorm's running statistics).
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(output, *args)
        # Kept as plain attributes, not via save_for_forward: saved-for-forward tensors lose the
        # tangents of outer forward-mode levels (jacfwd∘jacfwd then misses ∂²F/∂args²).
        ctx.fwd_output, ctx.fwd_args = output, args
        # The torch.func level this application is differentiated at (-1 outside torch.func): the
        # jvp rule must compute below it, see :meth:`jvp`.
        ctx.func_level = _func_level(output)

    @staticmethod
    def backward(ctx, grad_z):
        z, *args = ctx.saved_tensors
        if grad_z is None:   # (not materialised: no gradient reaches z*)
            return (None, None, None, None, *(None for _ in args))
        F, opts = ctx.F, ctx.opts
        lam = FixedPoint.apply(_adjoint_map(F), torch.zeros_like(grad_z), opts, True, z, grad_z, *args)
        needed = ctx.needs_input_grad[4:]
        Fd, diff = differentiable_part(lambda *a: F(z, *a), args, needed)
        if not diff:
            return (None, None, None, None, *(None for _ in args))
        _, vjp_fn = torch.func.vjp(Fd, *diff)
        return (None, None, None, None, *scatter_grads(vjp_fn(lam), args, needed))

    @staticmethod
    def jvp(ctx, _F_t, _z0_t, _opts_t, _linear_t, *arg_tangents):
        """``ż = (I − J)⁻¹ (∂F/∂args · ȧrgs)``, computed so that outer forward levels see it.

        PyTorch calls a jvp rule with forward-mode AD switched off for *every* level, so a rule written
        naively is a constant to an enclosing ``jacfwd``: ``jacfwd(jacfwd(·))`` would then drop
        ``∂ż/∂(z*, args)`` and return a wrong Hessian silently. Under ``torch.func`` the rule therefore
        unwraps ``z*`` and ``args`` from its own level (whose tangent it is computing) and re-enables
        forward mode, so every enclosing level differentiates the rule itself, which recurses through
        this same Function. Outside ``torch.func`` (``torch.autograd.forward_ad``) there is only one
        forward level, already entered, so the rule forms its products by reverse mode instead
        (:func:`_jvp_by_reverse`).
        """
        z, args = ctx.fwd_output, ctx.fwd_args
        F, opts = ctx.F, ctx.opts
        level = ctx.func_level
        if level >= 0:
            z = _unwrap_at(z, level)
            args = tuple(_unwrap_at(a, level) for a in args)
        Fd, diff, tangents = tangent_part(lambda *a: F(z, *a), args, arg_tangents)
        if level < 0:  # torch.autograd.forward_ad: no nested dual level may be entered
            r = _jvp_by_reverse(Fd, diff, tangents) if diff else torch.zeros_like(z)
            return FixedPoint.apply(_tangent_map(F, forward_mode=False), torch.zeros_like(z), opts, True, z, r, *args)
        with torch.autograd.forward_ad._set_fwd_grad_enabled(True):
            r = torch.func.jvp(Fd, diff, tangents)[1] if diff else torch.zeros_like(z)
            return FixedPoint.apply(_tangent_map(F), torch.zeros_like(z), opts, True, z, r, *args)

    @staticmethod
    def vmap(info, in_dims, F, z0, opts, linear, *args):
        V = info.batch_size
        z0_dim, arg_dims = in_dims[1], in_dims[4:]
        z0 = z0.unsqueeze(0).expand(V, *z0.shape) if z0_dim is None else z0.movedim(z0_dim, 0)
        shape = z0.shape  # (V, batch, n)
        mapped = torch.func.vmap(F, in_dims=(0, *arg_dims))

        def F_joint(zf, *a):
            return mapped(zf.reshape(shape), *a).reshape(shape[0] * shape[1], shape[2])

        out = FixedPoint.apply(F_joint, z0.reshape(shape[0] * shape[1], shape[2]), opts, linear, *args)
        return out.reshape(shape), 0


def _refuse_legacy_vmap(z0: torch.Tensor, args: tuple) -> None:
    """:class:`InputError` for tensors batched by PyTorch's *legacy* vmap, which runs the backward of
    ``torch.autograd.grad(..., is_grads_batched=True)`` and so of ``torch.autograd.functional.jacobian`` /
    ``hessian`` with ``vectorize=True``. It has no rule for a custom Function (the solver's
    data-dependent steps failed: "Batching rule not implemented for aten::detach" or "for
    aten::is_nonzero"). ``torch.func``'s vmap has one (:meth:`FixedPoint.vmap`)."""
    if any(isinstance(t, torch.Tensor) and torch._C._functorch.is_legacy_batchedtensor(t) for t in (z0, *args)):
        raise InputError("a DEQ's fixed point cannot be differentiated under torch.autograd's batched gradients "
                         "(is_grads_batched=True, or torch.autograd.functional.jacobian/hessian with vectorize=True): "
                         "use vectorize=False, or torch.func.jacrev/jacfwd/hessian")


def is_differentiable(a) -> bool:
    """Whether an argument of ``F`` takes part in differentiation: a floating (or complex) tensor. Integer
    tensors (token ids as ``x``, an index buffer of a user's ``f``) are constants: ``torch.func`` refuses
    to differentiate with respect to them (the backward failed with a RuntimeError)."""
    return isinstance(a, torch.Tensor) and (a.is_floating_point() or a.is_complex())


def differentiable_part(G: Callable, args: tuple, needed=None) -> tuple[Callable, tuple]:
    """``(Gd, diff)``: ``diff`` the differentiable ``args`` (:func:`is_differentiable`) that are ``needed`` (one
    bool per argument, e.g. ``ctx.needs_input_grad``; all of them for ``None``) and ``Gd(*diff)`` equal to
    ``G(*args)`` with the other arguments held at their values. Differentiating only what is needed is not
    only cheaper: a floating buffer that nothing differentiates, such as an eval-mode ``BatchNorm``'s
    running statistics, is one that torch refuses to differentiate (every backward through a DEQ whose
    map held a ``BatchNorm`` failed with "native_batch_norm is not differentiable with respect to
    argument 'running_mean'")."""
    args = tuple(args)
    where = _differentiated(args, needed)

    def Gd(*d):
        full = list(args)
        for i, t in zip(where, d):
            full[i] = t
        return G(*full)

    return Gd, tuple(args[i] for i in where)


def tangent_part(G: Callable, args: tuple, tangents: tuple) -> tuple[Callable, tuple, tuple]:
    """``(Gd, diff, diff_tangents)`` for a forward-mode product ``(∂G/∂args)·tangents``: only the differentiable
    ``args`` with a tangent (not ``None``) are differentiated (:func:`differentiable_part`); an argument
    without one is held, which is the same as a zero tangent (and the only way for an eval-mode
    ``BatchNorm``'s running statistics, which torch refuses a tangent)."""
    tangents = tuple(tangents)
    needed = [t is not None for t in tangents]
    Gd, diff = differentiable_part(G, args, needed)
    return Gd, diff, tuple(tangents[i] for i in _differentiated(tuple(args), needed))


def scatter_grads(grads, args, needed=None) -> tuple:
    """The gradients of the differentiated ``args`` (:func:`differentiable_part` with the same ``needed``) in
    their places, ``None`` for the others."""
    out = [None] * len(args)
    for i, g in zip(_differentiated(tuple(args), needed), grads):
        out[i] = g
    return tuple(out)


def _differentiated(args: tuple, needed) -> list[int]:
    """The positions of the ``args`` that :func:`differentiable_part` differentiates: differentiable
    (:func:`is_differentiable`) and ``needed`` (``None``: all needed)."""
    return [i for i, a in enumerate(args) if is_differentiable(a) and (needed is None or needed[i])]


def _func_level(t: torch.Tensor) -> int:
    """The ``torch.func`` grad/jvp level ``t`` is wrapped at, or -1 for a plain tensor."""
    return int(torch._C._functorch.maybe_get_level(t))


def _unwrap_at(t: torch.Tensor, level: int) -> torch.Tensor:
    """``t`` seen one ``torch.func`` level down: its value *with* the tangents of enclosing levels."""
    if _func_level(t) == level:
        return torch._C._functorch._unwrap_for_grad(t, level)
    return t


def options_or(opts, default: SolveOptions) -> SolveOptions:
    """``opts``, or ``default`` where it is ``None``. Anything else than a :class:`SolveOptions` (a solver
    name given as ``opts="anderson"``, say) is an :class:`InputError` here rather than an
    ``AttributeError`` inside the first solve. Every public entry point that takes ``opts`` goes through it."""
    if opts is None:
        return default
    if not isinstance(opts, SolveOptions):
        raise InputError(f"opts must be a SolveOptions (e.g. SolveOptions(solver='anderson')), got {type(opts).__name__}")
    return opts


def fixed_point(F: Callable, z0: torch.Tensor, *args: torch.Tensor, opts: SolveOptions | None = None) -> torch.Tensor:
    """Differentiable ``z* = F(z*, *args)``; ``z0`` and ``z*`` have shape ``(batch, n)``.

    ``F(z, *args)`` must be a pure function (no parameters captured from modules whose gradient you
    want: pass them in ``args``). All derivatives w.r.t. ``args`` follow the implicit function theorem.
    A map whose value depends on a tensor requiring grad that is not in ``args``, or that moves with ``z``
    while its graph does not reach ``z`` (a ``.detach()``), is refused (:mod:`deqlab.implicit.closure`).
    """
    z = fixed_point_unchecked(F, z0, *args, opts=opts)
    require_closed_map(F, z, args, map_name="F(z, *args)", outside="among its arguments",
                       remedy="pass them to fixed_point in args")
    return z


def fixed_point_unchecked(F: Callable, z0: torch.Tensor, *args: torch.Tensor, opts: SolveOptions | None = None) -> torch.Tensor:
    """:func:`fixed_point` without its check of what ``F`` depends on: for callers that check it themselves (the
    DEQ layer, whose message names ``f``'s attributes) or whose map is known to be closed (the tanh layer)."""
    return FixedPoint.apply(F, z0, options_or(opts, SolveOptions()), False, *args)


def tanh_map(z: torch.Tensor, W_z: torch.Tensor, b_z: torch.Tensor, U_z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The tanh DEQ's layer as a pure map: ``tanh(z W_zᵀ + x U_zᵀ + b_z)``; ``(batch, n_z) -> (batch, n_z)``."""
    return torch.tanh(z @ W_z.T + x @ U_z.T + b_z)


def tanh_equilibrium(W_z, b_z, U_z, x, *, z0=None, opts: SolveOptions | None = None) -> torch.Tensor:
    """Differentiable equilibrium ``z* = tanh(W_z z* + U_z x + b_z)`` of a batch ``x`` ``(batch, n_x)``."""
    if z0 is None:
        z0 = torch.zeros(x.shape[0], W_z.shape[0], dtype=W_z.dtype, device=W_z.device)
    return fixed_point_unchecked(tanh_map, z0, W_z, b_z, U_z, x, opts=opts)   # (tanh_map holds nothing)
