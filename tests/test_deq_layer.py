"""Bring your own DEQ (:class:`deqlab.implicit.DEQ`): exact derivatives of every order for a user module, float64.

Independent routes: ``torch.autograd.gradcheck``/``gradgradcheck`` (finite differences of the layer
itself) and ``torch.func`` through a long unrolled solve of the same user module (contraction ≤ 0.5,
so 200 steps are exact to far below the tolerances).
"""

import pytest
import torch
from torch import nn

from deqlab.errors import InputError, NotConvergedError
from deqlab.implicit import DEQ, SolveOptions
from deqlab.implicit.checks import relative_error
import helpers

#: Every solve stops at ‖f(z) − z‖ ≤ 1e-13; derivatives inherit that accuracy.
OPTS = SolveOptions(atol=1e-13, max_iter=1000)
#: Implicit layer vs autodiff through the unroll (the issue's bar).
RTOL = 1e-10
#: Unrolled steps for the reference: ‖J‖ ≤ 0.5 gives an error ≤ 0.5^200.
UNROLL = 200
N, D, B = 4, 3, 3


Cell = helpers.ContractingCell

class Model(nn.Module):
    """Layers before and after the DEQ: ``y = head(DEQ(tanh(enc(x))))``."""

    def __init__(self, d_in, d, n, n_out, **deq_kwargs):
        super().__init__()
        self.enc = nn.Linear(d_in, d, dtype=torch.float64)
        self.deq = DEQ(Cell(n, d), n, opts=OPTS, **deq_kwargs)
        self.head = nn.Linear(n, n_out, dtype=torch.float64)

    def forward(self, x):
        return self.head(self.deq(torch.tanh(self.enc(x))))


def unrolled_model(model, params, x, steps=UNROLL):
    """The same model with the DEQ replaced by ``steps`` iterations of its cell (autodiff reference)."""
    sub = lambda prefix: {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
    h = torch.tanh(torch.func.functional_call(model.enc, sub("enc."), (x,)))
    z = torch.zeros(x.shape[0], model.deq.n_z, dtype=x.dtype)
    for _ in range(steps):
        z = torch.func.functional_call(model.deq.f, sub("deq.f."), (z, h))
    return torch.func.functional_call(model.head, sub("head."), (z,))


def unrolled_cell_gradients(cell: nn.Module, x: torch.Tensor, steps: int = UNROLL) -> dict[str, torch.Tensor]:
    """``∂(Σ z^steps)/∂p`` for each named parameter ``p`` of ``cell``, by ``torch.func.grad`` through ``steps``
    iterations of ``z ← cell(z, x)`` from zero (the reference of a DEQ's ``z*.sum()`` gradient)."""

    def unrolled(p):
        z = torch.zeros(x.shape[0], N, dtype=torch.float64)
        for _ in range(steps):
            z = torch.func.functional_call(cell, p, (z, x))
        return z.sum()

    return torch.func.grad(unrolled)({k: v.detach() for k, v in cell.named_parameters()})


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Model(5, D, N, 2)


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(B, 5, generator=gen, dtype=torch.float64), torch.randn(B, 2, generator=gen, dtype=torch.float64)


def detached(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_forward_solves_and_reports_stats():
    torch.manual_seed(0)
    cell = Cell(N, D)
    deq = DEQ(cell, N, solver="broyden", opts=OPTS)
    assert deq.stats is None
    x = torch.randn(B, D, dtype=torch.float64)
    z = deq(x)
    assert z.shape == (B, N) and z.grad_fn is not None
    assert float(torch.linalg.norm(cell(z, x) - z, dim=1).max().detach()) <= 1e-12
    s = deq.stats
    assert s.solver == "broyden" and s.all_converged and s.n_steps >= 2 and s.max_residual <= 1e-13
    assert s.residual.shape == (B,)
    # a start at the solution is accepted and converges at once, to the same point
    z2 = deq(x, z0=z.detach())
    assert deq.stats.n_steps <= 2 and torch.allclose(z2, z, atol=1e-12, rtol=0)


def test_gradcheck_and_gradgradcheck_wrt_parameters_and_input():
    torch.manual_seed(0)
    n, d, b = 3, 2, 2  # small: gradgradcheck differentiates the layer's backward numerically, input by input
    deq = DEQ(Cell(n, d), n, opts=OPTS)
    names = [k for k, _ in deq.named_parameters()]
    x = torch.randn(b, d, dtype=torch.float64, requires_grad=True)

    def fn(x, *p):
        return torch.func.functional_call(deq, dict(zip(names, p)), (x,))

    inputs = (x, *[p.detach().clone().requires_grad_() for p in deq.parameters()])
    assert torch.autograd.gradcheck(fn, inputs)
    # fast mode: the check along random directions of inputs and outputs (a full Jacobian takes minutes)
    assert torch.autograd.gradgradcheck(fn, inputs, fast_mode=True)


def test_hessian_through_functional_call_matches_unroll(model, batch):
    x, y = batch
    params = detached(model)

    def loss_deq(p):
        return ((torch.func.functional_call(model, p, (x,)) - y) ** 2).sum() / 2

    def loss_unrolled(p):
        return ((unrolled_model(model, p, x) - y) ** 2).sum() / 2

    g_i, g_u = torch.func.grad(loss_deq)(params), torch.func.grad(loss_unrolled)(params)
    H_i, H_u = torch.func.hessian(loss_deq)(params), torch.func.hessian(loss_unrolled)(params)
    flat = lambda H: torch.cat([torch.cat([H[a][b].reshape(params[a].numel(), -1) for b in params], 1) for a in params])
    assert relative_error(torch.cat([g.reshape(-1) for g in g_i.values()]),
                          torch.cat([g.reshape(-1) for g in g_u.values()])) <= RTOL
    Hi, Hu = flat(H_i), flat(H_u)
    assert relative_error(Hi, Hu) <= RTOL
    assert relative_error(Hi, Hi.T) <= RTOL
    # the DEQ parameters' blocks are not zero (the test would pass trivially otherwise)
    w = "deq.f.W.weight"
    assert float(H_u[w][w].abs().max()) > 1e-3


def test_double_backward_inside_an_ordinary_model(model, batch):
    """Plain autograd (create_graph) through a model with layers before and after the DEQ."""
    x, y = batch
    params = list(model.parameters())
    v = [torch.randn_like(p) for p in params]
    loss = ((model(x) - y) ** 2).sum() / 2
    g = torch.autograd.grad(loss, params, create_graph=True)
    hv = torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v)), params)
    names = [k for k, _ in model.named_parameters()]
    ref = detached(model)

    def loss_unrolled(*p):
        return ((unrolled_model(model, dict(zip(names, p)), x) - y) ** 2).sum() / 2

    _, hv_u = torch.autograd.functional.hvp(loss_unrolled, tuple(ref.values()), tuple(v))
    for a, b in zip(hv, hv_u):
        assert relative_error(a, b) <= RTOL


