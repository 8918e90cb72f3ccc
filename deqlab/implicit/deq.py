"""Bring your own DEQ: any ``nn.Module`` map ``f(z, x)`` as an implicit layer with exact derivatives of every order.

``DEQ(f, n_z)`` wraps a user module ``f`` (with its own parameters θ) whose call ``f(z, x)`` maps
``z (batch, n_z)`` and an input ``x`` (batch first) to ``(batch, n_z)``. Calling the layer::

    z* = deq(x)            z* = f(z*, x),   solved from z⁰ = 0 (or ``deq(x, z0=...)``)

by a solver of :data:`deqlab.solvers.registry.SOLVERS` chosen by name, without recording the
iterations. ``f`` is evaluated as the pure map ``F(z, x, *θ) = functional_call(f, θ, (z, x))`` and the
solve goes through :func:`deqlab.implicit.layer.fixed_point`, so (GUIDE §5, ``J = ∂f/∂z`` at ``z*``)

* gradients: ``∂L/∂(x, θ) = (∂f/∂(x, θ))ᵀ λ`` with ``λ = (I − J)⁻ᵀ ∂L/∂z*`` (one adjoint solve);
* forward mode: ``ż = (I − J)⁻¹ (∂f/∂(x, θ)) · (ẋ, θ̇)`` (one tangent solve);
* every higher order (double backward, ``gradgradcheck``, ``torch.func.hessian``, ``jacfwd∘jacrev``,
  ``vmap``) recursively through the same rules; memory does not grow with the iteration count.

Non-smooth maps (ReLU, ``abs``, ``max`` inside ``f``): the rules above use ``f``'s derivatives as autograd
gives them, so the results are exact wherever ``f`` is differentiable at ``z*`` (almost everywhere; a
piecewise-linear activation contributes no curvature) and follow autograd's one-sided convention at a
kink (``ReLU'(0) = 0``: e.g. a zero bias and a zero input put every ReLU of ``f`` exactly at its kink).
The layer cannot see a kink inside a user's ``f`` and does not refuse there; use a smooth ``f`` for
curvature. (:mod:`deqlab.nethessian` refuses ReLU-like activations by name.)

The layer works inside ordinary models (layers before and after), under
``torch.func.functional_call`` (the layer reads ``f``'s parameters at call time, so substituted
tensors are the ones differentiated) and under the ``torch.func`` transforms.

Backwards (:data:`BACKWARDS`):

* ``"implicit"`` (default): the exact rules above. These are the only derivatives that
  :mod:`deqlab.implicit.curvature` accepts.
* ``"jacobian_free"`` — **approximate**: ``(I − J)⁻¹ ≈ I`` (Fung et al., AAAI 2022, "JFB"): the output
  is ``f(z*, x)`` with the graph of that one application only.
* ``"phantom"`` — **approximate**: ``k`` damped steps ``z ← (1 − τ) z + τ f(z, x)`` from ``z*`` kept in
  the graph (Geng et al., NeurIPS 2021, "phantom gradients"; ``k = 1, τ = 1`` is JFB).

The approximate backwards give first derivatives that differ from the true ones by design; their
higher derivatives are those of the short unroll, not of ``z*``. ``deq.exact_derivatives`` says which.

After each call ``deq.stats`` (:class:`SolveStats`) holds the forward solve's steps, residuals and
convergence (the most recent forward solve, also when the call raised :class:`NotConvergedError`).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from deqlab.errors import DeqlabError, InputError, first_line, require_count
from deqlab.implicit.closure import require_closed_map
from deqlab.implicit.layer import SolveOptions, fixed_point_unchecked, options_or, require_unmodified, version_of
from deqlab.solvers.result import ConvergenceVerdicts, SolverResult, all_finite, check_image, describe

#: What a user's module, map or loss raises on input it cannot take; deqlab's own errors and an out-of-memory
#: error are let through first by the callers (they say what they are already).
USER_CODE_ERRORS = (RuntimeError, TypeError, ValueError, IndexError)


def user_code_error(call: str, on: str, exc: BaseException) -> InputError:
    """One :class:`InputError` line for ``exc``, raised inside the user's code: ``{call} raised {type} on {on}:
    {its first line}`` (raise it ``from exc``: the original stays chained)."""
    return InputError(f"{call} raised {type(exc).__name__} on {on}: {first_line(exc)}")


#: The backward rules by name; only ``"implicit"`` is exact.
BACKWARDS = ("implicit", "jacobian_free", "phantom")


@dataclass(frozen=True)
class SolveStats(ConvergenceVerdicts):
    """What the last forward solve did.

    Attributes:
        n_steps: solver iterations.
        n_fevals: evaluations of ``f`` on the whole batch.
        residual: ``(batch,)`` ``‖f(z*) − z*‖₂`` per sample (for a ``vmap``-ed call: per joint row).
        converged: ``(batch,)`` bool, the stopping rule holds.
        solver: registry name.
        wall_time: seconds in the solver.
    """

    n_steps: int
    n_fevals: int
    residual: torch.Tensor
    converged: torch.Tensor
    solver: str
    wall_time: float

    @classmethod
    def from_result(cls, res: SolverResult) -> SolveStats:
        return cls(int(res.n_steps), int(res.n_fevals), res.residual.detach().clone(), res.converged.detach().clone(),
                   res.solver, float(res.wall_time))


def _rng_states() -> list[torch.Tensor]:
    """The states of torch's global generators (the CPU one, and every CUDA one once CUDA is in use)."""
    states = [torch.get_rng_state()]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states += torch.cuda.get_rng_state_all()
    return states


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors of one shape hold the same values, NaN matching NaN (``torch.equal`` does not)."""
    return torch.equal(a, b) or (a.is_floating_point() and bool(((a == b) | (a.isnan() & b.isnan())).all()))


def purity_check(module: nn.Module, what: str, buffers: dict[str, torch.Tensor] | None = None) -> Callable[[], None]:
    """A check to call after evaluating ``module``: it raises :class:`InputError` if, since this call, a buffer
    of ``module`` was modified in place or torch's global random generators were drawn from. ``buffers``: the
    tensors to watch instead of ``module``'s own, where it is evaluated with copies of them (``functional_call``).

    A DEQ's map, and a model whose curvature is asked for, must be pure functions of their inputs and
    parameters. A ``Dropout`` in training mode makes the map random: its forward solve did not converge
    (500 steps, with no word of why) or, with ``on_fail="ignore"``, returned a point of no map, and each
    Hessian-vector product of :class:`~deqlab.implicit.curvature.LossHessian` used another mask (two
    products of the same ``v`` differed by 70%). A ``BatchNorm`` in training mode updates its running
    statistics in place at every evaluation (hundreds of times in one solve), and ``torch.func`` then
    failed with 'attempted to call in-place operation ... that would mutate a captured Tensor'. Both show
    here cheaply: a buffer's version counter, and the generator states (~1 µs per state).

    The generators are compared only when some module of ``module`` is in training mode: they are shared by
    every thread of the process, so a model served in eval mode beside a thread that draws random
    numbers would be refused for that thread's draws (a map that draws random numbers in eval mode is
    not detected).

    A refusal leaves no trace: with some module in training mode the buffers are copied here (a
    BatchNorm's statistics: a few vectors) and put back before raising, as are the generator states.
    Without that, the running statistics the error asks to keep by calling ``.eval()`` were those of
    the hundreds of iterates of the refused solve. (A buffer modified by a module in eval mode is
    refused as well, but not put back: nothing was copied.)"""
    training = any(m.training for m in module.modules())
    rng = _rng_states() if training else None
    named = module.named_buffers() if buffers is None else buffers.items()
    versions = [(name, b, b._version) for name, b in named if not b.is_inference()]
    saved = [b.detach().clone() for _, b, _ in versions] if training else None

    def undo() -> None:
        if saved is not None:
            with torch.no_grad():
                for (_, b, _), before in zip(versions, saved):
                    b.copy_(before)
        if rng is not None:
            torch.set_rng_state(rng[0])
            if len(rng) > 1:
                torch.cuda.set_rng_state_all(rng[1:])

    def check() -> None:
        # (with a copy, values too: torch's batch_norm writes running_mean/var without bumping their versions)
        changed = [name for (name, b, v), before in zip(versions, saved or [None] * len(versions))
                   if b._version != v or (before is not None and not _same(b, before))]
        if changed:
            undo()
            put_back = " (they were put back as they were before)" if saved is not None else ""
            raise InputError(f"{what} modified its buffers in place ({', '.join(changed)}; a BatchNorm in training mode "
                             f"updates its running statistics){put_back}: derivatives need a pure function of the inputs "
                             "and parameters: call .eval() on it (or use BatchNorm(track_running_stats=False))")
        if rng is None:
            return
        now = _rng_states()
        if len(now) == len(rng) and not all(torch.equal(a, b) for a, b in zip(now, rng)):
            undo()
            raise InputError(f"{what} draws random numbers (a Dropout in training mode?): it is a different function "
                             "at every evaluation, with no fixed point or curvature: call .eval() on it")

    return check


def tensors_in_graph(f: nn.Module, nodes: set, leaves: list[torch.Tensor]) -> list[str]:
    """Dotted names of the tensor attributes of ``f``'s modules (neither parameters nor buffers) that a graph holds:
    one of its ``leaves`` or the output of one of its ``nodes`` (``f.W_eff = A * 0.5``): the names for
    :func:`deqlab.implicit.closure.require_closed_map`'s message."""
    return [f"{prefix}.{k}" if prefix else k for prefix, m in f.named_modules() for k, v in vars(m).items()
            if isinstance(v, torch.Tensor) and v.requires_grad and (v.grad_fn in nodes or any(v is t for t in leaves))]


@dataclass(frozen=True)
class _RecordingOptions(SolveOptions):
    """:class:`SolveOptions` that hands each *forward* (non-linear) solve's result to ``record`` before
    applying ``on_fail``, so a failed solve's statistics stay readable, after ``guard``'s check: ``guard()``
    is called before the forward solve and returns the check to call after it (:func:`purity_check`)."""

    record: Callable[[SolverResult], None] | None = field(default=None, compare=False, repr=False)
    guard: Callable[[], Callable[[], None]] | None = field(default=None, compare=False, repr=False)

    def solve(self, F, z0, *, linear: bool):
        check = self.guard() if not linear and self.guard is not None else None
        res = SolveOptions.solve(dataclasses.replace(self, on_fail="ignore"), F, z0, linear=linear)
        if check is not None:
            check()
        if not linear and self.record is not None:
            self.record(res)
        self.require_usable(res, F, linear=linear)
        return res


class DEQ(nn.Module):
    """``z* = f(z*, x)`` for a user module ``f``; see the module docstring.

    Args:
        f: an ``nn.Module`` called as ``f(z, x)`` with ``z (batch, n_z)``, returning ``(batch, n_z)``.
            It must be a pure function of its inputs and parameters/buffers: a map that modifies a buffer
            in place (``BatchNorm`` in training mode) or draws random numbers (``Dropout`` in training
            mode) is refused after the forward solve (:class:`InputError`, :func:`purity_check`).
        n_z: the equilibrium's width.
        solver: registry name of the forward solver (overrides ``opts.solver``); ``None`` keeps
            ``opts.solver``.
        opts: the stopping rule and solvers of every solve (forward, adjoint, tangent; all orders),
            :class:`deqlab.implicit.layer.SolveOptions`. ``on_fail="raise"`` (default) raises
            :class:`NotConvergedError`, and :class:`~deqlab.errors.IllConditionedError` for an adjoint or
            tangent solve provably too ill-conditioned to trust (``I − J`` near singular,
            :meth:`SolveOptions.require_usable`); ``"ignore"`` returns the best iterate (check ``stats``).
        backward: ``"implicit"`` (exact) | ``"jacobian_free"`` (approximate) | ``"phantom"`` (approximate).
        phantom_steps, phantom_damping: ``k ≥ 1`` and ``τ ∈ (0, 1]`` of the phantom backward.

    Attributes:
        stats: :class:`SolveStats` of the last forward solve (``None`` before the first call).
        exact_derivatives: ``True`` only for the implicit backward.
    """

    def __init__(self, f: nn.Module, n_z: int, *, solver: str | None = None, opts: SolveOptions | None = None,
                 backward: str = "implicit", phantom_steps: int = 5, phantom_damping: float = 0.5):
        super().__init__()
        if not isinstance(f, nn.Module):
            raise InputError(f"f must be an nn.Module called as f(z, x), got {type(f).__name__}")
        n_z = require_count("n_z", n_z)
        if backward not in BACKWARDS:
            raise InputError(f"unknown backward {backward!r}; choose one of: {', '.join(BACKWARDS)}")
        phantom_steps = require_count("phantom_steps", phantom_steps)
        # (a string was Python's TypeError from the comparison)
        if isinstance(phantom_damping, bool) or not isinstance(phantom_damping, numbers.Real) or not 0 < phantom_damping <= 1:
            raise InputError(f"phantom_damping must be in (0, 1], got {phantom_damping!r}")
        opts = options_or(opts, SolveOptions())
        if solver is not None:
            opts = dataclasses.replace(opts, solver=solver)   # checked by SolveOptions itself
        self.f = f
        self.n_z = int(n_z)
        self.backward = backward
        self.phantom_steps, self.phantom_damping = int(phantom_steps), float(phantom_damping)
        self.opts = SolveOptions(**{k.name: getattr(opts, k.name) for k in dataclasses.fields(SolveOptions)})
        self._solve_opts = _RecordingOptions(**dataclasses.asdict(self.opts), record=self._record,
                                             guard=self._purity_check)
        self.stats: SolveStats | None = None
        self.last_solution: torch.Tensor | None = None
        #: When set (by :func:`deqlab.implicit.curvature.warm_start`), calls without ``z0`` start from the
        #: last forward solution if its shape fits: ``z*`` does not depend on the start, the solve is cheaper.
        self.warm_start = False
        #: Set only inside :class:`deqlab.implicit.curvature.LossHessian` (its Lagrangian products): a callable
        #: ``(deq, F, start, x, theta) -> z`` that replaces the implicit branch of :meth:`forward`.
        self.curvature_hook: Callable | None = None

    @property
    def exact_derivatives(self) -> bool:
        return self.backward == "implicit"

    def extra_repr(self) -> str:
        label = "" if self.exact_derivatives else " (approximate)"
        return f"n_z={self.n_z}, solver={self.opts.solver!r}, backward={self.backward!r}{label}"

    def _purity_check(self) -> Callable[[], None]:
        return purity_check(self.f, "the DEQ's map f")

    def implicit_solution(self, F: Callable, start: torch.Tensor, x: torch.Tensor, theta: tuple) -> torch.Tensor:
        """``z* = F(z*, x, *θ)`` with the implicit derivatives (:func:`fixed_point`), refused when ``f``'s value
        depends on a tensor requiring grad that is neither ``x`` nor a parameter or buffer of ``f``, or hides its
        dependence on ``z`` (:func:`deqlab.implicit.closure.require_closed_map`)."""
        z = fixed_point_unchecked(F, start, x, *theta, opts=self._solve_opts)
        require_closed_map(F, z, (x, *theta), map_name="the DEQ's map f", outside="parameters or buffers of f (or x)",
                           remedy="register them (a module kept in a Python list or dict is not registered: use "
                                  "nn.ModuleList or nn.ModuleDict) or compute them inside f.forward from f's parameters",
                           names=lambda nodes, leaves: tensors_in_graph(self.f, nodes, leaves))
        return z

    def _record(self, res: SolverResult) -> None:
        self.stats = SolveStats.from_result(res)
        self.last_solution = res.z.detach()

    def _pure_map(self, names: tuple[str, ...]) -> Callable:
        f = self.f

        n_z = self.n_z

        def F(z, x, *theta):
            before, before_x = version_of(z), version_of(x)
            try:
                fz = torch.func.functional_call(f, dict(zip(names, theta)), (z, x))
            except (DeqlabError, torch.OutOfMemoryError):
                raise
            except USER_CODE_ERRORS as exc:
                # (a width n_z that is not f's came out of f's first layer as torch's 'mat1 and mat2 shapes cannot
                # be multiplied (5x5 and 4x4)', naming neither n_z nor z; the original stays chained)
                raise user_code_error("f(z, x)", f"z {describe(z)} (n_z = {n_z}) and x {describe(x)}", exc) from exc
            # Checked on every call (a few attribute reads), not only by the solver: the backward's
            # linear solves evaluate F too. Under vmap both sides lose the batch alike.
            check_image(z, fz, "f(z, x)")
            require_unmodified(z, before, "f(z, x)")
            require_unmodified(x, before_x, "f(z, x)", "x")
            return fz

        return F

    def _start(self, x: torch.Tensor, z0: torch.Tensor | None, dtype) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim == 0:   # (a list or a scalar failed on x.shape[0])
            raise InputError(f"x must be a tensor with the batch as its first dimension, got {describe(x)}")
        # (a float32 or complex x into a float64 f failed inside f with torch's dtype clash, and a NaN in x
        # as a forward solve that 'did not converge': non-finite iterates, with nothing naming x)
        if x.is_complex() or (x.is_floating_point() and x.dtype != dtype):
            raise InputError(f"x must have f's dtype {str(dtype).removeprefix('torch.')} (or be an integer tensor of "
                             f"ids), got {describe(x)}")
        if x.is_floating_point() and not torch._C._functorch.is_functorch_wrapped_tensor(x) and not all_finite(x):
            raise InputError("x contains NaN or infinite values")   # (not checked under vmap: no host read there)
        batch = x.shape[0]
        if z0 is not None:
            if not isinstance(z0, torch.Tensor) or z0.shape != (batch, self.n_z):
                raise InputError(f"z0 must have shape (batch, n_z) = {(batch, self.n_z)}, got {describe(z0)}")
            if z0.is_floating_point() and z0.dtype != dtype:   # (else f's own layers fail on the mixed dtypes)
                raise InputError(f"z0 must have f's dtype {str(dtype).removeprefix('torch.')}, got {describe(z0)}")
            return z0.detach()
        last = self.last_solution
        if self.warm_start and last is not None and last.shape == (batch, self.n_z) and last.dtype == dtype:
            return last
        return torch.zeros(batch, self.n_z, dtype=dtype, device=x.device)

    def forward(self, x: torch.Tensor, z0: torch.Tensor | None = None) -> torch.Tensor:
        """``z* (batch, n_z)`` with ``z* = f(z*, x)``; ``x`` batch first."""
        named = dict(self.f.named_parameters())
        named.update(dict(self.f.named_buffers()))
        names = tuple(named)
        theta = tuple(named.values())
        F = self._pure_map(names)
        floating = [t for t in theta if t.is_floating_point()]   # (an integer buffer first would make z integer)
        # (with no floating parameter and an integer x, z started as an integer tensor, refused as a "z0" never given)
        dtype = (floating[0].dtype if floating else x.dtype if isinstance(x, torch.Tensor) and x.is_floating_point()
                 else torch.get_default_dtype())
        start = self._start(x, z0, dtype)
        if self.backward == "implicit":
            if self.curvature_hook is not None:
                return self.curvature_hook(self, F, start, x, theta)
            return self.implicit_solution(F, start, x, theta)
        with torch.no_grad():
            res = self._solve_opts.solve(lambda z: F(z, x, *theta), start, linear=False)
        z = res.z.detach()
        if self.backward == "jacobian_free":
            return self.f(z, x)
        tau = self.phantom_damping
        for _ in range(self.phantom_steps):
            z = (1 - tau) * z + tau * self.f(z, x)
        return z
