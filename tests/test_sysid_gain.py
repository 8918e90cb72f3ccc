"""Lower bounds of the incremental ℓ₂ gain (deqlab/sysid/gain.py): the H∞ sweep against an independent
route (bilinear transform + Hamiltonian bisection), the linearisation's Jacobians against finite
differences, the lower bound of a linear model equal to its exact H∞ norm, and never above a guarantee."""

import math

import numpy as np
import pytest
import torch

from deqlab.models.baselines import LinearStateSpace
from deqlab.models.ren import LipschitzREN
from deqlab.sysid.gain import (
    GainSettings,
    hinf_norm,
    incremental_gain_lower_bound,
    linearise,
)
from deqlab.sysid.models import Normalised

#: the sweep (grid + Brent refinement) against the Hamiltonian bisection (run to 1e-13)
HINF_RTOL = 1e-8
#: Jacobians of one model step against central differences with step 1e-6 (float64)
JACOBIAN_ATOL = 1e-7
#: a lower bound may exceed a guarantee only by rounding
BOUND_RTOL = 1e-9


@pytest.fixture(autouse=True)
def one_thread():
    """The models are tiny: one torch thread (with two, OpenMP hand-offs dominate, see bench_sysid)."""
    from deqlab.benchmarks import torch_threads

    with torch_threads(1):
        yield


def _hinf_hamiltonian(A, B, C, D, tol=1e-13):
    """Independent H∞ norm: map the discrete system to continuous time by the bilinear transform
    s = (z − 1)/(z + 1) (the frequency response is the same set of matrices, so the norm is unchanged),
    then bisect on γ: γ > ‖G‖∞ iff the Hamiltonian matrix has no imaginary eigenvalue (Boyd, Balakrishnan
    & Kabamba 1989), for γ > σ_max(D_c)."""
    n = A.shape[0]
    I = np.eye(n)
    M = np.linalg.inv(A + I)
    Ac, Bc, Cc = M @ (A - I), math.sqrt(2) * M @ B, math.sqrt(2) * C @ M
    Dc = D - C @ M @ B

    def above(g):
        R = g * g * np.eye(Dc.shape[1]) - Dc.T @ Dc
        Ri = np.linalg.inv(R)
        Ah = Ac + Bc @ Ri @ Dc.T @ Cc
        H = np.block([[Ah, Bc @ Ri @ Bc.T], [-Cc.T @ (np.eye(Dc.shape[0]) + Dc @ Ri @ Dc.T) @ Cc, -Ah.T]])
        ev = np.linalg.eigvals(H)
        return not np.any(np.abs(ev.real) < 1e-9 * max(1.0, np.abs(ev).max()))

    lo = np.linalg.norm(Dc, 2)
    hi = max(lo, 1.0) * 2
    while not above(hi):
        hi *= 2
    while hi - lo > tol * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if above(mid) else (mid, hi)
    return hi


def _random_stable(rng, n, n_u, n_y, rho):
    A = rng.normal(size=(n, n))
    A *= rho / np.max(np.abs(np.linalg.eigvals(A)))
    return A, rng.normal(size=(n, n_u)), rng.normal(size=(n_y, n)), rng.normal(size=(n_y, n_u))


@pytest.mark.parametrize("seed,n,n_u,n_y,rho", [(0, 4, 1, 1, 0.9), (1, 6, 2, 3, 0.97), (2, 3, 3, 2, 0.6), (3, 8, 1, 2, 0.99)])
def test_hinf_sweep_matches_hamiltonian_bisection(seed, n, n_u, n_y, rho):
    A, B, C, D = _random_stable(np.random.default_rng(seed), n, n_u, n_y, rho)
    value, omega = hinf_norm(A, B, C, D)
    ref = _hinf_hamiltonian(A, B, C, D)
    assert abs(value - ref) <= HINF_RTOL * ref, (value, ref)
    assert 0.0 <= omega <= math.pi