def test_vmap_over_inputs_is_one_joint_solve(model, batch):
    x, _ = batch
    per_sample = torch.func.vmap(lambda xi: model(xi[None])[0])(x)
    assert torch.allclose(per_sample, model(x), atol=1e-12, rtol=0)
    # per-sample gradients by vmap(grad) against a loop of ordinary backward passes
    params = detached(model)
    grads = torch.func.vmap(torch.func.grad(lambda p, xi: torch.func.functional_call(model, p, (xi[None],)).sum()),
                            in_dims=(None, 0))(params, x)
    for s in range(x.shape[0]):
        model.zero_grad()
        model(x[s:s + 1]).sum().backward()
        for k, p in model.named_parameters():
            assert relative_error(grads[k][s], p.grad) <= RTOL


def test_approximate_backwards_are_labelled_and_differ(batch):
    x, y = batch
    grads, labels = {}, {}
    for backward in ("implicit", "jacobian_free", "phantom"):
        torch.manual_seed(0)
        m = Model(5, D, N, 2, backward=backward, phantom_steps=60, phantom_damping=1.0)
        labels[backward] = (m.deq.exact_derivatives, repr(m.deq))
        loss = ((m(x) - y) ** 2).sum() / 2
        grads[backward] = torch.autograd.grad(loss, m.deq.f.W.weight)[0]
    assert labels["implicit"][0] and not labels["jacobian_free"][0] and not labels["phantom"][0]
    assert "approximate" in labels["jacobian_free"][1] and "approximate" in labels["phantom"][1]
    # Jacobian-free drops (I − J)⁻¹: measurably wrong; 60 undamped phantom steps approach the exact one
    assert relative_error(grads["jacobian_free"], grads["implicit"]) > 1e-3
    assert relative_error(grads["phantom"], grads["implicit"]) <= 1e-8


