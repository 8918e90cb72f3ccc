"""Solvers against fixed points known in closed form, against each other, and against theory."""

import math

import numpy as np
import pytest
import torch

from deqlab.solvers import (
    SOLVERS,
    anderson,
    broyden,
    fixed_point_iteration,
    get_solver,
    newton,
)
from deqlab.errors import InputError
from deqlab.solvers.newton import batched_jacobian
from deqlab.solvers.registry import configured_solver
from deqlab.solvers.result import Monitor, SolverStatus

ATOL = 1e-12            # stopping tolerance used in these tests (float64)
POINT_TOL = 1e-10       # distance to the closed-form fixed point
DOTTIE = 0.7390851332151607  # the unique real solution of z = cos z
ALL = list(SOLVERS)


def affine_problem(n=6, batch=4, norm=0.7, seed=0):
    """``f(z) = A z + c`` with ``‖A‖₂ = norm``; fixed point ``(I − A)⁻¹ c``."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    A = norm * A / torch.linalg.matrix_norm(A, 2)
    c = torch.randn(batch, n, generator=g, dtype=torch.float64)
    exact = torch.linalg.solve(torch.eye(n, dtype=torch.float64) - A, c.T).T
    return (lambda z: z @ A.T + c), exact, A


@pytest.mark.parametrize("name", ALL)
def test_affine_fixed_point_matches_closed_form(name):
    f, exact, _ = affine_problem()
    res = get_solver(name)(f, torch.zeros_like(exact), atol=ATOL, max_iter=500)
    assert res.all_converged, res.message
    assert (res.residual <= ATOL).all()
    assert torch.allclose(res.z, exact, atol=POINT_TOL, rtol=0)
    assert res.n_fevals >= 1 and res.wall_time >= 0


@pytest.mark.parametrize("name", ALL)
def test_cosine_fixed_point(name):
    z0 = torch.zeros(3, 1, dtype=torch.float64)
    res = get_solver(name)(torch.cos, z0, atol=ATOL, max_iter=500)
    assert res.all_converged
    assert torch.allclose(res.z, torch.full_like(z0, DOTTIE), atol=POINT_TOL, rtol=0)


def test_solvers_agree_on_tanh_deq():
    g = torch.Generator().manual_seed(1)
    n = 12
    W = torch.randn(n, n, generator=g, dtype=torch.float64)
    W = 0.9 * W / torch.linalg.matrix_norm(W, 2)
    x = torch.randn(5, n, generator=g, dtype=torch.float64)
    f = lambda z: torch.tanh(z @ W.T + x)
    results = {name: get_solver(name)(f, torch.zeros(5, n, dtype=torch.float64), atol=ATOL, max_iter=1000) for name in ALL}
    ref = results["newton"].z
    for name, res in results.items():
        assert res.all_converged, name
        assert torch.allclose(res.z, ref, atol=1e-10, rtol=0), name


def test_fixed_point_rate_matches_spectral_radius():
    """Errors of Picard iteration on an affine map fall like ρ(A)^k."""
    n = 8
    g = torch.Generator().manual_seed(2)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eigs = torch.linspace(0.3, 0.8, n, dtype=torch.float64)
    A = Q @ torch.diag(eigs) @ Q.T            # symmetric: spectral radius 0.8, clean asymptotics
    c = torch.randn(1, n, generator=g, dtype=torch.float64)
    f = lambda z: z @ A.T + c
    res = fixed_point_iteration(f, torch.zeros(1, n, dtype=torch.float64), atol=1e-13, max_iter=500)
    trace = res.abs_trace[:, 0].numpy()
    rates = trace[41:61] / trace[40:60]
    assert np.allclose(rates, 0.8, atol=1e-3)


def test_damped_fixed_point_converges_where_plain_iteration_oscillates():
    f = lambda z: -1.5 * z + 1.0                # fixed point 0.4, slope -1.5: Picard diverges
    z0 = torch.zeros(1, 1, dtype=torch.float64)
    plain = fixed_point_iteration(f, z0, atol=ATOL, max_iter=100)
    damped = fixed_point_iteration(f, z0, atol=ATOL, max_iter=200, damping=0.5)
    assert not plain.all_converged
    assert damped.all_converged and abs(float(damped.z) - 0.4) < POINT_TOL


@pytest.mark.parametrize("name", ["fixed_point", "anderson", "broyden"])
def test_non_convergence_is_reported(name):
    f = lambda z: 2.0 * z + 1.0                 # repelling fixed point at -1 for Picard
    res = get_solver(name)(f, torch.zeros(2, 1, dtype=torch.float64), atol=ATOL, max_iter=5)
    if name == "fixed_point":
        assert not res.all_converged
        assert (res.residual > ATOL).all()
    # whatever the verdict, the reported residual is the true residual at the returned point
    true = (f(res.z) - res.z).norm(dim=-1)
    assert torch.allclose(res.residual, true)
    assert bool(res.converged.all()) == bool((true <= ATOL).all())


def test_nan_map_is_not_converged():
    res = anderson(lambda z: z * float("nan"), torch.ones(2, 3, dtype=torch.float64), atol=1e-8, max_iter=10)
    assert not res.converged.any()
    assert res.status == SolverStatus.NONFINITE and "non-finite" in res.message


@pytest.mark.parametrize("solver", [anderson, broyden])
def test_a_sample_gone_nan_leaves_the_others_iterates_exactly_as_alone(solver):
    """A NaN in one sample's map makes its Anderson weights (its Broyden update and trial point) NaN:
    that sample alone is masked (plain step; update skipped, point not accepted), and the other
    sample's iterates are exactly those of solving it alone."""
    torch.manual_seed(0)
    W = 0.9 * torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))[0]
    x = torch.randn(2, 6, dtype=torch.float64)
    x[1, 2] = float("nan")
    f = lambda z: torch.tanh(z @ W.T + x)
    res = solver(f, torch.zeros(2, 6, dtype=torch.float64), atol=1e-12, max_iter=100)
    alone = solver(lambda z: torch.tanh(z @ W.T + x[:1]), torch.zeros(1, 6, dtype=torch.float64), atol=1e-12,
                   max_iter=100)
    assert res.converged.tolist() == [True, False] and alone.all_converged
    assert torch.equal(res.z[0], alone.z[0]) and res.n_steps == alone.n_steps


