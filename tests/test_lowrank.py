"""deqlab.lowrank (seed 004): which solution each method returns, checked against brute force."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deqlab import lowrank as LR
from deqlab.demos.lowrank import SEED_H, SEED_X, SEED_Y, scipy_update

#: The seed prints 8 digits; its H X = Y holds to 1e-8, so the exact recovery must match to 1e-7.
SEED_EXAMPLE_TOL = 1e-7
#: Errata: the least-norm symmetric solution misses the example's H by 0.16 (max abs); anything
#: above this counts as "measurably not the example's H".
SEED_PITFALL_MIN_ERROR = 0.1
#: Exact pairs, rank H <= k: relative Frobenius error of the rank-k recovery.
EXACT_RECOVERY_TOL = 1e-12
#: The seed's own construction (Gram-Schmidt + non-symmetric eigenproblem) is less stable.
SEED_METHOD_TOL = 1e-10
#: The seed's method forms J = ŶŶᵀ, which squares the conditioning of Y: on exact pairs its error is
#: bounded by SEED_METHOD_GROWTH · eps · κ(Y)² (found by hypothesis: κ(Y) = 465 gave 7.9e-10, where
#: the rank-k recovery, which never squares Y, gave 2.2e-12).
SEED_METHOD_GROWTH = 100.0
#: rank_k_recovery's error on exact pairs is below RECOVERY_GROWTH · eps · (‖X‖₂/σ_min(UᵀX))².
RECOVERY_GROWTH = 10.0
#: Agreement of two closed forms / a closed form with brute-force least squares (relative).
CLOSED_FORM_TOL = 1e-10
#: SR1 from B0 = 0 fed exact pairs equals Y (X^T Y)^{-1} Y^T in exact arithmetic.
SR1_TOL = 1e-8


def well_conditioned_low_rank(n, r, rng):
    """Random symmetric rank-r H with |eigenvalues| in [0.5, 2] (random signs)."""
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    S = rng.uniform(0.5, 2.0, r) * rng.choice([-1.0, 1.0], r)
    return U, S


def exact_pairs(n, r, k, seed):
    rng = np.random.default_rng(seed)
    U, S = well_conditioned_low_rank(n, r, rng)
    H = (U * S) @ U.T
    X = rng.standard_normal((n, k))
    return U, S, H, X, H @ X


# --- brute force: symmetric H parametrised by h with ||H||_F = ||h|| -----------------------------

def sym_basis(n):
    """Basis E_p of symmetric n x n matrices, orthonormal in the Frobenius inner product."""
    basis = []
    for i in range(n):
        for j in range(i, n):
            E = np.zeros((n, n))
            if i == j:
                E[i, i] = 1.0
            else:
                E[i, j] = E[j, i] = 1 / np.sqrt(2)
            basis.append(E)
    return basis


def brute_force_min_norm(X, Y):
    """argmin ||h|| among argmin ||H(h) X - Y||_F (lstsq gives the minimum-norm least-squares h)."""
    n = X.shape[0]
    basis = sym_basis(n)
    A = np.stack([(E @ X).ravel() for E in basis], axis=1)
    h = np.linalg.lstsq(A, Y.ravel(), rcond=None)[0]
    return sum(c * E for c, E in zip(h, basis))


# --- seed example ----------------------------------------------------------------------------------

def test_seed_example_data_is_consistent():
    assert np.abs(SEED_H @ SEED_X - SEED_Y).max() < 1e-8
    assert np.abs(SEED_X.T @ SEED_Y - SEED_Y.T @ SEED_X).max() < 1e-7
    assert np.linalg.matrix_rank(SEED_H, tol=1e-7) == 2


@pytest.mark.parametrize("method", ["rank_k_recovery", "seed_method"])
def test_seed_example_recovered(method):
    est = LR.estimate(method, SEED_X, SEED_Y)
    assert est.rank == 2
    assert np.abs(est.dense() - SEED_H).max() < SEED_EXAMPLE_TOL
    np.testing.assert_allclose(np.sort(est.S)[::-1], [2.25745730, 0.148668740], atol=SEED_EXAMPLE_TOL)


@pytest.mark.parametrize("method", ["least_change", "symmetric_procrustes"])
def test_pitfall_least_norm_solution_is_not_the_seed_H(method):
    """Errata: the seed calls its answer 'the least norm solution'; the least-norm solution is rank 3."""
    est = LR.estimate(method, SEED_X, SEED_Y)
    assert est.rank == 3
    assert np.abs(est.dense() - SEED_H).max() > SEED_PITFALL_MIN_ERROR
    # it still satisfies the secant equations, and has a smaller norm than the true H
    assert est.secant_residual(SEED_X, SEED_Y) < 1e-7
    assert est.frobenius_norm() < np.linalg.norm(SEED_H)


# --- rank-k recovery --------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(n=st.integers(4, 40), r=st.integers(1, 6), extra=st.integers(0, 6), seed=st.integers(0, 10_000))
def test_rank_k_recovery_exact_for_k_at_least_rank(n, r, extra, seed):
    r = min(r, n)
    k = min(r + extra, n)
    U, S, H, X, Y = exact_pairs(n, r, k, seed)
    est = LR.rank_k_recovery(X, Y)
    assert est.rank == r
    # Forming XᵀY squares how little of the steps X lies in range H: with
    # κ = ‖X‖₂ / σ_min(UᵀX) the error is below RECOVERY_GROWTH·eps·κ² (measured: 4.9·eps·κ² over
    # 4000 draws). Hypothesis found n=4, k=r=4 with κ = 2.3e3 (error 3.2e-11); for κ ≤ 100 the
    # bound is the 1e-12.
    kappa = np.linalg.norm(X, 2) / np.linalg.svd(U.T @ X, compute_uv=False)[-1]
    bound = max(EXACT_RECOVERY_TOL, RECOVERY_GROWTH * np.finfo(float).eps * kappa**2)
    assert LR.relative_error(est, U, S) < bound
    assert np.allclose(est.U.T @ est.U, np.eye(est.rank), atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(4, 30), r=st.integers(1, 5), extra=st.integers(0, 5), seed=st.integers(0, 10_000))
def test_seed_method_equals_rank_k_recovery_on_exact_pairs(n, r, extra, seed):
    r = min(r, n)
    k = min(r + extra, n)
    U, S, H, X, Y = exact_pairs(n, r, k, seed)
    est = LR.seed_method(X, Y)
    assert est.rank == r
    squared_conditioning = SEED_METHOD_GROWTH * np.finfo(float).eps * np.linalg.cond(Y) ** 2
    assert LR.relative_error(est, U, S) < max(SEED_METHOD_TOL, squared_conditioning)


def test_rank_k_recovery_meets_1e12_on_well_conditioned_pairs():
    """The issue's target, 1e-12 from k >= r exact pairs, on 200 draws whose steps are not nearly
    orthogonal to range H (κ ≤ 100), and the near-degenerate case hypothesis found, which is not."""
    rng = np.random.default_rng(7)
    checked = 0
    for seed in range(200):
        n = int(rng.integers(4, 41))
        r = min(int(rng.integers(1, 7)), n)
        k = min(r + int(rng.integers(0, 7)), n)
        U, S, H, X, Y = exact_pairs(n, r, k, seed)
        if np.linalg.norm(X, 2) / np.linalg.svd(U.T @ X, compute_uv=False)[-1] <= 100:
            assert LR.relative_error(LR.rank_k_recovery(X, Y), U, S) < EXACT_RECOVERY_TOL
            checked += 1
    assert checked > 150
    U, S, H, X, Y = exact_pairs(4, 4, 4, seed=471)
    assert LR.relative_error(LR.rank_k_recovery(X, Y), U, S) > EXACT_RECOVERY_TOL


def test_seed_method_loses_accuracy_with_the_square_of_cond_y():
    """The case hypothesis found: the seed's method is 350x less accurate than the rank-k recovery."""
    U, S, H, X, Y = exact_pairs(26, 5, 5, seed=500)
    assert np.linalg.cond(Y) > 400
    seed_error = LR.relative_error(LR.seed_method(X, Y), U, S)
    assert LR.relative_error(LR.rank_k_recovery(X, Y), U, S) < SEED_METHOD_TOL < seed_error


