"""Recurrent Equilibrium Networks: the guarantees of the direct parametrisation, as properties over
random parameters (hypothesis), and the derivatives of the model."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deqlab.errors import InputError
from deqlab.models.ren import (ACTIVATIONS, ContractingREN, LipschitzREN, contraction_lmi, equilibrium_layer,
                               equilibrium_layer_fast, lipschitz_lmi, slow_init)

#: relative slack for inequalities that hold exactly in real arithmetic (float64 round-off only)
ROUND_OFF = 1e-9
#: absolute floor, per unit of ‖P̄‖₂·(‖x_a‖² + ‖x_b‖²): once two trajectories have merged to ~1e-8 of their
#: size, rounding of the states (~1e-16·‖x‖) dominates ‖Δx‖²_P̄ and no decrease can be resolved
MERGED_FLOOR = 1e-16
#: LMI rebuilt from the explicit model vs the H it came from (relative Frobenius error)
REBUILD_TOL = 1e-10
#: equilibrium residual ‖w − σ(pre + D₁₁w)‖∞
EQUILIBRIUM_TOL = 1e-14
#: gradcheck tolerances (float64, central differences)
GRAD_ATOL, GRAD_RTOL = 1e-6, 1e-5

DT = torch.float64
sizes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 6), st.integers(1, 3))
PROPS = settings(max_examples=25, deadline=None)


def _ren(kind, n_u, n_x, n_v, n_y, seed, scale, **kw):
    torch.manual_seed(seed)
    cls = ContractingREN if kind == "contracting" else LipschitzREN
    model = cls(n_u, n_x, n_v, n_y, init_scale=scale, **kw)
    with torch.no_grad():  # random values for everything, not just the initialisation
        for name, p in model.named_parameters():
            if name != "X":
                p.copy_(torch.randn_like(p) * scale)
    return model


def _metric_sq(m, dx):
    return ((dx @ m.metric()) * dx).sum(-1)


@PROPS
@given(sizes=sizes, seed=st.integers(0, 10**6), scale=st.floats(0.1, 3.0), alpha=st.sampled_from([1.0, 0.9, 0.5]),
       act=st.sampled_from(["tanh", "relu"]))
def test_contracting_ren_contracts_in_its_metric(sizes, seed, scale, alpha, act):
    n_u, n_x, n_v, n_y = sizes
    model = _ren("contracting", n_u, n_x, n_v, n_y, seed, scale, alpha_bar=alpha, activation=act)
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(16, 40, n_u, generator=g, dtype=DT) * 3
    xa = torch.randn(16, n_x, generator=g, dtype=DT) * 5
    xb = torch.randn(16, n_x, generator=g, dtype=DT) * 5
    with torch.no_grad():
        m = model.explicit()
        _, _, sa = model(u, xa, return_states=True)
        _, _, sb = model(u, xb, return_states=True)
        v = _metric_sq(m, sa - sb)  # (16, 41)
        floor = MERGED_FLOOR * torch.linalg.matrix_norm(m.metric(), ord=2) * ((sa**2).sum(-1) + (sb**2).sum(-1))
    assert torch.all(v[:, 1:] <= alpha**2 * v[:, :-1] * (1 + ROUND_OFF) + floor[:, 1:])
    assert torch.all(v[:, -1] <= v[:, 0])  # the two trajectories approach each other


@PROPS
@given(sizes=sizes, seed=st.integers(0, 10**6), scale=st.floats(0.1, 3.0), alpha=st.sampled_from([1.0, 0.7]))
def test_contraction_lmi_is_positive_definite(sizes, seed, scale, alpha):
    """The LMI rebuilt from the *explicit* matrices is H = XᵀX + εI, hence ≻ 0."""
    n_u, n_x, n_v, n_y = sizes
    model = _ren("contracting", n_u, n_x, n_v, n_y, seed, scale, alpha_bar=alpha)
    with torch.no_grad():
        m = model.explicit()
        lmi = contraction_lmi(m, alpha)
    assert torch.linalg.norm(lmi - m.H) <= REBUILD_TOL * torch.linalg.norm(m.H)
    assert torch.linalg.eigvalsh(lmi).min() > 0
    assert torch.all(m.Lambda > 0)
    assert torch.all(torch.triu(m.D11) == 0)


@PROPS
@given(sizes=sizes, seed=st.integers(0, 10**6), scale=st.floats(0.1, 3.0), gamma=st.floats(0.05, 20.0))
def test_lipschitz_ren_never_exceeds_gamma(sizes, seed, scale, gamma):
    n_u, n_x, n_v, n_y = sizes
    model = _ren("lipschitz", n_u, n_x, n_v, n_y, seed, scale, gamma=gamma)
    g = torch.Generator().manual_seed(seed)
    ua = torch.randn(32, 30, n_u, generator=g, dtype=DT) * 2
    ub = ua + torch.randn(32, 30, n_u, generator=g, dtype=DT) * torch.rand(32, 1, 1, generator=g, dtype=DT)
    x0 = torch.randn(32, n_x, generator=g, dtype=DT)
    with torch.no_grad():
        ya, _ = model(ua, x0)
        yb, _ = model(ub, x0)
    ratio = (ya - yb).flatten(1).norm(dim=1) / (ua - ub).flatten(1).norm(dim=1)
    assert torch.all(ratio <= gamma * (1 + ROUND_OFF))
    assert torch.linalg.matrix_norm(model.feedthrough(), ord=2) < gamma


@PROPS
@given(sizes=sizes, seed=st.integers(0, 10**6), scale=st.floats(0.1, 3.0), gamma=st.floats(0.05, 20.0))
def test_lipschitz_ren_dissipation_and_lmi(sizes, seed, scale, gamma):
    """Per step, from *any* two states: ‖Δx⁺‖²_P̄ − ‖Δx‖²_P̄ ≤ γ‖Δu‖² − ‖Δy‖²/γ; the robust LMI ≻ 0."""
    n_u, n_x, n_v, n_y = sizes
    model = _ren("lipschitz", n_u, n_x, n_v, n_y, seed, scale, gamma=gamma)
    g = torch.Generator().manual_seed(seed)
    xa, xb = (torch.randn(64, n_x, generator=g, dtype=DT) * 3 for _ in range(2))
    ua, ub = (torch.randn(64, n_u, generator=g, dtype=DT) * 3 for _ in range(2))
    with torch.no_grad():
        m = model.explicit()
        ya, xa1 = model.step(m, xa, ua)
        yb, xb1 = model.step(m, xb, ub)
        lhs = _metric_sq(m, xa1 - xb1) - _metric_sq(m, xa - xb)
        rhs = gamma * ((ua - ub) ** 2).sum(-1) - ((ya - yb) ** 2).sum(-1) / gamma
        scale_ = _metric_sq(m, xa - xb) + gamma * ((ua - ub) ** 2).sum(-1) + ((ya - yb) ** 2).sum(-1) / gamma
        assert torch.all(lhs - rhs <= ROUND_OFF * scale_)
        lmi = lipschitz_lmi(m, gamma)
        assert torch.linalg.norm(lmi - model.X.T @ model.X - model.eps * torch.eye(lmi.shape[0], dtype=DT)) \
            <= REBUILD_TOL * torch.linalg.norm(m.H)
        assert torch.linalg.eigvalsh(lmi).min() > 0


def test_contraction_check_can_fail():
    """Pitfall: E without the P/ᾱ² term (a plausible slip) breaks the certificate, and the same
    checks as above catch it."""
    torch.manual_seed(0)
    model = ContractingREN(1, 3, 4, 1)
    with torch.no_grad():
        m = model.explicit()
        n_x, n_v = 3, 4
        H = m.H
        E_wrong = 0.5 * (H[:n_x, :n_x] + model.Y1 - model.Y1.T)
        m.A = torch.linalg.solve(E_wrong, H[n_x + n_v:, :n_x])
        m.B1 = torch.linalg.solve(E_wrong, H[n_x + n_v:, n_x:n_x + n_v])
        m.E = E_wrong
        assert torch.linalg.eigvalsh(contraction_lmi(m)).min() < 0


def test_equilibrium_layer_solves_the_implicit_equation():
    torch.manual_seed(1)
    pre = torch.randn(7, 9, dtype=DT) * 3
    D11 = torch.tril(torch.randn(9, 9, dtype=DT), -1) * 2
    for act in (torch.tanh, torch.relu):
        w = equilibrium_layer(pre, D11, act)
        assert (w - act(pre + w @ D11.T)).abs().max() <= EQUILIBRIUM_TOL
        # fixed-point iteration reaches the same point in n_v steps (D₁₁ is nilpotent)
        z = torch.zeros_like(pre)
        for _ in range(9):
            z = act(pre + z @ D11.T)
        assert (w - z).abs().max() <= EQUILIBRIUM_TOL


#: implicit-function backward of the equilibrium layer vs autograd through the row loop
IFT_BACKWARD_TOL = 1e-12


def test_equilibrium_layer_backward_matches_autograd_and_finite_differences():
    torch.manual_seed(3)
    pre = (torch.randn(5, 7, dtype=DT) * 2).requires_grad_(True)
    D11 = (torch.tril(torch.randn(7, 7, dtype=DT), -1)).requires_grad_(True)
    g = torch.randn(5, 7, dtype=DT)
    for act in ("tanh", "relu"):
        w_ref = equilibrium_layer(pre, D11, ACTIVATIONS[act])
        w = equilibrium_layer_fast(pre, D11, act)
        assert torch.equal(w, w_ref)
        ref = torch.autograd.grad(w_ref, (pre, D11), g)
        got = torch.autograd.grad(w, (pre, D11), g)
        for a, b in zip(ref, got):
            assert (a - b).abs().max() <= IFT_BACKWARD_TOL * max(1.0, a.abs().max())
    # central differences (tanh is smooth); the strictly lower D₁₁ entries are the parameters
    mask = torch.ones(7, 7, dtype=DT).tril(-1)
    assert torch.autograd.gradcheck(lambda p, d: equilibrium_layer_fast(p, d * mask, "tanh"),
                                    (pre, D11), atol=GRAD_ATOL, rtol=GRAD_RTOL)


def test_equilibrium_layer_fast_refuses_second_derivatives():
    """Its backward holds σ'(v) fixed: differentiating its gradient again (a Hessian, a gradient penalty)
    failed with torch's misleading in-place RuntimeError; it must be one InputError naming the way out.
    The gradient itself under create_graph is still the autograd route's."""
    torch.manual_seed(3)
    pre = torch.randn(2, 4, dtype=DT, requires_grad=True)
    D11 = torch.tril(torch.randn(4, 4, dtype=DT), -1).requires_grad_(True)
    c = torch.randn(2, 4, dtype=DT)
    for loss in (lambda w: (w ** 3).sum(), lambda w: (w * c).sum()):
        ref = torch.autograd.grad(loss(equilibrium_layer(pre, D11, torch.tanh)), (pre, D11))
        got = torch.autograd.grad(loss(equilibrium_layer_fast(pre, D11, "tanh")), (pre, D11), create_graph=True)
        for a, b in zip(ref, got):
            assert (a - b).abs().max() <= IFT_BACKWARD_TOL * max(1.0, a.abs().max())
        for wrt in (pre, D11):
            with pytest.raises(InputError, match="first derivatives only"):
                torch.autograd.grad(got[0].sum(), wrt)