def test_broyden_freezes_a_converged_sample_while_the_other_goes_on():
    """Samples converging at different steps: the converged one's step is zero (its update skipped),
    and the slower one's iterates are exactly those of solving it alone."""
    torch.manual_seed(1)
    W = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))[0]
    scale = torch.tensor([[0.2], [0.95]], dtype=torch.float64)   # fast and slow contraction
    x = torch.randn(2, 6, dtype=torch.float64)
    f = lambda z: torch.tanh(scale * (z @ W.T) + x)
    res = broyden(f, torch.zeros(2, 6, dtype=torch.float64), atol=1e-12, max_iter=200)
    slow = broyden(lambda z: torch.tanh(0.95 * (z @ W.T) + x[1:]), torch.zeros(1, 6, dtype=torch.float64),
                   atol=1e-12, max_iter=200)
    assert res.all_converged and res.n_steps == slow.n_steps
    assert torch.equal(res.z[1], slow.z[0])


def test_status_says_what_happened_beside_a_finite_residual():
    """Issue 11 item 4: a solve that blew up to inf keeps its best *finite* iterate, so the residual it
    reports is finite; the status (nonfinite) and the message say both things, never "diverged
    (non-finite residual)" beside a finite number."""
    blowup = lambda z: 10.0 * z * z + 1.0
    res = fixed_point_iteration(blowup, torch.zeros(1, 1, dtype=torch.float64), atol=1e-10, max_iter=50)
    assert res.status == SolverStatus.NONFINITE
    assert torch.isfinite(res.residual).all()
    assert f"{res.max_residual:.3g}" in res.message
    # growing but finite within the budget: diverged
    res = fixed_point_iteration(lambda z: 2.0 * z + 1.0, torch.zeros(1, 1, dtype=torch.float64), atol=1e-10, max_iter=20)
    assert res.status == SolverStatus.DIVERGED and "diverged" in res.message
    # slow but not growing: max_steps
    res = fixed_point_iteration(lambda z: 0.999 * z + 1.0, torch.zeros(1, 1, dtype=torch.float64), atol=1e-10, max_iter=20)
    assert res.status == SolverStatus.MAX_STEPS and "not converged after 20 steps" in res.message
    res = fixed_point_iteration(lambda z: 0.5 * z + 1.0, torch.zeros(1, 1, dtype=torch.float64), atol=1e-10, max_iter=100)
    assert res.status == SolverStatus.CONVERGED and res.message == "converged"


