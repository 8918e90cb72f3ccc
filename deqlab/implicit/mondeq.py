"""The monDEQ equilibrium as a differentiable layer: any solver forward, implicit (IFT) backward.

Forward: ``z* = σ(W z* + U x + b)`` by a splitting solver (:mod:`deqlab.solvers.splitting`) or any
registered black-box solver, without building a graph.

Backward (implicit function theorem): with ``a = W z* + U x + b``, ``D = diag σ'(a)`` and the
layer Jacobian ``J = ∂f/∂z = D W``, a cotangent ``v = ∂L/∂z*`` is mapped to

    g = (I − J)⁻ᵀ v,       i.e.   (I − Wᵀ D) g = v      (per sample, a dense ``n×n`` solve),

and pulled back through one differentiable application of the layer at ``z*``:
``∂L/∂θ = (∂f/∂θ)ᵀ g``. ``I − J`` is invertible for a monDEQ with ``σ' ∈ [0, 1]``
(Winston & Kolter 2020, Sec. 3: ``I − DW`` is nonsingular when ``I − W ⪰ mI``). The same code is
used for the unconstrained DEQ, where nothing guarantees it.

The same equation is also solved matrix-free by Peaceman–Rachford (``backward="peaceman_rachford"``,
Winston & Kolter's backward pass), reusing one LU factorisation for the batch.

Shapes: ``x (batch, n_x)``, ``z (batch, n_z)``. Tested in float64 against autodiff through an
unrolled solve, central finite differences and ``torch.autograd.gradcheck``.
"""

from __future__ import annotations

import inspect

import torch

from deqlab.errors import IllConditionedError, InputError, NotConvergedError, require_count
from deqlab.implicit.conditioning import pivot_condition, require_well_conditioned
from deqlab.implicit.first_order import refuse_second_order
from deqlab.solvers.registry import SOLVERS, get_solver
from deqlab.solvers.result import SolverResult
from deqlab.solvers.splitting import SPLITTING_SOLVERS, get_splitting_solver, layer_map, peaceman_rachford_backward

#: Every forward method by config name: the splitting methods and the black-box solvers.
FORWARD_METHODS = (*SPLITTING_SOLVERS, *SOLVERS)


def solve_equilibrium(model, x: torch.Tensor, *, method: str = "peaceman_rachford", alpha: float = 1.0,
                      atol: float = 1e-8, rtol: float = 0.0, max_iter: int = 500,
                      z0: torch.Tensor | None = None, **options) -> SolverResult:
    """Find ``z*`` for a model with ``.weight()``, ``.injection(x)`` and ``.nl`` (no graph).

    ``method`` is a splitting solver (uses ``alpha``) or a name of :data:`deqlab.solvers.SOLVERS`.
    """
    if options and method in FORWARD_METHODS:   # (an option the method does not take was a TypeError from the call)
        solver = get_splitting_solver(method) if method in SPLITTING_SOLVERS else get_solver(method)
        takes = [k for k, p in inspect.signature(solver).parameters.items() if p.kind is p.KEYWORD_ONLY]
        unknown = [k for k in options if k not in takes]
        if unknown:
            extra = ", ".join(k for k in takes if k not in ("nonlinearity", "alpha", "atol", "rtol", "max_iter"))
            raise InputError(f"method {method!r} takes no option {', '.join(unknown)} (it takes: alpha, atol, rtol, "
                             f"max_iter, z0{', ' + extra if extra else ''})")
    with torch.no_grad():
        W = model.weight().detach()
        c = model.injection(x).detach()
        start = torch.zeros_like(c) if z0 is None else z0
        if method in SPLITTING_SOLVERS:
            return get_splitting_solver(method)(W, c, start, nonlinearity=model.nl, alpha=alpha, atol=atol,
                                                rtol=rtol, max_iter=max_iter, **options)
        if method in SOLVERS:
            return get_solver(method)(layer_map(W, c, model.nl), start, atol=atol, rtol=rtol,
                                      max_iter=max_iter, **options)
    raise InputError(f"unknown method {method!r}; choose one of: {', '.join(FORWARD_METHODS)}")