def test_stats_survive_a_failed_solve():
    torch.manual_seed(0)
    cell = Cell(N, D)
    deq = DEQ(cell, N, solver="fixed_point", opts=SolveOptions(atol=1e-30, max_iter=3))
    with pytest.raises(NotConvergedError):
        deq(torch.randn(B, D, dtype=torch.float64))
    assert deq.stats.n_steps == 3 and not deq.stats.all_converged
    quiet = DEQ(cell, N, solver="fixed_point", opts=SolveOptions(atol=1e-30, max_iter=3, on_fail="ignore"))
    quiet(torch.randn(B, D, dtype=torch.float64))
    assert not quiet.stats.all_converged


def test_solve_options_are_checked_when_made():
    """Not at the first solve (for the linear solver: at the first backward)."""
    for kwargs, match in (({"linear_solver": "nope"}, "unknown linear solver 'nope'"), ({"solver": "x"}, "unknown solver 'x'"),
                          ({"atol": float("nan")}, "atol must be a finite number"), ({"rtol": 1.0}, "rtol must be < 1"),
                          ({"max_iter": 0}, "max_iter must be an integer >= 1"), ({"on_fail": "warn"}, "on_fail")):
        with pytest.raises(InputError, match=match):
            SolveOptions(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"solver": "newtonn"}, "unknown solver 'newtonn'"),
    ({"backward": "unrolled"}, "unknown backward"),
    ({"phantom_steps": 0}, "phantom_steps"),
    ({"phantom_damping": 1.5}, "phantom_damping"),
    ({"phantom_damping": "0.5"}, "phantom_damping"),   # (Python's TypeError from the comparison)
])
def test_bad_arguments_are_input_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        DEQ(Cell(N, D), N, **kwargs)
    with pytest.raises(InputError, match="n_z"):
        DEQ(Cell(N, D), 0)
    with pytest.raises(InputError, match="nn.Module"):
        DEQ(lambda z, x: z, N)
    with pytest.raises(InputError, match="z0"):
        DEQ(Cell(N, D), N)(torch.zeros(B, D, dtype=torch.float64), z0=torch.zeros(B, N + 1, dtype=torch.float64))


@pytest.mark.parametrize("x, z0, match", [
    ([[0.0] * D] * B, None, "x must be a tensor with the batch as its first dimension, got list"),   # (AttributeError)
    (torch.tensor(1.0, dtype=torch.float64), None, r"x must be a tensor .* got \(\) float64"),     # (IndexError)
    (torch.zeros(B, D, dtype=torch.float64), torch.zeros(B, N), "z0 must have f's dtype float64, got"),  # (torch's dtype clash)
    (torch.zeros(B, D, dtype=torch.float64), torch.zeros(B, N, 1, dtype=torch.float64), r"z0 must have shape \(batch, n_z\)"),
    # (torch's dtype clash inside f; a NaN x was a forward solve that 'did not converge', naming no x)
    (torch.zeros(B, D), None, r"x must have f's dtype float64 .* got \(3, 3\) float32"),
    (torch.zeros(B, D, dtype=torch.complex128), None, r"x must have f's dtype float64 .* got \(3, 3\) complex128"),
    (torch.full((B, D), float("nan"), dtype=torch.float64), None, "x contains NaN or infinite values"),
    (torch.full((B, D), float("-inf"), dtype=torch.float64), None, "x contains NaN or infinite values"),
])
def test_a_call_with_an_input_or_start_that_cannot_be_used_is_refused(x, z0, match):
    with pytest.raises(InputError, match=match):
        DEQ(Cell(N, D), N)(x, z0=z0)
    with pytest.raises(InputError, match=r"n_z must be an integer >= 1, got 2\.5"):
        DEQ(Cell(N, D), 2.5)


def test_an_error_inside_f_names_z_n_z_and_x():
    """A width n_z that is not f's, or an x of the wrong rank, failed inside the user's f with torch's own
    words ('mat1 and mat2 shapes cannot be multiplied (3x5 and 4x4)'), naming neither n_z nor z: one
    InputError now says what f was called with (torch's error stays chained as its cause)."""
    x = torch.randn(B, D, dtype=torch.float64)
    with pytest.raises(InputError, match=r"f\(z, x\) raised RuntimeError on z \(3, 5\) float64 on cpu \(n_z = 5\)") as info:
        DEQ(Cell(N, D), N + 1)(x)
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(InputError, match=r"\(n_z = 4\) and x \(3, 2, 3\) float64"):
        DEQ(Cell(N, D), N)(torch.randn(B, 2, D, dtype=torch.float64))


