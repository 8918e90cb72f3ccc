"""The DEQ study's derivative routes (deqlab.demos.lowrank), float64, three independent ways:
implicit (adjoint) gradient vs autodiff through the unrolled solve; the exact Hessian (the closed
form of deqlab.implicit) vs torch.func.hessian of the unrolled loss and vs central differences of the
implicit gradient; and the secant pairs built from them vs the Hessian."""

import numpy as np
import pytest
import torch

from deqlab import lowrank as LR
from deqlab.demos.lowrank import UNROLL_RESIDUAL_TOL
from deqlab.implicit import secant_pairs as E
from deqlab.models.tanh_deq import TanhDEQ
import helpers

#: implicit gradient vs reverse-mode autodiff through 200 unrolled layers (both converged to 1e-13).
GRADIENT_TOL = 1e-10
#: reference Hessian vs central differences of the implicit gradient, step FD_STEP (error ~ h², round-off ~ 1e-16/h).
FD_STEP = 1e-5
FD_TOL = 1e-7
#: the closed form is symmetric to round-off.
SYMMETRY_TOL = 1e-12
#: closed form vs torch.func.hessian through 200 unrolled layers (converged to 1e-13).
UNROLL_HESSIAN_TOL = 1e-10
#: central-difference secant pairs with eps = 1e-4: ||Y - HX|| / ||HX|| is O(eps²).
PAIR_TOL = 1e-6
#: Procrustes from k = P such pairs: pair error times the conditioning of X (measured 1.2e-7).
FULL_RECOVERY_TOL = 1e-5
LAYERS = 200


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    model = TanhDEQ(3, 2, 2, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    theta = E.flat_params(model)
    H = E.exact_deq_hessian(model, x, y)
    return model, x, y, theta, H


def test_flat_params_round_trip(problem):
    model, x, y, theta, H = problem
    assert theta.numel() == E.n_params(3, 2, 2) == 9 + 3 + 6 + 6 + 2
    p = E.unflatten(model, theta)
    groups = {"W_z": "W_z.weight", "b_z": "W_z.bias", "U_z": "U_z.weight", "W_y": "W_y.weight", "b_y": "W_y.bias"}
    named = dict(model.named_parameters())
    for group, name in groups.items():
        assert torch.equal(p[group], named[name].detach())


def test_implicit_gradient_matches_unrolled_autodiff(problem):
    model, x, y, theta, H = problem
    assert E.unrolled_residual(model, theta, x, LAYERS) < UNROLL_RESIDUAL_TOL
    th = theta.clone().requires_grad_(True)
    g_unrolled = torch.autograd.grad(E.unrolled_loss(model, th, x, y, LAYERS), th)[0]
    g_implicit = E.implicit_gradient(model, theta, x, y)
    assert torch.linalg.vector_norm(g_implicit - g_unrolled) / torch.linalg.vector_norm(g_unrolled) < GRADIENT_TOL


def test_unrolled_loss_gradcheck_and_gradgradcheck(problem):
    """torch.autograd.gradcheck/gradgradcheck of the unrolled loss: the first and second derivatives
    the reference Hessian is built from (60 layers keeps the check fast; it does not need convergence)."""
    model, x, y, theta, H = problem
    th = theta.clone().requires_grad_(True)
    loss = lambda t: E.unrolled_loss(model, t, x, y, 60)  # noqa: E731
    assert torch.autograd.gradcheck(loss, (th,), eps=1e-6, atol=1e-8)
    assert torch.autograd.gradgradcheck(loss, (th,), eps=1e-6, atol=1e-7)


def test_exact_hessian_symmetric_and_matches_finite_differences(problem):
    model, x, y, theta, H = problem
    assert torch.abs(H - H.T).max() / torch.abs(H).max() < SYMMETRY_TOL
    H_fd = helpers.central_differences(lambda t: E.implicit_gradient(model, t, x, y), theta, FD_STEP)
    assert torch.linalg.matrix_norm(H_fd - H) / torch.linalg.matrix_norm(H) < FD_TOL


def test_exact_hessian_matches_autodiff_through_the_unrolled_solve(problem):
    model, x, y, theta, H = problem
    assert E.unrolled_residual(model, theta, x, LAYERS) < UNROLL_RESIDUAL_TOL
    H_unrolled = torch.func.hessian(lambda th: E.unrolled_loss(model, th, x, y, LAYERS))(theta)
    assert torch.linalg.matrix_norm(H - H_unrolled) / torch.linalg.matrix_norm(H_unrolled) < UNROLL_HESSIAN_TOL
    # a 3-layer unroll is not converged, and its Hessian is measurably not the equilibrium's
    H_short = torch.func.hessian(lambda th: E.unrolled_loss(model, th, x, y, 3))(theta)
    assert E.unrolled_residual(model, theta, x, 3) > UNROLL_RESIDUAL_TOL
    assert torch.linalg.matrix_norm(H - H_short) / torch.linalg.matrix_norm(H) > 1e-3


def test_secant_pairs_and_full_recovery(problem):
    """Central-difference pairs match HX to O(eps²); with k = P pairs Procrustes returns H."""
    model, x, y, theta, H = problem
    P = theta.numel()
    gen = torch.Generator().manual_seed(2)
    dirs = torch.randn(P, P, generator=gen, dtype=torch.float64)
    X, Y = E.deq_pairs(model, theta, x, y, dirs / dirs.norm(dim=0), eps=1e-4, difference="central")
    Hn = H.numpy()
    assert np.linalg.norm(Y - Hn @ X) / np.linalg.norm(Hn @ X) < PAIR_TOL
    est = LR.symmetric_procrustes(X, Y)
    assert np.linalg.norm(est.dense() - Hn) / np.linalg.norm(Hn) < FULL_RECOVERY_TOL
    # forward differences are only first-order accurate: measurably worse pairs
    Xf, Yf = E.deq_pairs(model, theta, x, y, dirs[:, :4] / dirs[:, :4].norm(dim=0), eps=1e-4, difference="forward")
    assert np.linalg.norm(Yf - Hn @ Xf) / np.linalg.norm(Hn @ Xf) > 10 * np.linalg.norm(Y[:, :4] - Hn @ X[:, :4]) / np.linalg.norm(Hn @ X[:, :4])


def test_krylov_pairs_follow_the_lanczos_directions(problem):
    """d₁ random, d₂ ∝ (I − d₁d₁ᵀ) H d₁: the steps are orthonormal and span the Krylov space."""
    model, x, y, theta, H = problem
    eps = 1e-4
    X, Y = E.krylov_deq_pairs(model, theta, x, y, 5, eps=eps, difference="central", generator=torch.Generator().manual_seed(3))
    D = X / eps
    assert np.abs(D.T @ D - np.eye(5)).max() < 1e-12
    Hn = H.numpy()
    v = Hn @ D[:, 0]
    v -= D[:, 0] * (D[:, 0] @ v)
    v /= np.linalg.norm(v)
    assert 1 - abs(v @ D[:, 1]) < PAIR_TOL
