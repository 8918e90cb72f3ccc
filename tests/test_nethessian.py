"""deqlab.nethessian: every quantity against torch.func (float64), the seed's pitfalls shown wrong."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from deqlab.errors import ConfigError, NotConvergedError
from deqlab.nethessian import ACTIVATIONS, Sin, derivatives_wrt_outputs, input_derivatives, laplacian, make_mlp
from deqlab.nethessian import pitfalls as P
from deqlab.nethessian import reference as R
from deqlab.nethessian.activations import activation_of
from deqlab.nethessian.outputs import invert_network

#: forward recursion vs torch.func, max-norm relative error (the issue's bar)
TOL = 1e-12
#: central finite differences (step FD_STEP) of a smooth quantity: truncation ~h², round-off ~eps/h
FD_TOL = 1e-7
FD_STEP = 1e-4
#: a formula "is wrong" when it misses the reference by at least this (relative)
WRONG = 0.05

f64 = torch.float64


def rel(a, b):
    """max |a − b| / max |b| (normwise: safe where entries of b vanish); max |a| if b is exactly 0."""
    a, b = a.detach(), b.detach()
    scale = float(b.detach().abs().max())
    return float((a - b).detach().abs().max()) / scale if scale > 0 else float(a.detach().abs().max())


def net_and_x(act, d, hidden, n_out, batch=3, seed=0):
    torch.manual_seed(seed)
    net = make_mlp(d, hidden, n_out, act, dtype=f64)
    x = torch.randn(batch, d, dtype=f64)
    return net, x


ARCHS = [(3, [5], 2), (2, [4, 6], 1), (4, [3, 5, 4], 3)]  # (d, hidden, n_out): depths 1, 2, 3


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("d,hidden,n_out", ARCHS)
def test_every_quantity_matches_torch_func(act, d, hidden, n_out):
    net, x = net_and_x(act, d, hidden, n_out)
    out = input_derivatives(net, x, diag_hessian=True, laplacian=True, hessian=True, third=True)
    H_ref = R.hessian_func(net, x)
    assert out.hessian_method == "forward"
    assert rel(out.value, net(x)) <= TOL
    assert rel(out.jacobian, R.jacobian_func(net, x)) <= TOL
    assert rel(out.hessian, H_ref) <= TOL
    assert rel(out.diag_hessian, torch.diagonal(H_ref, dim1=-2, dim2=-1)) <= TOL
    assert rel(out.laplacian, torch.diagonal(H_ref, dim1=-2, dim2=-1).sum(-1)) <= TOL
    assert rel(out.third, R.third_func(net, x)) <= TOL
    # the cheaper routes used when less is asked for
    adj = input_derivatives(net, x, hessian=True, hessian_method="adjoint")
    assert adj.hessian_method == "adjoint" and rel(adj.hessian, H_ref) <= TOL
    Hd_ref = torch.diagonal(H_ref, dim1=-2, dim2=-1)
    for method in ("auto", "forward", "adjoint"):
        both = input_derivatives(net, x, jacobian=False, diag_hessian=True, laplacian=True, diag_method=method)
        assert rel(both.diag_hessian, Hd_ref) <= TOL and rel(both.laplacian, Hd_ref.sum(-1)) <= TOL
    assert rel(laplacian(net, x), Hd_ref.sum(-1)) <= TOL


def test_hessian_symmetric_and_auto_method():
    net, x = net_and_x("tanh", 4, [6, 5], 2)
    out = input_derivatives(net, x, hessian=True)
    assert out.hessian_method == "adjoint"
    assert rel(out.hessian, out.hessian.transpose(-1, -2)) <= TOL
    fwd = input_derivatives(net, x, hessian=True, hessian_method="forward").hessian
    assert rel(fwd, fwd.transpose(-1, -2)) <= TOL


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivatives_against_autograd(name):
    module = ACTIVATIONS[name]().to(f64)
    act = activation_of(module)
    z = torch.linspace(-4, 4, 41, dtype=f64)
    values = act(z, 3)
    f = lambda s: module(s)  # noqa: E731
    d1 = torch.func.vmap(torch.func.grad(f))(z)
    d2 = torch.func.vmap(torch.func.grad(torch.func.grad(f)))(z)
    d3 = torch.func.vmap(torch.func.grad(torch.func.grad(torch.func.grad(f))))(z)
    for ours, ref in zip(values, (module(z), d1, d2, d3)):
        assert rel(ours, ref) <= TOL


def test_softplus_follows_torch_threshold_branch():
    module = nn.Softplus(beta=2.0, threshold=5.0).to(f64)
    z = torch.tensor([-3.0, 2.4, 2.6, 10.0], dtype=f64)  # βz crosses the threshold between 2.4 and 2.6
    values = activation_of(module)(z, 2)
    assert torch.equal(values[0], module(z))
    d2 = torch.func.vmap(torch.func.grad(torch.func.grad(lambda s: module(s))))(z)
    assert rel(values[2], d2) <= TOL and float(values[2][-1]) == 0.0


@pytest.mark.parametrize(
    "net",
    [
        nn.Sequential(nn.Tanh(), nn.Linear(3, 4), Sin(), nn.Linear(4, 2)),  # activation on x itself
        nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5), nn.Sigmoid(), nn.Linear(5, 1, bias=False)),  # two Linear
        nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.SiLU()), nn.Identity(), nn.Linear(4, 2), nn.Tanh()),  # nested, ends in A
        nn.Sequential(nn.Linear(3, 2)),  # affine: all curvature is exactly zero
        nn.Sequential(nn.Tanh()),  # no Linear: n_out = d
    ],
    ids=["act-first", "two-linear", "nested", "affine", "act-only"],
)
def test_other_architectures(net):
    torch.manual_seed(1)
    net = net.to(f64)
    x = torch.randn(4, 3, dtype=f64)
    out = input_derivatives(net, x, diag_hessian=True, laplacian=True, hessian=True, third=True)
    H_ref = R.hessian_func(net, x)
    assert rel(out.jacobian, R.jacobian_func(net, x)) <= TOL
    if float(H_ref.detach().abs().max()) == 0:   # (an activation-first net: H_ref keeps a graph)
        assert float(out.hessian.abs().max()) == 0 and float(out.third.abs().max()) == 0
        assert float(laplacian(net, x).abs().max()) == 0
        return
    assert rel(out.hessian, H_ref) <= TOL
    assert rel(input_derivatives(net, x, hessian=True, hessian_method="adjoint").hessian, H_ref) <= TOL
    assert rel(laplacian(net, x), torch.diagonal(H_ref, dim1=-2, dim2=-1).sum(-1)) <= TOL
    for method in ("forward", "adjoint"):
        Hd = input_derivatives(net, x, diag_hessian=True, diag_method=method).diag_hessian
        assert rel(Hd, torch.diagonal(H_ref, dim1=-2, dim2=-1)) <= TOL
    assert rel(out.third, R.third_func(net, x)) <= TOL


def test_third_against_central_differences_of_diag_hessian():
    net, x = net_and_x("softplus", 3, [6, 4], 2, batch=2)
    T = input_derivatives(net, x, third=True).third
    for m in range(3):
        e = torch.zeros_like(x)
        e[:, m] = FD_STEP
        fd = (input_derivatives(net, x + e, diag_hessian=True).diag_hessian
              - input_derivatives(net, x - e, diag_hessian=True).diag_hessian) / (2 * FD_STEP)
        assert rel(T[..., m], fd) <= FD_TOL


def test_laplacian_gradcheck_and_parameter_gradients():
    net, x = net_and_x("tanh", 2, [5, 4], 1, batch=3)
    x = x.requires_grad_(True)
    # d(Δu)/dx by finite differences vs autograd through the recursion
    assert torch.autograd.gradcheck(lambda s: laplacian(net, s), (x,))
    assert torch.autograd.gradgradcheck(lambda s: laplacian(net, s), (x,))
    # parameter gradient of a PINN-like loss: recursion vs double-backward Laplacian
    params = list(net.parameters())
    g_fwd = torch.autograd.grad((laplacian(net, x) ** 2).mean(), params, allow_unused=True, materialize_grads=True)
    g_ref = torch.autograd.grad(
        (R.double_backward_laplacian(net, x, create_graph=True) ** 2).mean(), params, allow_unused=True, materialize_grads=True
    )
    assert float(g_ref[0].abs().max()) > 0  # the loss does depend on the parameters
    for a, b in zip(g_fwd, g_ref):
        assert rel(a, b) <= TOL


def test_other_reference_routes_agree():
    """The bench's double-backward loop and vmap(jvp(grad)) are themselves right."""
    net, x = net_and_x("gelu", 3, [4, 4], 2)
    ref = R.diag_hessian_func(net, x)
    assert rel(R.double_backward_diag_hessian(net, x), ref) <= TOL
    assert rel(R.jvp_grad_diag_hessian(net, x), ref) <= TOL


