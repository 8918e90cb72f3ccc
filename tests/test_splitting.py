"""Splitting solvers for monotone DEQs: fixed points, step bounds, factorisation reuse, the σ-for-prox pitfall."""

import math
import warnings

import numpy as np
import pytest
import scipy.optimize
import torch

from deqlab.models.mondeq import MonDEQ, forward_backward_bound, mondeq_weight
from deqlab.solvers.result import SolverResult
from deqlab.solvers.splitting import (
    SPLITTING_SOLVERS,
    douglas_rachford,
    forward_backward,
    get_splitting_solver,
    layer_map,
    peaceman_rachford,
    pitfall_forward_backward_sigma,
)

DT = torch.float64
#: Solves stop at this absolute residual; the fixed points are compared at a few times it.
ATOL = 1e-11
#: Distance between the splitting solution and scipy's independent solve.
FIXED_POINT_TOL = 1e-8
#: How far the σ-for-prox pitfall must land from the true equilibrium to count as wrong.
PITFALL_MIN_ERROR = 1e-3


def problem(n=12, n_x=4, batch=5, m=0.2, nonlinearity="relu", seed=0, scale=1.0):
    torch.manual_seed(seed)
    model = MonDEQ(n, n_x, m=m, nonlinearity=nonlinearity, init_scale=scale, dtype=DT)
    x = torch.randn(batch, n_x, dtype=DT)
    with torch.no_grad():
        return model.weight().detach(), model.injection(x).detach(), model.nl


def scipy_equilibrium(W, c, nl):
    """z = σ(Wz + c) per sample by MINPACK hybr in NumPy, from zeros: an independent solve."""
    out = []
    for cb in c:
        def g(z, cb=cb):
            zt = torch.as_tensor(z, dtype=DT)
            return (nl.sigma(W @ zt + cb) - zt).numpy()
        with warnings.catch_warnings():  # "not making good progress" at ReLU kinks; the result is checked below
            warnings.simplefilter("ignore", RuntimeWarning)
            sol = scipy.optimize.fsolve(g, np.zeros(W.shape[0]), xtol=1e-13)
        out.append(sol)
    return torch.as_tensor(np.array(out), dtype=DT)


def test_registry_names():
    assert set(SPLITTING_SOLVERS) == {"forward_backward", "peaceman_rachford", "douglas_rachford"}
    assert get_splitting_solver("douglas_rachford") is douglas_rachford
    with pytest.raises(ValueError, match="choose one of"):
        get_splitting_solver("admm")


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh", "softplus", "identity"])
@pytest.mark.parametrize("name", ["peaceman_rachford", "douglas_rachford", "forward_backward"])
def test_splitting_finds_the_equilibrium(name, nonlinearity):
    W, c, nl = problem(nonlinearity=nonlinearity, m=0.5, scale=0.7)
    alpha = 0.9 * forward_backward_bound(W) if name == "forward_backward" else 0.7
    res = get_splitting_solver(name)(W, c, torch.zeros_like(c), nonlinearity=nl, alpha=alpha, atol=ATOL, max_iter=20000)
    assert isinstance(res, SolverResult) and res.all_converged, res.message
    assert res.solver == name and res.extras["alpha"] == alpha
    # the shared stopping rule holds at the returned point, recomputed here
    assert float((layer_map(W, c, nl)(res.z) - res.z).norm(dim=-1).max()) <= ATOL
    ref = scipy_equilibrium(W, c, nl)
    assert float((res.z - ref).abs().max()) < FIXED_POINT_TOL


def test_identity_nonlinearity_is_the_linear_solve():
    W, c, nl = problem(nonlinearity="identity")
    res = peaceman_rachford(W, c, torch.zeros_like(c), nonlinearity=nl, alpha=1.0, atol=ATOL)
    direct = torch.linalg.solve(torch.eye(W.shape[0], dtype=DT) - W, c.T).T
    assert float((res.z - direct).abs().max()) < FIXED_POINT_TOL


def rotation_problem(m=0.1, s=1.0):
    """W = (1−m)I + s·[[0, 1], [−1, 0]]: I − W = mI − sJ has L² = m² + s², FB bound 2m/(m² + s²)."""
    A = torch.zeros(2, 2, dtype=DT)
    B = torch.tensor([[0.0, s / 2], [-s / 2, 0.0]], dtype=DT)
    return mondeq_weight(A, B, m), torch.tensor([[1.0, -0.5]], dtype=DT)


