"""monDEQ parametrisation, the prox nonlinearities and the implicit backward (float64, three routes)."""


import numpy as np
import pytest
import scipy.optimize
import torch

from deqlab.errors import InputError, NotConvergedError
from deqlab.models.mondeq import (
    NONLINEARITIES,
    MonDEQ,
    UnconstrainedDEQ,
    forward_backward_bound,
    lipschitz,
    mondeq_weight,
    monotonicity,
)
from deqlab.implicit.mondeq import (
    attach_implicit_backward,
    implicit_equilibrium,
    solve_equilibrium,
    unrolled_equilibrium,
)

DT = torch.float64
#: λ_min(sym(I − W)) − m − λ_min(AᵀA) in float64.
EIG_TOL = 1e-12
#: prox_{αf}(v) against a scalar minimisation of ½(v − z)² + αf(z) (bounded Brent, xtol 1e-12).
PROX_TOL = 1e-7
#: Implicit gradient against autodiff through a long unrolled solve (converged to ~1e-15).
UNROLL_TOL = 1e-9
#: Implicit gradient against central finite differences of the loss (h = 1e-6, solves to 1e-13).
FD_TOL = 1e-7
FD_STEP = 1e-6
SOLVE = dict(method="peaceman_rachford", alpha=1.0, atol=1e-13, max_iter=5000)


def test_mondeq_weight_formula_and_margin():
    torch.manual_seed(0)
    A, B = torch.randn(3, 5, dtype=DT), torch.randn(5, 5, dtype=DT)
    W = mondeq_weight(A, B, 0.3)
    expected = 0.7 * torch.eye(5, dtype=DT) - A.T @ A + B - B.T
    assert torch.equal(W, expected)
    # A has rank 3 < 5, so λ_min(AᵀA) = 0 and the margin is exactly m
    assert monotonicity(W) == pytest.approx(0.3, abs=EIG_TOL)
    assert lipschitz(W) == pytest.approx(float(torch.linalg.matrix_norm(torch.eye(5, dtype=DT) - W, 2)))
    assert forward_backward_bound(W) == pytest.approx(2 * 0.3 / lipschitz(W) ** 2)
    with pytest.raises(ValueError, match="m must be a finite number > 0"):
        mondeq_weight(A, B, 0.0)
    with pytest.raises(ValueError, match="m must be a finite number > 0"):   # (a NaN weight: 0·inf off the diagonal)
        mondeq_weight(A, B, float("inf"))
    with pytest.raises(ValueError, match="A must be"):
        mondeq_weight(A, torch.randn(4, 4, dtype=DT), 0.1)


def test_forward_backward_bound_of_the_identity():
    """W = I: I − W = 0, so L = 0 and every α > 0 converges (the bound is inf); it was a ZeroDivisionError."""
    eye = torch.eye(3, dtype=DT)
    assert forward_backward_bound(eye, 0.5) == float("inf")
    assert forward_backward_bound(eye) == 0.0   # (m = λ_min(sym(I − W)) = 0: not strongly monotone)