# --- the seed's unstable and wrong forms -----------------------------------------------------------

def test_division_forms_are_right_away_from_stationary_points():
    net, x = net_and_x("tanh", 3, [5, 4], 2)
    assert rel(P.division_diag_hessian(net, x), R.diag_hessian_func(net, x)) <= TOL
    assert rel(P.division_hessian(net, x), R.hessian_func(net, x)) <= TOL


def test_division_forms_give_nan_at_an_exact_stationary_point():
    """gaussian A = exp(−z²): first hidden neuron z = x0 − x1 = 0 exactly, with ∂z/∂x = (1, −1) ≠ 0."""
    torch.manual_seed(2)
    net = make_mlp(2, [4, 3], 1, "gaussian", dtype=f64)
    with torch.no_grad():
        net[0].weight[0] = torch.tensor([1.0, -1.0], dtype=f64)
        net[0].bias[0] = 0.0
    x = torch.randn(3, 1, dtype=f64).repeat(1, 2)
    assert float(net[0](x)[:, 0].detach().abs().max()) == 0.0
    assert torch.isnan(P.division_diag_hessian(net, x)).all()
    assert torch.isnan(P.division_hessian(net, x)).all()
    ref = R.hessian_func(net, x)
    assert torch.isfinite(ref).all() and float(ref.detach().abs().max()) > 0
    stable = input_derivatives(net, x, diag_hessian=True, hessian=True, third=True)
    assert rel(stable.diag_hessian, torch.diagonal(ref, dim1=-2, dim2=-1)) <= TOL
    assert rel(stable.hessian, ref) <= TOL
    assert rel(stable.third, R.third_func(net, x)) <= TOL