def implicit_backward_matrix(model, z_star: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(I − J)ᵀ = I − Wᵀ D`` per sample: ``(batch, n, n)`` (detached)."""
    with torch.no_grad():
        W = model.weight().detach()
        D = model.nl.dsigma(z_star @ W.T + model.injection(x))
        eye = torch.eye(W.shape[0], dtype=W.dtype, device=W.device)
        return eye - W.T[None] * D[:, None, :]


#: Why the layer refuses forward mode and second derivatives (:class:`_ImplicitAdjoint`).
FIRST_ORDER_ONLY = ("the monDEQ layer's implicit backward gives first derivatives by reverse mode only: forward-mode "
                    "derivatives (jvp, jacfwd, a Hessian) and second derivatives through it would miss dz*/dθ; wrap the "
                    "layer's map in deqlab.implicit.DEQ for exact derivatives of every order")


class _ImplicitAdjoint(torch.autograd.Function):
    """``z = f(z*, x)`` passed on unchanged; its backward maps the cotangent ``v`` to ``(I − J)⁻ᵀ v`` by
    ``solve`` before it enters ``f``'s graph, which turns ``f``'s one-step VJP into the implicit gradient.

    That graph is built at a detached ``z*`` and ``solve`` at a fixed ``J``, so only that gradient is
    right: a JVP through the layer, or a second derivative through the gradient, would treat ``z*`` as a
    constant and return a wrong number. The JVP raises :class:`InputError`; under ``create_graph`` the
    gradient is tied to ``f(z*, x)`` by :func:`~deqlab.implicit.first_order.refuse_second_order`, so
    differentiating it again raises too."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z, solve):
        return z.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.solve = inputs[1]
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, v):
        return refuse_second_order(ctx.solve(v), ctx.saved_tensors[0], FIRST_ORDER_ONLY), None

    @staticmethod
    def jvp(ctx, *_):
        raise InputError(FIRST_ORDER_ONLY)


BACKWARDS = ("dense", "peaceman_rachford")
#: What the iterative backward does when its solve does not meet its tolerance.
ON_FAIL = ("raise", "return")


def attach_implicit_backward(model, z_star: torch.Tensor, x: torch.Tensor, *, backward: str = "dense",
                             alpha: float = 1.0, atol: float = 1e-12, rtol: float = 0.0, max_iter: int = 1000,
                             record: list | None = None, on_fail: str = "raise") -> torch.Tensor:
    """``z = f(z*, x)`` (equal to ``z*`` up to the solver's residual) whose gradient is the implicit one.

    ``backward="dense"``: one batched ``n×n`` solve of ``(I − Wᵀ D) g = v`` per sample.
    ``backward="peaceman_rachford"``: the same equation by
    :func:`deqlab.solvers.splitting.peaceman_rachford_backward` (one LU of ``I + α(I − W)`` for the
    whole batch; ``alpha``, ``atol``, ``rtol``, ``max_iter`` are its settings; its
    :class:`SolverResult` is appended to ``record`` if given). When that solve stops short of its
    tolerance, ``on_fail="raise"`` (default) raises :class:`~deqlab.errors.NotConvergedError` from
    ``backward()`` (a gradient off by the solve's residual is not the implicit gradient);
    ``on_fail="return"`` returns it anyway, for a caller that reads ``record``.

    First derivatives by reverse mode only (``backward()``, ``torch.autograd.grad``, ``torch.func.grad``
    and ``jacrev``): forward mode and second derivatives raise :class:`InputError` (see
    :class:`_ImplicitAdjoint`); :class:`deqlab.implicit.DEQ` has exact derivatives of every order.
    """
    if backward not in BACKWARDS:
        raise InputError(f"unknown backward {backward!r}; choose one of: {', '.join(BACKWARDS)}")
    if on_fail not in ON_FAIL:
        raise InputError(f"unknown on_fail {on_fail!r}; choose one of: {', '.join(ON_FAIL)}")
    z_star = z_star.detach()
    z = model.f(z_star, x)
    if not z.requires_grad:   # no backward to prepare; a forward-mode tangent (no requires_grad) still meets the JVP's refusal
        return _ImplicitAdjoint.apply(z, None)
    if backward == "dense":
        M = implicit_backward_matrix(model, z_star, x)

        factors = []

        def dense_solve(v):
            # M is factored once, at the first backward (M is a plain tensor there, also when v is batched by
            # jacrev's vmap, so its check may read the host). torch.linalg.solve raised torch's own LinAlgError
            # ('the input matrix is singular') where I − Wᵀ D is singular (a free W with an eigenvalue 1 of D W:
            # no implicit gradient exists there).
            # A nearly singular one is refused as well (require_well_conditioned, as every implicit derivative of
            # deqlab.implicit): a free W with cond(I − Wᵀ D) = 2e16 gave a gradient 13% off, without a word.
            if not factors:
                try:
                    lu, pivots = torch.linalg.lu_factor(M)
                    singular = not bool(torch.isfinite(lu).all())
                except RuntimeError:   # (torch: "U[1,1] is zero and using it on lu_solve would result in a division by zero")
                    singular = True
                if singular:
                    raise IllConditionedError("I - W^T D is singular at the fixed point (the layer's Jacobian has an "
                                              "eigenvalue 1): there is no implicit gradient there")
                require_well_conditioned(pivot_condition(lu), lu.dtype, "I - W^T D at the fixed point")
                factors.append((lu, pivots))
            lu, pivots = factors[0]
            return torch.linalg.lu_solve(lu, pivots, v.unsqueeze(-1)).squeeze(-1)

        return _ImplicitAdjoint.apply(z, dense_solve)
    with torch.no_grad():
        W = model.weight().detach()
        d = model.nl.dsigma(z_star @ W.T + model.injection(x))

    def solve(v):
        res = peaceman_rachford_backward(W, d, v.detach(), alpha=alpha, atol=atol, rtol=rtol, max_iter=max_iter)
        if record is not None:
            record.append(res)
        if on_fail == "raise" and not res.all_converged:
            raise NotConvergedError(f"the Peaceman–Rachford implicit backward did not converge: {res.message}, "
                                    f"residual {res.max_residual:.3g} against atol={atol:g}, rtol={rtol:g} "
                                    f"(raise its max_iter={max_iter}, or use the dense backward)")
        return res.z

    return _ImplicitAdjoint.apply(z, solve)


