"""Symmetric Hessians from a few (point, gradient) pairs (seed 004), in factored form.

Given ``k`` pairs stacked as columns, ``X = [s₁ … s_k]`` and ``Y = [y₁ … y_k]`` (both ``(n, k)``,
``sᵢ`` a step in parameter/input space, ``yᵢ`` the change of the gradient, so ``yᵢ ≈ H sᵢ``), every
method here returns a symmetric ``H = U diag(S) Uᵀ`` with ``U`` of shape ``(n, r)`` (orthonormal
columns) and ``S`` of shape ``(r,)``, ``r ≤ 2k``: no ``n × n`` matrix is ever formed, so ``n`` can be
``10⁵`` and more. All four answers differ; each result says which one it is (:attr:`SymmetricEstimate.solution`):

- ``rank_k_recovery``: ``H = Y (XᵀY)⁺ Yᵀ``, the unique symmetric matrix with range ``span(Y)`` and
  ``HX = Y``. Exact whenever the pairs are exact and ``rank H ≤ k`` (with ``rank(XᵀY) = rank H``).
  For ``k < rank H`` and ``Y = HX`` it is the Nyström approximation ``HX (XᵀHX)⁺ XᵀH``. For an
  indefinite ``H``, ``XᵀY = XᵀHX`` can be nearly singular although ``X`` is not: raise ``rtol``.
- ``least_change``: Dennis–Moré / Schnabel (1983), ``H = YX⁺ + (YX⁺)ᵀ − X⁺ᵀ(XᵀY)X⁺``, the
  least-Frobenius-norm symmetric ``H`` with ``HX = Y`` (the least change from ``H₀ = 0``). An exact
  symmetric solution exists iff ``XᵀY`` is symmetric. It is NOT the low-rank truth: it vanishes on
  ``range(X)^⊥ × range(X)^⊥`` (seed errata).
- ``symmetric_procrustes``: Higham (1988), ``argmin ‖HX − Y‖_F`` over symmetric ``H``, minimum norm
  among the minimisers; the answer for noisy pairs where ``XᵀY`` is not symmetric. Equal to
  ``least_change`` when an exact symmetric solution exists.
- ``seed_method``: the seed's construction, faithfully: Gram–Schmidt basis ``G`` of ``[X Y]``,
  ``X̂ = GᵀX``, ``Ŷ = GᵀY``, ``J = ŶŶᵀ = U_J S_J U_Jᵀ`` truncated to its non-zero part, eigenproblem
  ``S_J⁺ U_Jᵀ Ŷ X̂ᵀ U_J α̂ = (1/s) α̂``, ``u = G U_J α̂``. The seed calls it "the least norm
  solution"; it is not: its range is ``span(Y)``, so with exact pairs it returns the rank-k recovery.

Shapes: ``X, Y`` are ``(n, k)`` float64 arrays, ``k ≤ n``; ``U`` is ``(n, r)``; ``S`` is ``(r,)``.

Device: this module is NumPy and runs on the host only (the work is ``O(n k²)``, small next to the
gradients that made the pairs). Torch tensors are accepted on any device: :func:`check_pairs` copies
them to the host (``.detach().cpu()``, float64); the estimates are host NumPy arrays.

References: seed ``004_8155ac7c33449a02.txt``; J. E. Dennis and J. J. Moré, SIAM Review 19 (1977);
R. B. Schnabel, "Quasi-Newton methods using multiple secant equations" (1983);
N. J. Higham, "The symmetric Procrustes problem", BIT 28 (1988) 133–143.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import solve_triangular

from deqlab.errors import InputError, require_count

__all__ = ["DEFAULT_RTOL", "METHODS", "SOLUTIONS", "SymmetricEstimate", "estimate", "least_change", "rank_k_recovery",
           "relative_error", "seed_method", "symmetric_procrustes"]

#: Relative cut-off of singular values treated as zero (in ``XᵀY``, ``X`` and the bases below).
DEFAULT_RTOL = 1e-10

METHODS = ("rank_k_recovery", "least_change", "symmetric_procrustes", "seed_method")

#: Which solution of the secant problem ``HX ≈ Y`` each method returns (short form; docstrings say more).
SOLUTIONS = {
    "rank_k_recovery": "Y (X^T Y)^+ Y^T (range span Y; exact if rank H <= k)",
    "least_change": "least-Frobenius-norm symmetric H with HX = Y",
    "symmetric_procrustes": "min ||HX - Y||_F over symmetric H, least norm",
    "seed_method": "seed eigenproblem: = Y (X^T Y)^+ Y^T for exact pairs",
}


@dataclass
class SymmetricEstimate:
    """A symmetric matrix ``H = U diag(S) Uᵀ`` and what it is.

    Attributes:
        U: ``(n, r)`` with orthonormal columns (eigenvectors of ``H`` for the non-zero eigenvalues).
        S: ``(r,)`` eigenvalues, sorted by decreasing magnitude.
        method: one of :data:`METHODS`.
        solution: which solution of the secant problem this is, in words.
        info: method-specific diagnostics (e.g. ``xty_asymmetry``, ``complex_eigenvalues``).
    """

    U: np.ndarray
    S: np.ndarray
    method: str
    solution: str
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.U.shape[0]

    @property
    def rank(self) -> int:
        return int(self.S.shape[0])

    def dense(self) -> np.ndarray:
        """The ``(n, n)`` matrix (only for moderate ``n``)."""
        return (self.U * self.S) @ self.U.T

    def matvec(self, V: np.ndarray) -> np.ndarray:
        """``H V`` for ``V`` of shape ``(n,)`` or ``(n, m)`` in ``O(n r m)``."""
        V = np.asarray(V)
        if V.ndim not in (1, 2) or V.shape[0] != self.n:   # (numpy's 'cannot reshape array of size 7 into shape (6,newaxis)')
            raise InputError(f"V must have shape (n,) or (n, m) with n = {self.n}, got {V.shape}")
        return self.U @ (self.S[:, None] * (self.U.T @ V.reshape(self.n, -1))).reshape((self.rank,) + V.shape[1:])

    def secant_residual(self, X: np.ndarray, Y: np.ndarray) -> float:
        """``‖HX − Y‖_F``; ``Y`` must have ``X``'s shape."""
        HX, Y = self.matvec(X), np.asarray(_on_host(Y))
        if Y.shape != HX.shape:   # (a (n, 1) Y was broadcast against every column: a residual of no pair)
            raise InputError(f"X and Y must have the same shape, got {np.shape(X)} and {Y.shape}")
        return float(np.linalg.norm(HX - Y))

    def frobenius_norm(self) -> float:
        return float(np.linalg.norm(self.S))