def test_division_forms_survive_near_a_stationary_point():
    """sin at fl(π/2): cos = 6e-17, not 0, and (A'·Jz)²/A'² keeps full relative accuracy."""
    torch.manual_seed(2)
    net = make_mlp(2, [4, 3], 1, "sin", dtype=f64)
    with torch.no_grad():
        net[0].bias[0] = math.pi / 2 - net[0].weight[0, 0] * 0.5 - net[0].weight[0, 1] * 0.25
    x = torch.tensor([[0.5, 0.25]], dtype=f64)
    assert float(torch.cos(net[0](x)[:, 0]).detach().abs().max()) < 1e-15
    assert rel(P.division_diag_hessian(net, x), R.diag_hessian_func(net, x)) <= TOL


def test_division_forms_give_nan_where_tanh_saturates():
    torch.manual_seed(3)
    net = make_mlp(2, [4, 3], 1, "tanh", dtype=f64)
    with torch.no_grad():
        net[0].bias[0] = 40.0  # tanh'(z) = 1 − tanh(z)² == 0.0 exactly in float64 for z ≳ 19
    x = torch.randn(3, 2, dtype=f64)
    assert float(activation_of(nn.Tanh())(net[0](x), 1)[1][:, 0].detach().abs().max()) == 0.0
    assert torch.isnan(P.division_diag_hessian(net, x)).all()
    assert torch.isnan(P.division_hessian(net, x)).all()
    ref = R.diag_hessian_func(net, x)
    assert torch.isfinite(ref).all()
    assert rel(input_derivatives(net, x, diag_hessian=True).diag_hessian, ref) <= TOL


@pytest.mark.parametrize("act", ["tanh", "softplus", "sin"])
def test_seed_third_derivative_is_wrong(act):
    net, x = net_and_x(act, 3, [5, 4], 2)
    ref = R.third_func(net, x)
    assert rel(P.seed_third(net, x), ref) > WRONG
    assert rel(input_derivatives(net, x, third=True).third, ref) <= TOL