def test_forward_backward_bound_is_sharp_on_the_linear_rotation():
    W, c = rotation_problem()
    bound = forward_backward_bound(W)
    assert bound == pytest.approx(2 * 0.1 / (0.1**2 + 1.0), rel=1e-12)
    below = forward_backward(W, c, torch.zeros_like(c), nonlinearity="identity", alpha=0.8 * bound, atol=1e-9, max_iter=20000)
    above = forward_backward(W, c, torch.zeros_like(c), nonlinearity="identity", alpha=1.2 * bound, atol=1e-9, max_iter=2000)
    assert below.all_converged
    assert not above.all_converged
    trace = above.abs_trace[:, 0]
    assert float(trace[-1]) > 1e3 * float(trace[0])  # it diverges, not just stalls
    # Peaceman–Rachford converges for any alpha on the same problem
    for alpha in (0.01, 1.2 * bound, 1.0, 100.0):
        pr = peaceman_rachford(W, c, torch.zeros_like(c), nonlinearity="identity", alpha=alpha, atol=1e-9, max_iter=20000)
        assert pr.all_converged, alpha


def test_resolvent_is_factored_once_per_call(monkeypatch):
    """``resolvent="lu"``: one LU per call, one solve for the whole batch per iteration, never an inverse."""
    W, c, nl = problem(n=16, batch=32)
    calls = {"lu_factor": 0, "lu_solve": 0}
    # Resolvent factors with the _ex variants, whose info flags a singular I + alpha (I - W)
    real_factor, real_solve = torch.linalg.lu_factor_ex, torch.linalg.lu_solve

    def counting_factor(*a, **k):
        calls["lu_factor"] += 1
        return real_factor(*a, **k)

    def counting_solve(LU, piv, B, **k):
        calls["lu_solve"] += 1
        assert B.shape == (16, 32)  # one solve for the whole batch
        return real_solve(LU, piv, B, **k)

    def no_inverse(*a, **k):
        raise AssertionError("resolvent='lu' must not form an explicit inverse")

    monkeypatch.setattr(torch.linalg, "lu_factor_ex", counting_factor)
    monkeypatch.setattr(torch.linalg, "lu_solve", counting_solve)
    monkeypatch.setattr(torch.linalg, "inv_ex", no_inverse)
    monkeypatch.setattr(torch.linalg, "inv", no_inverse)
    for solver in (peaceman_rachford, douglas_rachford):
        calls.update(lu_factor=0, lu_solve=0)
        res = solver(W, c, torch.zeros_like(c), nonlinearity=nl, alpha=0.5, atol=ATOL, resolvent="lu")
        assert res.all_converged and res.n_steps > 5
        assert calls["lu_factor"] == 1 and res.extras["factorizations"] == 1 and res.extras["resolvent"] == "lu"
        assert calls["lu_solve"] == res.n_steps + 1      # V(alpha c) once, then one solve per iteration


def test_resolvent_inverse_is_formed_once_and_no_product_with_w_per_iteration(monkeypatch):
    """``resolvent="inverse"`` (the default at n <= 8 batch): one inverse per call and, per iteration,
    exactly one matrix product (with the inverse): the layer residual comes from the resolvent equation."""
    W, c, nl = problem(n=16, batch=32)
    calls = {"inv": 0}
    real_inv = torch.linalg.inv_ex   # what Resolvent inverts with (its info flags a singular matrix)

    def counting_inv(*a, **k):
        calls["inv"] += 1
        return real_inv(*a, **k)

    monkeypatch.setattr(torch.linalg, "inv_ex", counting_inv)
    for solver in (peaceman_rachford, douglas_rachford):
        calls.update(inv=0)
        res = solver(W, c, torch.zeros_like(c), nonlinearity=nl, alpha=0.5, atol=ATOL)
        assert res.all_converged and res.n_steps > 5 and res.extras["resolvent"] == "inverse"
        assert calls["inv"] == 1
        with torch.profiler.profile() as prof:
            solver(W, c, torch.zeros_like(c), nonlinearity=nl, alpha=0.5, atol=ATOL, max_iter=7)
        counts = {e.key: e.count for e in prof.key_averages()}
        # V(alpha c) once (mm), then one fused product V u_half + V(alpha c) per iteration (addmm)
        assert counts.get("aten::mm", 0) == 1 and counts.get("aten::addmm", 0) == 7, counts
    # the residual the monitor used (from the resolvent equation) is the true one, to round-off
    res = peaceman_rachford(W, c, torch.zeros_like(c), nonlinearity=nl, alpha=0.5, atol=ATOL)
    true = (layer_map(W, c, nl)(res.z) - res.z).norm(dim=-1)
    assert torch.allclose(res.residual, true, rtol=1e-6, atol=1e-14)