# --- input checks ----------------------------------------------------------------------------------

def _on_host(A):
    """A torch tensor (any device) as a host array (``.detach().cpu()``); anything else unchanged. Real
    floating tensors go over as float64 (NumPy has no bfloat16: ``.numpy()`` raised a bare ``TypeError``)."""
    if not (hasattr(A, "detach") and hasattr(A, "cpu")):
        return A
    A = A.detach()
    return (A.double() if A.is_floating_point() else A).cpu().numpy()


def check_pairs(X: np.ndarray, Y: np.ndarray, *, rtol: float = DEFAULT_RTOL) -> tuple[np.ndarray, np.ndarray]:
    """Validate pairs and return them as float64 arrays ``(n, k)``.

    Raises ``ValueError`` (one readable line) for: complex or non-numeric entries, non-2-D arrays,
    different shapes, ``k = 0``, ``k > n``, NaN/inf, a rank-deficient ``X`` (``σ_min(X) ≤ rtol·σ_max(X)``:
    the steps do not determine ``k`` independent secant equations) and an ``rtol`` outside ``[0, 1)``
    (NaN or ≥ 1 would cut every singular value and return a rank-0 estimate). Torch tensors (any
    device) are copied to the host.
    """
    X, Y, _, _ = _checked_pairs(X, Y, rtol=rtol)
    return X, Y


def _checked_pairs(X, Y, *, rtol: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """:func:`check_pairs`, and ``max|X|``, ``max|Y|`` (its finiteness test: the methods scale by them)."""
    # (numbers.Real: NumPy scalars such as np.float32(1e-3) or np.int64(0) are numbers too; they were refused)
    if not (isinstance(rtol, numbers.Real) and not isinstance(rtol, (bool, np.bool_)) and 0 <= rtol < 1):
        raise InputError(f"rtol must be a number in [0, 1), got {rtol!r}")
    X, Y = _on_host(X), _on_host(Y)
    if np.iscomplexobj(X) or np.iscomplexobj(Y):   # float64 conversion would drop the imaginary part
        raise InputError("X and Y must be real; got complex entries")
    try:
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"X and Y must be numeric arrays (n, k): {exc}") from None
    if X.ndim != 2 or Y.ndim != 2:
        raise InputError(f"X and Y must be 2-D arrays (n, k) with one pair per column, got shapes {X.shape} and {Y.shape}")
    if X.shape != Y.shape:
        raise InputError(f"X and Y must have the same shape (n, k), got {X.shape} and {Y.shape}")
    n, k = X.shape
    if k == 0 or n == 0:
        raise InputError(f"need at least one pair and n >= 1, got shape {X.shape}")
    if k > n:
        raise InputError(f"k = {k} pairs exceed the dimension n = {n}: at most n steps can be linearly independent (pairs are columns; transpose?)")
    top_x, top_y = _magnitude(X), _magnitude(Y)
    if not (math.isfinite(top_x) and math.isfinite(top_y)):
        raise InputError("X or Y contains NaN or infinite values")
    # (the test is scale-free; XᵀX of entries near 1e±160 over/underflowed: scaled outside the safe range only)
    Xs = X if _in_safe_range(top_x) else X / _unit_scale(top_x)
    if not _well_conditioned_by_gram(Xs):
        sv = np.linalg.svd(Xs, compute_uv=False)
        if sv[0] == 0.0 or sv[-1] <= rtol * sv[0]:
            cond = np.inf if sv[-1] == 0 else sv[0] / sv[-1]
            raise InputError(f"X is rank-deficient (condition number {cond:.2e} > 1/rtol = {1 / rtol:.0e}): the k steps must be linearly independent")
    return X, Y, top_x, top_y


def _magnitude(A: np.ndarray) -> float:
    """``max|A|`` of a non-empty ``A`` in two reductions and no temporary; NaN if ``A`` holds a NaN."""
    return float(np.maximum(A.max(), -A.min()))