def test_rank_k_recovery_below_rank_is_nystrom():
    """k < rank H: Y (X^T Y)^{-1} Y^T = H X (X^T H X)^{-1} X^T H, and HX = Y still holds."""
    U, S, H, X, Y = exact_pairs(20, 8, 3, seed=1)
    est = LR.rank_k_recovery(X, Y)
    nystrom = H @ X @ np.linalg.solve(X.T @ H @ X, X.T @ H)
    assert np.linalg.norm(est.dense() - nystrom) / np.linalg.norm(nystrom) < CLOSED_FORM_TOL
    assert est.secant_residual(X, Y) / np.linalg.norm(Y) < CLOSED_FORM_TOL
    assert LR.relative_error(est, U, S) > 0.1  # not the truth: too few pairs


def test_rank_k_recovery_large_n_factored():
    rng = np.random.default_rng(3)
    n, r, k = 20_000, 4, 8
    U, S = well_conditioned_low_rank(n, r, rng)
    X = rng.standard_normal((n, k))
    Y = U @ (S[:, None] * (U.T @ X))
    est = LR.rank_k_recovery(X, Y)
    assert est.U.shape == (n, r)
    assert LR.relative_error(est, U, S) < EXACT_RECOVERY_TOL


def test_sr1_from_zero_equals_rank_k_recovery():
    """SR1 updates from B0 = 0 stay in span(Y) and keep HX = Y: the unique such H is Y(XᵀY)⁻¹Yᵀ."""
    U, S, H, X, Y = exact_pairs(15, 6, 4, seed=2)
    B = scipy_update("SR1", X, Y, init_scale=0.0)
    est = LR.rank_k_recovery(X, Y)
    assert np.linalg.norm(B - est.dense()) / np.linalg.norm(B) < SR1_TOL


