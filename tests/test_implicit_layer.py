"""The implicit layer: IFT derivatives of every order, through autograd and torch.func, in float64."""

import pytest
import torch

from deqlab.errors import NotConvergedError
from deqlab.implicit.checks import layer_hessian, relative_error, unrolled_hessian
from deqlab.implicit.hessian import deq_hessian
from deqlab.implicit.layer import SolveOptions, fixed_point, tanh_equilibrium, tanh_map
from deqlab.implicit.params import GROUPS, model_params
from deqlab.models.tanh_deq import TanhDEQ

#: The layer's solves stop at ‖F(z) − z‖ ≤ 1e-13; derivatives inherit that relative accuracy.
OPTS = SolveOptions(atol=1e-13, max_iter=1000)
#: layer vs unrolled autodiff / closed form (the issue's bar is 1e-10).
RTOL = 1e-10
N, D, B = 4, 3, 2


@pytest.fixture(scope="module")
def problem():
    gen = torch.Generator().manual_seed(0)
    W = (0.3 * torch.randn(N, N, generator=gen, dtype=torch.float64)).requires_grad_()
    b = torch.randn(N, generator=gen, dtype=torch.float64, requires_grad=True)
    U = torch.randn(N, D, generator=gen, dtype=torch.float64, requires_grad=True)
    x = torch.randn(B, D, generator=gen, dtype=torch.float64)
    return W, b, U, x


def unrolled(W, b, U, x, steps=300):
    z = torch.zeros(x.shape[0], W.shape[0], dtype=W.dtype)
    for _ in range(steps):
        z = tanh_map(z, W, b, U, x)
    return z


def test_forward_is_the_fixed_point(problem):
    W, b, U, x = problem
    z = tanh_equilibrium(W, b, U, x, opts=OPTS)
    assert torch.linalg.norm(tanh_map(z, W, b, U, x) - z) <= 1e-12
    assert z.grad_fn is not None


def test_gradcheck_and_gradgradcheck(problem):
    W, b, U, x = problem
    fn = lambda W, b, U: tanh_equilibrium(W, b, U, x, opts=OPTS)
    assert torch.autograd.gradcheck(fn, (W, b, U))
    assert torch.autograd.gradgradcheck(fn, (W, b, U))


