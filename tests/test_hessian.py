"""The closed-form DEQ Hessian (seeds 000/001) against independent routes, in float64.

Routes: torch.func.hessian through an unrolled solve (exact autodiff of a function that converges to
the DEQ geometrically), central finite differences of the implicit gradient, the dense generic
closed form, and torch.func.hessian through the implicit layer (tests/test_implicit_layer.py).
"""

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from deqlab.implicit.checks import fd_hessian, relative_error, symmetry_error, unrolled_hessian
from deqlab.implicit.hessian import deq_gradient, deq_hessian, deq_hessian_parts, tanh_generic_pieces
from deqlab.implicit.params import DYNAMIC, GROUPS, flatten, loss_at, model_params, unflatten
from deqlab.implicit.pitfalls import two_mtz_hessian
from deqlab.models.tanh_deq import TanhDEQ
import helpers

#: closed form vs autodiff through a converged 300-step unroll (the issue's bar: 1e-10).
UNROLL_RTOL = 1e-10
#: closed form vs the dense generic closed form (same maths, different code): round-off only.
GENERIC_RTOL = 1e-12
#: central FD of the implicit gradient, step 1e-5: truncation ~ε²‖∂³L‖ ≈ 1e-10, solve δ/ε ≈ 1e-9.
FD_STEP = 1e-5
FD_RTOL = 1e-8
#: ‖H − Hᵀ‖/‖H‖: the structured form assembles symmetric blocks from transposes, so round-off only.
SYM_TOL = 1e-14
#: the "2 MᵀZ" pitfall must be wrong by at least this much (errata: 0.87) and visibly asymmetric.
PITFALL_MIN_ERROR = 0.05
STEPS = 300


def make_problem(n_z=6, n_x=2, n_y=1, batch=1, seed=0):
    torch.manual_seed(seed)
    model = TanhDEQ(n_z, n_x, n_y, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, n_x, generator=gen, dtype=torch.float64)
    y = torch.randn(batch, n_y, generator=gen, dtype=torch.float64)
    return model_params(model), x, y


@pytest.fixture(scope="module")
def errata_case():
    """The errata's case: tanh DEQ, N = 6, P = 54 (W_z, b_z, U_z with n_x = 2), plus the readout."""
    params, x, y = make_problem()
    parts = deq_hessian_parts(**params, x=x, y=y, groups=GROUPS)
    return params, x, y, parts


def test_errata_size(errata_case):
    params, *_ = errata_case
    assert flatten(params, DYNAMIC).numel() == 54


@pytest.mark.parametrize("groups", [GROUPS, DYNAMIC, ("W_y", "b_y"), ("b_z", "W_y"), ("U_z", "b_y")])
def test_closed_form_matches_unrolled_autodiff(groups):
    params, x, y = make_problem(batch=3, n_y=2)
    H = deq_hessian(**params, x=x, y=y, groups=groups)
    H_ref = unrolled_hessian(params, groups, x, y, steps=STEPS)
    assert H.shape == (flatten(params, groups).numel(),) * 2
    assert relative_error(H, H_ref) <= UNROLL_RTOL


def test_unroll_is_a_discriminating_reference():
    """A 5-step unroll is far from the DEQ: the reference is not trivially close to anything."""
    params, x, y = make_problem(batch=2)
    H = deq_hessian(**params, x=x, y=y)
    assert relative_error(H, unrolled_hessian(params, GROUPS, x, y, steps=5)) > 1e-3


def test_closed_form_matches_finite_differences(errata_case):
    params, x, y, parts = errata_case
    H_fd = fd_hessian(params, GROUPS, x, y, step=FD_STEP)
    assert relative_error(parts.H, H_fd) <= FD_RTOL


def test_gradient_matches_finite_differences_of_loss(errata_case):
    params, x, y, parts = errata_case
    theta = flatten(params)
    from deqlab.implicit.hessian import solve_equilibrium

    def L(t):
        p = unflatten(t, params)
        return loss_at(p, solve_equilibrium(p["W_z"], p["b_z"], p["U_z"], x), y)

    eps = 1e-6
    fd = helpers.central_differences(L, theta, eps)
    assert relative_error(parts.grad, fd) <= FD_RTOL


