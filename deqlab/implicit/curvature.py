"""Exact loss curvature of any model that contains implicit layers (:class:`deqlab.implicit.DEQ`).

For a model ``ŷ = model(x; θ)`` (any ``nn.Module``: DEQ layers anywhere, ordinary layers before and
after), a loss ``L(θ) = loss_fn(model(x; θ), y)`` on one batch and ``θ`` the flattened parameters
(``P`` numbers, in ``named_parameters()`` order, each row-major)::

    H v = ∇²_θ L(θ) v = d/dε ∇_θ L(θ + ε v) |_{ε=0}           (forward-over-reverse, ``torch.func``)

Two exact routes, never through an unrolled solve (``mode``):

* ``"lagrangian"`` (default; GUIDE §5). Once per operator: one gradient pass records, for every call
  ``k`` of every DEQ, its fixed point ``z*_k`` and the adjoint ``λ_k = (I − J_k)⁻ᵀ ∂L/∂z*_k``. Then
  ``H v`` is the forward-over-reverse product of ::

      Φ(θ) = L(θ; z_k ← ẑ_k(θ)) + Σ_k λ_kᵀ (f_k(ẑ_k, x_k; θ) − ẑ_k),     λ_k held fixed,

  where ``ẑ_k`` equals ``z*_k`` with the implicit *first* derivative ``Z_k = (I − J_k)⁻¹ ∂f_k/∂(x_k, θ)``.
  Because ``∂Φ/∂ẑ_k = ∂L/∂z*_k − (I − J_k)ᵀλ_k = 0`` (the adjoint equation), ``ẑ``'s second derivatives
  drop out and ``∇²Φ = [I; Z]ᵀ ∇²𝓛 [I; Z] = H`` exactly (the Lagrangian form of the DEQ Hessian; with
  several DEQ calls the ``λ_k`` are the multipliers of the joint constraint system). Per product:
  one tangent solve ``(I − J)⁻¹ r`` and one adjoint solve ``(I − J)⁻ᵀ w`` per DEQ call, plus the
  ordinary layers' second-order work; no forward solve. The solves are two triangular solves with
  a per-sample LU of ``I − J`` factored once (``linear="lu"``; ``J`` from ``n_z`` vmapped VJPs), or the
  DEQ's linear solver to its tolerance on ``f`` linearised once (``"iterative"``). The terms dropped
  are multiples of ``∂Φ/∂ẑ``, i.e. of the adjoint's error (``≤ atol`` of the DEQ's options).
* ``"direct"``: ``torch.func.jvp(torch.func.grad(L))`` through :func:`deqlab.implicit.layer.fixed_point`'s
  rules of every order (per product: a forward solve warm-started at the last solution, the adjoint
  solve, the tangent solve and the tangent of the adjoint solve). Needed for DEQs nested inside other
  DEQs' maps.

:class:`LossHessian` is a :class:`scipy.sparse.linalg.LinearOperator` (float64 numpy in and out), so
curvlinops-style tools and ``scipy.sparse.linalg`` (``eigsh``, ``cg``, ``lobpcg``) use it directly;
``.hvp`` is the torch route. On top of it: the extreme eigenvalues by Lanczos (ARPACK ``eigsh``),
Hutchinson's trace and the spectral density by stochastic Lanczos quadrature
(:mod:`deqlab.implicit.spectrum`).

The curvature is that of the functions as autograd differentiates them: for non-smooth pieces (ReLU, in a
DEQ's map or around it) it holds almost everywhere and follows autograd's convention at a kink
(:mod:`deqlab.implicit.deq`).

Models whose DEQ layers use an approximate backward (``"jacobian_free"``, ``"phantom"``) are refused
(:class:`deqlab.errors.InputError`): their second derivatives are not the model's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import nn

from deqlab.errors import DeqlabError, IllConditionedError, InputError, NotConvergedError
from deqlab.implicit.closure import changes_with_z, probe_direction, severed_map_error
from deqlab.implicit.conditioning import pivot_condition, require_well_conditioned
from deqlab.implicit.deq import DEQ, USER_CODE_ERRORS, purity_check, user_code_error
from deqlab.implicit.layer import SolveOptions, differentiable_part, scatter_grads, tangent_part
from deqlab.implicit.spectrum import (
    SpectralDensity,
    TraceEstimate,
    extreme_eigenvalues,
    hutchinson_trace,
    spectral_density,
)
from deqlab.solvers.result import all_finite, describe


def deq_layers(model: nn.Module) -> list[DEQ]:
    """Every :class:`DEQ` inside ``model`` (itself included)."""
    return [m for m in model.modules() if isinstance(m, DEQ)]


@contextlib.contextmanager
def warm_start(model: nn.Module) -> Iterator[None]:
    """Inside the block, each DEQ of ``model`` starts its forward solve at its last solution (when the
    batch shape fits). The fixed point does not depend on the start, so results are unchanged; repeated
    products at one ``θ`` then pay about one solver step for the forward solve."""
    with _set_on(deq_layers(model), "warm_start", True):
        yield


#: Products of :class:`LossHessian`.
MODES = ("lagrangian", "direct")


def _strict(opts: SolveOptions) -> SolveOptions:
    """The layer's options, but a failed solve raises: curvature from an unconverged solve is refused."""
    return SolveOptions(**{**{f.name: getattr(opts, f.name) for f in dataclasses.fields(SolveOptions)}, "on_fail": "raise"})