def test_gradient_and_double_backward_match_unroll(problem):
    W, b, U, x = problem
    v = torch.randn(B, N, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    z_i = tanh_equilibrium(W, b, U, x, opts=OPTS)
    z_u = unrolled(W, b, U, x)
    g_i = torch.autograd.grad((z_i * v).sum() ** 2, (W, b, U), create_graph=True)
    g_u = torch.autograd.grad((z_u * v).sum() ** 2, (W, b, U), create_graph=True)
    for a, c in zip(g_i, g_u):
        assert relative_error(a, c) <= RTOL
    # a Hessian-vector product by double backward
    hv_i = torch.autograd.grad(sum((g * g).sum() for g in g_i), (W, b, U))
    hv_u = torch.autograd.grad(sum((g * g).sum() for g in g_u), (W, b, U))
    for a, c in zip(hv_i, hv_u):
        assert relative_error(a, c) <= RTOL


def test_torch_func_transforms(problem):
    W, b, U, x = problem
    W, b, U = W.detach(), b.detach(), U.detach()
    f_i = lambda W: tanh_equilibrium(W, b, U, x, opts=OPTS)
    f_u = lambda W: unrolled(W, b, U, x)
    assert relative_error(torch.func.jacrev(f_i)(W), torch.func.jacrev(f_u)(W)) <= RTOL
    assert relative_error(torch.func.jacfwd(f_i)(W), torch.func.jacrev(f_u)(W)) <= RTOL
    L_i = lambda W: (f_i(W) ** 3).sum()
    L_u = lambda W: (f_u(W) ** 3).sum()
    assert relative_error(torch.func.grad(L_i)(W), torch.func.grad(L_u)(W)) <= RTOL
    assert relative_error(torch.func.hessian(L_i)(W), torch.func.hessian(L_u)(W)) <= RTOL
    # vmap over inputs: one joint solve gives each sample's own equilibrium
    zs = torch.func.vmap(lambda xi: tanh_equilibrium(W, b, U, xi[None], opts=OPTS)[0])(x)
    assert torch.allclose(zs, tanh_equilibrium(W, b, U, x, opts=OPTS), atol=1e-12, rtol=0)
    # vmap of grad: per-sample gradients
    per = torch.func.vmap(lambda xi: torch.func.grad(lambda W: tanh_equilibrium(W, b, U, xi[None], opts=OPTS).sum())(W))(x)
    ref = torch.stack([torch.func.grad(lambda W: unrolled(W, b, U, x[i : i + 1]).sum())(W) for i in range(B)])
    assert relative_error(per, ref) <= RTOL


def test_third_order_through_layer(problem):
    """jacrev∘jacrev∘jacrev and jacrev∘hessian: the recursion of the IFT rules reaches third derivatives."""
    W, b, U, x = problem
    b = b.detach()
    L_i = lambda b: (tanh_equilibrium(W.detach(), b, U.detach(), x, opts=OPTS) ** 2).sum()
    L_u = lambda b: (unrolled(W.detach(), b, U.detach(), x) ** 2).sum()
    T_u = torch.func.jacrev(torch.func.hessian(L_u))(b)
    assert relative_error(torch.func.jacrev(torch.func.jacrev(torch.func.jacrev(L_i)))(b), T_u) <= RTOL
    assert relative_error(torch.func.jacrev(torch.func.hessian(L_i))(b), T_u) <= RTOL


class _NaiveSquare(torch.autograd.Function):
    """``a²`` with the textbook jvp rule ``2a·ȧ``: PyTorch runs a jvp rule with forward mode off at every
    level, so an enclosing ``jacfwd`` sees the rule's output as a constant."""

    generate_vmap_rule = True

    @staticmethod
    def forward(a):
        return a**2

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, g):  # pragma: no cover - not used here
        raise NotImplementedError

    @staticmethod
    def jvp(ctx, t):
        return 2 * ctx.saved_tensors[0] * t


def test_naive_jvp_rule_is_wrong_under_forward_over_forward():
    """The failure :class:`FixedPoint`'s jvp rule is written to avoid (torch 2.13): jacfwd∘jacfwd of a²
    through the naive rule is 0, not 2. If this starts failing PyTorch changed, and the layer's
    unwrapping in ``FixedPoint.jvp`` must be re-checked (the pairing tests below would show how)."""
    a = torch.tensor(0.3, dtype=torch.float64)
    assert float(torch.func.jacfwd(torch.func.jacfwd(_NaiveSquare.apply))(a)) == 0.0


def _cos_map(z, A, c):
    """``0.5·cos(A z) + c``: a contraction for ‖A‖₂ < 4."""
    return 0.5 * torch.cos(z @ A.T) + c


def _sigmoid_map(z, A, c):
    """``0.6·σ(A z + c) + 0.1·sin c``: parameters inside and outside the nonlinearity."""
    return 0.6 * torch.sigmoid(z @ A.T + c) + 0.1 * torch.sin(c)


#: torch.func pairings through the layer vs torch.func.hessian through an unrolled solve (the layer
#: solves to 1e-14; measured 1e-14 to 3e-13 in torch 2.13).
TRANSFORM_RTOL = 1e-11
#: Unrolled steps: both maps contract by ≤ 0.6 per step here (asserted), so the unroll's own error is ≤ 0.6¹²⁰ ≈ 2e-27.
UNROLL_STEPS = 120


def _pairing_loss(F, route):
    """``θ = (A (3×3), c (3,)) ↦ Σ z³ + Σ_s (Σ_i z_si)²`` with ``z = z*(θ)`` for a batch of 2 (rows ``c``, ``−c/2``)."""
    scale = torch.tensor([[1.0], [-0.5]], dtype=torch.float64)

    def L(theta):
        A, c = theta[:9].reshape(3, 3), theta[9:12] * scale
        z0 = torch.zeros(2, 3, dtype=torch.float64)
        if route == "layer":
            z = fixed_point(F, z0, A, c, opts=SolveOptions(atol=1e-14, max_iter=2000))
        else:
            z = _unroll(F, z0, A, c)
        return (z**3).sum() + (z.sum(1) ** 2).sum()

    return L