class _HalfPlusFirstInput(nn.Module):
    """``f(z, x) = z/2 + x[:, :1]``: no parameters at all, so nothing but x gives z a dtype."""

    def forward(self, z, x):
        return 0.5 * z + x[:, :1]


def test_a_map_without_parameters_on_integer_inputs_solves_in_the_default_dtype():
    """z took x's dtype when f had no floating parameter: with integer x it started as an integer tensor, refused
    as 'z0 must be a real floating-point tensor' (no z0 was given). Fixed point: z* = 2·x[:, :1]."""
    x = torch.tensor([[1, 5], [-3, 0]])
    z = DEQ(_HalfPlusFirstInput(), 2, opts=OPTS)(x)
    assert z.dtype == torch.get_default_dtype()
    assert relative_error(z, 2 * x[:, :1].to(z.dtype).expand(2, 2)) <= RTOL
    deq = DEQ(_HalfPlusFirstInput(), 2, opts=OPTS)
    assert deq(torch.zeros(0, 2, dtype=torch.float64)).shape == (0, 2) and deq.stats.max_residual == 0.0   # (max() of nothing raised)


class _Returns(nn.Module):
    """A map whose output is not shaped like z: ``make(z)`` decides what it returns."""

    def __init__(self, make):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.5, dtype=torch.float64))
        self.make = make

    def forward(self, z, x):
        return self.make(torch.tanh(self.a * z + x.sum(1, keepdim=True)))


@pytest.mark.parametrize("make, got", [
    (lambda fz: fz[:, :1], r"got \(5, 1\) float64"),            # would broadcast to (5, 4): a different map
    (lambda fz: fz[:1], r"got \(1, 4\) float64"),
    (lambda fz: fz.float(), r"got \(5, 4\) float32"),            # would be cast: a different map
    (lambda fz: (fz, fz), "got tuple"),
])
def test_a_map_that_does_not_return_a_tensor_like_z_is_refused(make, got):
    """Never a "fixed point" of a broadcast or cast map: the first evaluation says what f returned."""
    deq = DEQ(_Returns(make), 4)
    x = torch.randn(5, 2, dtype=torch.float64)
    with pytest.raises(InputError, match=r"f\(z, x\) must return a tensor like z, \(5, 4\) float64 on cpu; " + got):
        deq(x)
    assert DEQ(_Returns(lambda fz: fz), 4)(x).shape == (5, 4)


class TokenCell(nn.Module):
    """``f(z, x) = tanh(W z[:, perm] + E[x])``: integer token ids as the input and an integer index
    buffer, both constants of the derivatives (the backward failed on them: torch.func refuses to
    differentiate with respect to an integer tensor)."""

    def __init__(self, n, vocab):
        super().__init__()
        self.W = nn.Linear(n, n, dtype=torch.float64)
        with torch.no_grad():
            self.W.weight.mul_(0.4)
        self.E = nn.Parameter(torch.randn(vocab, n, dtype=torch.float64))
        self.register_buffer("perm", torch.roll(torch.arange(n), 1))

    def forward(self, z, x):
        return torch.tanh(self.W(z[:, self.perm]) + self.E[x])


def test_integer_inputs_and_buffers_are_constants_of_every_derivative():
    from deqlab.implicit import LossHessian

    torch.manual_seed(0)
    deq = DEQ(TokenCell(N, 5), N, opts=OPTS)
    x = torch.tensor([3, 0, 3])   # token ids, int64
    names = [k for k, _ in deq.named_parameters()]
    params = {k: p.detach() for k, p in deq.named_parameters()}

    def loss(p, unroll=False):
        if not unroll:
            z = torch.func.functional_call(deq, p, (x,))
        else:
            z = torch.zeros(x.shape[0], N, dtype=torch.float64)
            for _ in range(UNROLL):
                z = torch.func.functional_call(deq.f, {k.removeprefix("f."): v for k, v in p.items()}, (z, x))
        return (z ** 3).sum()

    flat = lambda H: torch.cat([torch.cat([H[a][b].reshape(params[a].numel(), -1) for b in names], 1) for a in names])
    H_u = flat(torch.func.hessian(lambda p: loss(p, True))(params))
    H_i = flat(torch.func.hessian(loss)(params))      # forward over reverse through the layer
    assert relative_error(H_i, H_u) <= RTOL
    g_u = torch.autograd.grad(loss(dict(deq.named_parameters()), True), list(deq.parameters()))
    g_i = torch.autograd.grad(loss(dict(deq.named_parameters())), list(deq.parameters()))
    for a, b in zip(g_i, g_u):
        assert relative_error(a, b) <= RTOL
    for mode in ("lagrangian", "direct"):
        H = LossHessian(deq, lambda z, _: (z ** 3).sum(), x, mode=mode).dense()
        assert relative_error(H, H_u) <= RTOL