@pytest.mark.parametrize("name", ["fixed_point", "anderson", "broyden", "newton", "fsolve"])
def test_a_tolerance_below_the_dtypes_resolution_is_named_in_the_message(name):
    """atol = 1e-300 is not reachable in float64 (eps·‖z‖ ≈ 1e-16): the solve ends unconverged and its
    message says why, for every solver (the stopping rule's message, not each caller's)."""
    f, exact, _ = affine_problem()
    res = get_solver(name)(f, torch.zeros_like(exact), atol=1e-300, max_iter=30)
    assert not res.all_converged
    assert "atol = 1e-300 is below what float64 resolves at this z" in res.message, res.message
    ok = get_solver(name)(f, torch.zeros_like(exact), atol=1e-3, max_iter=1)
    assert "resolves" not in ok.message   # an ordinary shortfall names no resolution


#: rtol of the extreme-scale test; a converged point of z = z/2 + c lies within 2·rtol·‖f(z)‖ of z* = 2c
SCALE_RTOL = 1e-10


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("c", [1e-170, 1e-300, 1e170])
def test_a_relative_rule_holds_at_extreme_scales(name, c):
    """With atol = 0 the rule is relative, whatever the scale. torch.linalg.vector_norm sums the squares as
    they are: at c = 1e-170 both ‖f(z) − z‖ and ‖f(z)‖ were 0 at the start z = 0, which four solvers then
    called converged (z* = 2e-170, 100% off). A solve may still end unconverged; it must not lie."""
    f = lambda z: 0.5 * z + c  # noqa: E731
    res = get_solver(name)(f, torch.zeros(2, 3, dtype=torch.float64), atol=0.0, rtol=SCALE_RTOL, max_iter=100)
    if res.all_converged:
        bound = 2 * SCALE_RTOL * math.sqrt(3) * 2 * c * (1 + 1e-6)
        assert float(torch.linalg.vector_norm((res.z - 2 * c) / c, dim=-1).max()) * c <= bound
    assert torch.allclose(res.residual / c, torch.linalg.vector_norm((f(res.z) - res.z) / c, dim=-1), rtol=1e-12, atol=0)


def test_per_sample_convergence_flags():
    """One sample converges (contraction), the other does not (expansion); both are reported."""
    slopes = torch.tensor([[0.5], [3.0]], dtype=torch.float64)
    res = fixed_point_iteration(lambda z: slopes * z + 1.0, torch.zeros(2, 1, dtype=torch.float64), atol=1e-10, max_iter=60)
    assert res.converged.tolist() == [True, False]
    assert abs(float(res.z[0]) - 2.0) < 1e-9


def test_stopping_rule_relative_tolerance():
    f, exact, _ = affine_problem()
    res = anderson(f, torch.zeros_like(exact), atol=0.0, rtol=1e-9, max_iter=300)
    assert res.all_converged
    fz = f(res.z)
    assert ((fz - res.z).norm(dim=-1) <= 1e-9 * fz.norm(dim=-1)).all()


def test_float32_solves():
    f, exact, _ = affine_problem()
    res = broyden(lambda z: f(z.double()).float(), torch.zeros(4, 6), atol=1e-5, max_iter=200)
    assert res.z.dtype == torch.float32 and res.all_converged
    assert torch.allclose(res.z.double(), exact, atol=1e-4)


JACOBIAN_TOL = 1e-13    # batched_jacobian against an exact Jacobian or torch.func.jacrev per sample (float64)


def test_batched_jacobian_matches_the_closed_form_and_jacrev_per_sample():
    """``f(z) = tanh(W z + x)`` has ``J_b = diag(1 − f(z)_b²) W`` in closed form; a map with fewer outputs
    than inputs and a coordinate it never reads is checked against ``torch.func.jacrev`` sample by sample."""
    g = torch.Generator().manual_seed(3)
    W = torch.randn(7, 7, generator=g, dtype=torch.float64) / 3
    x, z = (torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(2))
    f = lambda v: torch.tanh(v @ W.T + x)   # noqa: E731
    J = batched_jacobian(f, z)
    assert J.shape == (5, 7, 7)
    assert float((J - (1 - f(z) ** 2)[:, :, None] * W).abs().max()) <= JACOBIAN_TOL
    h = lambda v: torch.stack([torch.sin(v[:, 0] * v[:, 1]), v[:, 2] ** 3], dim=1)   # noqa: E731 (ignores v[:, 3:])
    J_h = batched_jacobian(h, z)
    assert J_h.shape == (5, 2, 7)
    for b in range(5):
        assert float((J_h[b] - torch.func.jacrev(lambda v: h(v[None])[0])(z[b])).abs().max()) <= JACOBIAN_TOL
    assert batched_jacobian(f, z.requires_grad_(True)).grad_fn is None   # (z's own graph is not extended)