_PAIRINGS = {
    "jacfwd(jacfwd)": lambda L: torch.func.jacfwd(torch.func.jacfwd(L)),
    "jacfwd(jacrev)": lambda L: torch.func.jacfwd(torch.func.jacrev(L)),
    "jacrev(jacfwd)": lambda L: torch.func.jacrev(torch.func.jacfwd(L)),
    "jacrev(jacrev)": lambda L: torch.func.jacrev(torch.func.jacrev(L)),
    "hessian": torch.func.hessian,
}


@pytest.fixture(scope="module", params=[_cos_map, _sigmoid_map], ids=["cos", "sigmoid"])
def pairing_problem(request):
    F = request.param
    gen = torch.Generator().manual_seed(3)
    theta = torch.cat([0.4 * torch.randn(9, generator=gen, dtype=torch.float64), torch.randn(3, generator=gen, dtype=torch.float64)])
    thetas = torch.stack([theta, 0.8 * theta])
    # Lipschitz constant of z ↦ F(z) is ≤ 0.5‖A‖₂ (cos) or 0.15‖A‖₂ (sigmoid)
    assert 0.5 * torch.linalg.matrix_norm(theta[:9].reshape(3, 3), 2) <= 0.6
    H_ref = torch.stack([torch.func.hessian(_pairing_loss(F, "unroll"))(t) for t in thetas])
    return F, thetas, H_ref


@pytest.mark.parametrize("pairing", list(_PAIRINGS))
def test_every_second_order_pairing_is_right(pairing_problem, pairing):
    """Every jacfwd/jacrev pairing and hessian, plain and under vmap over θ, on two maps that are not
    the tanh layer, in float64, against torch.func.hessian through a long unrolled solve."""
    F, thetas, H_ref = pairing_problem
    H = _PAIRINGS[pairing](_pairing_loss(F, "layer"))
    assert relative_error(H(thetas[0]), H_ref[0]) <= TRANSFORM_RTOL
    assert relative_error(torch.func.vmap(H)(thetas), H_ref) <= TRANSFORM_RTOL


def test_third_order_forward_over_forward_over_forward(pairing_problem):
    """jacfwd∘jacfwd∘jacfwd w.r.t. the three entries of ``c`` (``A`` held fixed)."""
    F, thetas, _ = pairing_problem
    A = thetas[0, :9]
    L_i, L_u = _pairing_loss(F, "layer"), _pairing_loss(F, "unroll")
    T = torch.func.jacfwd(torch.func.jacfwd(torch.func.jacfwd(lambda c: L_i(torch.cat([A, c])))))(thetas[0, 9:])
    T_ref = torch.func.jacrev(torch.func.hessian(lambda c: L_u(torch.cat([A, c]))))(thetas[0, 9:])
    assert relative_error(T, T_ref) <= TRANSFORM_RTOL


def test_tanh_layer_forward_over_forward(problem):
    """The case the issue measured wrong by 2.2 on the tanh DEQ."""
    W, b, U, x = (t.detach() if torch.is_tensor(t) else t for t in problem)
    L_i = lambda b: (tanh_equilibrium(W, b, U, x, opts=OPTS) ** 3).sum()
    L_u = lambda b: (unrolled(W, b, U, x) ** 3).sum()
    H_ref = torch.func.hessian(L_u)(b)
    assert relative_error(torch.func.jacfwd(torch.func.jacfwd(L_i))(b), H_ref) <= RTOL