# --- least change -------------------------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 6), k=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_least_change_is_the_min_norm_symmetric_secant_solution(n, k, seed):
    k = min(k, n)
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    H = A + A.T  # any symmetric H: X^T Y = X^T H X is symmetric, so an exact solution exists
    X = rng.standard_normal((n, k))
    Y = H @ X
    est = LR.least_change(X, Y)
    B = est.dense()
    assert np.array_equal(B, B.T) or np.abs(B - B.T).max() < 1e-14
    assert np.linalg.norm(B @ X - Y) / np.linalg.norm(Y) < CLOSED_FORM_TOL
    ref = brute_force_min_norm(X, Y)
    assert np.linalg.norm(B - ref) / max(np.linalg.norm(ref), 1e-300) < CLOSED_FORM_TOL


def test_least_change_matches_dense_formula():
    rng = np.random.default_rng(5)
    n, k = 12, 4
    A = rng.standard_normal((n, n))
    X = rng.standard_normal((n, k))
    Y = (A + A.T) @ X + 1e-3 * rng.standard_normal((n, k))  # also with X^T Y not symmetric
    Xp = np.linalg.pinv(X)
    M = X.T @ Y
    printed = Y @ Xp + (Y @ Xp).T - Xp.T @ M @ Xp
    assert np.abs(printed - printed.T).max() > 1e-6  # the printed formula is not symmetric for noisy pairs
    dense = Y @ Xp + (Y @ Xp).T - Xp.T @ ((M + M.T) / 2) @ Xp  # what least_change documents
    est = LR.least_change(X, Y)
    assert np.linalg.norm(est.dense() - dense) / np.linalg.norm(dense) < CLOSED_FORM_TOL
    assert est.info["xty_asymmetry"] > 1e-6