@pytest.mark.parametrize("kind", ["contracting", "lipschitz"])
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_torch_func_through_the_implicit_backward(kind, act):
    """Every torch.func transform of a REN with the default (implicit) equilibrium backward was torch's RuntimeError
    'it must override the setup_context staticmethod', and plain forward-mode AD its NotImplementedError. Now
    grad, jacrev and vmap agree with the autograd route through the row loop (to round-off, IFT_BACKWARD_TOL), and
    forward mode and second derivatives are one InputError naming the way out."""
    n_u, n_x, n_v, n_y = 2, 3, 4, 2
    kw = {"gamma": 2.0} if kind == "lipschitz" else {}
    fast = _ren(kind, n_u, n_x, n_v, n_y, seed=5, scale=1.0, activation=act, **kw)
    slow = _ren(kind, n_u, n_x, n_v, n_y, seed=5, scale=1.0, activation=act, equilibrium_backward="autograd", **kw)
    u = torch.randn(3, 6, n_u, generator=torch.Generator().manual_seed(0), dtype=DT)
    params = {k: v.detach() for k, v in fast.named_parameters()}

    def loss(p, model):
        return (torch.func.functional_call(model, p, (u,))[0] ** 2).sum()

    got, ref = torch.func.grad(loss)(params, fast), torch.func.grad(loss)(params, slow)
    for k in ref:   # (the Lipschitz REN has an empty parameter: nothing to compare there)
        assert got[k].shape == ref[k].shape
        assert ref[k].numel() == 0 or (got[k] - ref[k]).abs().max() <= IFT_BACKWARD_TOL * max(1.0, float(ref[k].abs().max()))
    J, J_ref = (torch.func.jacrev(lambda v, m=m: m(v)[0])(u).detach() for m in (fast, slow))
    assert (J - J_ref).abs().max() <= IFT_BACKWARD_TOL * max(1.0, float(J_ref.abs().max()))
    with torch.no_grad():
        assert torch.equal(torch.func.vmap(lambda v: fast(v[None])[0][0])(u), fast(u)[0])
    with pytest.raises(InputError, match="first derivatives only, by reverse mode"):
        torch.func.jvp(lambda v: fast(v)[0], (u,), (torch.ones_like(u),))
    with pytest.raises(InputError, match="first derivatives only, by reverse mode"):
        with torch.autograd.forward_ad.dual_level():
            fast(torch.autograd.forward_ad.make_dual(u, torch.ones_like(u)))
    with pytest.raises(InputError, match="first derivatives only, by reverse mode"):
        torch.func.hessian(lambda v: fast(v)[0].sum())(u[:1, :2])