@pytest.mark.parametrize("method", ["inverse", "lu"])
def test_resolvent_methods_agree(method):
    W, c, nl = problem(nonlinearity="tanh", m=0.5, scale=0.7)
    res = peaceman_rachford(W, c, torch.zeros_like(c), nonlinearity=nl, alpha=0.7, atol=ATOL, resolvent=method)
    ref = scipy_equilibrium(W, c, nl)
    assert res.all_converged and float((res.z - ref).abs().max()) < FIXED_POINT_TOL
    with pytest.raises(ValueError, match="resolvent"):
        peaceman_rachford(W, c, torch.zeros_like(c), nonlinearity=nl, resolvent="cholesky")


@pytest.mark.parametrize("nonlinearity", ["tanh", "softplus"])
def test_pitfall_sigma_instead_of_prox_is_wrong(nonlinearity):
    W, c, nl = problem(nonlinearity=nonlinearity, m=1.0, scale=0.5)
    alpha = 0.5
    assert alpha < forward_backward_bound(W)
    good = forward_backward(W, c, torch.zeros_like(c), nonlinearity=nl, alpha=alpha, atol=ATOL, max_iter=5000)
    bad = pitfall_forward_backward_sigma(W, c, torch.zeros_like(c), nonlinearity=nl, alpha=alpha, iterations=2000)
    ref = scipy_equilibrium(W, c, nl)
    assert good.all_converged and float((good.z - ref).abs().max()) < FIXED_POINT_TOL
    assert float((bad - ref).abs().max()) > PITFALL_MIN_ERROR
    # the pitfall did converge -- to its own, different, fixed point
    again = pitfall_forward_backward_sigma(W, c, bad, nonlinearity=nl, alpha=alpha, iterations=1)
    assert float((again - bad).abs().max()) < 1e-10
    # for ReLU the same update is correct
    Wr, cr, nlr = problem(nonlinearity="relu", m=1.0, scale=0.5)
    relu_ok = pitfall_forward_backward_sigma(Wr, cr, torch.zeros_like(cr), nonlinearity=nlr, alpha=alpha, iterations=2000)
    assert float((relu_ok - scipy_equilibrium(Wr, cr, nlr)).abs().max()) < FIXED_POINT_TOL


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
def test_bad_alpha_is_rejected(bad):
    W, c, nl = problem()
    for solver in SPLITTING_SOLVERS.values():
        with pytest.raises(ValueError, match="alpha"):
            solver(W, c, torch.zeros_like(c), nonlinearity=nl, alpha=bad)


#: The reflected-form PR/DR against the textbook loop below (resolvent by a dense solve, the layer
#: residual from W z½ + c itself): iterates and residual traces agree to round-off.
REFLECTED_FORM_TOL = 1e-11


def textbook_rachford(W, c, u0, nl, alpha, steps, averaged):
    """Winston & Kolter's PR (DR: ``u⁺ = u + z½ − z``) as written in the GUIDE, with ``V`` applied by
    ``torch.linalg.solve`` and the residual ``‖σ(W z½ + c) − z½‖`` from a product with ``W``:
    ``(z½ per step (steps, batch, n), residual per step (steps, batch))``."""
    A = torch.eye(W.shape[0], dtype=DT) * (1 + alpha) - alpha * W
    u, z = u0.clone(), nl.prox(u0, alpha)
    iterates, residuals = [], []
    for _ in range(steps):
        u_half = 2 * z - u
        z_half = torch.linalg.solve(A, (u_half + alpha * c).T).T
        iterates.append(z_half)
        residuals.append((nl.sigma(z_half @ W.T + c) - z_half).norm(dim=-1))
        u = u + z_half - z if averaged else 2 * z_half - u_half
        z = nl.prox(u, alpha)
    return torch.stack(iterates), torch.stack(residuals)


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh", "softplus", "identity"])
@pytest.mark.parametrize("averaged", [False, True])
@pytest.mark.parametrize("resolvent", ["inverse", "lu"])
def test_reflected_rachford_follows_the_textbook_iteration(nonlinearity, averaged, resolvent):
    """PR and DR carry ``w = 2z − u`` between iterations (ReLU: ``w⁺ = |w − 2z½|``) and never form
    ``W z½``; their residual traces and returned points are the textbook loop's, to round-off."""
    W, c, nl = problem(n=16, batch=6, m=0.05, nonlinearity=nonlinearity, seed=3)
    u0 = torch.randn(c.shape, generator=torch.Generator().manual_seed(1), dtype=DT)
    alpha, steps = 0.7, 25
    solver = douglas_rachford if averaged else peaceman_rachford
    res = solver(W, c, u0, nonlinearity=nl, alpha=alpha, atol=1e-300, rtol=0.0, max_iter=steps, resolvent=resolvent)
    iterates, residuals = textbook_rachford(W, c, u0, nl, alpha, steps, averaged)
    assert res.n_steps == steps and not res.all_converged
    scale = residuals.amax(0, keepdim=True)
    assert float(((res.abs_trace - residuals).abs() / scale).max()) < REFLECTED_FORM_TOL
    best = res.abs_trace.argmin(0)                            # the point the solver kept, per sample
    expected = iterates[best, torch.arange(c.shape[0])]
    assert float((res.z - expected).abs().max()) < REFLECTED_FORM_TOL * float(expected.abs().max())