# --- symmetric Procrustes -------------------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 6), k=st.integers(1, 6), noise=st.floats(0.0, 1.0), seed=st.integers(0, 10_000))
def test_procrustes_is_optimal_and_minimum_norm(n, k, noise, seed):
    k = min(k, n)
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    X = rng.standard_normal((n, k))
    Y = (A + A.T) @ X + noise * rng.standard_normal((n, k))
    est = LR.symmetric_procrustes(X, Y)
    B = est.dense()
    assert np.abs(B - B.T).max() < 1e-13
    ref = brute_force_min_norm(X, Y)
    scale = max(np.linalg.norm(ref), 1.0)
    assert np.linalg.norm(B - ref) / scale < CLOSED_FORM_TOL
    # no symmetric perturbation lowers the residual
    base = np.linalg.norm(B @ X - Y)
    for _ in range(5):
        D = rng.standard_normal((n, n))
        D = 1e-3 * (D + D.T)
        assert np.linalg.norm((B + D) @ X - Y) >= base - 1e-12


def test_procrustes_equals_least_change_when_exact_solution_exists():
    U, S, H, X, Y = exact_pairs(30, 6, 5, seed=4)
    a, b = LR.symmetric_procrustes(X, Y), LR.least_change(X, Y)
    assert LR.factored_frobenius_distance(a.U, a.S, b.U, b.S) / b.frobenius_norm() < CLOSED_FORM_TOL


def test_procrustes_beats_least_change_on_noisy_pairs():
    rng = np.random.default_rng(6)
    n, k = 20, 6
    A = rng.standard_normal((n, n))
    X = rng.standard_normal((n, k))
    Y = (A + A.T) @ X + 0.5 * rng.standard_normal((n, k))
    p, lc = LR.symmetric_procrustes(X, Y), LR.least_change(X, Y)
    assert p.secant_residual(X, Y) < lc.secant_residual(X, Y)
    assert p.secant_residual(X, Y) > 1e-3  # noisy: no symmetric H fits exactly


@pytest.mark.parametrize("values", [[2.0, 2.0, 2.0], [1.0, 1.0, -2.0], [3.0, 3.0, -2.0, -2.0, 1.0]])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seed_method_with_a_repeated_eigenvalue_is_exact(values, seed):
    """eig returns some basis of a repeated eigenvalue's eigenspace, not an orthogonal one: with H = 2P the
    seed method returned eigenvalues 2.6, 2.0, 1.4 (error 30 %), with eigenvalues (1, 1, −2) two parallel u
    (rank 2, error 58 %), on exact pairs, where its result is documented to be the rank-k recovery."""
    rng = np.random.default_rng(seed)
    n, r = 9, len(values)
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    X = rng.standard_normal((n, r + 1))
    Y = (U * values) @ U.T @ X
    est = LR.seed_method(X, Y)
    assert LR.relative_error(est, U, np.array(values)) < SEED_METHOD_TOL
    assert est.info["u_orthogonality"] < SEED_METHOD_TOL
    Xs = np.random.default_rng(1).standard_normal((6, 3))   # H = 2 P_X from its own range
    np.testing.assert_allclose(LR.seed_method(Xs, 2.0 * Xs).S, [2.0, 2.0, 2.0], rtol=SEED_METHOD_TOL)


@pytest.mark.parametrize("rtol", [0.0, 1e-300, 1e-16])
def test_seed_method_cut_offs_stay_above_round_off(rtol):
    """The seed method squares Y (J = ŶŶᵀ) and Gram–Schmidt keeps round-off remainders at rtol = 0: with
    rank H < k it divided by round-off and returned eigenvalues of 1e15 for an H of size 2."""
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((10, 2)))
    S = np.array([1.0, -2.0])
    X = rng.standard_normal((10, 4))
    est = LR.seed_method(X, (U * S) @ U.T @ X, rtol=rtol)
    assert LR.relative_error(est, U, S) < SEED_METHOD_TOL