def test_batched_jacobian_under_inference_mode_and_through_inference_tensors():
    """torch's autograd records nothing under inference_mode and will not save inference tensors for backward
    ("Inference tensors cannot be saved for backward"): a Newton solve or a survey run there, or on a W made
    there, raised where torch.func.jacrev had differentiated; both now give the closed-form Jacobian."""
    g = torch.Generator().manual_seed(4)
    with torch.inference_mode():
        W = torch.randn(6, 6, generator=g, dtype=torch.float64) / 3
        z = torch.randn(4, 6, generator=g, dtype=torch.float64)
    f = lambda v: torch.tanh(v @ W.T)   # noqa: E731
    exact = (1 - f(z) ** 2)[:, :, None] * W
    with torch.inference_mode():
        assert float((batched_jacobian(f, z) - exact).abs().max()) <= JACOBIAN_TOL
    assert float((batched_jacobian(f, z) - exact).abs().max()) <= JACOBIAN_TOL              # (z and W inference tensors)
    assert float((batched_jacobian(f, z.clone()) - exact).abs().max()) <= JACOBIAN_TOL      # (W only)
    with torch.inference_mode():
        assert newton(lambda v: 0.5 * f(v) + 0.1, torch.zeros(4, 6, dtype=torch.float64), atol=ATOL).all_converged


def test_batched_jacobian_refuses_an_f_that_is_not_connected_to_z():
    """An f computed outside torch (or detached) gives no graph: a zero Jacobian would be wrong, so it raises."""
    import numpy as np

    z = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(InputError, match="does not depend on z through torch operations"):
        batched_jacobian(lambda v: torch.from_numpy(np.tanh(v.detach().numpy())), z)


def test_newton_is_quadratic():
    res = newton(torch.cos, torch.zeros(1, 1, dtype=torch.float64), atol=1e-15, max_iter=20)
    assert res.all_converged and res.n_steps <= 7


def test_bad_arguments_raise():
    z0 = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="atol and rtol must be >= 0 and not both 0"):
        fixed_point_iteration(torch.cos, z0, atol=0, rtol=0)
    with pytest.raises(ValueError, match="max_iter"):
        anderson(torch.cos, z0, max_iter=0)
    with pytest.raises(ValueError, match="shape"):
        anderson(torch.cos, torch.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        broyden(torch.cos, torch.full((1, 2), float("nan")))
    with pytest.raises(ValueError, match="unknown solver 'nope'"):
        get_solver("nope")


@pytest.mark.parametrize("name", ALL)
def test_every_solver_checks_its_options_as_the_settings_do(name):
    """Called directly, the solvers took lam=nan (every mixing step then fell back to a plain step) and
    lam=-1 (silently raised to 10·eps), and failed on memory=2.5 or max_iter=2.5 with a TypeError from
    deep inside; now they refuse what the command line refuses, in its words."""
    from deqlab.solver_options import SOLVER_OPTIONS

    solver, z0 = get_solver(name), torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(InputError, match=r"^max_iter must be an integer >= 1, got 2\.5$"):
        solver(torch.cos, z0, max_iter=2.5)
    bad = {"memory": [2.5, 0], "lam": [float("nan"), -1.0], "beta": [0.0, 1.5], "damping": [0.0, float("nan")],
           "xtol": [-1.0, float("inf")]}
    for option in SOLVER_OPTIONS[name]:
        for value in bad[option]:
            with pytest.raises(InputError, match=rf"^{option} must "):
                solver(torch.cos, z0, **{option: value})


@pytest.mark.parametrize("name", ALL)
def test_a_start_that_is_not_real_floating_point_is_refused_and_an_empty_batch_is_solved(name):
    """An integer ``z0`` (every iterate would be an integer: the tensor ``inf`` of the stopping rule
    overflowed) and a complex one (its comparisons are undefined) are one-line ``InputError``s for
    every solver; a batch of no samples is solved, trivially (scipy's per-sample average divided by 0)."""
    solver = get_solver(name)
    for z0 in (torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3, dtype=torch.complex128), [[0.0, 0.0]]):
        with pytest.raises(InputError, match="z0 must be a"):
            solver(torch.cos, z0)
    res = solver(torch.cos, torch.zeros(0, 3, dtype=torch.float64))
    assert res.all_converged and res.z.shape == (0, 3)