def test_hinf_sweep_holds_a_few_blocks_of_frequencies_at_a_time():
    """The sweep solved (e^{iω}I − A) at every frequency at once: about 101·n³·16 bytes with 101 frequencies
    per pole, 210 MB at n = 40 and 171 GiB at n = 600, where `deqlab sysid pendulum` ran out of memory after
    training (exit 1). It agrees with the Hamiltonian bisection as before."""
    import tracemalloc

    from deqlab.sysid.gain import FREQUENCY_BLOCK_BYTES

    A, B, C, D = _random_stable(np.random.default_rng(4), 40, 1, 1, 0.9)
    tracemalloc.start()
    try:
        value, _ = hinf_norm(A, B, C, D)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * FREQUENCY_BLOCK_BYTES + 2**23, peak
    ref = _hinf_hamiltonian(A, B, C, D)
    assert abs(value - ref) <= HINF_RTOL * ref, (value, ref)


def test_hinf_scalar_closed_forms_and_unstable():
    # G(z) = cb/(z − a): peak at ω = 0 for a > 0 (|cb|/(1 − a)), at ω = π for a < 0 (|cb|/(1 + a))
    for a, w in ((0.8, 0.0), (-0.8, math.pi)):
        value, omega = hinf_norm(np.array([[a]]), np.array([[2.0]]), np.array([[1.5]]), np.zeros((1, 1)))
        assert abs(value - 3.0 / (1 - abs(a))) < 1e-12 * value and abs(omega - w) < 1e-6
    assert hinf_norm(np.array([[1.0]]), np.ones((1, 1)), np.ones((1, 1)), np.zeros((1, 1)))[0] == math.inf


def test_hinf_of_a_system_without_inputs_or_outputs_is_zero():
    """G(e^{iω}) of a system with no input (or no output) is an empty matrix, of norm 0 (an empty D: no feedthrough
    either); the sweep raised numpy's IndexError taking its largest singular value."""
    A = 0.5 * np.eye(2)
    assert hinf_norm(A, np.zeros((2, 0)), np.ones((1, 2)), np.zeros((1, 0))) == (0.0, 0.0)
    assert hinf_norm(A, np.ones((2, 1)), np.zeros((0, 2)), np.zeros((0, 1))) == (0.0, 0.0)


def _linear_model(seed=0, n_x=3, n_u=2, n_y=2):
    torch.manual_seed(seed)
    core = LinearStateSpace(n_u, n_x, n_y)
    with torch.no_grad():
        core.A.copy_(torch.tensor(_random_stable(np.random.default_rng(seed), n_x, 1, 1, 0.9)[0]))
        core.D.normal_()
    return Normalised(core, [0.3, -1.0][:n_u], [2.0, 0.5][:n_u], [1.0, 2.0][:n_y], [3.0, 0.25][:n_y])


def test_linearisation_of_a_linear_model_is_the_model_in_physical_units():
    model = _linear_model()
    core = model.core
    lin = linearise(model, np.array([[0.0, 0.0], [5.0, -2.0]]))[1]
    su, sy = model.u_std.numpy(), model.y_std.numpy()
    assert lin.settled
    np.testing.assert_allclose(lin.A, core.A.detach().numpy(), atol=1e-14)
    np.testing.assert_allclose(lin.B, core.B.detach().numpy() / su[None, :], atol=1e-14)
    np.testing.assert_allclose(lin.C, sy[:, None] * core.C.detach().numpy(), atol=1e-14)
    np.testing.assert_allclose(lin.D, sy[:, None] * core.D.detach().numpy() / su[None, :], atol=1e-14)


def test_lower_bound_of_a_linear_model_is_its_exact_hinf_norm():
    model = _linear_model(seed=1)
    lin = linearise(model, np.zeros((1, 2)))[0]
    exact = _hinf_hamiltonian(lin.A, lin.B, lin.C, lin.D)
    u = np.random.default_rng(0).normal(size=(4, 80, 2))
    report = incremental_gain_lower_bound(model, u, GainSettings(steps=[40], pairs=4, iters=10, levels=2))
    assert report.method == "linearisation"
    assert abs(report.value - exact) <= HINF_RTOL * exact
    assert report.ascent <= exact * (1 + BOUND_RTOL)  # realised pairs of a linear model never beat H∞