def test_seed_method_on_noisy_pairs_reports_departure():
    rng = np.random.default_rng(7)
    U, S, H, X, Y = exact_pairs(15, 3, 5, seed=7)
    Y = Y + 0.05 * rng.standard_normal(Y.shape)
    est = LR.seed_method(X, Y)
    assert np.allclose(est.U.T @ est.U, np.eye(est.rank), atol=1e-10)
    assert est.info["u_orthogonality"] > 1e-6
    assert {"complex_eigenvalues", "J_rank", "gram_schmidt_rank"} <= set(est.info)


# --- helpers and input checks -------------------------------------------------------------------------

def test_factored_distance_and_matvec_match_dense():
    rng = np.random.default_rng(8)
    U1, S1 = rng.standard_normal((9, 3)), rng.standard_normal(3)
    U2, S2 = rng.standard_normal((9, 4)), rng.standard_normal(4)
    dense = np.linalg.norm((U1 * S1) @ U1.T - (U2 * S2) @ U2.T)
    assert abs(LR.factored_frobenius_distance(U1, S1, U2, S2) - dense) < 1e-12 * dense
    est = LR.SymmetricEstimate(U1, S1, "x", "y")
    V = rng.standard_normal((9, 2))
    np.testing.assert_allclose(est.matvec(V), est.dense() @ V, rtol=1e-13)
    np.testing.assert_allclose(est.matvec(V[:, 0]), est.dense() @ V[:, 0], rtol=1e-13)


@pytest.mark.parametrize(
    "X, Y, message",
    [
        (np.ones((4, 2)), np.ones((4, 3)), "same shape"),
        (np.ones(4), np.ones(4), "2-D"),
        (np.random.default_rng(0).standard_normal((3, 4)),) * 2 + ("exceed the dimension",),
        (np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]]), np.ones((3, 2)), "rank-deficient"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), np.eye(2), "NaN"),
        (np.eye(3)[:, :0], np.eye(3)[:, :0], "at least one pair"),
        (np.eye(3)[:, :2] * (1 + 1j), np.eye(3)[:, :2], "must be real"),   # float64 would drop the imaginary part
        (np.array([["a", "b"], ["c", "d"]]), np.eye(2), "numeric"),
    ],
)
def test_check_pairs_rejects_bad_input(X, Y, message):
    with pytest.raises(ValueError, match=message):
        LR.check_pairs(X, Y)


@pytest.mark.parametrize("rtol", [float("nan"), 1.0, 2.0, -1e-3])
def test_an_rtol_outside_0_1_is_refused_not_a_rank_0_estimate(rtol):
    """NaN or rtol >= 1 cut every singular value: each method returned an empty (rank-0) estimate."""
    X = np.random.default_rng(1).standard_normal((6, 3))
    for method in LR.METHODS:
        with pytest.raises(ValueError, match=r"rtol must be a number in \[0, 1\)"):
            LR.estimate(method, X, 2.0 * X, rtol=rtol)


@pytest.mark.parametrize("rtol", [np.float32(1e-3), np.float64(1e-3), np.int64(0), np.float16(0.01)])
def test_numpy_scalar_rtol_is_a_number(rtol):
    """NumPy scalars are numbers: np.float32(1e-3) (an rtol read from a float32 array) was refused as
    "rtol must be a number in [0, 1)"."""
    X = np.random.default_rng(1).standard_normal((6, 3))
    Q = np.linalg.qr(X)[0]   # H = 2 P_X
    for method in LR.METHODS:
        est = LR.estimate(method, X, 2.0 * X, rtol=rtol)
        assert LR.relative_error(est, Q, np.full(3, 2.0)) < SEED_METHOD_TOL


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_low_precision_torch_pairs_are_taken_as_float64(dtype):
    """NumPy has no bfloat16: a bfloat16 tensor's ``.numpy()`` was a bare TypeError."""
    torch = pytest.importorskip("torch")
    X = np.eye(4)[:, :2] + np.eye(4, k=-2)[:, :2] * 0.5   # exactly representable in every dtype here
    Xt = torch.tensor(X, dtype=getattr(torch, dtype))
    est = LR.rank_k_recovery(Xt, 2.0 * Xt)
    np.testing.assert_allclose(est.S, [2.0, 2.0], rtol=EXACT_RECOVERY_TOL)