#: ``linear="auto"`` factorises ``I − J`` per sample when ``batch·n_z²`` is at most this many numbers (256 MiB).
LU_MAX_ENTRIES = 2**25
#: The per-sample Jacobian must reproduce a JVP of ``f`` to this relative error (else ``f`` couples samples),
#: or to ``BLOCK_DIAGONAL_EPS`` units of ``z``'s dtype where that is larger: the two products round
#: differently by a few units (measured 1–3 in float32), so float32 failed the 1e-10 every time and
#: ``linear="lu"`` refused a sample-independent ``f`` as coupling the samples.
BLOCK_DIAGONAL_RTOL = 1e-10
BLOCK_DIAGONAL_EPS = 100
LINEAR = ("auto", "lu", "iterative")


class _LinearSystem:
    """``(I − J)⁻¹`` and ``(I − J)⁻ᵀ`` at one DEQ call's ``(z*, x, θ)``, ``J = ∂f/∂z`` (``(batch, n)`` vectors).

    ``lu``: ``J`` per sample (``n`` VJPs, vmapped), one batched LU of ``I − J``, then each solve is two
    triangular solves. Valid only when ``f`` treats samples independently; checked on a random vector.
    ``iterative``: the linear fixed points ``λ = Jᵀλ + g``, ``t = J t + r`` by ``opts.linear_solver``, with
    ``f`` linearised once (a reusable VJP, and its VJP for ``J·``): no forward pass of ``f`` per iteration.
    """

    def __init__(self, F, z, x, theta, opts: SolveOptions, linear: str):
        self.opts = opts
        _, self._vjp = torch.func.vjp(lambda zz: F(zz, x, *theta), z)
        _, self._jvp = torch.func.vjp(lambda u: self._vjp(u)[0], torch.zeros_like(z))  # Jᵀ is linear: its VJP is J
        self.lu = None
        batch, n = z.shape
        _refuse_a_severed_map(F, z, x, theta, self.Jt)
        lapack = z.dtype in (torch.float32, torch.float64)   # (torch's "lu_cpu" not implemented for 'Half'/'BFloat16')
        if linear == "lu" and not lapack:
            raise InputError(f"linear='lu' factorises I - df/dz in float32 or float64; this DEQ's z is "
                             f"{str(z.dtype).removeprefix('torch.')}: use linear='iterative' (or 'auto')")
        if lapack and (linear == "lu" or (linear == "auto" and batch * n * n <= LU_MAX_ENTRIES)):
            basis = torch.eye(n, dtype=z.dtype, device=z.device)[:, None, :].expand(n, batch, n)
            J = torch.func.vmap(self.Jt)(basis).permute(1, 0, 2)  # rows[i, b] = J_b[i, :]
            u = torch.randn(z.shape, generator=torch.Generator(device="cpu").manual_seed(0), dtype=z.dtype, device="cpu").to(z.device)
            Ju = self.J(u)
            rtol = max(BLOCK_DIAGONAL_RTOL, BLOCK_DIAGONAL_EPS * torch.finfo(z.dtype).eps)
            if float(torch.linalg.vector_norm(torch.einsum("bij,bj->bi", J, u) - Ju)) > rtol * float(
                    torch.linalg.vector_norm(Ju)) + 1e-300:
                if linear == "lu":
                    raise InputError("linear='lu' needs a map f(z, x) that treats samples independently; "
                                     "this one couples them: use linear='iterative'")
            else:
                eye = torch.eye(n, dtype=z.dtype, device=z.device)
                # lu_factor_ex: lu_factor raised torch's own RuntimeError ('U[1,1] is zero ...') on an
                # exactly singular I - J; info > 0 names that case, a non-finite factor the overflowing one
                lu, pivots, info = torch.linalg.lu_factor_ex(eye - J)
                if bool((info != 0).any()) or not all_finite(lu):
                    raise IllConditionedError("I - df/dz is singular at a DEQ's fixed point: no curvature there")
                require_well_conditioned(pivot_condition(lu), lu.dtype, "I - df/dz at a DEQ's fixed point")
                self.lu = (lu, pivots)

    def Jt(self, u: torch.Tensor) -> torch.Tensor:
        return self._vjp(u)[0]

    def J(self, w: torch.Tensor) -> torch.Tensor:
        return self._jvp(w)[0]

    def adjoint(self, g: torch.Tensor) -> torch.Tensor:
        """``(I − J)⁻ᵀ g``."""
        if self.lu is not None:
            return torch.linalg.lu_solve(*self.lu, g[..., None], adjoint=True)[..., 0]
        return self.opts.solve(lambda lam: self.Jt(lam) + g, torch.zeros_like(g), linear=True).z

    def tangent(self, r: torch.Tensor) -> torch.Tensor:
        """``(I − J)⁻¹ r``."""
        if self.lu is not None:
            return torch.linalg.lu_solve(*self.lu, r[..., None])[..., 0]
        return self.opts.solve(lambda t: self.J(t) + r, torch.zeros_like(r), linear=True).z