class NormalisedCell(Cell):
    """``Cell`` followed by a ``BatchNorm1d`` and a ``Dropout``: a pure map only in eval mode."""

    def __init__(self, n, d):
        super().__init__(n, d)
        self.norm = nn.BatchNorm1d(n, dtype=torch.float64)
        self.drop = nn.Dropout(0.3)

    def forward(self, z, x):
        return self.drop(0.5 * torch.tanh(self.norm(super().forward(z, x))))


@pytest.mark.parametrize("part, match", [("drop", "draws random numbers"), ("norm", "modified its buffers in place")])
def test_a_random_or_state_updating_map_is_refused(part, match):
    """A Dropout in training mode made the map random: the forward solve ended in NotConvergedError after
    500 steps with no word of why (with on_fail='ignore' it returned a gradient of no map). A BatchNorm in
    training mode updated its running statistics at every evaluation of the solve and the backward failed
    inside torch.func ('attempted to call in-place operation ... mutate a captured Tensor')."""
    torch.manual_seed(0)
    cell = NormalisedCell(N, D).eval()
    getattr(cell, part).train()
    x = torch.randn(B, D, dtype=torch.float64)
    for on_fail in ("raise", "ignore"):
        deq = DEQ(cell, N, opts=SolveOptions(atol=1e-13, max_iter=1000, on_fail=on_fail))
        buffers = {name: b.clone() for name, b in cell.named_buffers()}
        generator = torch.get_rng_state()
        with pytest.raises(InputError, match=match):
            deq(x)
        # the refusal leaves no trace: the running statistics .eval() would keep are not those of the
        # refused solve's iterates, and the generator has not moved
        assert all(torch.equal(b, buffers[name]) for name, b in cell.named_buffers())
        assert torch.equal(torch.get_rng_state(), generator)
    # in eval mode the same map is pure: the implicit gradient matches the unroll
    cell.eval()
    deq = DEQ(cell, N, opts=OPTS)
    xg = x.clone().requires_grad_()
    g = torch.autograd.grad((deq(xg) ** 2).sum(), xg)[0]
    z = torch.zeros(B, N, dtype=torch.float64)
    xu = x.clone().requires_grad_()
    for _ in range(UNROLL):
        z = cell(z, xu)
    assert relative_error(g, torch.autograd.grad((z**2).sum(), xu)[0]) <= RTOL


class BatchMeanCell(Cell):
    """``Cell + 0.2·tanh(mean over the batch of z)``: a map that couples the samples (as a batch norm with
    batch statistics does)."""

    def forward(self, z, x):
        return super().forward(z, x) + 0.2 * torch.tanh(z).mean(0, keepdim=True)


def test_a_map_coupling_the_samples_has_exact_derivatives():
    """The solvers freeze each row once it meets the stopping rule; with a coupled map the other rows' later
    moves shifted the frozen rows' fixed point. jacrev's adjoint solves, whose right-hand side is zero in
    every row but one, kept those rows at 0: the Jacobian was 4% off the unroll's (and the forward z* had
    residual 2e-12 at atol 1e-13)."""
    torch.manual_seed(6)
    cell = BatchMeanCell(N, D)
    deq = DEQ(cell, N, opts=OPTS)
    x = torch.randn(4, D, dtype=torch.float64)

    def unrolled(xx):
        z = torch.zeros(xx.shape[0], N, dtype=torch.float64)
        for _ in range(UNROLL):
            z = cell(z, xx)
        return z

    z = deq(x)
    assert float(torch.linalg.vector_norm(cell(z, x) - z, dim=1).max().detach()) <= OPTS.atol
    reference = torch.func.jacrev(unrolled)(x)
    assert relative_error(torch.func.jacrev(deq)(x), reference) <= RTOL
    assert relative_error(torch.autograd.functional.jacobian(deq, x), reference) <= RTOL