def test_a_method_that_is_not_a_name_is_an_input_error():
    with pytest.raises(ValueError, match="unknown method"):   # (a list was a bare "unhashable type" TypeError)
        LR.estimate(["rank_k_recovery"], SEED_X, SEED_Y)


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method"):
        LR.estimate("bfgs", SEED_X, SEED_Y)


@pytest.mark.parametrize("method", LR.METHODS)
def test_edge_cases_zero_gradients_and_k_equals_n(method):
    rng = np.random.default_rng(9)
    X = rng.standard_normal((6, 3))
    est = LR.estimate(method, X, np.zeros((6, 3)))
    assert est.rank == 0 and est.U.shape == (6, 0) and np.all(est.dense() == 0)
    # the relative error to H_true = 0 is not defined (it was a ZeroDivisionError)
    from deqlab.errors import InputError

    with pytest.raises(InputError, match="not defined"):
        LR.relative_error(est, np.zeros((6, 0)), np.zeros(0))
    # k = n independent exact pairs determine any symmetric H: every method must return it
    A = rng.standard_normal((5, 5))
    H = A + A.T
    X = rng.standard_normal((5, 5))
    tol = SEED_METHOD_TOL if method == "seed_method" else CLOSED_FORM_TOL
    assert np.linalg.norm(LR.estimate(method, X, H @ X).dense() - H) / np.linalg.norm(H) < tol


def test_random_low_rank_refuses_what_would_not_have_the_rank_asked_for():
    """rank > n gave a rank-n matrix (QR returns n columns); n=5.5 and rng=None were numpy/attribute errors."""
    from deqlab.errors import InputError

    rng = np.random.default_rng(0)
    U, S = LR.random_low_rank(6, 2, rng=rng)
    assert U.shape == (6, 2) and S.shape == (2,) and np.allclose(U.T @ U, np.eye(2), atol=1e-14)
    for kwargs, message in [({"n": 3, "rank": 5}, "rank must be <= n = 3, got 5"), ({"n": 5.5, "rank": 2}, "n must be an integer"),
                            ({"n": 3, "rank": -1}, "rank must be an integer >= 0")]:
        with pytest.raises(InputError, match=message):
            LR.random_low_rank(rng=rng, **kwargs)
    with pytest.raises(InputError, match="rng must be a numpy Generator"):
        LR.random_low_rank(3, 2, rng=None)


#: Scaling X and Y by powers of ten is not exact, so H(aX, bY)·(a/b) matches H(X, Y) to round-off only.
SCALE_EQUIVARIANCE_TOL = 1e-12