def _refuse_a_severed_map(F, z, x, theta, Jt) -> None:
    """:class:`InputError` when autograd sees no dependence of ``f`` on ``z`` at the fixed point (``Jᵀu = 0`` for a
    random ``u``) although ``f``'s value moves with ``z``: a ``.detach()`` (or a ``torch.no_grad()`` block, or
    arithmetic outside torch) inside ``f``. The implicit derivatives then drop ``(I − J)⁻¹``: a tanh map with
    ``z.detach()`` inside gave a Hessian 78% off, without a word. One VJP per DEQ call; the two extra evaluations of
    ``f`` only where it is zero. (A map independent of ``z`` passes: its value does not move. A map with every
    piecewise-linear unit exactly at its kink looks the same as a severed one, and has no Hessian there either.)"""
    if bool(Jt(probe_direction(z)).any()) or z.numel() == 0:
        return
    if changes_with_z(lambda zz: F(zz, x, *theta), z):
        raise severed_map_error("a DEQ's map f(z, x)", "f")


class _ConstantAdjointSolve(torch.autograd.Function):
    """``μ = (I − J)⁻ᵀ g`` by a :class:`_LinearSystem` at a fixed point; its JVP is the same solve of ``ġ``.

    The tangent of the operator itself is dropped: it multiplies ``μ``, and this Function is used only
    where ``g = ∂Φ/∂ẑ = 0`` (:class:`_FirstOrderEquilibrium` inside the Lagrangian ``Φ``).
    """

    @staticmethod
    def forward(system, g):
        with torch.no_grad():
            return system.adjoint(g)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.system = inputs[0]

    @staticmethod
    def jvp(ctx, _system_t, g_t):
        with torch.no_grad():
            return ctx.system.adjoint(g_t)

    @staticmethod
    def backward(ctx, *_):
        raise NotImplementedError("the Lagrangian curvature route is forward-over-reverse only")