# --- derivatives with respect to the outputs (seed eqs. 24–26) -------------------------------------

def square_net():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3)).to(f64)
    with torch.no_grad():  # near-identity, so x -> y is invertible on the whole test region
        net[0].weight.mul_(0.3)
        net[2].weight.copy_(torch.eye(3, dtype=f64) + 0.2 * net[2].weight)
    return net


def test_derivatives_wrt_outputs_against_finite_differences_of_the_inverse():
    net = square_net()
    x = 0.5 * torch.randn(2, 3, dtype=f64)
    out = input_derivatives(net, x, diag_hessian=True, hessian=True, third=True)
    dJ, dHd = derivatives_wrt_outputs(out.jacobian, out.hessian, out.third)
    for m in range(3):
        e = torch.zeros_like(out.value)
        e[:, m] = FD_STEP
        xp, xm = invert_network(net, out.value + e, x), invert_network(net, out.value - e, x)
        p = input_derivatives(net, xp, diag_hessian=True)
        q = input_derivatives(net, xm, diag_hessian=True)
        assert rel(dJ[..., m], (p.jacobian - q.jacobian) / (2 * FD_STEP)) <= FD_TOL
        assert rel(dHd[..., m], (p.diag_hessian - q.diag_hessian) / (2 * FD_STEP)) <= FD_TOL
    # the seed's element-wise division (eq. 25) is not the chain rule
    assert rel(P.seed_outputs_jacobian(out.jacobian, out.hessian), dJ) > WRONG


def test_derivatives_wrt_outputs_refuse_ill_posed_cases():
    net, x = net_and_x("tanh", 3, [4], 1)
    out = input_derivatives(net, x, hessian=True)
    with pytest.raises(ConfigError, match="ill-posed"):
        derivatives_wrt_outputs(out.jacobian, out.hessian)
    J = torch.zeros(1, 2, 2, dtype=f64)
    with pytest.raises(ConfigError, match="not invertible"):
        derivatives_wrt_outputs(J, torch.zeros(1, 2, 2, 2, dtype=f64))



#: ∂J/∂y of a float32 (float16) network against the float64 route on the same rounded weights and inputs:
#: within cond(J)·eps of the low precision (cond ≈ 9e3 here: 1.6e-4 measured in float32).
OUTPUTS_F32_RTOL = 1e-3
OUTPUTS_F16_RTOL = 1e-2


def nearly_singular_net(gap):
    """``y = V tanh(A x)`` with ``V = [[1, 1], [1, 1 + gap]]``: ``cond(J) ≈ 4/gap`` (float32 weights)."""
    net = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.5], [0.3, 1.0]]))
        net[2].weight.copy_(torch.tensor([[1.0, 1.0], [1.0, 1.0 + gap]]))
        net[0].bias.zero_()
        net[2].bias.zero_()
    return net


def test_derivatives_wrt_outputs_refuse_a_jacobian_too_ill_conditioned_for_its_dtype():
    """The fixed limit cond(J) ≤ 1e12 let a float32 Jacobian of condition 1.2e7 through: its ∂J/∂y and ∂Hd/∂y
    came back 14% off the float64 route's (same rounded weights and x), without a word. The limit is now also
    MAX_COND_EPS/eps of the dtype (float32: 8.4e4), as for every implicit derivative."""
    import copy

    x = torch.tensor([[0.3, -0.2]])
    for gap, ok in ((1e-3, True), (1e-6, False)):
        net = nearly_singular_net(gap)
        exact = input_derivatives(copy.deepcopy(net).double(), x.double(), hessian=True, third=True)
        dJ64, dHd64 = derivatives_wrt_outputs(exact.jacobian, exact.hessian, exact.third)  # float64 takes both
        out = input_derivatives(net, x, hessian=True, third=True)
        if ok:
            dJ, dHd = derivatives_wrt_outputs(out.jacobian, out.hessian, out.third)
            assert rel(dJ.double(), dJ64) <= OUTPUTS_F32_RTOL and rel(dHd.double(), dHd64) <= OUTPUTS_F32_RTOL
        else:
            with pytest.raises(ConfigError, match=r"not invertible at sample 0 \(condition number 1\.\d+e\+07, above 8\.4e\+04 in float32"):
                derivatives_wrt_outputs(out.jacobian, out.hessian, out.third)


