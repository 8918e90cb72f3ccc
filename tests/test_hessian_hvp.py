"""Matrix-free HVP, eigsh on its LinearOperator, Hutchinson's trace."""

import numpy as np
import pytest
import torch

from deqlab.implicit.checks import relative_error
from deqlab.implicit.hessian import deq_hessian_parts
from deqlab.implicit.hvp import DEQHessianOperator, fd_hvp
from deqlab.implicit.params import DYNAMIC, GROUPS
from deqlab.implicit.spectrum import extreme_eigenvalues, hutchinson_trace
from tests.test_hessian import make_problem

import helpers

#: HVP (LU solves) vs dense closed form: same maths, round-off only.
HVP_RTOL = 1e-12
#: HVP with Anderson linear solves at atol 1e-14.
HVP_ITER_RTOL = 1e-11
#: central FD of the gradient along v, step 1e-5 (see test_hessian.FD_RTOL).
FD_RTOL = 1e-7
EIG_RTOL = 1e-8


@pytest.fixture(scope="module")
def case():
    params, x, y = make_problem(n_z=7, n_x=3, n_y=2, batch=4, seed=2)
    parts = deq_hessian_parts(**params, x=x, y=y)
    return params, x, y, parts


@pytest.mark.parametrize("mode,linear,tol", [("structured", "lu", HVP_RTOL), ("autodiff", "lu", HVP_RTOL),
                                             ("autodiff", "anderson", HVP_ITER_RTOL)])
def test_hvp_equals_dense_H_times_v(case, mode, linear, tol):
    params, x, y, parts = case
    op = DEQHessianOperator(params, GROUPS, x, y, mode=mode, linear=linear)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        v = torch.randn(op.size, generator=gen, dtype=torch.float64)
        assert relative_error(op.matvec(v), parts.H @ v) <= tol
    assert relative_error(op.gradient(), parts.grad) <= tol


@pytest.mark.parametrize("groups", [DYNAMIC, ("U_z", "W_y"), ("b_y",), ("W_z", "b_y")])
@pytest.mark.parametrize("mode", ["structured", "autodiff"])
def test_hvp_dense_and_subset_of_groups(case, groups, mode):
    params, x, y, _ = case
    parts = deq_hessian_parts(**params, x=x, y=y, groups=groups)
    op = DEQHessianOperator(params, groups, x, y, mode=mode)
    assert relative_error(op.dense(), parts.H) <= HVP_RTOL
    assert relative_error(op.gradient(), parts.grad) <= HVP_RTOL


def test_hvp_matches_finite_differences_of_gradient(case):
    params, x, y, parts = case
    op = DEQHessianOperator(params, GROUPS, x, y)
    v = torch.randn(op.size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert relative_error(op.matvec(v), fd_hvp(params, GROUPS, x, y, v)) <= FD_RTOL


def test_eigsh_and_hutchinson(case):
    params, x, y, parts = case
    op = DEQHessianOperator(params, GROUPS, x, y)
    exact = np.linalg.eigvalsh(parts.H.numpy())
    top = extreme_eigenvalues(op.matvec, op.size, k=3, which="LA")
    bottom = extreme_eigenvalues(op.matvec, op.size, k=3, which="SA")
    np.testing.assert_allclose(top, exact[-3:], rtol=EIG_RTOL)
    np.testing.assert_allclose(bottom, exact[:3], rtol=EIG_RTOL)
    est = hutchinson_trace(op.matvec, op.size, probes=400, seed=0)
    tr = float(parts.H.trace())
    assert abs(est.trace - tr) <= 4 * est.std_error  # a 4-sigma band of an unbiased estimator
    assert est.std_error < 0.5 * float(torch.linalg.norm(parts.H))


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=6, deadline=None)
@given(n_z=st.integers(1, 5), n_x=st.integers(1, 3), n_y=st.integers(1, 2), batch=st.integers(1, 4),
       seed=st.integers(0, 10_000), mask=st.integers(1, 31))