class _FirstOrderEquilibrium(torch.autograd.Function):
    """``ẑ(x, θ)``: the value ``z*`` (given) with the implicit first derivative ``Z = (I − J)⁻¹ ∂f/∂(x, θ)``.

    Backward: ``(∂f/∂(x, θ))ᵀ (I − J)⁻ᵀ g``; JVP: ``(I − J)⁻¹ ∂f/∂(x, θ)·(ẋ, θ̇)``. Its second derivatives
    are not ``z*``'s: valid only inside the Lagrangian ``Φ`` of :class:`LossHessian`, where they cancel.
    """

    @staticmethod
    def forward(F, z_star, system, x, *theta):
        return z_star.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        F, z_star, system, x, *theta = inputs
        ctx.F, ctx.system = F, system
        ctx.set_materialize_grads(False)   # (a tangent-less argument is held: see FixedPoint.setup_context)
        ctx.save_for_backward(z_star, x, *theta)
        ctx.point = (z_star, x, theta)

    @staticmethod
    def backward(ctx, g):
        z, x, *theta = ctx.saved_tensors
        if g is None:   # (not materialised: no gradient reaches ẑ)
            return (None, None, None, None, *(None for _ in theta))
        mu = _ConstantAdjointSolve.apply(ctx.system, g)
        args = (x, *theta)
        needed = ctx.needs_input_grad[3:]
        Fd, diff = differentiable_part(lambda *a: ctx.F(z, *a), args, needed)   # (integer x or buffers: constants)
        if not diff:
            return (None, None, None, *(None for _ in args))
        _, vjp = torch.func.vjp(Fd, *diff)
        return (None, None, None, *scatter_grads(vjp(mu), args, needed))

    @staticmethod
    def jvp(ctx, _F_t, _z_t, _system_t, x_t, *theta_t):
        z, x, theta = ctx.point
        args = (x, *theta)
        Fd, diff, tangents = tangent_part(lambda *a: ctx.F(z, *a), args, (x_t, *theta_t))
        r = torch.func.jvp(Fd, diff, tangents)[1] if diff else torch.zeros_like(z)
        with torch.no_grad():
            return ctx.system.tangent(r)


@contextlib.contextmanager
def _modes_as(modes: list[tuple[nn.Module, bool]]):
    """Each module in the train/eval mode recorded in ``modes`` for the block, then back as it was: the operator's
    products are those of the model as it was made, even after ``model.train()`` (a BatchNorm then normalised by
    the batch's statistics instead, a Dropout drew)."""
    now = [(m, m.training) for m, _ in modes]
    try:
        for m, training in modes:
            m.training = training
        yield
    finally:
        for m, training in now:
            m.training = training


class _Lagrangian:
    """The per-call records of :class:`LossHessian`'s Lagrangian route, and the DEQ hook that uses them.

    ``capture``: a plain forward (implicit layer) whose outputs get a gradient hook; ``finish`` builds each
    call's :class:`_LinearSystem` and turns the recorded ``∂L/∂z*`` into adjoints ``λ``. ``lagrangian``: each
    DEQ call returns ``ẑ`` and adds ``λᵀ(f(ẑ) − ẑ)`` to ``penalties``.
    """

    def __init__(self, linear: str = "auto"):
        self.mode = "capture"
        self.linear = linear
        self.records: dict[int, list] = {}
        self.calls: dict[int, int] = {}
        self.penalties: list[torch.Tensor] = []

    def start_pass(self) -> None:
        self.calls = {}
        self.penalties = []

    def __call__(self, deq: DEQ, F, start, x, theta):
        key = id(deq)
        k = self.calls.get(key, 0)
        self.calls[key] = k + 1
        if self.mode == "capture":
            z = deq.implicit_solution(F, start, x, theta)
            if deq.stats is not None and not deq.stats.all_converged:
                raise NotConvergedError(f"forward solve of a DEQ layer did not converge (residual "
                                        f"{deq.stats.max_residual:.3e}): no curvature at this point")
            rec = {"F": F, "opts": _strict(deq.opts), "z": z.detach(), "x": x.detach(),
                   "theta": [t.detach() for t in theta], "g": torch.zeros_like(z)}
            self.records.setdefault(key, []).append(rec)
            if z.requires_grad:
                z.register_hook(lambda g, rec=rec: rec.__setitem__("g", g.detach()))
            return z
        rec = self.records[key][k]
        z_hat = _FirstOrderEquilibrium.apply(F, rec["z"], rec["system"], x, *theta)
        self.penalties.append((rec["lam"] * (F(z_hat, x, *theta) - z_hat)).sum())
        return z_hat

    def finish(self) -> None:
        """Each call's linear system and ``λ = (I − J)⁻ᵀ ∂L/∂z*``; then switch to the Lagrangian mode."""
        for calls in self.records.values():
            for rec in calls:
                rec["system"] = _LinearSystem(rec["F"], rec["z"], rec["x"], rec["theta"], rec["opts"], self.linear)
                with torch.no_grad():
                    rec["lam"] = rec["system"].adjoint(rec["g"])
        self.mode = "lagrangian"