def test_derivatives_wrt_outputs_of_a_half_precision_network_and_bad_shapes():
    """float16 Jacobians were torch's NotImplementedError ('linalg_svd_cpu' not implemented for 'Half'); they are
    inverted in float32 and returned in float16. A 2-D jacobian was Python's 'not enough values to unpack'."""
    import copy

    net = nearly_singular_net(0.0)
    with torch.no_grad():   # cond(J) ≈ 1.6 (float16 inverts up to MAX_COND_EPS/eps = 10)
        net[2].weight.copy_(torch.tensor([[1.0, -0.2], [0.3, 1.0]]))
    net = net.to(torch.float16)
    x = torch.tensor([[0.25, -0.5], [0.5, 0.125]], dtype=torch.float16)
    out = input_derivatives(net, x, hessian=True, third=True)
    exact = input_derivatives(copy.deepcopy(net).double(), x.double(), hessian=True, third=True)
    dJ, dHd = derivatives_wrt_outputs(out.jacobian, out.hessian, out.third)
    dJ64, dHd64 = derivatives_wrt_outputs(exact.jacobian, exact.hessian, exact.third)
    assert dJ.dtype == torch.float16 and dHd.dtype == torch.float16
    assert rel(dJ.double(), dJ64) <= OUTPUTS_F16_RTOL and rel(dHd.double(), dHd64) <= OUTPUTS_F16_RTOL
    with pytest.raises(ConfigError, match=r"jacobian must be a real floating \(batch, n, d\) tensor, got \(2, 2\)"):
        derivatives_wrt_outputs(out.jacobian[0], out.hessian)
    # (a float64 hessian beside the float16 jacobian was torch's matmul dtype RuntimeError)
    with pytest.raises(ConfigError, match=r"needs a hessian of shape \(2, 2, 2, 2\) in its dtype, got \(2, 2, 2, 2\) float64"):
        derivatives_wrt_outputs(out.jacobian, exact.hessian)
    with pytest.raises(ConfigError, match=r"needs a third of shape \(2, 2, 2, 2\) in its dtype, got \(1, 2, 2, 2\) float16"):
        derivatives_wrt_outputs(out.jacobian, out.hessian, out.third[:1])

# --- bad input -------------------------------------------------------------------------------------

def test_unsupported_layers_are_named():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.Dropout(), nn.Linear(3, 1)).to(f64)
    with pytest.raises(ConfigError, match="ReLU, Dropout"):
        input_derivatives(net, torch.zeros(1, 2, dtype=f64))
    with pytest.raises(ConfigError, match="GELU"):
        input_derivatives(nn.Sequential(nn.Linear(2, 2), nn.GELU(approximate="tanh")), torch.zeros(1, 2))


class _HalvedLinear(nn.Linear):
    """A Linear whose forward uses 0.5·W: its weight attribute is not what it computes."""

    def forward(self, x):
        return nn.functional.linear(x, 0.5 * self.weight, self.bias)


class _Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


def test_modules_computing_other_than_their_weights_are_refused():
    """A Linear/Sequential subclass overriding forward, or a module with forward hooks, was read as the plain
    layer: Jacobian and Hessian wrong by 17% and more, silently. The same networks without the override pass
    to TOL (so the refusal is the only change)."""
    torch.manual_seed(0)
    x = torch.randn(3, 2, dtype=f64)
    plain = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)).to(f64)
    halved = nn.Sequential(_HalvedLinear(2, 4), nn.Tanh(), nn.Linear(4, 1)).to(f64)
    halved.load_state_dict(plain.state_dict())
    residual = _Residual(nn.Linear(2, 2), nn.Tanh()).to(f64)
    for net, what in [(halved, "_HalvedLinear overrides Linear.forward"), (residual, "_Residual overrides Sequential.forward")]:
        with pytest.raises(ConfigError, match=what):
            input_derivatives(net, x, hessian=True)
    hooked = [plain[1].register_forward_hook(lambda m, i, o: 2 * o),
              plain[0].register_forward_pre_hook(lambda m, i: (3 * i[0],)),
              plain.register_forward_hook(lambda m, i, o: o + 1)]
    for h in hooked:
        with pytest.raises(ConfigError, match="has forward hooks"):
            input_derivatives(plain, x, hessian=True)
        h.remove()
    out = input_derivatives(plain, x, hessian=True)
    assert rel(out.hessian, R.hessian_func(plain, x)) < TOL