def test_plain_forward_ad_through_the_layer():
    """torch.autograd.forward_ad (one dual level, no torch.func) gives the same JVP as torch.func.jvp."""
    import torch.autograd.forward_ad as fwAD

    gen = torch.Generator().manual_seed(6)
    A = 0.3 * torch.randn(3, 3, generator=gen, dtype=torch.float64)
    c = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    tA = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    z0 = torch.zeros(2, 3, dtype=torch.float64)
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(fixed_point(_cos_map, z0, fwAD.make_dual(A, tA), c, opts=OPTS)).tangent
    ref = torch.func.jvp(lambda A: fixed_point(_cos_map, z0, A, c, opts=OPTS), (A,), (tA,))[1]
    unrolled_ref = torch.func.jvp(lambda A: _unroll(_cos_map, z0, A, c), (A,), (tA,))[1]
    assert relative_error(tangent, ref) <= RTOL
    assert relative_error(tangent, unrolled_ref) <= RTOL


def _unroll(F, z, *args, steps=UNROLL_STEPS):
    for _ in range(steps):
        z = F(z, *args)
    return z


def test_layer_hessian_equals_closed_form():
    torch.manual_seed(0)
    params = model_params(TanhDEQ(5, 2, 2, dtype=torch.float64))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(2, 2, generator=gen, dtype=torch.float64)
    H_layer = layer_hessian(params, GROUPS, x, y, opts=OPTS)
    H = deq_hessian(**params, x=x, y=y)
    assert relative_error(H_layer, H) <= RTOL
    assert relative_error(H_layer, unrolled_hessian(params, GROUPS, x, y)) <= RTOL