def test_property_structured_hvp_is_dense_closed_form(n_z, n_x, n_y, batch, seed, mask):
    """Any small shape and any non-empty subset of groups: the matrix-free HVP reproduces H."""
    groups = tuple(g for i, g in enumerate(GROUPS) if mask >> i & 1)
    params, x, y = make_problem(n_z, n_x, n_y, batch, seed)
    parts = deq_hessian_parts(**params, x=x, y=y, groups=groups, z_star=helpers.tanh_equilibrium_of(params, x))
    op = DEQHessianOperator(params, groups, x, y, z_star=parts.z_star)
    assert relative_error(op.dense(), parts.H) <= HVP_RTOL or float(torch.linalg.norm(parts.H)) == 0.0


def test_structured_linear_solves_match_dense_solves(case):
    """The structured operator's adjoint/tangent solves go through I − W D only; they must equal
    dense solves with I − J (J = D W), the system they stand for."""
    params, x, y, _ = case
    op = DEQHessianOperator(params, GROUPS, x, y)
    B, N = op.h.shape
    IJ = torch.eye(N, dtype=torch.float64) - (1 - op.h**2)[:, :, None] * params["W_z"]
    g = torch.randn(B, N, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert relative_error(op.solve_adjoint(g), torch.linalg.solve(IJ.transpose(1, 2), g)) <= HVP_RTOL
    assert relative_error(op.solve_tangent(g), torch.linalg.solve(IJ, g)) <= HVP_RTOL
    assert not hasattr(op, "J") and not hasattr(op, "_lu")  # nothing of I − J is formed or factored


def test_singular_system_is_refused():
    """W_z = I with a zero fixed point (b_z = 0, U_z = 0): I − W D = 0, no implicit derivative."""
    from deqlab.errors import IllConditionedError

    params, x, y = make_problem(n_z=3, n_x=2, n_y=1, batch=2, seed=0)
    params = dict(params, W_z=torch.eye(3, dtype=torch.float64), b_z=torch.zeros(3, dtype=torch.float64),
                  U_z=torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(IllConditionedError, match="singular"):
        DEQHessianOperator(params, GROUPS, x, y, z_star=torch.zeros(2, 3, dtype=torch.float64))
    # Without z_star the polish of the solver's point (its chord matrix is that same I − J), the autodiff
    # operator's LU, deq_hessian's inverse and deq_gradient's solve each raised torch's own error
    # ('U[1,1] is zero ...', 'the input matrix is singular').
    from deqlab.implicit import deq_gradient, deq_hessian

    with pytest.raises(IllConditionedError, match="singular at sample 0"):
        DEQHessianOperator(params, GROUPS, x, y)
    with pytest.raises(IllConditionedError, match="singular at sample 0"):
        DEQHessianOperator(params, GROUPS, x, y, mode="autodiff")
    ordered = [params[k] for k in ("W_z", "b_z", "U_z", "W_y", "b_y")]
    for route in (deq_hessian, deq_gradient):
        with pytest.raises(IllConditionedError, match="singular at sample 0"):
            route(*ordered, x, y)


def test_matvec_refuses_what_is_not_a_vector_of_theta(case):
    """A NumPy vector (what scipy hands a LinearOperator), a wrong length or NaN failed deep in the
    products (AttributeError, a shape error) or gave NaN; each is now one InputError."""
    from deqlab.errors import InputError

    params, x, y, _ = case
    op = DEQHessianOperator(params, GROUPS, x, y)
    v = torch.randn(op.size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(op.matvec(v.float()), op.matvec(v.float().double()))   # another dtype is cast
    for bad, message in ((v.numpy(), "torch tensor"), (v[:-1], f"shape \\({op.size},\\)"),
                         (v[:, None], f"shape \\({op.size},\\)"), (v.long(), "floating"),
                         (v.clone().index_fill_(0, torch.tensor([3]), float("nan")), "NaN")):
        with pytest.raises(InputError, match=message):
            op.matvec(bad)


#: HVP at cond(I − J) = 7e8 against exact rational arithmetic on the same float64 entries: within cond·eps
#: (measured 3e-9 to 4e-9 by every route).
HVP_EXACT_RTOL = 1e-7


def _near_fold(delta):
    """A 2-state tanh DEQ at ``z* = 0`` (``b_z = 0``, ``x = 0``: ``D = I``, ``σ'' = 0``) with
    ``W_z = Q diag(1 − δ, 0.3) Qᵀ``, so ``I − J = Q diag(δ, 0.7) Qᵀ``."""
    c, s = np.cos(0.7), np.sin(0.7)
    Q = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    W = Q @ torch.diag(torch.tensor([1 - delta, 0.3], dtype=torch.float64)) @ Q.T
    params = {"W_z": W, "b_z": torch.zeros(2, dtype=torch.float64), "U_z": torch.ones(2, 1, dtype=torch.float64),
              "W_y": torch.tensor([[1.0, -2.0]], dtype=torch.float64), "b_y": torch.zeros(1, dtype=torch.float64)}
    return params, torch.zeros(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)


def _exact_hvp_near_fold(params, v):
    """``H v`` of :func:`_near_fold`'s problem in exact rational arithmetic on the float64 entries. At ``h = x = 0``
    only ``b_z`` moves ``a`` (``A_θ = [0, I, 0]``) and ``σ'' = 0``, so with ``M = (I − W_z)⁻¹``, ``r = −1``,
    ``μ = Mᵀ r W_yᵀ``, ``t = M δb_z``, ``q = W_y t + δb_y``, ``ω = Mᵀ(q W_yᵀ + δW_zᵀ μ + r δW_yᵀ)``:
    ``Hv = [μ tᵀ, ω, 0, r tᵀ, q]`` (the structured product of deqlab.implicit.hvp, written out)."""
    from fractions import Fraction as F

    W = [[F(float(a)) for a in row] for row in params["W_z"].tolist()]
    wy = [F(float(a)) for a in params["W_y"][0].tolist()]
    A = [[(i == j) - W[i][j] for j in range(2)] for i in range(2)]
    det = A[0][0] * A[1][1] - A[0][1] * A[1][0]
    M = [[A[1][1] / det, -A[0][1] / det], [-A[1][0] / det, A[0][0] / det]]
    Mv = lambda u: [M[i][0] * u[0] + M[i][1] * u[1] for i in range(2)]   # noqa: E731
    MTv = lambda u: [M[0][i] * u[0] + M[1][i] * u[1] for i in range(2)]   # noqa: E731
    V = [F(float(a)) for a in v.tolist()]
    dW, db, dWy, dby = [V[0:2], V[2:4]], V[4:6], V[8:10], V[10]
    r = F(-1)
    mu, t = MTv([r * wy[0], r * wy[1]]), Mv(db)
    q = wy[0] * t[0] + wy[1] * t[1] + dby
    om = MTv([q * wy[k] + mu[0] * dW[0][k] + mu[1] * dW[1][k] + r * dWy[k] for k in range(2)])
    out = [mu[i] * t[k] for i in range(2) for k in range(2)] + om + [F(0), F(0)] + [r * t[0], r * t[1], q]
    return torch.tensor([float(a) for a in out], dtype=torch.float64)


@pytest.mark.parametrize("mode,linear", [("structured", "lu"), ("autodiff", "lu"), ("autodiff", "anderson"),
                                         ("autodiff", "broyden")])
def test_hvp_near_a_fold_is_exact_or_refused_by_every_route(mode, linear):
    """The iterative linear solves stop on their residual: at cond(I − J) = 7e14 (δ = 1e-15) Broyden "converged"
    and its HVP came back 6% off the exact one, without a word, where the LU routes refuse. Every route now
    checks cond(I − J) once; at δ = 1e-8 every route matches exact rational arithmetic (HVP_EXACT_RTOL)."""
    from deqlab.errors import IllConditionedError
    from deqlab.implicit.layer import SolveOptions

    opts = SolveOptions(atol=1e-12, max_iter=5000)
    v = torch.randn(11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    params, x, y = _near_fold(1e-8)
    op = DEQHessianOperator(params, GROUPS, x, y, z_star=torch.zeros(1, 2, dtype=torch.float64), mode=mode,
                            linear=linear, opts=opts)
    assert relative_error(op.matvec(v), _exact_hvp_near_fold(params, v)) <= HVP_EXACT_RTOL
    params, x, y = _near_fold(1e-15)
    with pytest.raises(IllConditionedError, match="ill-conditioned at sample 0"):
        DEQHessianOperator(params, GROUPS, x, y, z_star=torch.zeros(1, 2, dtype=torch.float64), mode=mode,
                           linear=linear, opts=opts)