def test_shape_and_dtype_mismatch_messages():
    net = make_mlp(3, [4], 1, dtype=f64)
    with pytest.raises(ConfigError, match="d=2 features but the first Linear expects 3"):
        input_derivatives(net, torch.zeros(5, 2, dtype=f64))
    with pytest.raises(ConfigError, match=r"shape \(batch, d\)"):
        input_derivatives(net, torch.zeros(3, dtype=f64))
    with pytest.raises(ConfigError, match="dtype mismatch"):
        input_derivatives(net, torch.zeros(5, 3, dtype=torch.float32))
    with pytest.raises(ConfigError, match="layer 2 \\(Linear\\) expects 5 inputs but receives 4"):
        input_derivatives(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(5, 1)), torch.zeros(1, 3))
    with pytest.raises(ConfigError, match="hessian_method"):
        input_derivatives(net, torch.zeros(1, 3, dtype=f64), hessian=True, hessian_method="magic")
    with pytest.raises(ConfigError, match="diag_method"):
        input_derivatives(net, torch.zeros(1, 3, dtype=f64), diag_hessian=True, diag_method="magic")
    with pytest.raises(ConfigError, match="unknown activation"):
        make_mlp(2, [3], 1, "relu")
    for bad in (float("nan"), float("inf")):   # every derivative would be NaN, silently
        with pytest.raises(ConfigError, match="NaN or infinite"):
            input_derivatives(net, torch.tensor([[0.0, bad, 1.0]], dtype=f64), laplacian=True)


@settings(max_examples=12, deadline=None)
@given(
    d=st.integers(1, 4),
    hidden=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    n_out=st.integers(1, 3),
    act=st.sampled_from(sorted(ACTIVATIONS)),
    seed=st.integers(0, 10_000),
)
def test_property_random_mlps(d, hidden, n_out, act, seed):
    net, x = net_and_x(act, d, hidden, n_out, batch=2, seed=seed)
    out = input_derivatives(net, x, diag_hessian=True, laplacian=True, hessian=True, third=True)
    H_ref = R.hessian_func(net, x)
    scale_ok = float(H_ref.detach().abs().max()) > 0
    assert rel(out.jacobian, R.jacobian_func(net, x)) <= TOL
    if scale_ok:
        assert rel(out.hessian, H_ref) <= TOL
        Hd_ref = torch.diagonal(H_ref, dim1=-2, dim2=-1)
        for method in ("forward", "adjoint"):
            assert rel(input_derivatives(net, x, diag_hessian=True, diag_method=method).diag_hessian, Hd_ref) <= TOL
        assert rel(laplacian(net, x), Hd_ref.sum(-1)) <= TOL
        assert rel(input_derivatives(net, x, hessian=True).hessian, H_ref) <= TOL
        assert rel(out.third, R.third_func(net, x)) <= TOL


def test_register_activation_extends_the_recursions():
    from deqlab.nethessian import Activation, register_activation

    class Cube(nn.Module):
        def forward(self, z):
            return z**3

    register_activation(Cube, lambda m: Activation("cube", lambda z, order: [z**3, 3 * z**2, 6 * z, 6 + 0 * z]))
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(3, 4), Cube(), nn.Linear(4, 2)).to(f64)
    x = torch.randn(3, 3, dtype=f64)
    out = input_derivatives(net, x, hessian=True, third=True)
    assert rel(out.hessian, R.hessian_func(net, x)) <= TOL and rel(out.third, R.third_func(net, x)) <= TOL