def _unit_scale(A) -> float:
    """The power of two ``c`` with ``1 ≤ max|A|/c < 2`` (1 for a zero ``A``): dividing by it is exact.
    ``A``: an array, or its ``max|A|`` already taken."""
    top = float(np.abs(A).max(initial=0.0)) if isinstance(A, np.ndarray) else float(A)
    return math.ldexp(1.0, math.frexp(top)[1] - 1) if top > 0 else 1.0


#: Entries of ``X`` and ``Y`` between these magnitudes (or zero) leave every product the methods form
#: (``XᵀY`` is at most ``n·2²⁰⁰``, the core's scale ``|Y|/|X|`` within ``2^±200``) inside float64's normal
#: range: there a method whose cut-offs compare no column of ``X`` with one of ``Y`` skips the scaling.
SAFE_MAGNITUDE = (2.0 ** -100, 2.0 ** 100)


def _in_safe_range(top: float) -> bool:
    return top == 0 or SAFE_MAGNITUDE[0] <= top <= SAFE_MAGNITUDE[1]


def _pairs_for(X, Y, rtol: float, *, scale_free: bool = False) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The checked pairs as a method computes on them, ``X/c_x`` and ``Y/c_y`` (both of size about 1,
    :func:`_unit_scale`), and ``c_x, c_y``.

    Every method is scale-equivariant, ``H(aX, bY) = (b/a) H(X, Y)``, but the rank cut-offs of three
    of them compare columns of ``X`` with columns of ``Y`` (Gram–Schmidt of ``[X Y]``, the basis of
    ``[U_X W]``): with ``‖Y‖/‖X‖ = 1e-12`` (a flat loss) the seed method and Procrustes dropped ``Y`` and
    returned a wrong ``H``, and entries near ``1e±300`` overflowed into LAPACK errors. Computing on
    unit-sized pairs and scaling ``S`` by ``c_y/c_x`` (:func:`_rescaled`) removes both. Only
    :func:`rank_k_recovery`, whose cut-offs are relative within one matrix (``sym(XᵀY)``, ``R_Y``), is
    ``scale_free``: it works on the pairs as given (``c_x = c_y = 1``) when their magnitudes are within
    :data:`SAFE_MAGNITUDE` (two ``(n, k)`` copies fewer: at ``n = 500`` a sixth of its time)."""
    X, Y, top_x, top_y = _checked_pairs(X, Y, rtol=rtol)
    if scale_free and _in_safe_range(top_x) and _in_safe_range(top_y):
        return X, Y, 1.0, 1.0
    cx, cy = _unit_scale(top_x), _unit_scale(top_y)
    return X / cx, Y / cy, cx, cy


def _rescaled(S: np.ndarray, cx: float, cy: float) -> np.ndarray:
    """The eigenvalues of the unit-scaled pairs' ``H`` times ``c_y/c_x``; :class:`InputError` if that
    leaves float64's normal range (an overflow, or an underflow that would lose the eigenvalue)."""
    shift = math.frexp(cy)[1] - math.frexp(cx)[1]   # c_y/c_x = 2**shift, which alone may overflow
    if shift == 0:   # (the pairs as given, or of one size: S is the answer)
        return S
    with np.errstate(over="ignore", under="ignore"):
        out = np.ldexp(S, shift)
    if not np.all(np.isfinite(out)) or np.any((S != 0) & (np.abs(out) < np.finfo(np.float64).tiny)):
        raise InputError(f"the estimate's eigenvalues (of size |Y|/|X| = {cy:.3g}/{cx:.3g}) leave float64's range; "
                         "rescale X or Y")
    return out


#: ``λ_min(XᵀX)/λ_max(XᵀX)`` above which ``X`` is accepted without an SVD. The Gram eigenvalues
#: carry an absolute error of about ``k·eps·λ_max``, so a ratio of ``1e-8`` is resolved with a wide
#: margin and proves ``σ_min(X)/σ_max(X) > 1e-4``, far above any sensible ``rtol``.
GRAM_ACCEPT = 1e-8


def _well_conditioned_by_gram(X: np.ndarray) -> bool:
    """Cheap sufficient test that ``X`` has full column rank with a condition number below 1e4:
    ``XᵀX`` (``O(n k²)``, one BLAS call) and its ``k × k`` eigenvalues. When it fails, the caller
    decides with the SVD (ill-conditioned inputs only), so the check's verdict never changes."""
    lam = np.linalg.eigvalsh(X.T @ X)
    return bool(lam[-1] > 0 and lam[0] > GRAM_ACCEPT * lam[-1])


# --- shared linear algebra -----------------------------------------------------------------------

def _rank(singular_values: np.ndarray, rtol: float) -> int:
    """How many of the (decreasing) singular values exceed ``rtol`` times the largest."""
    return int(np.sum(singular_values > rtol * singular_values[0])) if singular_values.size and singular_values[0] > 0 else 0