def test_slow_init_starts_at_rho_identity():
    X = slow_init(3, 4, 0.9, 0.0)
    model = ContractingREN(1, 3, 4, 1, init_rho=0.9, init_scale=0.0)
    with torch.no_grad():
        model.Y1.zero_()
        m = model.explicit()
    assert torch.allclose(model.X, X)
    assert torch.allclose(m.A, 0.9 * torch.eye(3, dtype=DT), atol=1e-5)  # ε = 1e-6 shifts it slightly


def test_gradients_through_the_direct_parametrisation():
    """Autograd through H → explicit model → row-by-row equilibrium → simulation vs central differences."""
    torch.manual_seed(2)
    for model in (ContractingREN(2, 2, 3, 1), LipschitzREN(1, 2, 3, 2, gamma=1.5), LipschitzREN(2, 2, 2, 1, gamma=0.7)):
        u = torch.randn(3, 6, model.n_u, dtype=DT)
        names = [n for n, _ in model.named_parameters()]

        def loss(*params):
            out = torch.func.functional_call(model, dict(zip(names, params)), (u,))[0]
            return (out**2).sum() + out.sum()

        params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
        assert torch.autograd.gradcheck(loss, params, atol=GRAD_ATOL, rtol=GRAD_RTOL)


def test_model_gradients_agree_between_equilibrium_backwards():
    torch.manual_seed(4)
    u = torch.randn(3, 12, 2, dtype=DT)
    grads = []
    for backward in ("implicit", "autograd"):
        torch.manual_seed(5)
        model = LipschitzREN(2, 3, 5, 1, gamma=2.0, equilibrium_backward=backward)
        y, _ = model(u)
        (y**2).sum().backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        assert (a - b).abs().max() <= IFT_BACKWARD_TOL * max(1.0, b.abs().max())