def test_invert_network_stops_at_round_off_and_refuses_what_does_not_converge():
    """Newton's steps cannot go below about ``cond(J)·ε·|x|``: an ``atol`` under that floor (on a GPU,
    1e-14 was: issue 15) ends where the steps stop shrinking, at a round-off residual; a start from which
    Newton does not converge in ``max_iter`` steps still raises."""
    net = square_net()
    x = 0.5 * torch.randn(2, 3, dtype=f64, generator=torch.Generator().manual_seed(1))
    y = net(x).detach()
    found = invert_network(net, y, x + 0.1, atol=1e-300)
    assert rel(found, x) <= 1e-14 and rel(net(found).detach(), y) <= 1e-14
    with pytest.raises(NotConvergedError, match="did not converge in 2 steps"):   # (a solve, not bad input: exit 1)
        invert_network(net, y, x + 0.1, atol=1e-300, max_iter=2)


def test_invert_network_refuses_bad_arguments_and_a_singular_jacobian():
    """max_iter=2.5 was a TypeError, atol=nan was taken, y with NaN was reported as 'x contains NaN', and a
    singular Jacobian (a tanh net saturated far from y) was torch's LinAlgError."""
    net = square_net()
    x = 0.5 * torch.randn(2, 3, dtype=f64, generator=torch.Generator().manual_seed(1))
    y = net(x).detach()
    with pytest.raises(ConfigError, match="max_iter must be an integer >= 1, got 2.5"):
        invert_network(net, y, x, max_iter=2.5)
    with pytest.raises(ConfigError, match="atol must be a finite number >= 0, got nan"):
        invert_network(net, y, x, atol=float("nan"))
    with pytest.raises(ConfigError, match="y must be a tensor of finite values"):
        invert_network(net, y * float("nan"), x)
    flat = nn.Sequential(nn.Linear(2, 2, bias=False)).to(f64)
    with torch.no_grad():
        flat[0].weight.copy_(torch.tensor([[1.0, 2.0], [2.0, 4.0]]))      # rank 1: J singular everywhere
    with pytest.raises(NotConvergedError, match="Jacobian is singular"):
        invert_network(flat, torch.ones(1, 2, dtype=f64), torch.zeros(1, 2, dtype=f64))
    # (a non-square network was torch's 'linalg.solve: A must be batches of square matrices'; a y of another
    # shape a broadcasting RuntimeError)
    with pytest.raises(ConfigError, match=r"needs a square network \(n_out = d\), got n_out = 1, d = 3"):
        invert_network(net_and_x("tanh", 3, [4], 1)[0], torch.zeros(2, 1, dtype=f64), x)
    with pytest.raises(ConfigError, match=r"y must be the shape and dtype of net\(x0\), \(2, 3\) float64, got \(3, 3\) float64"):
        invert_network(net, torch.zeros(3, 3, dtype=f64), x)


@pytest.mark.parametrize("args, message", [
    ((0, [4], 1), "d must be an integer >= 1, got 0"),            # (torch made a 0-wide layer, with a warning)
    ((2.5, [4], 1), "d must be an integer >= 1, got 2.5"),        # (a TypeError from torch)
    ((2, [4, -4], 1), r"hidden\[1\] must be an integer >= 1, got -4"),
    ((2, [4], True), "n_out must be an integer >= 1, got True"),
])
def test_make_mlp_refuses_widths_that_are_not_positive_integers(args, message):
    with pytest.raises(ConfigError, match=message):
        make_mlp(*args)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex128])
def test_make_mlp_refuses_a_dtype_that_is_not_real_floating(dtype):
    """An integer dtype was torch's TypeError from Module.to; a complex one made a complex network that
    input_derivatives then refused for every real x ('dtype mismatch')."""
    with pytest.raises(ConfigError, match="dtype must be a real floating torch dtype"):
        make_mlp(2, [4], 1, dtype=dtype)


def test_make_mlp_takes_one_hidden_width_as_a_numpy_integer():
    """hidden=np.int64(5) (a width read from an array) was "'numpy.int64' object is not iterable", 5.0 likewise."""
    import numpy as np

    widths = [m.out_features for m in make_mlp(3, np.int64(5), 2) if isinstance(m, torch.nn.Linear)]
    assert widths == [5, 2]
    with pytest.raises(ConfigError, match=r"hidden\[0\] must be an integer >= 1, got 5.0"):
        make_mlp(3, 5.0, 2)