def test_generic_dense_closed_form_agrees(errata_case):
    params, x, y, parts = errata_case
    pieces = tanh_generic_pieces(params, GROUPS, x, y, parts.z_star)
    assert relative_error(pieces.hessian(), parts.H) <= GENERIC_RTOL


def test_terms_add_up_and_are_symmetric(errata_case):
    *_, parts = errata_case
    assert torch.equal(parts.H, parts.term_a + parts.term_b + parts.term_r)
    for T in (parts.H, parts.term_a, parts.term_b, parts.term_r):
        assert symmetry_error(T) <= SYM_TOL
    # Term A is a Gauss–Newton term: positive semi-definite
    assert torch.linalg.eigvalsh(parts.term_a).min() >= -1e-12 * torch.linalg.norm(parts.term_a)
    # Term B is not negligible here (else the test of the adjoint part would be vacuous)
    assert torch.linalg.norm(parts.term_b) > 0.1 * torch.linalg.norm(parts.term_a)


def test_two_mtz_pitfall_is_wrong(errata_case):
    params, x, y, parts = errata_case
    wrong = two_mtz_hessian(tanh_generic_pieces(params, DYNAMIC, x, y, parts.z_star))
    H = deq_hessian(**params, x=x, y=y, groups=DYNAMIC, z_star=parts.z_star)
    assert relative_error(wrong, H) >= PITFALL_MIN_ERROR
    assert symmetry_error(wrong) >= PITFALL_MIN_ERROR


def test_batch_curvature_sums_per_sample():
    params, x, y = make_problem(batch=4, n_y=2)
    H = deq_hessian(**params, x=x, y=y)
    parts = [deq_hessian(**params, x=x[i : i + 1], y=y[i : i + 1]) for i in range(4)]
    assert relative_error(sum(parts), H) <= 1e-13
    g = deq_gradient(**params, x=x, y=y)
    assert relative_error(sum(deq_gradient(**params, x=x[i : i + 1], y=y[i : i + 1]) for i in range(4)), g) <= 1e-13


def test_bad_groups_rejected():
    params, x, y = make_problem()
    with pytest.raises(ValueError, match="parameter groups"):
        deq_hessian(**params, x=x, y=y, groups=("W_z", "nope"))


@settings(max_examples=8, deadline=None)
@given(n_z=st.integers(1, 5), n_x=st.integers(1, 3), n_y=st.integers(1, 2), batch=st.integers(1, 3), seed=st.integers(0, 10_000))
@example(n_z=3, n_x=1, n_y=1, batch=1, seed=36)   # Anderson stalled here before its safeguard (test_solvers)
def test_property_closed_form_equals_generic_and_is_symmetric(n_z, n_x, n_y, batch, seed):
    """Any small shape: structured form == dense generic form, and symmetric."""
    params, x, y = make_problem(n_z, n_x, n_y, batch, seed)
    parts = deq_hessian_parts(**params, x=x, y=y, z_star=helpers.tanh_equilibrium_of(params, x))
    pieces = tanh_generic_pieces(params, GROUPS, x, y, parts.z_star)
    assert relative_error(parts.H, pieces.hessian()) <= GENERIC_RTOL
    assert symmetry_error(parts.H) <= SYM_TOL


def test_model_hessian_convenience():
    torch.manual_seed(0)
    model = TanhDEQ(4, 2, 1)  # float32 weights: copied to float64
    x = torch.randn(2, 2, dtype=torch.float64)
    y = torch.randn(2, 1, dtype=torch.float64)
    from deqlab.implicit.hessian import model_hessian

    H = model_hessian(model, x, y, groups=DYNAMIC)
    assert H.dtype == torch.float64 and H.shape == (4 * 4 + 4 + 4 * 2,) * 2
    p = model_params(model)
    assert relative_error(H, unrolled_hessian(p, DYNAMIC, x, y)) <= UNROLL_RTOL