@pytest.mark.parametrize("horizon", [1, 2, 3, 4])
def test_short_ascent_horizons_run(horizon):
    """lipschitz.steps=[1] left no step for the linearisation's peak sinusoid after its settling and
    raised on an empty array; short horizons now start from the data and random pairs only."""
    model = _linear_model(seed=1)
    u = np.random.default_rng(0).normal(size=(4, 80, 2))
    report = incremental_gain_lower_bound(model, u, GainSettings(steps=[horizon], pairs=4, iters=5, levels=2))
    assert report.ascent > 0 and math.isfinite(report.value)


def test_no_levels_is_the_ascent_alone():
    """lipschitz.levels=0 (allowed: no constant-input equilibria) once raised a reshape error."""
    model = _linear_model(seed=1)
    u = np.random.default_rng(0).normal(size=(4, 80, 2))
    report = incremental_gain_lower_bound(model, u, GainSettings(steps=[40], pairs=4, iters=10, levels=0))
    assert report.method == "ascent" and math.isnan(report.linearisation) and report.value == report.ascent > 0


def _one_step(model, x, u):
    core = model.core
    y, nxt = core(((u - model.u_mean) / model.u_std)[None, None, :], x[None, :])
    return torch.cat([y[0, 0] * model.y_std, nxt[0]])


def test_linearisation_jacobians_match_finite_differences():
    torch.manual_seed(3)
    model = Normalised(LipschitzREN(2, 3, 5, 2, gamma=2.0), [0.1, 0.2], [1.5, 0.7], [0.0, 1.0], [2.0, 0.5])
    u0 = np.array([[0.4, -0.3]])
    lin = linearise(model, u0)[0]
    assert lin.settled
    # the equilibrium: iterate the step map from zero (independent of linearise's settling loop)
    x = torch.zeros(3, dtype=torch.float64)
    u = torch.tensor(u0[0])
    with torch.no_grad():
        for _ in range(3000):
            x = _one_step(model, x, u)[2:]
    h = 1e-6
    with torch.no_grad():
        jx = torch.stack([(_one_step(model, x + h * e, u) - _one_step(model, x - h * e, u)) / (2 * h) for e in torch.eye(3, dtype=torch.float64)], 1)
        ju = torch.stack([(_one_step(model, x, u + h * e) - _one_step(model, x, u - h * e)) / (2 * h) for e in torch.eye(2, dtype=torch.float64)], 1)
    np.testing.assert_allclose(lin.C, jx[:2].numpy(), atol=JACOBIAN_ATOL)
    np.testing.assert_allclose(lin.A, jx[2:].numpy(), atol=JACOBIAN_ATOL)
    np.testing.assert_allclose(lin.D, ju[:2].numpy(), atol=JACOBIAN_ATOL)
    np.testing.assert_allclose(lin.B, ju[2:].numpy(), atol=JACOBIAN_ATOL)


@pytest.mark.parametrize("seed,gamma,n_u,n_y", [(0, 0.5, 1, 1), (1, 2.0, 1, 3), (2, 5.0, 2, 1), (3, 1.0, 2, 2)])
def test_lower_bound_never_exceeds_the_guarantee_of_a_lipschitz_ren(seed, gamma, n_u, n_y):
    torch.manual_seed(seed)
    core = LipschitzREN(n_u, 3, 6, n_y, gamma=gamma, init_scale=2.0)
    model = Normalised(core, np.zeros(n_u), np.full(n_u, 1.7), np.zeros(n_y), np.full(n_y, 0.8))
    u = 2.0 * np.random.default_rng(seed).normal(size=(3, 60, n_u))
    report = incremental_gain_lower_bound(model, u, GainSettings(steps=[20, 60], pairs=4, iters=15, levels=3), seed=seed)
    bound = model.lipschitz_bound()
    assert 0 < report.value <= bound * (1 + BOUND_RTOL)
    assert report.ascent <= bound * (1 + BOUND_RTOL)
    assert not report.linearisation > bound * (1 + BOUND_RTOL)
    assert report.method in ("ascent", "linearisation") and report.detail


def test_a_model_that_never_settles_is_not_linearised():
    """A lossless oscillator (eigenvalues on the unit circle) never reaches an equilibrium from zero
    under a constant input: its linearisation is marked unsettled and proves nothing."""
    model = _linear_model(seed=2, n_x=2, n_u=1, n_y=1)
    with torch.no_grad():
        c, s = math.cos(0.3), math.sin(0.3)
        model.core.A.copy_(torch.tensor([[c, -s], [s, c]]))
    lin = linearise(model, np.array([[1.0]]), settle_steps=500)[0]
    assert not lin.settled
    report = incremental_gain_lower_bound(model, np.ones((2, 30, 1)), GainSettings(steps=[10], pairs=2, iters=1, levels=1, settle=500))
    assert report.unsettled == 1 and report.method == "ascent" and math.isnan(report.linearisation)