def implicit_equilibrium(model, x: torch.Tensor, *, backward: str = "dense", backward_options: dict | None = None,
                         **solve_options) -> tuple[torch.Tensor, SolverResult]:
    """``(z*, result)`` with ``z*`` differentiable w.r.t. the model's parameters and ``x`` (IFT backward).

    ``solve_options`` go to :func:`solve_equilibrium`; ``backward`` and ``backward_options`` to
    :func:`attach_implicit_backward`.
    """
    backward_options = dict(backward_options or {})
    unknown = [k for k in backward_options if k not in BACKWARD_OPTIONS]
    if unknown:   # (a TypeError from the call, 'got multiple values for argument' for x)
        raise InputError(f"backward_options takes no {', '.join(map(repr, unknown))} (it takes: {', '.join(BACKWARD_OPTIONS)})")
    result = solve_equilibrium(model, x, **solve_options)
    return attach_implicit_backward(model, result.z, x, backward=backward, **backward_options), result


#: The keyword options of :func:`attach_implicit_backward` that ``backward_options`` may set.
BACKWARD_OPTIONS = ("alpha", "atol", "rtol", "max_iter", "record", "on_fail")


def unrolled_equilibrium(model, x: torch.Tensor, steps: int, *, alpha: float = 1.0,
                         z0: torch.Tensor | None = None) -> torch.Tensor:
    """``steps`` forward-backward steps ``z⁺ = prox_{αf}((1−α)z + α(Wz + c))`` kept in the graph.

    The independent route for derivative tests (``α = 1``: fixed-point iteration). Differentiable
    only where ``prox_{αf} = σ``, i.e. ``α = 1`` or ReLU.
    """
    steps = require_count("steps", steps, minimum=0)
    if not (alpha == 1.0 or model.nl.alpha_free):
        raise InputError("unrolled_equilibrium differentiates through prox only when alpha = 1 or for relu")
    W = model.weight()
    c = model.injection(x)
    z = torch.zeros_like(c) if z0 is None else z0
    for _ in range(steps):
        z = model.nl.sigma((1 - alpha) * z + alpha * (z @ W.T + c))
    return z