def test_all_finite_agrees_with_isfinite_where_the_sum_cannot_tell():
    """The one-reduction finiteness check (a finite sum) against ``torch.isfinite(t).all()``: NaN, ±inf,
    +inf and −inf together (a NaN sum), finite entries whose sum overflows, empty, integer, complex and
    half-precision tensors."""
    from deqlab.solvers.result import all_finite

    big = torch.full((3,), 1e308, dtype=torch.float64)
    cases = [torch.zeros(64, 256), torch.tensor([1.0, float("nan")]), torch.tensor([float("inf"), 1.0]),
             torch.tensor([float("inf"), -float("inf")]), torch.tensor([-float("inf")]), big, -big,
             torch.zeros(0, 3), torch.arange(5), torch.tensor([1 + 2j, complex(float("nan"), 0)]),
             torch.tensor([1 + 2j]), torch.full((4,), 60000.0, dtype=torch.float16),
             torch.tensor([1.0, float("nan")], dtype=torch.bfloat16)]
    for t in cases:
        assert all_finite(t) == bool(torch.isfinite(t).all()), t


def test_configured_solver_binds_options():
    s = configured_solver("fixed_point", atol=1e-11, max_iter=7, damping=0.5)
    assert s.name == "fixed_point"
    res = s(torch.cos, torch.zeros(1, 1, dtype=torch.float64))
    assert res.n_steps == 7 and not res.all_converged