def orthonormal_basis(A: np.ndarray, *, rtol: float = DEFAULT_RTOL) -> np.ndarray:
    """Orthonormal basis ``(n, m)`` of ``range(A)`` (SVD-revealed rank ``m``); ``O(n·cols²)``."""
    Q, R = np.linalg.qr(A)
    # rank-revealing step on the small triangular factor
    Ur, sr, _ = np.linalg.svd(R)
    m = _rank(sr, rtol)
    return Q @ Ur[:, :m]


#: Columns per block of :func:`gram_schmidt`: the projections onto the basis built so far are matrix
#: products over a block (BLAS-3) rather than one vector operation per (column, basis vector) pair.
GRAM_SCHMIDT_BLOCK = 64


def gram_schmidt(A: np.ndarray, *, rtol: float = DEFAULT_RTOL, block: int = GRAM_SCHMIDT_BLOCK) -> np.ndarray:
    """Gram–Schmidt on the columns of ``A`` ``(n, c)``, in order, twice for orthogonality to round-off.

    Column ``aⱼ`` is kept as ``qⱼ = rⱼ / ‖rⱼ‖``, ``rⱼ`` its remainder after projecting out every column kept
    before it, when ``‖rⱼ‖ > rtol·max‖aᵢ‖``, and dropped otherwise; so the result ``G`` is ``(n, m)``
    with ``m = rank A``. This is the seed's ``G`` ("the Gram Schmidt decomposition of the concatenated
    [X Y]").

    Computed by blocks of ``block`` columns: a block ``W`` is projected twice onto the complement of the
    basis ``Q`` built before it (``W ← W − Q(QᵀW)``: matrix products), then each of its columns twice onto
    the complement of the block's own new vectors. That leaves ``W``'s round-off along ``Q`` of order
    ``eps·‖wⱼ‖``; where the block's own projections cancelled most of a column (``‖rⱼ‖ < ‖wⱼ‖/2``, the
    "twice is enough" test of Kahan and Parlett) that round-off is no longer small beside ``rⱼ``, so such a
    column is projected against ``Q`` once more before it is kept or dropped. The column-by-column modified
    Gram–Schmidt (twice) this replaces made ``n·c²`` separate vector operations (23 s of the seed method's
    30 at ``n = 20000``, ``c = 1000``, against 5 s now, one thread). The two keep the same columns and agree
    to round-off: to ``1e-12`` where a vector is well determined, and to about ``eps·‖aⱼ‖/‖rⱼ‖`` for a
    nearly dependent column, whose direction neither route determines better (``tests/test_lowrank.py``).
    """
    n, c = A.shape
    block = require_count("block", block, minimum=1)
    scale = max(float(np.linalg.norm(A, axis=0).max(initial=0.0)), np.finfo(float).tiny)
    G = np.empty((n, min(n, c)), order="F")   # the kept columns, each contiguous
    m = 0
    for start in range(0, c, block):
        earlier = G[:, :m]
        W = np.array(A[:, start:start + block], dtype=float, order="F")
        for _ in range(2):
            W -= earlier @ (earlier.T @ W)
        first = m
        for j in range(W.shape[1]):
            v = W[:, j]
            before = np.linalg.norm(v)
            for _ in range(2):
                local = G[:, first:m]
                v -= local @ (local.T @ v)
            norm = np.linalg.norm(v)
            if first and norm < before / 2:
                v -= earlier @ (earlier.T @ v)
                norm = np.linalg.norm(v)
            if norm > rtol * scale:
                G[:, m] = v / norm
                m += 1
    return G[:, :m].copy() if m else np.zeros((n, 0))