@pytest.mark.parametrize("method", LR.METHODS)
@pytest.mark.parametrize("a, b", [(1.0, 1e-12), (1e-12, 1.0), (1e300, 1.0), (1.0, 1e300), (1e-160, 1e-160), (1e160, 1e160)])
def test_every_method_is_scale_equivariant(method, a, b):
    """``H(aX, bY) = (b/a) H(X, Y)``. The seed method and Procrustes compared columns of X with columns of
    Y in their rank cut-offs: a flat loss (``‖Y‖/‖X‖ = 1e-12``) lost Y and gave an H 42% off, tiny steps
    gave Procrustes H = 0, and entries near 1e±160 or beyond ended in LAPACK errors (a traceback)."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 6))
    X = rng.standard_normal((6, 3))
    Y = (A + A.T) @ X
    reference = LR.estimate(method, X, Y).dense()
    scaled = LR.estimate(method, a * X, b * Y).dense() * (a / b)
    assert np.abs(scaled - reference).max() <= SCALE_EQUIVARIANCE_TOL * np.abs(reference).max()


@pytest.mark.parametrize("scale", [1e-200, 1.0, 1e200])
def test_the_error_measures_hold_at_any_scale_of_h(scale):
    """The factored distance summed the squares of the eigenvalues as they are: at 1e200 the distance was inf and
    the relative error NaN; at 1e-200 a non-zero H_true was refused as 0. An exact recovery (rank H = k) has a
    relative error of round-off at every scale, and the distance scales with H."""
    rng = np.random.default_rng(0)
    U, S = LR.random_low_rank(6, 2, rng=rng)
    X = rng.standard_normal((6, 2))
    est = LR.estimate("rank_k_recovery", X, ((U * (scale * S)) @ U.T) @ X)
    assert LR.relative_error(est, U, scale * S) <= EXACT_RECOVERY_TOL
    distance = LR.factored_frobenius_distance(U, scale * S, U[:, :0], S[:0])
    assert abs(distance / scale - np.linalg.norm(S)) <= EXACT_RECOVERY_TOL * np.linalg.norm(S)
    with pytest.raises(LR.InputError, match=r"V must have shape \(n,\) or \(n, m\) with n = 6, got \(7,\)"):
        est.matvec(np.ones(7))      # (numpy's reshape error)
    with pytest.raises(LR.InputError, match="of one n"):
        LR.relative_error(est, U[:3], S)   # (numpy's concatenate error)


@pytest.mark.parametrize("a, b", [(1e-320, 1.0), (1.0, 1e-320), (1e-200, 1e200)])
def test_an_estimate_outside_float64_is_refused(a, b):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 2))
    with pytest.raises(LR.InputError, match="leave float64's range"):
        LR.estimate("least_change", a * X, b * X)


def test_an_estimate_that_cannot_meet_its_secant_equations_is_refused():
    """H = diag(1, −1, 0), X = [[1, 0], [1, 0], [0, 1]]: XᵀY = XᵀHX = 0 although Y ≠ 0, so no symmetric H
    with range span(Y) has HX = Y. rank_k_recovery and seed_method returned H = 0 (‖HX − Y‖ = ‖Y‖);
    the methods whose range is span[X Y] still find a secant solution."""
    from deqlab.errors import InputError

    H = np.diag([1.0, -1.0, 0.0])
    X = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    Y = H @ X
    for method in ("rank_k_recovery", "seed_method"):
        with pytest.raises(InputError, match=f"{method}: .*directions of span\\(Y\\)"):
            LR.estimate(method, X, Y)
    for method in ("least_change", "symmetric_procrustes"):
        est = LR.estimate(method, X, Y)
        assert np.linalg.norm(est.dense() @ X - Y) <= CLOSED_FORM_TOL * np.linalg.norm(Y)


def test_secant_residual_and_relative_error_refuse_what_they_cannot_compare():
    """A Y of shape (n, 1) was broadcast against every column of HX (a residual of no pair, without a word);
    a NaN U_true was reported as 'H_true = 0', an infinite S_true gave a relative error of NaN."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((6, 2))
    est = LR.rank_k_recovery(X, 2.0 * X)
    assert est.secant_residual(X, 2.0 * X) < CLOSED_FORM_TOL
    for Y in (np.ones((6, 1)), np.ones((6, 3))):
        with pytest.raises(ValueError, match="X and Y must have the same shape"):
            est.secant_residual(X, Y)
    Q = np.linalg.qr(X)[0]
    assert LR.relative_error(est, Q, [2.0, 2.0]) < CLOSED_FORM_TOL
    for U, S in ((np.full((6, 1), np.nan), np.ones(1)), (Q[:, :1], np.array([np.inf]))):
        with pytest.raises(ValueError, match="NaN or infinite"):
            LR.relative_error(est, U, S)
        with pytest.raises(ValueError, match="NaN or infinite"):
            LR.factored_frobenius_distance(est.U, est.S, U, S)