@pytest.mark.parametrize("name", ["relu", "tanh", "softplus", "identity"])
@pytest.mark.parametrize("alpha", [0.1, 1.0, 3.0])
def test_prox_minimises_its_convex_function(name, alpha):
    """σ = prox_f and prox_{αf} are checked against a direct minimisation of the prox objective."""
    nl = NONLINEARITIES[name]
    v = torch.tensor([-4.0, -1.3, -0.2, 0.0, 0.05, 0.7, 2.5, 6.0], dtype=DT)
    z = nl.prox(v, alpha)
    for vi, zi in zip(v.tolist(), z.tolist()):
        def objective(t):
            return 0.5 * (vi - t) ** 2 + alpha * float(nl.f(torch.tensor([t], dtype=DT)))
        lo, hi = {"tanh": (-1, 1), "softplus": (0, 50), "relu": (0, 50), "identity": (-50, 50)}[name]
        best = scipy.optimize.minimize_scalar(objective, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
        assert zi == pytest.approx(best.x, abs=PROX_TOL), (vi, zi, best.x)
        assert objective(zi) <= best.fun + 1e-12
    if alpha == 1.0:
        assert torch.equal(z, nl.sigma(v))


@pytest.mark.parametrize("name", ["tanh", "softplus"])
@pytest.mark.parametrize("alpha", [1e-3, 0.5, 3.0, 1e3, 1e6])
def test_prox_solves_its_equation_in_few_newton_steps_at_any_step_length(name, alpha):
    """``prox_{αf}(v) = σ(t)`` with ``(1 − α)σ(t) + αt = v``: each ``t`` agrees with a bracketing root finder
    (scipy's brentq on the same equation, an independent route) to the equation's own rounding, divided by
    its slope, and Newton stops within 20 steps. The bracket safeguard threw converged entries back to the
    middle of the bracket (softplus at α = 0.5: 53 steps), and at α = 1e3 a step that moved t by its
    rounding never met the step tolerance (60 steps, the cap): a PR solve with α = 1e6 ran for minutes."""
    from deqlab.solvers.prox import PROX_MAX_NEWTON, ProxNonlinearity, _prox_argument

    nl = NONLINEARITIES[name]
    evaluations = []
    counted = ProxNonlinearity(nl.name, lambda t: evaluations.append(1) or nl.sigma(t), nl.dsigma, nl.f, nl.formula)
    v = torch.linspace(-9, 9, 37, dtype=DT)
    t = _prox_argument(counted, v, alpha)
    assert len(evaluations) - 1 <= 20 < PROX_MAX_NEWTON
    eps = torch.finfo(DT).eps
    for vi, ti in zip(v.tolist(), t.tolist()):
        def g(s):
            return (1 - alpha) * float(nl.sigma(torch.tensor(s, dtype=DT))) + alpha * s - vi
        width = abs(g(vi)) / min(1.0, alpha) + 1.0
        ref = scipy.optimize.brentq(g, vi - width, vi + width, xtol=1e-300, rtol=4 * eps, maxiter=500)
        sigma_ref = float(nl.sigma(torch.tensor(ref, dtype=DT)))
        slope = (1 - alpha) * float(nl.dsigma(torch.tensor(ref, dtype=DT))) + alpha
        rounding = 8 * eps * (abs((1 - alpha) * sigma_ref) + alpha * abs(ref) + abs(vi)) / slope
        assert abs(ti - ref) <= rounding + 8 * eps * abs(ref), (vi, ti, ref)


@pytest.mark.parametrize("name", ["tanh", "softplus"])
def test_convex_functions_are_convex_and_prox_is_not_sigma(name):
    nl = NONLINEARITIES[name]
    z = torch.linspace(0.01, 0.98, 50, dtype=DT)
    fz = nl.f(z).numpy()
    assert np.all(np.diff(fz, 2) >= -1e-14)  # second differences of a convex function
    v = torch.tensor([0.3, 1.5], dtype=DT)
    assert float((nl.prox(v, 0.5) - nl.sigma(v)).abs().max()) > 1e-3


def contracting_model(nonlinearity, seed=0):
    """A monDEQ whose layer is a contraction (‖W‖₂ < 1), so the unrolled iteration converges."""
    torch.manual_seed(seed)
    model = MonDEQ(6, 3, n_y=2, m=0.5, nonlinearity=nonlinearity, init_scale=0.5, dtype=DT)
    assert float(torch.linalg.matrix_norm(model.weight().detach(), 2)) < 0.9
    x = torch.randn(4, 3, dtype=DT)
    return model, x


def loss_of(z, model):
    return (model.readout(z) ** 2).sum() + (z ** 3).sum()


def grads(model, x, z):
    params = [model.A, model.B, model.U.weight, model.U.bias]
    return torch.autograd.grad(loss_of(z, model), [*params, x])


@pytest.mark.parametrize("nonlinearity", ["tanh", "softplus", "relu"])
def test_implicit_gradient_matches_unrolled_autodiff(nonlinearity):
    model, x = contracting_model(nonlinearity)
    x = x.requires_grad_()
    z_imp, res = implicit_equilibrium(model, x, **SOLVE)
    assert res.all_converged
    z_unr = unrolled_equilibrium(model, x, 400)
    assert float((z_imp - z_unr).detach().abs().max()) < 1e-12
    for gi, gu in zip(grads(model, x, z_imp), grads(model, x, z_unr)):
        assert float((gi - gu).norm() / gu.norm()) < UNROLL_TOL


def test_implicit_gradient_matches_unrolled_forward_backward_when_fixed_point_fails():
    """ReLU monDEQ whose plain iteration diverges: unroll forward-backward below its step bound instead."""
    torch.manual_seed(2)
    model = MonDEQ(6, 3, n_y=2, m=0.5, nonlinearity="relu", init_scale=2.0, dtype=DT)
    x = torch.randn(4, 3, dtype=DT, requires_grad=True)
    W = model.weight().detach()
    assert float(torch.linalg.matrix_norm(W, 2)) > 1.0
    assert not solve_equilibrium(model, x, method="fixed_point", atol=1e-10, max_iter=2000).all_converged
    alpha = forward_backward_bound(W) / 2
    z_imp, res = implicit_equilibrium(model, x, **SOLVE)
    z_unr = unrolled_equilibrium(model, x, 2500, alpha=alpha)
    assert float((z_imp - z_unr).detach().abs().max()) < 1e-12
    for gi, gu in zip(grads(model, x, z_imp), grads(model, x, z_unr)):
        assert float((gi - gu).norm() / gu.norm()) < UNROLL_TOL


def test_implicit_gradient_matches_central_differences():
    torch.manual_seed(1)
    model = MonDEQ(5, 2, n_y=1, m=0.2, nonlinearity="tanh", init_scale=1.5, dtype=DT)
    x = torch.randn(3, 2, dtype=DT)
    z, _ = implicit_equilibrium(model, x, **SOLVE)
    gA, gB = torch.autograd.grad(loss_of(z, model), [model.A, model.B])
    for param, grad in ((model.A, gA), (model.B, gB)):
        for idx in [(0, 0), (1, 3), (4, 2)]:
            with torch.no_grad():
                old = param[idx].item()
                param[idx] = old + FD_STEP
                up = float(loss_of(solve_equilibrium(model, x, **SOLVE).z, model))
                param[idx] = old - FD_STEP
                down = float(loss_of(solve_equilibrium(model, x, **SOLVE).z, model))
                param[idx] = old
            fd = (up - down) / (2 * FD_STEP)
            assert grad[idx].item() == pytest.approx(fd, abs=FD_TOL * (1 + abs(fd)))


def test_implicit_layer_passes_gradcheck():
    """gradcheck of (A, B, x) ↦ z* through the model's own forward (solve + implicit backward)."""
    torch.manual_seed(2)
    model = MonDEQ(4, 2, m=0.3, nonlinearity="softplus", init_scale=1.2, dtype=DT)
    A = model.A.detach().clone().requires_grad_()
    B = model.B.detach().clone().requires_grad_()
    x = torch.randn(2, 2, dtype=DT, requires_grad=True)

    def layer(A, B, x):
        return torch.func.functional_call(model, {"A": A, "B": B}, (x,), SOLVE)

    assert torch.autograd.gradcheck(layer, (A, B, x), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_unconstrained_model_and_solver_dispatch():
    torch.manual_seed(0)
    deq = UnconstrainedDEQ(5, 2, nonlinearity="tanh", init="default", dtype=DT)
    x = torch.randn(3, 2, dtype=DT)
    res = solve_equilibrium(deq, x, method="anderson", atol=1e-12)
    assert res.all_converged and res.solver == "anderson"
    with pytest.raises(ValueError, match="unknown method"):
        solve_equilibrium(deq, x, method="bogus")
    W0 = torch.eye(5, dtype=DT) * 0.3
    assert torch.equal(UnconstrainedDEQ(5, 2, init=W0, dtype=DT).weight().detach(), W0)


def test_reverse_mode_jacobian_matches_unrolled_autodiff():
    """torch.func.jacrev through the layer (its backward runs under create_graph and vmap) is the implicit one."""
    model, x = contracting_model("tanh")
    J = torch.func.jacrev(lambda xx: implicit_equilibrium(model, xx, **SOLVE)[0])(x)
    J_unr = torch.func.jacrev(lambda xx: unrolled_equilibrium(model, xx, 400))(x)
    assert float(((J - J_unr).norm() / J_unr.norm()).detach()) < UNROLL_TOL   # (J holds a graph: jacrev of a model with parameters)


def test_a_singular_implicit_backward_is_ill_conditioned_not_a_torch_error():
    """A free W = I with tanh and no input: z* = 0, D = I, so I − Wᵀ D = 0 and no implicit gradient exists. The
    dense backward raised torch's own LinAlgError ('the input matrix is singular'); now IllConditionedError.
    A well-posed W (0.5·I) still gives the exact gradient ∂Σz*/∂b = batch/(1 − 0.5) per unit."""
    from deqlab.errors import IllConditionedError

    x = torch.randn(2, 2, dtype=DT)
    for scale, singular in ((1.0, True), (0.5, False)):
        model = UnconstrainedDEQ(3, 2, nonlinearity="tanh", init=scale * torch.eye(3, dtype=DT), dtype=DT)
        with torch.no_grad():
            model.U.weight.zero_()
            model.U.bias.zero_()
        z = model(x, method="fixed_point", atol=1e-13)
        if singular:
            with pytest.raises(IllConditionedError, match="singular"):
                torch.autograd.grad(z.sum(), model.U.bias)
        else:
            g = torch.autograd.grad(z.sum(), model.U.bias)[0]
            assert float((g - 2 / (1 - scale)).abs().max()) <= UNROLL_TOL


#: The dense implicit gradient at cond(I − W) = 7e9 against mpmath (60 digits) from the same float64 entries:
#: within cond·eps (measured 6.5e-8).
ILL_POSED_GRAD_RTOL = 1e-6


@pytest.mark.parametrize("delta, refused", [(1e-10, False), (1e-15, True), (1e-16, True)])
def test_a_nearly_singular_dense_backward_is_refused(delta, refused):
    """A free W = Q diag(1 − δ, 0.3) Qᵀ with the identity nonlinearity: I − Wᵀ D = Q diag(δ, 0.7) Qᵀ. Only an exactly
    singular one was refused; at δ = 1e-16 (cond 2e16) the dense backward's gradient came back 13% off the exact
    Uᵀ(I − W)⁻ᵀv, and at δ = 1e-15 2e-3 off, without a word. Now IllConditionedError, as every implicit derivative
    once cond·eps > 1e-2 (deqlab.implicit.conditioning)."""
    import mpmath

    from deqlab.errors import IllConditionedError

    c, s = np.cos(0.7), np.sin(0.7)
    Q = torch.tensor([[c, -s], [s, c]], dtype=DT)
    W = Q @ torch.diag(torch.tensor([1 - delta, 0.3], dtype=DT)) @ Q.T
    model = UnconstrainedDEQ(2, 2, nonlinearity="identity", init=W, dtype=DT)
    x = torch.randn(1, 2, generator=torch.Generator().manual_seed(0), dtype=DT, requires_grad=True)
    with torch.no_grad():   # z* = (I − W)⁻¹(U x + b); with the identity D = I wherever z* is
        z_star = torch.linalg.solve(torch.eye(2, dtype=DT) - model.weight(), model.injection(x)[0])[None]
    v = torch.tensor([[1.0, -0.5]], dtype=DT)
    z = attach_implicit_backward(model, z_star, x)
    if refused:
        with pytest.raises(IllConditionedError, match=r"I - W\^T D at the fixed point is ill-conditioned at sample 0"):
            torch.autograd.grad((z * v).sum(), x)
        return
    g = torch.autograd.grad((z * v).sum(), x)[0][0]
    mpmath.mp.dps = 60
    lam = mpmath.lu_solve((mpmath.eye(2) - mpmath.matrix(model.weight().detach().tolist())).T, mpmath.matrix(v[0].tolist()))
    ref = torch.tensor([float(e) for e in mpmath.matrix(model.U.weight.detach().tolist()).T * lam], dtype=DT)
    assert float((g - ref).norm() / ref.norm()) <= ILL_POSED_GRAD_RTOL


@pytest.mark.parametrize("backward", ["dense", "peaceman_rachford"])
def test_forward_mode_and_second_derivatives_are_refused(backward):
    """The backward holds z* fixed, so forward mode and second derivatives through it were wrong numbers
    (jacfwd 60 % off, a LossHessian 15 % off, double backward silently off); they must raise instead."""
    model, x = contracting_model("tanh")
    x = x.requires_grad_()
    z_star = solve_equilibrium(model, x, **SOLVE).z

    def layer(xx):
        return attach_implicit_backward(model, z_star, xx, backward=backward, atol=1e-13, max_iter=5000)

    with pytest.raises(InputError, match="first derivatives by reverse mode only"):
        torch.func.jacfwd(layer)(x.detach())
    with torch.autograd.forward_ad.dual_level():
        with pytest.raises(InputError, match="first derivatives by reverse mode only"):
            layer(torch.autograd.forward_ad.make_dual(x.detach(), torch.ones_like(x)))
    if backward == "dense":   # (the Peaceman–Rachford solve reads its residual with .item(): it cannot run under vmap)
        with pytest.raises(InputError, match="first derivatives by reverse mode only"):
            torch.func.jacrev(torch.func.jacrev(lambda xx: loss_of(layer(xx), model)))(x.detach())
    # double backward, with a cotangent that depends on x (cubic loss) and with one that does not (linear loss)
    for loss in (lambda z: loss_of(z, model), lambda z: z.sum()):
        (g,) = torch.autograd.grad(loss(layer(x)), x, create_graph=True)
        with pytest.raises(InputError, match="first derivatives by reverse mode only"):
            torch.autograd.grad(g.sum(), [x, model.A])
    # the first derivative itself is still the implicit one
    (g,) = torch.autograd.grad(loss_of(layer(x), model), x)
    (g_unr,) = torch.autograd.grad(loss_of(unrolled_equilibrium(model, x, 400), model), x)
    assert float((g - g_unr).norm() / g_unr.norm()) < UNROLL_TOL


def test_loss_hessian_of_a_mondeq_model_is_refused():
    """LossHessian differentiates forward-over-reverse: through the monDEQ layer that was a Hessian 15 % off."""
    from torch import nn

    from deqlab.implicit import LossHessian

    model, x = contracting_model("tanh")
    y = torch.randn(x.shape[0], 2, dtype=DT)

    class Readout(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, xx):
            return model.readout(model(xx, **SOLVE))

    op = LossHessian(Readout(), lambda out, t: ((out - t) ** 2).sum(), x, y)
    with pytest.raises(InputError, match="first derivatives by reverse mode only"):
        op.hvp(torch.ones(op.shape[0], dtype=DT))


#: Splitting backward against the dense backward (both to ~1e-13 residual).
SPLIT_BACKWARD_TOL = 1e-9


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh", "softplus"])
def test_peaceman_rachford_backward_matches_the_dense_solve(nonlinearity, monkeypatch):
    torch.manual_seed(4)
    model = MonDEQ(7, 3, n_y=2, m=0.2, nonlinearity=nonlinearity, init_scale=2.0, dtype=DT)
    x = torch.randn(5, 3, dtype=DT, requires_grad=True)
    z_star = solve_equilibrium(model, x, **SOLVE).z
    factor_calls = []
    real = torch.linalg.lu_factor_ex   # what Resolvent factors with (its info flags a singular matrix)
    monkeypatch.setattr(torch.linalg, "lu_factor_ex", lambda *a, **k: factor_calls.append(1) or real(*a, **k))
    grads = {}
    record = []
    for backward in ("dense", "peaceman_rachford"):
        z = attach_implicit_backward(model, z_star, x, backward=backward, alpha=0.7, atol=1e-13, max_iter=5000,
                                     record=record)
        grads[backward] = torch.autograd.grad(loss_of(z, model), [model.A, model.B, model.U.weight, x])
    assert len(record) == 1 and record[0].all_converged and len(factor_calls) == 1
    for gd, gs in zip(grads["dense"], grads["peaceman_rachford"]):
        assert float((gd - gs).norm() / gd.norm()) < SPLIT_BACKWARD_TOL
    with pytest.raises(ValueError, match="unknown backward"):
        attach_implicit_backward(model, z_star, x, backward="cg")


def test_peaceman_rachford_backward_that_stops_short_raises_unless_asked_to_return():
    """Two iterations cannot solve (I − Wᵀ D) g = v to 1e-13: the gradient would be off by the solve's
    residual, so backward() raises; on_fail="return" hands back that gradient and the record says why."""
    torch.manual_seed(4)
    model = MonDEQ(7, 3, n_y=2, m=0.2, nonlinearity="tanh", init_scale=2.0, dtype=DT)
    x = torch.randn(5, 3, dtype=DT)
    z_star = solve_equilibrium(model, x, **SOLVE).z
    z = attach_implicit_backward(model, z_star, x, backward="peaceman_rachford", atol=1e-13, max_iter=2)
    with pytest.raises(NotConvergedError, match="Peaceman–Rachford implicit backward did not converge"):
        loss_of(z, model).backward()
    record = []
    z = attach_implicit_backward(model, z_star, x, backward="peaceman_rachford", atol=1e-13, max_iter=2,
                                 record=record, on_fail="return")
    (gA,) = torch.autograd.grad(loss_of(z, model), [model.A])
    assert torch.isfinite(gA).all() and not record[0].all_converged and record[0].max_residual > 1e-13
    with pytest.raises(ValueError, match="unknown on_fail"):
        attach_implicit_backward(model, z_star, x, backward="peaceman_rachford", on_fail="ignore")