def test_monitor_keeps_best_iterate():
    m = Monitor(torch.zeros(1, 1), atol=1e-3, rtol=0, max_iter=3, solver="t")
    m.observe(torch.tensor([[1.0]]), torch.tensor([[1.5]]))   # residual 0.5
    m.observe(torch.tensor([[2.0]]), torch.tensor([[4.0]]))   # residual 2.0: worse, not kept
    out = m.result(2)
    assert float(out.z) == 1.0 and math.isclose(float(out.residual), 0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_anderson_survives_a_sample_that_starts_at_its_fixed_point(dtype):
    """A sample with zero residual makes its bordered least-squares system exactly singular
    (G = 0). This is what the implicit layer's adjoint solves meet (a zero cotangent); Anderson
    must carry on with the others and converge, not raise."""
    g = torch.Generator().manual_seed(0)
    W = (0.5 * torch.randn(8, 8, generator=g) / 8 ** 0.5).to(dtype)
    c = torch.randn(3, 8, generator=g).to(dtype)
    c[1] = 0                                            # f(0) = 0 for sample 1: converged at the start
    f = lambda v: v @ W.T + c                           # a linear adjoint-style fixed point
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    res = anderson(f, torch.zeros(3, 8, dtype=dtype), atol=atol, max_iter=100)
    assert res.all_converged
    assert float(res.z[1].abs().max()) == 0.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_anderson_refuses_half_precision_in_one_clear_error(dtype):
    """torch has no LU for half precision: Anderson says which dtypes it takes instead of failing in
    its first least-squares solve; the other solvers' stopping rule keeps half precision working."""
    z0 = torch.zeros(3, 4, dtype=dtype)
    f = lambda z: 0.5 * torch.tanh(z) + 0.1
    with pytest.raises(InputError, match="float32 or float64"):
        anderson(f, z0)
    res = get_solver("fixed_point")(f, z0, atol=1e-2, max_iter=50)
    assert res.all_converged and res.residual.dtype == dtype and res.abs_trace.dtype == dtype


def orthogonal_tanh_problem(n=50, batch=8, scale=0.1, seed=0):
    """``f(z) = tanh(0.99 Q z + x)`` with ``Q`` orthogonal: every eigenvalue of ``J(0)`` has modulus 0.99,
    the case where limited-memory Broyden used to blow up when its memory filled (issue 12)."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    x = scale * torch.randn(batch, n, generator=g, dtype=torch.float64)
    return (lambda z: torch.tanh(z @ (0.99 * Q).T + x)), torch.zeros(batch, n, dtype=torch.float64)


#: evaluations of limited-memory Broyden (rank reduction) / Broyden that keeps every pair
BROYDEN_MEMORY_FACTOR = 1.3


def test_broyden_rank_reduction_keeps_up_with_full_memory():
    f, z0 = orthogonal_tanh_problem()
    full = broyden(f, z0, atol=1e-10, max_iter=2000, memory=2000)
    reduced = broyden(f, z0, atol=1e-10, max_iter=2000, memory=30)
    restarted = broyden(f, z0, atol=1e-10, max_iter=2000, memory=30, drop=30)
    assert full.all_converged and reduced.all_converged
    assert reduced.extras["rank_reductions"] > 0                 # the memory did fill
    assert reduced.n_fevals <= BROYDEN_MEMORY_FACTOR * full.n_fevals, (reduced.n_fevals, full.n_fevals)
    assert restarted.n_fevals > BROYDEN_MEMORY_FACTOR * full.n_fevals   # what the reduction fixes


def test_broyden_rank_reduction_is_the_truncated_svd():
    from deqlab.solvers.broyden import _reduce_rank

    g = torch.Generator().manual_seed(3)
    U = torch.randn(2, 6, 9, generator=g, dtype=torch.float64)
    V = torch.randn(2, 6, 9, generator=g, dtype=torch.float64)
    C = U.transpose(1, 2) @ V
    P, S, Qh = torch.linalg.svd(C)
    best = (P[:, :, :4] * S[:, None, :4]) @ Qh[:, :4]
    _reduce_rank(U, V, 4)
    assert torch.allclose(U.transpose(1, 2) @ V, best, atol=1e-12, rtol=0)
    assert (U[:, 4:] == 0).all() and (V[:, 4:] == 0).all()


class ReferenceMonitor:
    """The stopping rule of :mod:`deqlab.solvers.result` written step by step, as the module docstring
    states it: every observation copies the improving rows and forms the relative residual at once."""

    def __init__(self, z0, atol, rtol):
        self.atol, self.rtol = atol, rtol
        self.best_z = z0.clone()
        self.best_res = torch.full((z0.shape[0],), math.inf, dtype=z0.dtype)
        self.best_ok = torch.zeros(z0.shape[0], dtype=torch.bool)
        self.abs_trace, self.rel_trace = [], []

    def observe(self, z, fz):
        res, fnorm = (fz - z).norm(dim=-1), fz.norm(dim=-1)
        self.abs_trace.append(res)
        self.rel_trace.append(res / (fnorm + 1e-30))
        # relative to ‖f(z)‖ only where that norm is finite (an overflowed one once passed any residual)
        ok = (res <= self.atol + self.rtol * fnorm) & (torch.isfinite(fnorm) | (self.rtol == 0))
        better = torch.isfinite(res) & ~self.best_ok & ((res < self.best_res) | ok)
        self.best_z = torch.where(better[:, None], z, self.best_z)
        self.best_res = torch.where(better, res, self.best_res)
        self.best_ok = self.best_ok | (better & ok)
        done = bool(self.best_ok.all())
        hopeless = bool((~torch.isfinite(res) | self.best_ok).all()) and not done
        return ok, done, hopeless


def erratic_sequence(batch=6, n=4, steps=40, seed=0):
    """Iterates whose residuals fall on average but go up at random steps, with NaN and inf residuals
    in places: the cases where the monitor's held iterate must be copied out (samples stop improving)."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for k in range(steps):
        z = torch.randn(batch, n, generator=g, dtype=torch.float64)
        scale = torch.exp(-0.4 * k + 2.0 * torch.rand(batch, 1, generator=g, dtype=torch.float64))
        fz = z + scale * torch.randn(batch, n, generator=g, dtype=torch.float64)
        if k % 7 == 3:
            fz[k % batch, 0] = math.nan
        if k % 11 == 5:
            fz[(k + 1) % batch, 1] = math.inf
        pairs.append((z, fz))
    return pairs


@pytest.mark.parametrize("atol", [0.0, 1e-8])
def test_a_relative_rule_never_converges_a_sample_whose_image_norm_overflowed(atol):
    """‖f(z)‖ = inf made rtol·‖f(z)‖ = inf, so a diverging forward-backward sample with ‖f(z) − z‖ = 1e154
    was declared converged (and mondeq's sweep printed 'max residual 1.27e+154' beside it)."""
    z = torch.full((2, 32), 1e154, dtype=torch.float64)
    z[1] = 1.0
    fz = 1.01 * z
    fz[1] = 1.0 + 1e-9
    assert math.isinf(float(torch.linalg.vector_norm(fz[0])))    # the overflow this is about
    monitor = Monitor(torch.zeros_like(z), atol=atol, rtol=1e-6, max_iter=10, solver="t")
    assert monitor.observe(z, fz).tolist() == [False, True]
    assert monitor.result(1).converged.tolist() == [False, True]


@pytest.mark.parametrize("atol, rtol", [(1e-3, 0.0), (0.0, 1e-3), (1e-4, 1e-3), (1e-30, 0.0)])
def test_monitor_matches_the_step_by_step_rule(atol, rtol):
    """The monitor's cheap path (best iterate held by reference, one host read, rel_trace formed at the
    end, r ≤ atol for rtol = 0) gives exactly what the rule computed step by step gives: the same kept
    iterate and residual per sample, the same traces and flags, bit for bit."""
    pairs = erratic_sequence()
    z0 = torch.zeros_like(pairs[0][0])
    # `queried` hands out its best iterate after every step (each query copies the held rows out);
    # `lazy` is asked only at the end, so its held rows are copied when a sample stops improving.
    queried, lazy = (Monitor(z0, atol=atol, rtol=rtol, max_iter=100, solver="t") for _ in range(2))
    reference = ReferenceMonitor(z0, atol, rtol)
    stale_copies = 0
    for z, fz in pairs:
        held = lazy._held_rows
        ok_ref, done, hopeless = reference.observe(z, fz)
        for monitor in (queried, lazy):
            ok = monitor.observe(z, fz)
            assert torch.equal(ok, ok_ref) and monitor.done == done and monitor.hopeless == hopeless
            assert torch.equal(monitor.best_ok, reference.best_ok)
        assert torch.equal(queried.best_z, reference.best_z)
        stale_copies += held is not None and bool((held & ~lazy._held_rows).any())
    assert stale_copies > 5                                           # the copy-out path was exercised
    for monitor in (queried, lazy):
        out = monitor.result(len(pairs))
        assert torch.equal(out.z, reference.best_z) and torch.equal(out.residual, reference.best_res)
        assert torch.equal(out.converged, reference.best_ok)
        assert torch.equal(out.abs_trace.nan_to_num(-1.0), torch.stack(reference.abs_trace).nan_to_num(-1.0))
        assert torch.equal(out.rel_trace.nan_to_num(-1.0), torch.stack(reference.rel_trace).nan_to_num(-1.0))


def test_monitor_refuses_an_observed_iterate_modified_in_place():
    """The monitor holds the latest observed ``z`` without copying it: a solver that overwrote it would
    corrupt the returned point, so the monitor raises instead of returning a wrong iterate."""
    z0 = torch.zeros(2, 3, dtype=torch.float64)
    m = Monitor(z0, atol=1e-12, rtol=0, max_iter=5, solver="t")
    z = torch.ones(2, 3, dtype=torch.float64)
    m.observe(z, 2 * z)
    z.mul_(3)
    with pytest.raises(RuntimeError, match="modified in place"):
        m.result(1)
    m = Monitor(z0, atol=1e-12, rtol=0, max_iter=5, solver="t")
    z = torch.ones(2, 3, dtype=torch.float64)
    m.observe(z, 2 * z)
    m.observe(torch.ones(2, 3, dtype=torch.float64), torch.full((2, 3), 9.0, dtype=torch.float64))   # worse: copy out
    z.mul_(3)                                                         # after its rows were copied: harmless
    assert torch.equal(m.result(2).z, torch.ones(2, 3, dtype=torch.float64))


def test_broyden_memory_larger_than_the_dimension():
    """With ``memory > n`` the correction ``U Vᵀ`` has rank ≤ n, so its thin QR has only ``n`` columns:
    the rank reduction keeps ``min(memory − drop, n)`` pairs (it used to fail on a shape mismatch the
    first time the memory filled)."""
    g = torch.Generator().manual_seed(0)
    n = 5
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    x = 0.3 * torch.randn(4, n, generator=g, dtype=torch.float64)
    f = lambda z: torch.tanh(z @ (0.99 * Q).T + x)
    res = broyden(f, torch.zeros(4, n, dtype=torch.float64), atol=1e-12, max_iter=400, memory=8, drop=2)
    assert res.all_converged, res.message
    assert res.extras["rank_reductions"] >= 1                       # the memory did fill
    assert float((f(res.z) - res.z).norm(dim=-1).max()) <= 1e-12


def test_monitor_detaches_iterates_that_require_grad():
    """Solvers run under no_grad, but a caller's f may hand back tensors in a graph: the monitor keeps
    (and returns) detached values, equal to the ones observed."""
    z0 = torch.zeros(2, 3, dtype=torch.float64)
    m = Monitor(z0, atol=1e-12, rtol=0, max_iter=5, solver="t")
    z = torch.ones(2, 3, dtype=torch.float64, requires_grad=True)
    m.observe(z, 2 * z)
    out = m.result(1)
    assert not out.z.requires_grad and not out.abs_trace.requires_grad and not out.residual.requires_grad
    assert torch.equal(out.z, torch.ones(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("rtol", [1.0, 2.0])
def test_a_relative_tolerance_of_one_or_more_is_refused_by_every_solver(rtol):
    """With rtol >= 1, z0 = 0 would be reported converged with no step taken (f(0) != 0 here)."""
    f = lambda z: 0.5 * torch.tanh(z) + 1.0
    z0 = torch.zeros(2, 3, dtype=torch.float64)
    for name in SOLVERS:
        with pytest.raises(ValueError, match="rtol must be < 1"):
            get_solver(name)(f, z0, atol=0.0, rtol=rtol)


@pytest.mark.parametrize("image", ["column", "float32"])
def test_every_solver_refuses_an_image_not_shaped_like_z(image):
    """f returning (batch, 1) was broadcast (fixed_point, broyden, newton, scipy reported a solution of
    another map), and a float32 f(z) silently cast."""
    z0 = torch.zeros(3, 4, dtype=torch.float64)
    f = {"column": lambda z: torch.tanh(0.5 * z.sum(1, keepdim=True)) + 1,
         "float32": lambda z: (torch.tanh(0.5 * z) + 1).float()}[image]
    for name in SOLVERS:
        with pytest.raises(InputError, match=rf"^{name}: f\(z\) must return a tensor like z, \(3, 4\) float64 on cpu; got"):
            get_solver(name)(f, z0, atol=1e-10)


def test_anderson_leaves_a_stall_by_plain_steps():
    """A tanh DEQ (n = 3 < memory 10) whose fixed point plain iteration reaches in 83 steps (ρ(J) = 0.66
    there) but on which Anderson hovered at residual 2e-2 for 2000 steps: the stall safeguard switches
    the sample to plain steps, and the solve converges to plain iteration's point. A second sample that
    never stalls is solved in the same batch; a solve that keeps improving never switches."""
    from tests.test_hessian import make_problem

    p, x, _ = make_problem(3, 1, 1, 1, 36)
    x = torch.cat([x, torch.zeros_like(x)])                          # sample 1: f(z) = tanh(W z + b), benign
    f = lambda z: torch.tanh(z @ p["W_z"].T + x @ p["U_z"].T + p["b_z"])
    z0 = torch.zeros(2, 3, dtype=torch.float64)
    stuck = anderson(f, z0, atol=1e-14, max_iter=2000, stall_patience=0)
    assert not bool(stuck.converged[0]) and float(stuck.residual[0]) > 1e-3      # the stall guarded against
    res = anderson(f, z0, atol=1e-14, max_iter=2000)
    assert res.all_converged and res.extras["stall_switches"] >= 1
    plain = fixed_point_iteration(f, z0, atol=1e-14, max_iter=2000)
    assert plain.all_converged and torch.allclose(res.z, plain.z, rtol=0, atol=1e-13)
    f_ok, z_ok = orthogonal_tanh_problem()
    healthy, unguarded = (anderson(f_ok, z_ok, atol=1e-10, max_iter=500, stall_patience=k) for k in (50, 0))
    assert healthy.extras["stall_switches"] == 0 and torch.equal(healthy.z, unguarded.z)
    assert healthy.n_fevals == unguarded.n_fevals
    with pytest.raises(ValueError, match="stall_patience"):
        anderson(f, z0, stall_patience=-1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_newton_refuses_half_precision_in_one_clear_error(dtype):
    """Newton's linear solve failed with torch's NotImplementedError ('lu_cpu' not implemented for 'Half')."""
    with pytest.raises(InputError, match="float32 or float64"):
        newton(lambda z: 0.5 * torch.tanh(z) + 0.1, torch.zeros(3, 4, dtype=dtype))


#: sin z* + ½ = z*: the root of the transcendental equation (scipy.optimize.brentq, 1e-15).
SINE_FIXED_POINT = 1.4973003890958922


def test_newton_takes_a_plain_step_where_i_minus_j_is_singular():
    """At z = 0, f(z) = sin z + ½ has J = cos 0 = 1: I − J is singular. torch.linalg.solve raised its
    LinAlgError for the whole batch (the other sample, at 0.3, had a Newton step)."""
    res = newton(lambda z: torch.sin(z) + 0.5, torch.tensor([[0.0], [0.3]], dtype=torch.float64), atol=ATOL)
    assert res.all_converged
    assert float((res.z - SINE_FIXED_POINT).abs().max()) <= POINT_TOL


def test_newton_names_an_f_it_cannot_differentiate():
    """An f computed in NumPy ran the first evaluation, then failed inside jacrev with torch's own
    RuntimeError ("Can't call numpy() on Tensor that requires grad")."""
    import numpy as np

    def f(z):
        return torch.from_numpy(np.tanh(0.5 * z.numpy() + 1.0))

    with pytest.raises(InputError, match="newton differentiates f with torch.autograd"):
        newton(f, torch.zeros(2, 3, dtype=torch.float64))
    assert anderson(f, torch.zeros(2, 3, dtype=torch.float64), atol=ATOL).all_converged   # (needs no derivative)