def _column_by_column_gram_schmidt(A, rtol):
    """The definition, column by column (modified Gram–Schmidt, twice): the independent route for
    :func:`deqlab.lowrank.gram_schmidt`'s blocked form. Returns the basis and the indices of the kept columns."""
    scale = max(float(np.linalg.norm(A, axis=0).max(initial=0.0)), np.finfo(float).tiny)
    basis, kept = [], []
    for j in range(A.shape[1]):
        v = A[:, j].copy()
        for _ in range(2):
            for q in basis:
                v -= (q @ v) * q
        norm = np.linalg.norm(v)
        if norm > rtol * scale:
            basis.append(v / norm)
            kept.append(j)
    return (np.stack(basis, axis=1) if basis else np.zeros((A.shape[0], 0))), kept


@pytest.mark.parametrize("block", [1, 3, 8, 64])
def test_blocked_gram_schmidt_keeps_the_columns_the_definition_keeps(block):
    """[X HX] with H of low rank (most of Y's columns dependent), then columns built to sit just above and
    just below the cut-off (remainders 1e-8 and 1e-12 of their size, cut-off 1e-10), each followed by one
    that depends on it and on X, and fresh columns each followed by a copy perturbed by 1e-8: where that
    pair shares a block, the block's own projection cancels the copy down to 1e-8, and its round-off
    along the earlier blocks' basis (2e-16 of the column) would be 2e-8 of the new vector without the
    extra projection. The blocked form keeps the same columns as the column-by-column definition
    and is a Gram–Schmidt basis to round-off (float64): orthonormal to 1e-13, ``GᵀA`` on the kept columns
    upper triangular with a positive diagonal to 1e-13·‖A‖, every column in ``span G`` to 1e-12·‖A‖.
    The vectors equal the definition's to 1e-12 where they are well determined (the columns of [X Y]); a
    nearly dependent column's direction is determined only to about eps·‖a‖/‖r‖ = 2e-8 by either route."""
    rng = np.random.default_rng(11)
    n, k = 300, 20
    U, _ = np.linalg.qr(rng.standard_normal((n, 6)))
    X = rng.standard_normal((n, k))
    Y = U @ (rng.standard_normal(6)[:, None] * (U.T @ X))
    cols = [*X.T, *Y.T]
    for size in (1e-8, 1e-12, 1e-8):
        base = X @ rng.standard_normal(k)
        near = base + size * np.linalg.norm(base) * rng.standard_normal(n) / np.sqrt(n)
        cols += [near, near + 0.5 * base, rng.standard_normal(n)]
    for _ in range(3):   # (a column nearly equal to the one before it: within one block for any block >= 2, somewhere)
        fresh = rng.standard_normal(n)
        cols += [fresh, fresh + 1e-8 * rng.standard_normal(n)]
    A = np.stack(cols, axis=1)
    scale = np.linalg.norm(A, axis=0).max()
    reference, kept = _column_by_column_gram_schmidt(A, 1e-10)
    G = LR.gram_schmidt(A, rtol=1e-10, block=block)
    assert G.shape == reference.shape == (n, k + 6 + 2 + 3 + 6), (G.shape, reference.shape)
    assert np.linalg.norm(G.T @ G - np.eye(G.shape[1])) < 1e-13
    R = G.T @ A[:, kept]
    assert np.abs(np.tril(R, -1)).max() < 1e-13 * scale and (np.diag(R) > 0).all()
    assert np.abs(A - G @ (G.T @ A)).max() < 1e-12 * scale
    well = k + 6   # (the basis of [X Y])
    np.testing.assert_allclose(G[:, :well], reference[:, :well], rtol=0, atol=1e-12)
    np.testing.assert_allclose(G, reference, rtol=0, atol=1e-6)
    assert LR.gram_schmidt(np.zeros((5, 3)), block=block).shape == (5, 0)