def test_inputs_that_do_not_fit_the_model_are_refused_by_every_route():
    """A shape mismatch was a torch error deep inside; NaN in y gave a Hessian full of NaN."""
    import pytest

    from deqlab.errors import InputError
    from deqlab.implicit.hessian import deq_gradient, deq_hessian
    from deqlab.implicit.hvp import DEQHessianOperator

    g = torch.Generator().manual_seed(0)
    N, d, ny, B = 4, 3, 2, 5
    p = {"W_z": 0.3 * torch.randn(N, N, generator=g, dtype=torch.float64), "b_z": torch.randn(N, generator=g, dtype=torch.float64),
         "U_z": torch.randn(N, d, generator=g, dtype=torch.float64), "W_y": torch.randn(ny, N, generator=g, dtype=torch.float64),
         "b_y": torch.randn(ny, generator=g, dtype=torch.float64)}
    x = torch.randn(B, d, generator=g, dtype=torch.float64)
    y = torch.randn(B, ny, generator=g, dtype=torch.float64)
    routes = (lambda x, y: deq_hessian(**p, x=x, y=y), lambda x, y: deq_gradient(**p, x=x, y=y),
              lambda x, y: DEQHessianOperator(p, ("W_z", "b_y"), x, y))
    bad = [(torch.randn(B, d + 1, dtype=torch.float64), y, r"x must have shape \(5, 3\)"),
           (x, torch.randn(B + 1, ny, dtype=torch.float64), r"y must have shape \(5, 2\)"),
           (x, y.clone().index_fill_(0, torch.tensor([2]), float("nan")), "NaN or infinite values in y"),
           (x.float(), y, "one floating dtype"),
           # an empty batch failed inside the polish with NumPy's "zero-size array to reduction operation maximum"
           (x[:0], y[:0], "at least one sample")]
    for route in routes:
        assert route(x, y) is not None
        for xb, yb, message in bad:
            with pytest.raises(InputError, match=message):
                route(xb, yb)
    empty = {**p, "W_z": p["W_z"][:0, :0], "b_z": p["b_z"][:0], "U_z": p["U_z"][:0], "W_y": p["W_y"][:, :0]}
    for route in (lambda: deq_hessian(**empty, x=x, y=y), lambda: deq_gradient(**empty, x=x, y=y),
                  lambda: DEQHessianOperator(empty, ("W_z", "b_y"), x, y)):
        with pytest.raises(InputError, match="n_z >= 1"):
            route()