def _from_core(Q: np.ndarray, C: np.ndarray, *, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """``H = Q C Qᵀ`` (``Q`` orthonormal ``(n, m)``, ``C`` symmetric ``(m, m)``) → ``(U, S)``,
    dropping eigenvalues below ``rtol·max|λ|``, sorted by decreasing ``|λ|``."""
    C = (C + C.T) / 2
    lam, V = np.linalg.eigh(C)
    if lam.size == 0:
        return np.zeros((Q.shape[0], 0)), np.zeros(0)
    keep = np.abs(lam) > rtol * np.abs(lam).max() if np.abs(lam).max() > 0 else np.zeros(lam.shape, bool)
    lam, V = lam[keep], V[:, keep]
    order = np.argsort(-np.abs(lam), kind="stable")
    return Q @ V[:, order], lam[order]


def _hermitian_pinv_factor(M: np.ndarray, *, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """``M⁺ = E diag(1/λ) Eᵀ`` for symmetric ``M`` (eigenvalues ``|λ| ≤ rtol·max|λ|`` dropped):
    returns ``(E, 1/λ)``, ``E`` of shape ``(k, p)``. One ``k × k`` eigh, as ``np.linalg.pinv(M,
    hermitian=True)`` does, without forming ``M⁺``."""
    lam, E = np.linalg.eigh(M)
    top = np.abs(lam).max(initial=0.0)
    keep = np.abs(lam) > rtol * top if top > 0 else np.zeros(lam.shape, bool)
    return E[:, keep], 1.0 / lam[keep]


def _require_span_of_y(method: str, kept: int, rank_y: int, rtol: float) -> None:
    """Refuse an estimate with range ``span(Y)`` that keeps fewer directions (``kept``) than ``Y`` has
    (``rank_y``): then ``HX = Y`` fails on the lost ones, and the method would return a wrong ``H``
    without a word. With ``H = diag(1, −1, 0)`` and ``X = [[1, 0], [1, 0], [0, 1]]``, ``XᵀY = XᵀHX = 0``
    although ``Y ≠ 0``: both span-of-``Y`` methods returned ``H = 0`` (secant residual 100 %)."""
    if kept < rank_y:
        raise InputError(
            f"{method}: the estimate keeps {kept} of the {rank_y} directions of span(Y) (XᵀY is singular on the "
            f"others at rtol {rtol:g}), so no symmetric H with range span(Y) satisfies HX = Y (an indefinite H "
            "with XᵀHX singular?); least_change or symmetric_procrustes (range span[X Y]) apply")


# --- the four methods ----------------------------------------------------------------------------

def rank_k_recovery(X: np.ndarray, Y: np.ndarray, *, rtol: float = DEFAULT_RTOL) -> SymmetricEstimate:
    """``H = Y M⁺ Yᵀ`` with ``M = sym(XᵀY) = (XᵀY + YᵀX)/2`` (``= XᵀY`` for exact pairs).

    ``M⁺`` drops singular values below ``rtol·σ_max(M)``; then ``rank H = rank M``. With
    ``Y = Q_Y R_Y`` (``Q_Y`` an orthonormal basis of ``span Y``) the core is ``R_Y M⁺ R_Yᵀ``, so
    the cost is ``O(n k²)``. Exact (to round-off) when ``Y = H_true X`` and ``rank H_true ≤ k``.
    Non-symmetric ``XᵀY`` (noisy pairs) makes ``HX = Y`` unsatisfiable with this range; the
    relative asymmetry is reported in ``info["xty_asymmetry"]``.
    """
    X, Y, cx, cy = _pairs_for(X, Y, rtol, scale_free=True)
    XtY = X.T @ Y
    M = (XtY + XtY.T) / 2
    # Householder QR: Q has orthonormal columns even when Y is rank-deficient; the rank is revealed
    # by the eigenvalues of the core (dropped below rtol in _from_core), so no SVD of R is needed.
    Q, R = np.linalg.qr(Y)
    E, inv_lam = _hermitian_pinv_factor(M, rtol=rtol)
    if inv_lam.size < R.shape[1]:   # (every direction of sym(XᵀY) kept: as many as span(Y) can have, no SVD)
        _require_span_of_y("rank_k_recovery", inv_lam.size, _rank(np.linalg.svd(R, compute_uv=False), rtol), rtol)
    RE = R @ E
    U, S = _from_core(Q, (RE * inv_lam) @ RE.T, rtol=rtol)
    return SymmetricEstimate(U, _rescaled(S, cx, cy), "rank_k_recovery", SOLUTIONS["rank_k_recovery"], {"xty_asymmetry": _asymmetry(XtY)})


def least_change(X: np.ndarray, Y: np.ndarray, *, rtol: float = DEFAULT_RTOL) -> SymmetricEstimate:
    """Least-change symmetric secant solution (Dennis–Moré; Schnabel 1983) from ``H₀ = 0``:

        H = YX⁺ + (YX⁺)ᵀ − X⁺ᵀ (XᵀY) X⁺,     X⁺ = (XᵀX)⁻¹Xᵀ.

    It is the symmetric ``H`` of least Frobenius norm with ``HX = Y`` when ``XᵀY`` is symmetric.
    When it is not (noisy pairs; see ``info["xty_asymmetry"]``) no symmetric solution exists and
    the printed formula is itself not symmetric; we use ``sym(XᵀY) = (XᵀY + YᵀX)/2`` in the last
    term, which keeps ``H`` symmetric (``HX ≠ Y`` then; use :func:`symmetric_procrustes` for the
    least-squares answer). Its range lies in ``span[X Y]``: with ``Q`` an orthonormal basis of it,
    ``X = Q R_X``, ``Y = Q R_Y``, the core is ``R_Y R_X⁺ + (R_Y R_X⁺)ᵀ − R_X⁺ᵀ sym(XᵀY) R_X⁺``,
    ``O(n k²)``.
    """
    X, Y, cx, cy = _pairs_for(X, Y, rtol)
    k = X.shape[1]
    # One Householder QR of [X Y] gives the basis and both coordinate blocks: X = Q [R₁₁; 0],
    # Y = Q [R₁₂; R₂₂]. X has full column rank (checked), so X⁺ = [R₁₁⁻¹ 0] Qᵀ and XᵀY = R₁₁ᵀR₁₂.
    # Q may carry directions of [X Y] of zero weight (Y in span X); the core's zero eigenvalues drop them.
    Q, R = np.linalg.qr(np.concatenate([X, Y], axis=1))
    R11 = R[:k, :k]
    RY = R[:, k:]
    P = np.zeros((k, R.shape[0]))
    P[:, :k] = solve_triangular(R11, np.eye(k))  # (k, m): X⁺ = P Qᵀ
    A = RY @ P
    XtY = R11.T @ R[:k, k:]
    U, S = _from_core(Q, A + A.T - P.T @ ((XtY + XtY.T) / 2) @ P, rtol=rtol)
    return SymmetricEstimate(U, _rescaled(S, cx, cy), "least_change", SOLUTIONS["least_change"], {"xty_asymmetry": _asymmetry(XtY)})


def symmetric_procrustes(X: np.ndarray, Y: np.ndarray, *, rtol: float = DEFAULT_RTOL) -> SymmetricEstimate:
    """Symmetric Procrustes (Higham 1988): ``argmin_{H = Hᵀ} ‖HX − Y‖_F``, minimum-norm minimiser.

    With the thin SVD ``X = U_X Σ V_Xᵀ`` (``r = rank X``), ``Ỹ = U_Xᵀ Y V_X`` and
    ``W = (I − U_X U_Xᵀ) Y V_X Σ⁻¹``:

        H = U_X A U_Xᵀ + W U_Xᵀ + U_X Wᵀ,   A_ij = (σ_j Ỹ_ij + σ_i Ỹ_ji) / (σ_i² + σ_j²).

    (The block of ``H`` on ``range(X)^⊥ × range(X)^⊥`` is free; zero gives the least norm.)
    ``A`` solves ``min ‖AΣ − Ỹ‖`` over symmetric ``A`` entry-pair by entry-pair; ``W`` makes the
    part of ``HX`` outside ``range X`` exact. Cost ``O(n k²)``.
    """
    X, Y, cx, cy = _pairs_for(X, Y, rtol)
    UX, sx, VXt = np.linalg.svd(X, full_matrices=False)
    keep = sx > rtol * sx[0]
    UX, sx, VX = UX[:, keep], sx[keep], VXt[keep].T
    YV = Y @ VX
    Yt = UX.T @ YV
    A = (Yt * sx[None, :] + Yt.T * sx[:, None]) / (sx[:, None] ** 2 + sx[None, :] ** 2)
    W = (YV - UX @ Yt) / sx[None, :]
    Q = orthonormal_basis(np.concatenate([UX, W], axis=1), rtol=rtol)
    QU, QW = Q.T @ UX, Q.T @ W
    C = QU @ A @ QU.T + QW @ QU.T + QU @ QW.T
    U, S = _from_core(Q, C, rtol=rtol)
    return SymmetricEstimate(U, _rescaled(S, cx, cy), "symmetric_procrustes", SOLUTIONS["symmetric_procrustes"], {"xty_asymmetry": _asymmetry(X.T @ Y)})


#: The floor of :func:`seed_method`'s cut-offs: its Gram–Schmidt keeps a column whose remainder is round-off
#: (about ``eps`` relative) and ``J = ŶŶᵀ`` squares ``Y`` (round-off about ``eps·‖J‖``), so a smaller ``rtol``
#: kept noise: with ``rtol = 0`` (or ``1e-300``) ``G`` had 8 columns in ``R⁶`` and, for ``rank H < k``, the
#: method divided by round-off and returned eigenvalues of ``1e15`` for an ``H`` of size 2.
SEED_RTOL_FLOOR = 100 * np.finfo(np.float64).eps


def seed_method(X: np.ndarray, Y: np.ndarray, *, rtol: float = DEFAULT_RTOL) -> SymmetricEstimate:
    """The seed's method, step by step (seed 004):

    1. ``G`` = Gram–Schmidt basis of ``[X Y]`` (``(n, m)``, ``m ≤ 2k``); ``X̂ = GᵀX``, ``Ŷ = GᵀY``.
    2. ``J = ŶŶᵀ`` (``m × m``, rank ``≤ k``) ``= U_J S_J U_Jᵀ``; keep the ``p`` non-zero singular
       values (``> rtol·max``): ``U_{J(p)}`` ``(m, p)``, ``S_{J(p)}⁺`` the pseudo-inverse.
    3. Eigenproblem ``K α̂ = (1/s) α̂`` with ``K = S_{J(p)}⁺ U_{J(p)}ᵀ Ŷ X̂ᵀ U_{J(p)}`` (``p × p``,
       not symmetric). Eigenvalues ``μ`` with ``|μ| ≤ rtol·max|μ|`` would give ``s = ∞`` and are
       dropped; complex pairs (noisy pairs only) keep their real parts and are counted in
       ``info["complex_eigenvalues"]``.
    4. ``α = U_{J(p)} α̂``, ``u = G α`` normalised to unit length, ``s = 1/μ``; ``H = U_r S_r U_rᵀ``.

    The eigenvectors ``u`` lie in ``span(Y)`` and satisfy ``uᵀY = s uᵀX``, the condition on the
    eigenpairs of any ``H`` with ``HX = Y``. For exact pairs this is ``Y (XᵀY)⁺ Yᵀ`` (the rank-k
    recovery), not the least-norm solution the seed claims (see ``least_change``). For noisy pairs
    the ``u`` are not orthogonal; the returned ``(U, S)`` is the eigendecomposition of the seed's
    ``U_r S_r U_rᵀ`` (so ``info["u_orthogonality"] = ‖U_rᵀU_r − I‖`` records the departure).
    A repeated eigenvalue's ``α̂`` are an orthonormal basis of its eigenspace (:func:`_repeated_eigenspaces`),
    and every cut-off is at least :data:`SEED_RTOL_FLOOR` (the method squares ``Y``).
    """
    X, Y, cx, cy = _pairs_for(X, Y, rtol)
    rtol = max(rtol, SEED_RTOL_FLOOR)   # (after check_pairs: X's own rank test keeps the caller's rtol)
    G = gram_schmidt(np.concatenate([X, Y], axis=1), rtol=rtol)
    Xh, Yh = G.T @ X, G.T @ Y
    J = Yh @ Yh.T
    UJ, SJ, _ = np.linalg.svd(J, hermitian=True)
    p = _rank(SJ, rtol)
    UJp, SJp = UJ[:, :p], SJ[:p]
    K = (UJp.T @ Yh @ Xh.T @ UJp) / SJp[:, None]
    mu, alpha_hat = np.linalg.eig(K)
    keep = np.abs(mu) > rtol * np.abs(mu).max() if p else np.zeros(0, bool)
    _require_span_of_y("seed_method", int(keep.sum()), p, rtol)
    n_complex = int(np.sum(np.abs(mu.imag[keep]) > rtol * np.abs(mu[keep]).max())) if keep.any() else 0
    alpha_hat = _repeated_eigenspaces(K, mu[keep], alpha_hat[:, keep])
    mu, alpha_hat = mu[keep].real, alpha_hat.real
    Ur = G @ (UJp @ alpha_hat)
    Ur = Ur / np.linalg.norm(Ur, axis=0, keepdims=True)
    Sr = 1.0 / mu
    # U_r is orthonormal for exact pairs; in general re-diagonalise U_r S_r U_rᵀ in an orthonormal basis
    Q = orthonormal_basis(Ur, rtol=rtol)
    B = Q.T @ Ur
    U, S = _from_core(Q, (B * Sr) @ B.T, rtol=rtol)
    info = {
        "complex_eigenvalues": n_complex,
        "u_orthogonality": float(np.linalg.norm(Ur.T @ Ur - np.eye(Ur.shape[1]))) if Ur.size else 0.0,
        "gram_schmidt_rank": G.shape[1],
        "J_rank": p,
    }
    return SymmetricEstimate(U, _rescaled(S, cx, cy), "seed_method", SOLUTIONS["seed_method"], info)


#: Eigenvalues ``μ`` of the seed's ``K`` closer than this (relative to ``max|μ|``) are one repeated eigenvalue.
EIGENVALUE_CLUSTER_RTOL = 1e-8


def _repeated_eigenspaces(K: np.ndarray, mu: np.ndarray, alpha_hat: np.ndarray) -> np.ndarray:
    """``alpha_hat`` with the columns of each repeated eigenvalue ``μ`` of ``K`` replaced by an orthonormal
    basis of its eigenspace (the null space of ``K − μ̄I``, from its SVD).

    ``eig`` returns *some* eigenvectors of a repeated eigenvalue, neither orthogonal nor always spanning
    its eigenspace (``K`` is not symmetric): on exact pairs with ``H = 2P`` (``P`` a projector of rank
    ``k``, all ``μ = 1/2``) the seed's ``U_r S_r U_rᵀ`` had eigenvalues ``2.6, 2.0, 1.4`` instead of
    ``2, 2, 2``, and with ``H`` of eigenvalues ``1, 1, −2`` it returned two parallel ``u`` (rank 2, error
    58 %). Any vector of the eigenspace is the seed's eigenvector, so an orthonormal basis is as
    faithful; ``G U_J`` has orthonormal columns, so the ``u`` it gives are orthonormal too. A cluster
    whose ``K − μ̄I`` has no null space of its size (noisy pairs: not an eigenspace) keeps ``eig``'s."""
    from scipy.sparse.csgraph import connected_components

    if mu.size < 2:
        return alpha_hat
    scale = np.abs(mu).max()
    close = np.abs(mu[:, None] - mu[None, :]) <= EIGENVALUE_CLUSTER_RTOL * scale
    n_clusters, label = connected_components(close, directed=False)
    if n_clusters == mu.size:
        return alpha_hat
    alpha_hat = alpha_hat.copy()
    for c in range(n_clusters):
        idx = np.flatnonzero(label == c)
        if idx.size < 2 or np.any(np.abs(mu[idx].imag) > EIGENVALUE_CLUSTER_RTOL * scale):
            continue
        _, sv, Vt = np.linalg.svd(K - mu[idx].real.mean() * np.eye(K.shape[0]))
        if sv[-idx.size] <= np.sqrt(EIGENVALUE_CLUSTER_RTOL) * max(sv[0], scale):
            alpha_hat[:, idx] = Vt[-idx.size:].T
    return alpha_hat


ESTIMATORS = {
    "rank_k_recovery": rank_k_recovery,
    "least_change": least_change,
    "symmetric_procrustes": symmetric_procrustes,
    "seed_method": seed_method,
}


def estimate(method: str, X: np.ndarray, Y: np.ndarray, *, rtol: float = DEFAULT_RTOL) -> SymmetricEstimate:
    """Dispatch by name (one of :data:`METHODS`)."""
    if not isinstance(method, str) or method not in ESTIMATORS:   # (a list was a bare "unhashable type" TypeError)
        raise InputError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    return ESTIMATORS[method](X, Y, rtol=rtol)


# --- comparing factored matrices ------------------------------------------------------------------

def _factorisation(U, S) -> tuple[np.ndarray, np.ndarray]:
    """``U, S`` as finite real float64 arrays (torch tensors copied to the host); else :class:`InputError`: a NaN
    ``U_true`` was reported as "H_true = 0", an infinite ``S_true`` gave a relative error of NaN."""
    U, S = _on_host(U), _on_host(S)
    if np.iscomplexobj(U) or np.iscomplexobj(S):
        raise InputError("the factorisations must be real, got complex entries")
    try:
        U, S = np.asarray(U, dtype=np.float64), np.asarray(S, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("the factorisations must be numeric arrays: U (n, r) and S (r,)") from None
    if not (np.isfinite(U).all() and np.isfinite(S).all()):
        raise InputError("the factorisations contain NaN or infinite values")
    return U, S


def _factored_distance_over(c: float, U1: np.ndarray, S1: np.ndarray, U2: np.ndarray, S2: np.ndarray) -> float:
    """:func:`factored_frobenius_distance` divided by ``c`` (a power of two, so the division is exact), computed on
    ``S/c``: the squares of eigenvalues near 1e200 overflowed (the distance came back inf, a relative error NaN)
    and those near 1e-200 underflowed (a non-zero ``H_true`` was called 0)."""
    U1, S1, U2, S2 = (*_factorisation(U1, S1), *_factorisation(U2, S2))
    if U1.ndim != 2 or U2.ndim != 2 or U1.shape[0] != U2.shape[0] or S1.shape != U1.shape[1:] or S2.shape != U2.shape[1:]:
        # (numpy's 'all the input array dimensions except for the concatenation axis must match exactly')
        raise InputError(f"the two factorisations must be U (n, r) with S (r,) of one n; got U {U1.shape}, S {S1.shape} "
                         f"and U {U2.shape}, S {S2.shape}")
    W = np.concatenate([U1, U2], axis=1)
    D = np.concatenate([S1, -S2]) / c
    if W.shape[1] == 0:
        return 0.0
    R = np.linalg.qr(W, mode="r")
    return float(np.linalg.norm((R * D) @ R.T))


def factored_frobenius_distance(U1: np.ndarray, S1: np.ndarray, U2: np.ndarray, S2: np.ndarray) -> float:
    """``‖U₁ diag(S₁) U₁ᵀ − U₂ diag(S₂) U₂ᵀ‖_F`` without forming ``n × n`` matrices.

    With ``W = [U₁ U₂]`` and ``D = diag(S₁, −S₂)``: ``‖W D Wᵀ‖_F² = tr((D G)²)``, ``G = WᵀW``.
    Computed as ``‖R D Rᵀ‖_F`` with ``W = Q R`` (QR), which avoids the cancellation of the trace
    form, on ``D`` scaled to unit size (no over- or underflow of its squares). ``U`` need not be orthonormal.
    """
    (U1, S1), (U2, S2) = _factorisation(U1, S1), _factorisation(U2, S2)
    c = _unit_scale(np.concatenate([np.ravel(S1), np.ravel(S2)]))
    return _factored_distance_over(c, U1, S1, U2, S2) * c


def relative_error(est: SymmetricEstimate, U_true: np.ndarray, S_true: np.ndarray) -> float:
    """``‖H − H_true‖_F / ‖H_true‖_F`` in factored form (``H_true = U_true diag(S_true) U_trueᵀ``)."""
    U_true, S_true = _factorisation(U_true, S_true)
    c = _unit_scale(np.concatenate([np.ravel(est.S), np.ravel(S_true)]))
    distance = _factored_distance_over(c, est.U, est.S, U_true, S_true)   # (checks the shapes first)
    c_ref = _unit_scale(np.ravel(S_true))    # (its own scale: an estimate 1e200 times H_true would underflow it)
    ref = _factored_distance_over(c_ref, U_true, S_true, U_true[:, :0], np.asarray(S_true)[:0])
    if not ref > 0:   # (a zero H_true was a ZeroDivisionError)
        raise InputError("the relative error to H_true = 0 is not defined: compare factored_frobenius_distance instead")
    with np.errstate(over="ignore"):   # (c / c_ref is a power of two: the product is exact or inf)
        return float(np.ldexp(distance / ref, int(np.frexp(c)[1]) - int(np.frexp(c_ref)[1])))


def random_low_rank(n: int, rank: int, *, rng: np.random.Generator, definite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A random symmetric ``H = U diag(S) Uᵀ`` of the given rank: ``U`` Haar-orthonormal ``(n, rank)``;
    ``S`` ``N(0,1)`` (indefinite) or ``|N(0,1)|+0.1`` (``definite``). Returns ``(U, S)``."""
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    n, rank = require_count("n", n, minimum=0), require_count("rank", rank, minimum=0)
    if rank > n:   # (QR would return n columns: a matrix of rank n, not the rank asked for)
        raise InputError(f"rank must be <= n = {n}, got {rank}")
    U, _ = np.linalg.qr(rng.standard_normal((n, rank)))
    S = rng.standard_normal(rank)
    if definite:
        S = np.abs(S) + 0.1
    return U, S


def _asymmetry(M: np.ndarray) -> float:
    """``‖M − Mᵀ‖_F / ‖M‖_F`` (0 for a symmetric ``M``)."""
    norm = np.linalg.norm(M)
    return float(np.linalg.norm(M - M.T) / norm) if norm > 0 else 0.0