@contextlib.contextmanager
def _set_on(layers: list[DEQ], attribute: str, value) -> Iterator[None]:
    """``layer.<attribute> = value`` on every layer inside the block, each restored afterwards."""
    previous = [getattr(d, attribute) for d in layers]
    for d in layers:
        setattr(d, attribute, value)
    try:
        yield
    finally:
        for d, p in zip(layers, previous):
            setattr(d, attribute, p)


def _hooked(layers: list[DEQ], hook):
    return _set_on(layers, "curvature_hook", hook)


@contextlib.contextmanager
def _strict_solves(layers: list[DEQ]) -> Iterator[None]:
    """Inside the block every solve of the layers (forward, adjoint, tangent; all orders) raises
    :class:`NotConvergedError` when it does not converge, whatever the layer's ``on_fail``: curvature from an
    unconverged solve is refused (:func:`_strict`). With ``on_fail="ignore"`` the direct mode's products went on
    from the best iterates, each warm-started where the last one stopped: a Hessian 7% off, without a word."""
    previous = [d._solve_opts for d in layers]
    for d in layers:
        d._solve_opts = dataclasses.replace(d._solve_opts, on_fail="raise")
    try:
        yield
    finally:
        for d, p in zip(layers, previous):
            d._solve_opts = p


@contextlib.contextmanager
def _user_code(call: str, **arguments) -> Iterator[None]:
    """Turn an error of the user's model or loss (torch's or Python's, not deqlab's) into one :class:`InputError`
    line naming the call and its arguments' shapes; the original stays chained."""
    try:
        yield
    except (DeqlabError, torch.OutOfMemoryError):
        raise
    except USER_CODE_ERRORS as exc:
        raise user_code_error(call, ", ".join(f"{k} {describe(v)}" for k, v in arguments.items()), exc) from exc


def _require_finite(loss: torch.Tensor) -> None:
    """A loss that is NaN or infinite at ``θ`` has no curvature there (its products failed later as an
    adjoint solve that 'did not converge': non-finite iterates)."""
    if not all_finite(loss.detach()):
        raise InputError(f"the loss is {float(loss.detach())} at the model's parameters (NaN or infinite values in x, y, the "
                         "parameters or loss_fn?): it has no curvature there")