def test_bad_sizes_and_inputs_are_one_input_error():
    """A wrong input shape, dtype or state was a matrix-product error inside the first step, an empty
    sequence a torch.stack error, a float size a torch.randn TypeError; gamma = inf was accepted."""
    import pytest

    from deqlab.errors import InputError

    torch.manual_seed(0)
    ren = ContractingREN(1, 4, 3, 1)
    u = torch.randn(2, 10, 1, dtype=torch.float64)
    y, x = ren(u)
    assert y.shape == (2, 10, 1) and x.shape == (2, 4)
    bad_inputs = [((torch.randn(10, 1, dtype=torch.float64),), "u must be a tensor"),
                  ((torch.randn(2, 10, 3, dtype=torch.float64),), "n_u = 1"),
                  ((torch.randn(2, 0, 1, dtype=torch.float64),), "steps >= 1"),
                  ((u.float(),), "float64"),
                  ((u, torch.zeros(5, dtype=torch.float64)), "state must be")]
    for args, message in bad_inputs:
        with pytest.raises(InputError, match=message):
            ren(*args)
    for sizes in ((1.5, 4, 3, 1), ("1", 4, 3, 1), (1, 0, 3, 1)):
        with pytest.raises(InputError, match="REN sizes must be integers >= 1"):
            ContractingREN(*sizes)
    for gamma in (0.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="gamma must be a finite number > 0"):
            LipschitzREN(1, 4, 3, 1, gamma=gamma)