@pytest.mark.parametrize("strategy", ["reverse-mode", "forward-mode"])
def test_legacy_batched_gradients_are_refused_in_one_error(strategy):
    """torch.autograd.functional.hessian(vectorize=True) runs the backward under PyTorch's legacy vmap, which
    cannot run a solver: it failed with "Batching rule not implemented for aten::detach" (aten::is_nonzero
    for the forward-mode outer Jacobian). Unvectorised, it is exact."""
    torch.manual_seed(0)
    cell = Cell(N, D)
    deq = DEQ(cell, N, opts=OPTS)
    x = torch.randn(B, D, dtype=torch.float64)
    loss = lambda xx: (deq(xx) ** 3).sum()
    with pytest.raises(InputError, match="vectorize=False"):
        torch.autograd.functional.hessian(loss, x, vectorize=True, outer_jacobian_strategy=strategy)

    def unrolled(xx):
        z = torch.zeros(B, N, dtype=torch.float64)
        for _ in range(UNROLL):
            z = cell(z, xx)
        return (z**3).sum()

    assert relative_error(torch.autograd.functional.hessian(loss, x), torch.func.hessian(unrolled)(x)) <= RTOL



class DrawingElsewhereCell(Cell):
    """``Cell`` during whose evaluation a random number is drawn and not used: what another thread's draws
    look like to a check of torch's shared generators."""

    def forward(self, z, x):
        torch.rand(1)
        return super().forward(z, x)


def test_an_eval_mode_map_is_not_refused_for_random_numbers_drawn_elsewhere():
    """torch's generators are shared by every thread: another thread's draws during an eval-mode solve (a
    served model) must not be taken for the map's own. In training mode the draws are refused."""
    torch.manual_seed(0)
    cell = DrawingElsewhereCell(N, D)
    x = torch.randn(B, D, dtype=torch.float64)
    with pytest.raises(InputError, match="draws random numbers"):
        DEQ(cell.train(), N, opts=OPTS)(x)
    assert DEQ(cell.eval(), N, opts=OPTS)(x).shape == (B, N)