def test_generic_map_with_coupled_arguments():
    """A non-tanh map: z = 0.5·cos(A z) + c; compare with the closed-form IFT gradient."""
    gen = torch.Generator().manual_seed(3)
    A = (0.4 * torch.randn(3, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    c = torch.randn(1, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    F = lambda z, A, c: 0.5 * torch.cos(z @ A.T) + c
    assert torch.autograd.gradcheck(lambda A, c: fixed_point(F, torch.zeros(1, 3, dtype=torch.float64), A, c, opts=OPTS), (A, c))


@pytest.mark.parametrize("scale", [1e-6, 1e-13, 1e-20, 1e-170, 1e6, 1e10])
def test_small_and_large_cotangents_and_tangents_keep_their_relative_accuracy(problem, scale):
    """The adjoint and tangent solves are linear in their right-hand side: with the absolute atol the
    gradient of 1e-13·L came back exactly 0 (and that of 1e-10·L 6e-4 off). Per sample too: x's
    gradient of a sample whose cotangent is tiny next to the other's keeps its digits. At 1e-170 the
    right-hand side's norm underflowed to 0 in torch.linalg.vector_norm, so it was not rescaled: the
    gradient came back exactly 0 again. Above 1 the rule stayed absolute, which float64 cannot meet for a
    solution of size ≳ 1e4: the gradient of 1e6·L and 1e10·L raised NotConvergedError."""
    W, b, U, _ = problem
    x = torch.randn(B, D, generator=torch.Generator().manual_seed(5), dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([[1.0], [scale]], dtype=torch.float64)   # sample 1's cotangent is `scale` small

    def loss(z):
        return scale * (weights * z**2).sum()

    g_i = torch.autograd.grad(loss(tanh_equilibrium(W, b, U, x, opts=OPTS)), (W, x), create_graph=True)
    g_u = torch.autograd.grad(loss(unrolled(W, b, U, x)), (W, x), create_graph=True)
    for a, c in zip(g_i, g_u):
        for row_a, row_c in zip(a, c):   # per row: x's rows are the samples
            assert relative_error(row_a, row_c) <= RTOL
    # a second derivative through the small adjoint, and a tangent `scale` small (forward mode)
    assert relative_error(torch.autograd.grad(g_i[0].sum(), b)[0], torch.autograd.grad(g_u[0].sum(), b)[0]) <= RTOL
    direction = scale * torch.ones_like(b)
    t_i = torch.func.jvp(lambda bb: tanh_equilibrium(W.detach(), bb, U.detach(), x.detach(), opts=OPTS), (b.detach(),), (direction,))[1]
    t_u = torch.func.jvp(lambda bb: unrolled(W.detach(), bb, U.detach(), x.detach()), (b.detach(),), (direction,))[1]
    assert relative_error(t_i, t_u) <= RTOL


#: rtol of the coupled solve, and the relative error per row its point may have: the map contracts at rate 0.95, so
#: ‖z − z*‖ ≤ ‖F(z) − z‖ / 0.05 ≤ 20·rtol·‖F(z)‖ (rows of similar size here)
COUPLED_RTOL = 1e-12
COUPLED_POINT_TOL = 100 * COUPLED_RTOL


@pytest.mark.parametrize("c", [1.0, 1e-170])
def test_a_coupled_solve_under_a_relative_rule_meets_it_in_every_row(c):
    """A map that couples the rows, solved under a relative rule, is re-solved as one system
    (``_rows_checked``). That joint solve stopped at the joint rule ``‖vec(F(z) − z)‖ ≤ rtol‖vec F(z)‖``, up to
    √batch times looser than a row's own bound, which the rows then missed: NotConvergedError ('... solved as
    one system: converged'). At 1e-170 it passed only because torch.linalg.vector_norm made every norm 0."""
    b = torch.tensor([[1.0, 2.0], [0.001, -0.002], [5.0, 1.0]], dtype=torch.float64)
    F = lambda z, b: 0.5 * z + 0.45 * z.mean(0, keepdim=True) + c * b  # noqa: E731
    opts = SolveOptions(atol=0.0, rtol=COUPLED_RTOL, solver="fixed_point", max_iter=2000)
    z = fixed_point(F, torch.zeros_like(b), b, opts=opts)
    m = c * b.mean(0, keepdim=True) / 0.05          # the batch mean at the fixed point
    exact = (0.45 * m + c * b) / 0.5
    for row, row_exact in zip(z / c, exact / c):
        assert relative_error(row, row_exact) <= COUPLED_POINT_TOL


def test_non_convergence_raises():
    W = 3.0 * torch.eye(2, dtype=torch.float64)[[1, 0]]  # tanh(3·swap(z) + b): a 2-cycle, no convergence
    b = torch.tensor([0.5, -0.5], dtype=torch.float64)
    U = torch.zeros(2, 1, dtype=torch.float64)
    x = torch.zeros(1, 1, dtype=torch.float64)
    with pytest.raises(NotConvergedError):
        tanh_equilibrium(W, b, U, x, opts=SolveOptions(solver="fixed_point", atol=1e-12, max_iter=50))


def test_options_of_the_wrong_type_are_refused():
    """``opts="anderson"`` (a solver name where a SolveOptions belongs) failed with AttributeError inside
    the autograd function."""
    from deqlab.errors import InputError
    from deqlab.implicit.layer import fixed_point

    with pytest.raises(InputError, match="opts must be a SolveOptions"):
        fixed_point(lambda z: 0.5 * torch.tanh(z), torch.zeros(1, 2, dtype=torch.float64), opts="anderson")


def _graph_nodes(t):
    seen, stack = set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(n for n, _ in node.next_functions)
    return len(seen)


def test_graph_does_not_grow_with_solver_iterations(problem):
    """No iteration is recorded: the graph behind z* is the same whether the solver took 10 or 1000 steps."""
    W, b, U, x = problem
    loose = SolveOptions(solver="fixed_point", atol=1e-3, max_iter=5000)
    tight = SolveOptions(solver="fixed_point", atol=1e-14, max_iter=5000)
    z_l = tanh_equilibrium(W, b, U, x, opts=loose)
    z_t = tanh_equilibrium(W, b, U, x, opts=tight)
    F = lambda z: tanh_map(z, W.detach(), b.detach(), U.detach(), x)
    z0 = torch.zeros(B, N, dtype=torch.float64)
    n_loose = loose.solve(F, z0, linear=False).n_steps
    n_tight = tight.solve(F, z0, linear=False).n_steps
    assert n_tight >= 3 * n_loose  # the two solves really differ in length
    assert _graph_nodes(z_l) == _graph_nodes(z_t) <= 6


@pytest.mark.parametrize("solver", ["fixed_point", "anderson", "broyden", "newton", "fsolve"])
def test_every_registered_solver_drives_the_layer(solver):
    """Forward and the adjoint/tangent solves of torch.func.hessian by each registered solver."""
    torch.manual_seed(1)
    params = model_params(TanhDEQ(3, 2, 1, dtype=torch.float64))
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(2, 1, generator=gen, dtype=torch.float64)
    opts = SolveOptions(solver=solver, linear_solver=solver, atol=1e-13, max_iter=2000)
    groups = ("W_z", "b_z", "W_y")
    H = deq_hessian(**params, x=x, y=y, groups=groups)
    assert relative_error(layer_hessian(params, groups, x, y, opts=opts), H) <= RTOL


def test_a_solve_below_the_dtypes_resolution_says_so():
    """float32 with the default ``atol = 1e-12`` stalls at round-off (≈ 1e-8 here): the error says that
    the tolerance is below what float32 resolves at ``z``. A float64 solve that simply ran out of
    iterations gets no such hint, and the same float32 problem converges at a tolerance it resolves."""
    gen = torch.Generator().manual_seed(0)
    W = 0.6 * torch.randn(6, 6, generator=gen, dtype=torch.float64) / 6 ** 0.5
    x = torch.randn(8, 6, generator=gen, dtype=torch.float64)
    f32 = lambda z: torch.tanh(z @ W.float().T + x.float())      # noqa: E731
    with pytest.raises(NotConvergedError, match=r"atol = 1e-12 is below what float32 resolves at this z, eps·max\(‖z‖, 1\) = "):
        SolveOptions(max_iter=200).solve(f32, torch.zeros(8, 6), linear=False)
    assert SolveOptions(atol=1e-5, max_iter=200).solve(f32, torch.zeros(8, 6), linear=False).all_converged
    f64 = lambda z: torch.tanh(z @ W.T + x)                      # noqa: E731
    with pytest.raises(NotConvergedError) as info:
        SolveOptions(max_iter=3).solve(f64, torch.zeros(8, 6, dtype=torch.float64), linear=False)
    assert "resolves" not in str(info.value)
    # the hint is the solve's own message (every solver, every caller), followed by the residual
    with pytest.raises(NotConvergedError, match=r"below what float64 resolves .*: loosen atol\), residual "):
        SolveOptions(atol=1e-18, max_iter=100).solve(f64, torch.zeros(8, 6, dtype=torch.float64), linear=False)


def test_a_map_that_modifies_z_in_place_is_refused():
    """``fixed_point(F, ...)`` with ``F`` scaling ``z`` in place: the solver's iterates changed under it and the
    solve ended as 'not converged' with no word of why; refused at the first evaluation, naming the cause."""
    from deqlab.errors import InputError

    W = 0.1 * torch.randn(N, N, dtype=torch.float64)

    def scaling_in_place(z, W):
        z.mul_(0.5)
        return torch.tanh(z @ W.T + 1)

    with pytest.raises(InputError, match=r"^F\(z, \*args\) modified its input z in place"):
        fixed_point(scaling_in_place, torch.zeros(B, N, dtype=torch.float64), W, opts=OPTS)

    def shifting_its_argument(z, W, c):
        c.add_(1e-3)   # (the map drifts: its solve 'diverged', the cause unnamed)
        return torch.tanh(z @ W.T + c)

    with pytest.raises(InputError, match=r"^F\(z, \*args\) modified its argument\(s\) args\[1\] in place"):
        fixed_point(shifting_its_argument, torch.zeros(B, N, dtype=torch.float64), W, torch.zeros(N, dtype=torch.float64),
                    opts=OPTS)
    z = fixed_point(lambda z, W: torch.tanh(0.5 * z @ W.T + 1), torch.zeros(B, N, dtype=torch.float64), W, opts=OPTS)
    assert torch.allclose(z, torch.tanh(0.5 * z @ W.T + 1), rtol=0, atol=1e-12)