_A, _B, _C, _D = np.array([[0.5]]), np.array([[1.0]]), np.array([[1.0]]), np.zeros((1, 1))


@pytest.mark.parametrize("args,message", [
    ((_A * np.nan, _B, _C, _D), "A contains NaN"),                         # numpy's "Array must not contain infs or NaNs"
    ((_A, _B * np.nan, _C, _D), "B contains NaN"),                         # numpy's "SVD did not converge"
    ((_A, _B, _C * np.inf, _D), "C contains NaN or infinite"),             # (nan, 0.0) came back as the norm
    ((_A + 0.1j, _B, _C, _D), "A must be real"),                           # the imaginary part was dropped, a warning
    ((_A, np.ones((2, 1)), _C, _D), "shapes must be"),                     # a gufunc "core dimension" message
    ((np.ones((1, 2)), _B, _C, _D), "shapes must be"),                     # "Last 2 dimensions of the array must be square"
    ((0.5, 1.0, 1.0, 0.0), "must have 2 dimensions"),                      # "0-dimensional array given"
    ((_A, _B * 1e300, _C * 1e300, _D), "overflows float64"),               # (nan, 0.0): np.argmax took the NaN
])
def test_hinf_norm_refuses_bad_matrices(args, message):
    from deqlab.errors import InputError

    with pytest.raises(InputError, match=message):
        hinf_norm(*args)


@pytest.mark.parametrize("grid", [0, -1, 2.5])
def test_hinf_norm_refuses_a_bad_grid(grid):
    from deqlab.errors import InputError

    with pytest.raises(InputError, match="grid must be an integer >= 2"):
        hinf_norm(_A, _B, _C, _D, grid=grid)


def test_linearise_checks_levels_and_skips_a_non_finite_model():
    from deqlab.errors import InputError

    model = _linear_model(seed=2, n_u=1, n_y=1)
    assert linearise(model, np.zeros((0, 1))) == []                      # (an IndexError)
    for u0, message in ((np.zeros((1, 3)), "n_u = 1"), (np.zeros(1), "2 dimensions"), (np.full((1, 1), np.nan), "NaN")):
        with pytest.raises(InputError, match=message):
            linearise(model, u0)
    with torch.no_grad():
        model.core.A[0, 0] = float("nan")
    lin = linearise(model, np.zeros((1, 1)), settle_steps=10)[0]         # (numpy's LinAlgError from eigvals)
    assert not lin.settled and math.isnan(lin.spectral_radius)


def test_gain_lower_bound_refuses_nan_inputs_and_models_and_bad_settings():
    from deqlab.errors import InputError

    model = _linear_model(seed=3, n_u=1, n_y=1)
    u = np.random.default_rng(0).normal(size=(2, 30, 1))
    small = dict(steps=[10], pairs=2, iters=2, levels=1, settle=50)
    with pytest.raises(InputError, match="u_ref contains NaN"):          # (no finite ratio: 0.0 was the "bound")
        incremental_gain_lower_bound(model, u * np.nan, GainSettings(**small))
    with pytest.raises(InputError, match="3 dimensions"):                # (read as one-step trajectories)
        incremental_gain_lower_bound(model, u[0], GainSettings(**small))
    for bad, message in (({"steps": [0]}, r"steps\[0\] must be"), ({"pairs": 0}, "pairs must be"), ({"steps": []}, "non-empty"),
                         ({"lr": float("nan")}, "lr must be")):
        with pytest.raises(InputError, match=message):                   # (torch's "stack expects a non-empty TensorList")
            GainSettings(**{**small, **bad})
    with torch.no_grad():
        model.core.B.fill_(float("nan"))
    with pytest.raises(InputError, match="not finite"):                  # (GainReport(value=0.0, ...))
        incremental_gain_lower_bound(model, u, GainSettings(**small))