def test_splitting_refuses_what_would_fail_deep_inside():
    """alpha = inf ran to NONFINITE; a z0 of the wrong width or dtype was a torch error in the product;
    a singular I + alpha (I - W) (W not monotone) was a LinAlgError or lu_factor's RuntimeError."""
    import pytest

    from deqlab.solvers.splitting import douglas_rachford, forward_backward, peaceman_rachford

    n, B = 5, 3
    W = 0.5 * torch.eye(n, dtype=torch.float64)
    c = torch.randn(B, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z0 = torch.zeros(B, n, dtype=torch.float64)
    for solve in (forward_backward, peaceman_rachford, douglas_rachford):
        assert solve(W, c, z0, alpha=0.5).all_converged
        with pytest.raises(ValueError, match="finite number > 0"):
            solve(W, c, z0, alpha=float("inf"))
        with pytest.raises(ValueError, match="z0 must have the shape of c"):
            solve(W, c, z0[:, :2])
        with pytest.raises(ValueError, match="one dtype and device"):
            solve(W.float(), c, z0)
    for resolvent in ("inverse", "lu"):
        with pytest.raises(ValueError, match="is singular .* W is not monotone"):
            peaceman_rachford(3 * torch.eye(n, dtype=torch.float64), c, z0, alpha=0.5, resolvent=resolvent)


def test_rachford_in_half_precision_and_unknown_options_are_input_errors():
    """LAPACK has no half-precision inverse or LU: PR and DR raised torch's 'linalg.inv: Low precision dtypes
    not supported' (forward-backward needs no resolvent and runs); an option the method does not take
    reached the solver as Python's TypeError ('got an unexpected keyword argument')."""
    import pytest

    from deqlab.errors import InputError
    from deqlab.implicit.mondeq import solve_equilibrium
    from deqlab.models import MonDEQ
    from deqlab.solvers.splitting import douglas_rachford, forward_backward, peaceman_rachford

    W = 0.5 * torch.eye(4, dtype=torch.float16)
    c = torch.ones(3, 4, dtype=torch.float16)
    assert forward_backward(W, c, torch.zeros_like(c), atol=1e-2).all_converged
    for solve in (peaceman_rachford, douglas_rachford):
        with pytest.raises(InputError, match="solves its resolvent in float32 or float64"):
            solve(W, c, torch.zeros_like(c), atol=1e-2)
    model = MonDEQ(4, 3)
    x = torch.zeros(2, 3, dtype=torch.float64)
    for method, option in (("peaceman_rachford", "memory"), ("anderson", "damping"), ("forward_backward", "resolvent")):
        with pytest.raises(InputError, match=f"method '{method}' takes no option {option}"):
            solve_equilibrium(model, x, method=method, **{option: 1})
    assert solve_equilibrium(model, x, method="anderson", memory=3).all_converged


def test_backward_options_name_what_they_do_not_take():
    """backward_options={'x': 1} was "attach_implicit_backward() got multiple values for argument 'x'" (a TypeError)."""
    import pytest

    from deqlab.errors import InputError
    from deqlab.implicit.mondeq import implicit_equilibrium
    from deqlab.models import MonDEQ

    model = MonDEQ(4, 3)
    x = torch.zeros(2, 3, dtype=torch.float64)
    for options in ({"x": 1}, {"memory": 5}):
        with pytest.raises(InputError, match="backward_options takes no"):
            implicit_equilibrium(model, x, backward_options=options)
    z, _ = implicit_equilibrium(model, x, backward="peaceman_rachford", backward_options={"atol": 1e-10})
    assert z.shape == (2, 4)
