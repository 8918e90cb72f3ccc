"""Stochastic Lanczos quadrature against the exact eigenvalues of small dense symmetric matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deqlab.implicit.spectrum import lanczos_quadrature, spectral_density

#: Gauss quadrature is exact for degree <= 2m-1: agreement to rounding (relative, float64).
QUADRATURE_RTOL = 1e-9
#: Lanczos run to m = n recovers every eigenvalue to rounding (absolute, eigenvalues of order 1-10).
EXACT_ATOL = 1e-8
#: With 30 probes the estimated fraction of eigenvalues below a point is within this of the truth
#: (Hutchinson's standard error for a spectral projector of a 200 x 200 matrix is about 0.01).
CDF_ATOL = 0.05


def symmetric(n: int, eigenvalues: np.ndarray, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return torch.as_tensor(Q @ np.diag(eigenvalues) @ Q.T)


def test_quadrature_reproduces_moments_up_to_degree_2m_minus_1():
    n, m = 120, 8
    lam = np.linspace(-3.0, 5.0, n) ** 3 / 10
    A = symmetric(n, lam)
    v = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    nodes, weights = lanczos_quadrature(lambda x: A @ x, v, m)
    assert nodes.shape == weights.shape == (m,)
    u = v / torch.linalg.vector_norm(v)
    for k in range(2 * m):
        exact = float(u @ torch.linalg.matrix_power(A, k) @ u)
        approx = float((weights * nodes**k).sum())
        assert abs(approx - exact) <= QUADRATURE_RTOL * max(1.0, abs(exact)), (k, approx, exact)
    # degree 2m is no longer integrated exactly: the test above could fail
    k = 2 * m
    exact = float(u @ torch.linalg.matrix_power(A, k) @ u)
    assert abs(float((weights * nodes**k).sum()) - exact) > QUADRATURE_RTOL * abs(exact)


def test_full_lanczos_recovers_the_eigenvalues():
    n = 40
    lam = np.sort(np.random.default_rng(2).uniform(-2, 10, n))
    A = symmetric(n, lam, seed=3)
    sd = spectral_density(lambda x: A @ x, n, probes=2, steps=n, seed=0)
    for row in sd.nodes:
        np.testing.assert_allclose(np.sort(row), lam, atol=EXACT_ATOL)
    np.testing.assert_allclose(sd.weights.sum(axis=1), 1.0, atol=1e-12)


def test_density_estimates_the_spectral_measure():
    n = 200
    rng = np.random.default_rng(4)
    lam = np.concatenate([rng.normal(0.0, 0.2, 150), rng.normal(5.0, 0.5, 45), [40.0, 60, 80, 100, 120]])
    A = symmetric(n, lam, seed=5)
    sd = spectral_density(lambda x: A @ x, n, probes=30, steps=30, seed=6)
    grid = np.linspace(-5, 130, 20001)
    dens = sd.density(grid, sigma=0.1)
    assert abs(np.trapezoid(dens, grid) - 1.0) < 1e-6
    for t in (1.0, 10.0, 50.0, 110.0):
        estimated = float((sd.weights * (sd.nodes < t)).sum(axis=1).mean())
        assert abs(estimated - np.mean(lam < t)) < CDF_ATOL, (t, estimated, np.mean(lam < t))
    assert abs(sd.moment(1) - lam.mean()) < 0.1 * np.abs(lam).mean()
    assert abs(sd.nodes.max() - 120.0) < 1e-6  # the largest outlier is found by every probe


def test_extreme_eigenvalues_refuses_what_arpack_would_clamp_or_choke_on():
    """k >= size was clamped to size - 1 (fewer eigenvalues than asked, without a word); an operator
    returning NaN made ARPACK fail with LAPACK noise on stderr; a wrong output size was a reshape error."""
    import pytest

    from deqlab.errors import DeqlabError, InputError
    from deqlab.implicit.spectrum import extreme_eigenvalues

    A = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    A = A + A.T
    top = extreme_eigenvalues(lambda v: A @ v, 6, k=2)
    np.testing.assert_allclose(top, np.linalg.eigvalsh(A.numpy())[-2:], rtol=1e-10)
    for k in (0, 6, 7):
        with pytest.raises(InputError, match="1 <= k < size = 6"):
            extreme_eigenvalues(lambda v: A @ v, 6, k=k)
    with pytest.raises(DeqlabError, match="NaN or inf"):
        extreme_eigenvalues(lambda v: v * float("nan"), 6, k=2)
    with pytest.raises(InputError, match=r"must map \(6,\) to \(6,\)"):
        extreme_eigenvalues(lambda v: v[:3], 6, k=2)
    with pytest.raises(InputError, match="which must be one of LA, SA"):   # was scipy's ValueError
        extreme_eigenvalues(lambda v: A @ v, 6, k=2, which="largest")


def test_trace_and_density_refuse_an_operator_that_returns_nan():
    """Hutchinson returned a NaN trace and Lanczos a LinAlgError; both now say what is wrong."""
    import pytest

    from deqlab.errors import DeqlabError
    from deqlab.implicit.spectrum import hutchinson_trace

    with pytest.raises(DeqlabError, match="NaN or inf"):
        hutchinson_trace(lambda v: v * float("nan"), 6)
    with pytest.raises(DeqlabError, match="NaN or inf"):
        spectral_density(lambda v: v * float("inf"), 6)


#: a float32 operator probed in float64: its products carry float32's accuracy (eps 1.2e-7, entries of size ~5)
FLOAT32_RTOL = 1e-5


def test_a_float32_operator_probed_in_float64_works_in_every_routine():
    """A float32 product (a LossHessian of a float32 model) with the default dtype=float64: eigsh cast it, but
    the trace and the density failed with torch's 'dot : expected both vectors to have same dtype'. Each
    product is now cast to its vector's dtype; the same probes in float64 give the same numbers to FLOAT32_RTOL."""
    from deqlab.implicit.spectrum import extreme_eigenvalues, hutchinson_trace

    A = torch.randn(8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    H = A + A.T
    single = lambda v: H.float() @ v.float()   # noqa: E731
    double = lambda v: H @ v                   # noqa: E731
    np.testing.assert_allclose(extreme_eigenvalues(single, 8, k=2), np.linalg.eigvalsh(H.numpy())[-2:], rtol=FLOAT32_RTOL)
    t32, t64 = hutchinson_trace(single, 8, probes=16), hutchinson_trace(double, 8, probes=16)
    assert abs(t32.trace - t64.trace) <= FLOAT32_RTOL * float(torch.linalg.matrix_norm(H)) * 8
    d32, d64 = spectral_density(single, 8, probes=2, steps=8), spectral_density(double, 8, probes=2, steps=8)
    np.testing.assert_allclose(np.sort(d32.nodes, axis=1), np.sort(d64.nodes, axis=1), rtol=0,
                               atol=FLOAT32_RTOL * float(torch.linalg.matrix_norm(H)))


def test_counts_widths_and_tolerances_are_checked():
    """probes=2.5 and n=2.5 were TypeErrors from range(), sigma=0 a NaN density with a RuntimeWarning,
    tol=nan an ARPACK error, an integer dtype a torch dtype clash inside the product."""
    import pytest

    from deqlab.errors import InputError
    from deqlab.implicit.spectrum import extreme_eigenvalues, hutchinson_trace

    A = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    A = A + A.T
    mv = lambda v: A @ v   # noqa: E731
    for call, message in [
        (lambda: hutchinson_trace(mv, 6, probes=2.5), "probes must be an integer >= 2, got 2.5"),
        (lambda: hutchinson_trace(mv, 6, probes=True), "probes must be an integer >= 2, got True"),
        (lambda: hutchinson_trace(mv, 0), "size must be an integer >= 1, got 0"),
        (lambda: hutchinson_trace(mv, 6, dtype=torch.int64), "dtype must be a real floating torch dtype"),
        (lambda: spectral_density(mv, 6, probes=1.5), "probes must be an integer >= 1, got 1.5"),
        (lambda: spectral_density(mv, 6, steps=0), "steps must be an integer >= 1, got 0"),
        (lambda: spectral_density(mv, 6.5), "n must be an integer >= 1, got 6.5"),
        (lambda: spectral_density(mv, 6).density(np.linspace(-1, 1, 5), 0.0), "sigma must be a finite width > 0"),
        (lambda: spectral_density(mv, 6).density(np.linspace(-1, 1, 5), float("nan")), "sigma must be a finite width > 0"),
        (lambda: extreme_eigenvalues(mv, 6, k=2, tol=float("nan")), "tol must be a finite number >= 0"),
        (lambda: extreme_eigenvalues(mv, 6, k=2, tol=-1.0), "tol must be a finite number >= 0"),
        (lambda: extreme_eigenvalues(mv, 6, k=2, maxiter=0), "maxiter must be an integer >= 1, got 0"),
        (lambda: extreme_eigenvalues(mv, 6.5, k=2), "size must be an integer >= 2, got 6.5"),
    ]:
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            call()


def test_eigsh_that_does_not_converge_is_a_not_converged_error():
    """ARPACK's ArpackNoConvergence is a RuntimeError, which the CLI takes for a bug (a traceback)."""
    import pytest

    from deqlab.errors import NotConvergedError
    from deqlab.implicit.spectrum import extreme_eigenvalues

    A = torch.randn(300, 300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    A = A + A.T
    with pytest.raises(NotConvergedError, match=r"did not converge: \d of 5 eigenvalues .* raise maxiter or loosen tol"):
        extreme_eigenvalues(lambda v: A @ v, 300, k=5, which="SM", tol=0, maxiter=3)


def test_eigenvalue_routines_refuse_a_non_symmetric_operator():
    """eigsh and Lanczos assume a symmetric H and returned numbers that are not the eigenvalues of a
    non-symmetric A without a word (eigsh on this A: its 'top' values were not eigenvalues of A)."""
    import pytest

    from deqlab.errors import InputError
    from deqlab.implicit.spectrum import extreme_eigenvalues, require_symmetric

    gen = torch.Generator().manual_seed(3)
    A = torch.randn(40, 40, generator=gen, dtype=torch.float64)
    S = A + A.T
    with pytest.raises(InputError, match="not symmetric"):
        extreme_eigenvalues(lambda v: A @ v, 40, k=2)
    with pytest.raises(InputError, match="not symmetric"):
        spectral_density(lambda v: A @ v, 40)
    # nearly symmetric by round-off only (a float32 product of a symmetric matrix) passes, as does the zero map
    require_symmetric(lambda v: (S.float() @ v.float()).double(), 40)
    require_symmetric(lambda v: 0 * v, 40)
    np.testing.assert_allclose(extreme_eigenvalues(lambda v: S @ v, 40, k=2),
                               np.linalg.eigvalsh(S.numpy())[-2:], rtol=1e-10)



def test_a_symmetric_operator_at_a_tiny_scale_passes_the_symmetry_probe():
    """The probe's bound ‖Hu‖‖v‖ + ‖Hv‖‖u‖ is formed without underflow: at 1e-170, torch's vector_norm gave
    0 and a symmetric operator's round-off (a non-zero |vᵀHu − uᵀHv|) was refused against it."""
    from deqlab.implicit.spectrum import extreme_eigenvalues

    A = torch.randn(40, 40, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    S = A + A.T
    top = extreme_eigenvalues(lambda w: (S * 1e-170) @ w, 40, k=1)
    np.testing.assert_allclose(top * 1e170, np.linalg.eigvalsh(S.numpy())[-1:], rtol=1e-8)


@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1e-170, 1e160, 1e200, 1e300])
def test_full_lanczos_is_scale_free(scale):
    """β was ``torch.linalg.vector_norm``, which sums the squares as they are: at 1e-170 it underflowed to 0
    after one step (every weight on the mean, a wrong density without a word), at 1e160 it overflowed
    (NaN nodes and weights)."""
    lam = np.arange(1.0, 7.0)
    A = symmetric(6, lam)
    density = spectral_density(lambda v: scale * (A @ v), 6, probes=2, steps=6)
    for nodes, weights in zip(density.nodes, density.weights):
        np.testing.assert_allclose(np.sort(nodes) / scale, lam, rtol=EXACT_ATOL)
        assert abs(weights.sum() - 1.0) < QUADRATURE_RTOL


def test_extreme_eigenvalues_of_the_zero_operator_are_zero():
    """ARPACK's Lanczos breaks down at once on H = 0: 'ARPACK error -9: Starting vector is zero' came back
    as a DeqlabError for an operator whose eigenvalues are all 0 (a loss linear in some parameters)."""
    from deqlab.implicit.spectrum import extreme_eigenvalues

    for which in ("LA", "SA", "LM"):
        np.testing.assert_array_equal(extreme_eigenvalues(lambda v: 0.0 * v, 6, k=2, which=which), [0.0, 0.0])


def test_both_ends_need_two_eigenvalues():
    from deqlab.errors import InputError
    from deqlab.implicit.spectrum import extreme_eigenvalues

    with pytest.raises(InputError, match="k must be >= 2"):   # (ARPACK error -13, as a DeqlabError)
        extreme_eigenvalues(lambda v: 2.0 * v, 6, k=1, which="BE")


def test_seeds_are_any_integer_torch_and_numpy_take():
    """A NumPy integer seed reached torch's manual_seed as 'TypeError: an integer is required' (spectral density),
    1.5 as torch's RuntimeError and 2**70 as an overflow ValueError (every routine)."""
    from deqlab.errors import InputError
    from deqlab.implicit.spectrum import extreme_eigenvalues, hutchinson_trace

    A = symmetric(6, np.arange(1.0, 7.0))
    product = lambda v: A @ v   # noqa: E731
    assert spectral_density(product, 6, probes=2, steps=3, seed=np.int64(3)).moment(1) == \
        spectral_density(product, 6, probes=2, steps=3, seed=3).moment(1)
    assert hutchinson_trace(product, 6, probes=3, seed=np.int64(3)).trace == hutchinson_trace(product, 6, probes=3, seed=3).trace
    np.testing.assert_array_equal(extreme_eigenvalues(product, 6, k=2, seed=np.int64(1)), extreme_eigenvalues(product, 6, k=2, seed=1))
    for call in (lambda s: hutchinson_trace(product, 6, probes=3, seed=s), lambda s: spectral_density(product, 6, seed=s),
                 lambda s: extreme_eigenvalues(product, 6, k=2, seed=s)):
        for bad in (1.5, 2**70):
            with pytest.raises(InputError, match="seed must be an integer"):
                call(bad)