class LossHessian(LinearOperator):
    """``v ↦ ∇²_θ L v`` of ``L(θ) = loss_fn(model(x; θ), y)`` at the model's current parameters.

    Args:
        model: any ``nn.Module``; its DEQ layers must use the exact (``"implicit"``) backward.
        loss_fn: ``loss_fn(output, y) -> scalar`` (e.g. ``nn.functional.cross_entropy``).
        x, y: one batch (``y`` may be ``None``: then ``loss_fn(output, None)``).
        params: names of the parameters forming ``θ`` (default: every parameter with ``requires_grad``),
            kept in ``named_parameters()`` order; the others are held fixed.
        mode: ``"lagrangian"`` (default, cheapest) or ``"direct"`` (see the module docstring).
        linear: the Lagrangian route's linear solves: ``"lu"`` (per-sample dense ``I − J``, factored once;
            memory ``batch·n_z²`` per DEQ call; needs an ``f`` that treats samples independently, checked, and a
            float32 or float64 ``z``),
            ``"iterative"`` (the DEQ's ``linear_solver`` to its tolerance, matrix-free) or ``"auto"`` (``lu``
            when ``batch·n_z² ≤ LU_MAX_ENTRIES``, ``z`` is float32 or float64 and ``f`` is sample-independent, else
            iterative).

    ``shape = (P, P)``; ``dtype`` float64 for scipy (products run in the model's dtype). ``n_products``
    counts the products done. The operator is the Hessian at the point it was made: it keeps copies of
    ``x``, ``y``, ``θ`` and the parameters held fixed, so later changes to the parameters (an optimizer
    step) or to the batch do not reach it.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, x: torch.Tensor, y=None, *, params=None,
                 mode: str = "lagrangian", linear: str = "auto"):
        # (each failed later as an AttributeError or TypeError inside the first pass)
        if not isinstance(model, nn.Module):
            raise InputError(f"model must be an nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise InputError(f"loss_fn must be a function loss_fn(output, y) -> scalar, got {type(loss_fn).__name__}")
        if params is not None and not isinstance(params, str):
            params = list(params) if isinstance(params, Iterable) else params   # (a generator: read once)
            if not isinstance(params, list) or not all(isinstance(k, str) for k in params):
                raise InputError(f"params must be a parameter name or a list of names, got {params!r}")
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if linear not in LINEAR:
            raise InputError(f"linear must be one of {', '.join(LINEAR)}, got {linear!r}")
        layers = deq_layers(model)
        nested = [d for d in layers if any(isinstance(m, DEQ) for m in d.f.modules())]
        if nested and mode == "lagrangian":
            raise InputError("DEQ layers nested inside other DEQs' maps need mode='direct'")
        approximate = [d for d in layers if not d.exact_derivatives]
        if approximate:
            raise InputError(
                f"the model has DEQ layers with an approximate backward ({', '.join(d.backward for d in approximate)}); "
                "its Hessian would not be the model's: use backward='implicit'"
            )
        named = dict(model.named_parameters())
        if params is None:
            names = [k for k, p in named.items() if p.requires_grad]
        else:
            params = [params] if isinstance(params, str) else list(params)   # one name, not its letters
            unknown = [k for k in params if k not in named]
            if unknown:
                raise InputError(f"unknown parameters {unknown}; the model has: {', '.join(named)}")
            names = [k for k in named if k in set(params)]
        if not names:
            raise InputError("no parameters to differentiate (none has requires_grad, or params is empty)")
        # The operator is H at this point: it keeps its own copies of the batch, θ, the parameters held fixed and
        # the buffers (cheap: one batch, one parameter vector, the running statistics), and the train/eval mode of
        # every module. It held the fixed parameters, x and y by reference, so an optimizer step or a reused batch
        # buffer after it was made changed them under the records of z* and λ: its products were then the Hessian
        # of no point (99% off the operator's own first product); a later training-mode forward moved a
        # BatchNorm's running statistics under it the same way (products 0.9% off, matching neither point).
        # Copies made outside torch.inference_mode() also let autograd, which every product needs, use a batch
        # made inside it.
        with torch.inference_mode(False):
            x, y = (t.detach().clone() if isinstance(t, torch.Tensor) else t for t in (x, y))
            self.theta = torch.cat([named[k].detach().reshape(-1) for k in names])
            self.fixed = {k: p.detach().clone() for k, p in named.items() if k not in set(names)}
            buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
            self.fixed.update(buffers)
        self._modes = [(m, m.training) for m in model.modules()]
        self.model, self.loss_fn, self.x, self.y = model, loss_fn, x, y
        self.names = tuple(names)
        self.shapes = [named[k].shape for k in self.names]
        # (θ is one tensor in the promoted dtype: a float32 parameter beside float64 ones came back as float64,
        # and a map that casts its input to the parameter's dtype failed with a dtype clash named as f's error)
        self.dtypes = [named[k].dtype for k in self.names]
        self.n_products = 0
        self.deq_layers = layers
        self.mode = mode
        super().__init__(dtype=np.float64, shape=(self.theta.numel(), self.theta.numel()))
        self._grad = None
        # One plain evaluation first (the Lagrangian route's recording pass is one): a model that draws random
        # numbers (Dropout in training mode) or updates buffers (BatchNorm in training mode) is refused here,
        # before any product; its products differed call to call, or failed inside torch.func.
        check = purity_check(model, "the model", buffers)
        if mode == "lagrangian":
            self._lagrangian = _Lagrangian(linear)
            # (an operator made inside torch.no_grad() or torch.inference_mode() still needs this pass's graph)
            with (torch.inference_mode(False), torch.enable_grad(), warm_start(model), _strict_solves(layers),
                  _hooked(layers, self._lagrangian)):
                leaf = self.theta.clone().requires_grad_()
                self._lagrangian.start_pass()
                loss = self.loss(leaf)
                check()
                _require_finite(loss)
                # (a loss with a graph that does not reach θ, a constant made with requires_grad=True, failed in
                # torch.autograd.grad with 'appears to not have been used in the graph': a traceback)
                grad = torch.autograd.grad(loss, leaf, allow_unused=True)[0] if loss.requires_grad else None
                if grad is None:
                    raise InputError("loss_fn's value does not depend differentiably on the parameters "
                                     "(it has no autograd graph to them: an argmax, a comparison or a detach inside?)")
                self._grad = grad.detach()
            self._lagrangian.finish()
        else:
            with torch.inference_mode(False), torch.no_grad(), warm_start(model), _strict_solves(layers):
                loss = self.loss(self.theta)
            check()
            _require_finite(loss)

    @property
    def device(self) -> torch.device:
        """Where the products run (``θ``'s device); the spectral routines draw their probes there."""
        return self.theta.device

    # --- the torch route ----------------------------------------------------------------------------
    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """``θ (P,)`` as named tensors (views)."""
        out, start = {}, 0
        for k, s, dtype in zip(self.names, self.shapes, self.dtypes):
            n = int(np.prod(s)) if len(s) else 1
            out[k] = theta[start : start + n].reshape(s).to(dtype)   # (a no-op where θ has the parameter's dtype)
            start += n
        return out

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        """``L(θ)`` as a pure function of ``θ (P,)``."""
        # (a y of the wrong length or dtype, or an x the model's first layer cannot take, was torch's own
        # ValueError/RuntimeError from inside the first pass; the DEQ layers' errors are deqlab's already)
        with _user_code("model(x)", x=self.x), _modes_as(self._modes):
            out = torch.func.functional_call(self.model, {**self.fixed, **self.unflatten(theta)}, (self.x,))
        with _user_code("loss_fn(output, y)", output=out, y=self.y):
            value = self.loss_fn(out, self.y)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise InputError(f"loss_fn must return a scalar tensor (a mean or a sum over the batch), got {shape}")
        return value.reshape(())

    def lagrangian(self, theta: torch.Tensor) -> torch.Tensor:
        """``Φ(θ)`` of the module docstring (``mode="lagrangian"``); equal to ``L`` at this ``θ``."""
        self._lagrangian.start_pass()
        loss = self.loss(theta)
        return loss + sum(self._lagrangian.penalties)

    def gradient(self) -> torch.Tensor:
        """``∇_θ L (P,)`` (implicit backward through every DEQ)."""
        if self._grad is not None:
            return self._grad.clone()
        with warm_start(self.model), _strict_solves(self.deq_layers):
            return torch.func.grad(self.loss)(self.theta).detach()

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``v (P,)`` (torch, the model's dtype)."""
        try:
            v = torch.as_tensor(v, device=self.theta.device).reshape(-1)
        except (TypeError, ValueError, RuntimeError):   # (a string or None: torch's TypeError/RuntimeError)
            raise InputError(f"v must be a real vector of P = {self.shape[0]} numbers, got {type(v).__name__}") from None
        if v.is_complex() or v.dtype == torch.bool:
            # (a complex v would be cast to real with only a warning, and H(1j·u) returned as 0)
            raise InputError(f"v must be a real vector, got {str(v.dtype).removeprefix('torch.')}")
        if v.numel() != self.shape[0]:
            raise InputError(f"v must have P = {self.shape[0]} entries (one per parameter), got {v.numel()}")
        if not all_finite(v):
            raise InputError("v contains NaN or infinite values")
        v = v.to(self.theta.dtype)
        self.n_products += 1
        if self.mode == "lagrangian":
            with _hooked(self.deq_layers, self._lagrangian):
                return torch.func.jvp(torch.func.grad(self.lagrangian), (self.theta,), (v,))[1].detach()
        with warm_start(self.model), _strict_solves(self.deq_layers):
            return torch.func.jvp(torch.func.grad(self.loss), (self.theta,), (v,))[1].detach()

    def dense(self) -> torch.Tensor:
        """``H (P, P)`` column by column (tests and small models only)."""
        eye = torch.eye(self.shape[0], dtype=self.theta.dtype, device=self.theta.device)
        return torch.stack([self.hvp(e) for e in eye], dim=1)

    # --- the scipy LinearOperator protocol ----------------------------------------------------------
    def _matvec(self, v):
        v = torch.as_tensor(np.ravel(v), device=self.theta.device)  # host -> device (hvp checks and casts it)
        return self.hvp(v).detach().cpu().numpy().astype(np.float64)  # device -> host for ARPACK

    def _rmatvec(self, v):  # symmetric
        return self._matvec(v)

    def _adjoint(self):
        return self

    # --- spectra --------------------------------------------------------------------------------------
    def eigenvalues(self, k: int = 5, which: str = "LA", *, tol: float = 1e-8, seed: int = 0) -> np.ndarray:
        """The ``k`` eigenvalues at the ``which`` end (``"LA"`` largest, ``"SA"`` smallest algebraic,
        ``"LM"`` largest magnitude), ascending, by ARPACK Lanczos on this operator."""
        # (int(k) raised ValueError/TypeError for 'a', None or NaN, and took True for k = 1)
        if (isinstance(k, bool) or not isinstance(k, numbers.Real) or not math.isfinite(k) or int(k) != k
                or not 1 <= k < self.shape[0]):
            raise InputError(f"k must be an integer in [1, P) = [1, {self.shape[0]}), got {k!r}")
        return extreme_eigenvalues(self.hvp, self.shape[0], k=int(k), which=which, tol=tol, seed=seed,
                                   dtype=self.theta.dtype)

    def trace(self, probes: int = 32, *, seed: int = 0) -> TraceEstimate:
        """Hutchinson's ``tr H`` from ``probes`` Rademacher products (with its standard error)."""
        return hutchinson_trace(self.hvp, self.shape[0], probes=probes, seed=seed, dtype=self.theta.dtype)

    def spectral_density(self, *, probes: int = 4, steps: int = 40, seed: int = 0) -> SpectralDensity:
        """The eigenvalue density by stochastic Lanczos quadrature (``probes·steps`` products)."""
        return spectral_density(self.hvp, self.shape[0], probes=probes, steps=steps, seed=seed,
                                dtype=self.theta.dtype)


def negative_mass(density: SpectralDensity, threshold: float = 0.0) -> float:
    """Fraction of the eigenvalues below ``threshold`` (default 0) in an SLQ density: the quadrature
    weight of the nodes ``< threshold``, averaged over probes (≈ #{λᵢ < threshold} / P)."""
    return float((density.weights * (density.nodes < threshold)).sum(axis=1).mean())


def negative_share(density: SpectralDensity) -> float:
    """``∫_{λ<0} |λ| dμ / ∫ |λ| dμ`` of an SLQ density: the share of the spectrum's absolute mass (the nuclear
    norm ``Σ|λᵢ|``) carried by negative eigenvalues, in ``[0, 1]``. Unlike :func:`negative_mass` it is not
    decided by the sign of the quadrature node that stands for the near-zero bulk."""
    mass = density.weights * np.abs(density.nodes)
    total = float(mass.sum())
    return float((mass * (density.nodes < 0)).sum()) / total if total > 0 else 0.0


def loss_hessian(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y=None, *, params=None,
                 mode: str = "lagrangian", linear: str = "auto") -> LossHessian:
    """:class:`LossHessian` of ``loss_fn(model(x), y)`` w.r.t. the model's parameters."""
    return LossHessian(model, loss_fn, x, y, params=params, mode=mode, linear=linear)