def test_a_pure_map_in_training_mode_with_a_nan_buffer_is_not_refused():
    """With a module in training mode the buffers are copied and compared by value (torch's batch_norm
    writes running_mean/var without a version bump); a buffer holding NaN that nobody touches is the
    same buffer (torch.equal says NaN != NaN)."""
    cell = Cell(N, D).train()
    cell.register_buffer("unused", torch.tensor([float("nan"), 1.0], dtype=torch.float64))
    x = torch.randn(B, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    z = DEQ(cell, N, opts=OPTS)(x)
    assert torch.isfinite(z).all()


class StashedWeightCell(nn.Module):
    """``tanh(W_eff z + U x)`` with ``W_eff`` a plain attribute that the outer model sets from its own parameter."""

    def __init__(self):
        super().__init__()
        self.U = nn.Linear(D, N, dtype=torch.float64)
        self.W_eff = None

    def forward(self, z, x):
        return torch.tanh(z @ self.W_eff.T + self.U(x))


class StashingModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.A = nn.Parameter(0.6 * torch.randn(N, N, dtype=torch.float64) / N)
        self.deq = DEQ(StashedWeightCell(), N, opts=OPTS)

    def forward(self, x):
        self.deq.f.W_eff = 0.5 * self.A
        return self.deq(x)


def test_a_map_holding_a_tensor_computed_outside_it_is_refused():
    """A tensor attribute of f computed from an outer parameter (``f.W_eff = 0.5·A``) is a constant to the solve and
    to every implicit rule: ``A`` got no gradient through z* at all (``A.grad`` stayed None after ``backward()``),
    without a word. Refused now; under no_grad (no derivative) it runs; the hook-based weight_norm, whose
    ``weight`` attribute its pre-hook recomputes from f's parameters at every call, is not refused and its
    gradient matches the unroll (RTOL)."""
    import warnings

    torch.manual_seed(0)
    model = StashingModel()
    x = torch.randn(B, D, dtype=torch.float64)
    with pytest.raises(InputError, match=r"uses tensor\(s\) \(W_eff\) that require grad but are not parameters or buffers"):
        model(x)
    with torch.no_grad():
        z = model(x)
    assert model.deq.stats.all_converged and z.shape == (B, N)

    class WeightNormCell(nn.Module):
        def __init__(self):
            super().__init__()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # (torch deprecates the hook-based weight_norm, which users still have)
                self.W = torch.nn.utils.weight_norm(nn.Linear(N, N, dtype=torch.float64))
            self.U = nn.Linear(D, N, dtype=torch.float64)
            with torch.no_grad():
                self.W.weight_g.mul_(0.2)

        def forward(self, z, x):
            return torch.tanh(self.W(z) + self.U(x))

    cell = WeightNormCell()
    g = torch.autograd.grad(DEQ(cell, N, opts=OPTS)(x).sum(), cell.W.weight_g)[0]

    def unrolled(weight_g):
        z = torch.zeros(B, N, dtype=torch.float64)
        for _ in range(UNROLL):
            z = torch.func.functional_call(cell, {"W.weight_g": weight_g}, (z, x))
        return z.sum()

    assert relative_error(g, torch.func.grad(unrolled)(cell.W.weight_g.detach())) <= RTOL


class ListHeldCell(nn.Module):
    """Uses the model's readout ``Linear`` through a Python list (not registered in f) and a global parameter."""

    def __init__(self, shared: nn.Linear, extra: torch.Tensor | None = None):
        super().__init__()
        self._shared = [shared]
        self.U = nn.Linear(D, N, dtype=torch.float64)
        self.extra = [extra]

    def forward(self, z, x):
        out = torch.tanh(0.3 * self._shared[0](z) + self.U(x))
        return out if self.extra[0] is None else out + 0.1 * torch.tanh(self.extra[0] * z)


def test_a_map_using_a_tensor_that_is_not_its_parameter_is_refused():
    """f's implicit derivatives see only f's parameters, buffers and x: a readout Linear reused inside f through a
    Python list gave dL/dW 3.4% off finite differences, a global Parameter used in f got no gradient at all
    (``.grad`` None), and the attribute refusal above was skipped for a module with a forward pre-hook (25% off),
    all without a word. Each is refused now, found from the autograd graph of f's value at z* (the same map with
    the Linear registered in f still matches the unroll: the refusal is about the hidden tensor, not the map)."""
    torch.manual_seed(0)
    x = torch.randn(B, D, dtype=torch.float64)
    shared = nn.Linear(N, N, dtype=torch.float64)
    with pytest.raises(InputError, match=r"uses tensor\(s\) \(one of shape \(4, 4\), one of shape \(4,\)\) that "
                                         r"require grad but are not parameters or buffers of f .*nn.ModuleList"):
        DEQ(ListHeldCell(shared), N, opts=OPTS)(x)
    G = nn.Parameter(torch.rand(N, dtype=torch.float64))
    registered = ListHeldCell(shared, G)
    registered.shared = shared                    # the Linear now is f's; the global G still is not
    with pytest.raises(InputError, match=r"one of shape \(4,\)\) that require grad"):
        DEQ(registered, N, opts=OPTS)(x)
    with torch.no_grad():                         # no derivative, nothing to refuse
        assert DEQ(registered, N, opts=OPTS)(x).shape == (B, N)

    model = StashingModel()
    model.deq.f.register_forward_pre_hook(lambda module, inputs: None)   # (a logging hook, say)
    with pytest.raises(InputError, match=r"\(W_eff\) that require grad"):
        model(x)

    cell = ListHeldCell(shared)
    cell.shared = shared
    cell._shared = []
    cell.forward = lambda z, x: torch.tanh(0.3 * cell.shared(z) + cell.U(x))
    params = dict(cell.named_parameters())
    grads = torch.autograd.grad(DEQ(cell, N, opts=OPTS)(x).sum(), list(params.values()))

    reference = unrolled_cell_gradients(cell, x)
    for g, name in zip(grads, params):
        assert relative_error(g, reference[name]) <= RTOL, name


class DetachingCell(Cell):
    """The contracting cell with ``z.detach()`` inside: the same values, but autograd sees no ``∂f/∂z``."""

    def forward(self, z, x):
        return super().forward(z.detach(), x)


class IgnoresZCell(Cell):
    """``f(z, x) = tanh(U x)``: independent of z, so ``z* = f(·, x)`` and ``∂f/∂z = 0`` truly."""

    def forward(self, z, x):
        return torch.tanh(self.U(x))


def test_a_map_hiding_its_dependence_on_z_is_refused_and_one_without_it_is_not():
    """With ``z.detach()`` inside f the backward leaves out ``(I − J)⁻¹``: dL/dW came back 20% off finite
    differences without a word (only the loss Hessian refused it). Refused in the layer now; a map that truly
    does not depend on z keeps its exact gradient (z* = tanh(Ux): dz*/dU by the chain rule)."""
    torch.manual_seed(0)
    x = torch.randn(B, D, dtype=torch.float64)
    with pytest.raises(InputError, match="changes with z, but autograd sees no dependence on z"):
        DEQ(DetachingCell(N, D), N, opts=OPTS)(x)
    cell = IgnoresZCell(N, D)
    g = torch.autograd.grad(DEQ(cell, N, opts=OPTS)(x).sum(), cell.U.weight)[0]
    expected = torch.autograd.grad(torch.tanh(cell.U(x)).sum(), cell.U.weight)[0]
    assert relative_error(g, expected) <= 1e-14


def test_fixed_point_refuses_a_map_closing_over_a_tensor_that_requires_grad():
    """The functional API's contract ('pass them in args'), checked: a closure over W gave W no gradient through z*."""
    from deqlab.implicit import fixed_point

    torch.manual_seed(0)
    W = (0.3 * torch.randn(N, N, dtype=torch.float64)).requires_grad_()
    x = torch.randn(B, N, dtype=torch.float64)
    z0 = torch.zeros(B, N, dtype=torch.float64)
    with pytest.raises(InputError, match=r"F\(z, \*args\) uses tensor\(s\) \(one of shape \(4, 4\)\) .*pass them to fixed_point in args"):
        fixed_point(lambda z, x: torch.tanh(z @ W.T + x), z0, x, opts=OPTS)
    z = fixed_point(lambda z, x, W: torch.tanh(z @ W.T + x), z0, x, W, opts=OPTS)
    g = torch.autograd.grad(z.sum(), W)[0]
    zz = z0
    for _ in range(UNROLL):
        zz = torch.tanh(zz @ W.T + x)
    assert relative_error(g, torch.autograd.grad(zz.sum(), W)[0]) <= RTOL


class CachingCell(nn.Module):
    """Keeps its latest output (``self.last = out``), as diagnostics code does."""

    def __init__(self):
        super().__init__()
        self.W = nn.Linear(N, N, dtype=torch.float64)
        self.U = nn.Linear(D, N, dtype=torch.float64)
        with torch.no_grad():
            self.W.weight.mul_(0.3)

    def forward(self, z, x):
        self.last = torch.tanh(self.W(z) + self.U(x))
        return self.last


def test_a_map_caching_its_own_output_is_not_refused():
    """After one backward, ``self.last`` held a tensor requiring grad, and every later call was refused as a
    captured input ('holds tensor(s) last ...'): a tensor that f replaces during the solve is its output.
    Its gradients match an unroll through the same cell (RTOL), call after call."""
    torch.manual_seed(0)
    cell = CachingCell()
    deq = DEQ(cell, N, opts=OPTS)
    x = torch.randn(B, D, dtype=torch.float64)
    params = dict(cell.named_parameters())

    reference = unrolled_cell_gradients(cell, x)
    for _ in range(3):
        grads = torch.autograd.grad(deq(x).sum(), list(params.values()))
        assert cell.last.requires_grad   # (the case that was refused)
        for g, name in zip(grads, params):
            assert relative_error(g, reference[name]) <= RTOL, name


class InPlaceCell(nn.Module):
    """Scales its input in place before using it."""

    def __init__(self):
        super().__init__()
        self.W = nn.Linear(N, N, dtype=torch.float64)
        self.U = nn.Linear(D, N, dtype=torch.float64)

    def forward(self, z, x):
        z.mul_(0.5)
        return torch.tanh(self.W(z) + self.U(x))


def test_a_map_that_modifies_z_in_place_is_refused():
    """The solvers keep every iterate (Anderson's history, the best point): a map doing z.mul_(0.5) made the
    forward solve 'not converge' after 500 steps with no word of why. Refused at its first evaluation, and
    under no_grad too (nothing then stops the in-place operation on a leaf)."""
    x = torch.randn(B, D, dtype=torch.float64)
    for grad_mode in (torch.enable_grad, torch.no_grad):
        with grad_mode(), pytest.raises(InputError, match=r"^f\(z, x\) modified its input z in place"):
            DEQ(InPlaceCell(), N, opts=OPTS)(x)

    class ScalingInput(InPlaceCell):
        def forward(self, z, x):
            x.mul_(0.99)   # (the map changes as it is iterated)
            return torch.tanh(self.W(z) + self.U(x))

    with pytest.raises(InputError, match=r"^f\(z, x\) modified its input x in place"):
        DEQ(ScalingInput(), N, opts=OPTS)(x)