def test_a_given_z_star_must_be_the_fixed_point():
    """Every route differentiates at the ``z_star`` it is given. A point that is not the fixed point gave
    a Hessian off by about cond·residual, silently; now a point a solver stopped short of ``z*`` is
    polished to it (same Hessian as at the solved ``z*``, to round-off), a point far from it is refused,
    and a float32 copy of the float64 fixed point (what the GPU bench's float32 rows pass) is taken as is."""
    from deqlab.errors import InputError
    from deqlab.implicit.hessian import equilibrium, solve_equilibrium
    from deqlab.implicit.hvp import DEQHessianOperator
    from deqlab.implicit.layer import SolveOptions, tanh_map
    from deqlab.solvers import anderson

    p, x, y = make_problem(n_z=5, n_x=3, n_y=2, batch=4, seed=3)
    solved = solve_equilibrium(p["W_z"], p["b_z"], p["U_z"], x)
    rough = anderson(lambda z: tanh_map(z, p["W_z"], p["b_z"], p["U_z"], x), torch.zeros_like(solved), atol=1e-9).z
    residual = float((tanh_map(rough, p["W_z"], p["b_z"], p["U_z"], x) - rough).norm(dim=-1).max())
    assert 1e-12 < residual <= 1e-9                      # a real solver's point, short of z* by more than round-off
    H = deq_hessian(**p, x=x, y=y)
    assert relative_error(deq_hessian(**p, x=x, y=y, z_star=rough), H) <= GENERIC_RTOL
    assert relative_error(deq_gradient(**p, x=x, y=y, z_star=rough), deq_gradient(**p, x=x, y=y)) <= GENERIC_RTOL
    v = torch.randn(H.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert relative_error(DEQHessianOperator(p, GROUPS, x, y, z_star=rough).matvec(v), H @ v) <= GENERIC_RTOL
    # with the options' looser tolerance the caller's point is taken as it is
    assert equilibrium(p["W_z"], p["b_z"], p["U_z"], x, rough, opts=SolveOptions(atol=1e-8)) is not None
    assert torch.equal(equilibrium(p["W_z"], p["b_z"], p["U_z"], x, rough, opts=SolveOptions(atol=1e-8)), rough)
    far = torch.zeros_like(solved)
    for route in (lambda z: deq_hessian(**p, x=x, y=y, z_star=z), lambda z: deq_gradient(**p, x=x, y=y, z_star=z),
                  lambda z: DEQHessianOperator(p, GROUPS, x, y, z_star=z)):
        with pytest.raises(InputError, match="z_star is not the fixed point"):
            route(far)
    # on_fail="ignore": the caller vouches for its point (deqlab hessian --go-on differentiates there, marked)
    assert torch.equal(equilibrium(p["W_z"], p["b_z"], p["U_z"], x, far, opts=SolveOptions(on_fail="ignore")), far)
    p32 = {k: v.float() for k, v in p.items()}
    z32 = solved.float()
    assert torch.equal(equilibrium(p32["W_z"], p32["b_z"], p32["U_z"], x.float(), z32), z32)


def test_options_of_the_wrong_type_are_refused_by_every_route():
    """``opts="anderson"`` failed with AttributeError in the closed forms' solve."""
    from deqlab.errors import InputError
    from deqlab.implicit.hvp import DEQHessianOperator

    p, x, y = make_problem(n_z=3, n_x=2, n_y=1, batch=2, seed=1)
    for route in (lambda: deq_hessian(**p, x=x, y=y, opts="anderson"), lambda: deq_gradient(**p, x=x, y=y, opts="anderson"),
                  lambda: DEQHessianOperator(p, GROUPS, x, y, opts="anderson")):
        with pytest.raises(InputError, match="opts must be a SolveOptions"):
            route()


@pytest.mark.parametrize("route", ["gradient", "hessian", "structured HVP", "autodiff HVP", "generic"])
def test_a_fixed_point_too_ill_conditioned_for_its_dtype_is_refused(route):
    """At ``cond(I − J) ≈ 1e15`` every implicit derivative carries relative errors of order ``cond·eps``
    (10 % at 1e15 against mpmath, the library audit) and came back without a word: refused once
    ``cond·eps > 1e-2`` (``deqlab.implicit.conditioning``), still served at ``cond ≈ 1e6``."""
    from test_hessian_near_critical import designed_deq

    from deqlab.errors import IllConditionedError
    from deqlab.implicit.hessian import deq_gradient, implicit_hessian_generic
    from deqlab.implicit.hvp import DEQHessianOperator
    from deqlab.implicit.params import GROUPS

    def derivative(lam1):
        params, x, y, z = designed_deq(lam1, 0)
        if route == "gradient":
            return deq_gradient(**params, x=x, y=y, z_star=z)
        if route == "hessian":
            return deq_hessian(**params, x=x, y=y, z_star=z)
        if route == "generic":
            c = params["U_z"] @ x[0]
            f = lambda b, h: torch.tanh(params["W_z"] @ h + c + b)   # noqa: E731
            loss = lambda b_y, h: 0.5 * ((params["W_y"] @ h + b_y - y[0]) ** 2).sum()   # noqa: E731
            return implicit_hessian_generic(f, loss, params["b_z"], params["b_y"], z[0]).Z
        op = DEQHessianOperator(params, GROUPS, x, y, z_star=z, mode="structured" if route == "structured HVP" else "autodiff")
        return op.matvec(torch.ones(op.size, dtype=torch.float64))

    with pytest.raises(IllConditionedError, match="ill-conditioned at sample 0"):
        derivative(1 - 1e-15)
    assert torch.isfinite(derivative(1 - 1e-6)).all()
