"""Extreme eigenvalues and the trace of a Hessian known only through ``v ↦ Hv``.

* :func:`extreme_eigenvalues`: ARPACK's implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh``)
  on a :class:`scipy.sparse.linalg.LinearOperator` wrapping the HVP; ``which="LA"`` (largest
  algebraic) and ``"SA"`` (smallest algebraic).
* :func:`spectral_density`: the eigenvalue density by stochastic Lanczos quadrature (SLQ).
* :func:`hutchinson_trace`: ``tr H ≈ (1/m) Σ_k z_kᵀ H z_k`` with Rademacher probes ``z_k`` (Hutchinson
  1990); the estimator is unbiased with variance ``2(‖H‖_F² − Σ H_ii²)/m``; the standard error below
  is the sample standard deviation over probes divided by ``√m``.

Every routine's ``matvec`` may be a function of a torch vector, a
:class:`~deqlab.implicit.curvature.LossHessian` or :class:`~deqlab.implicit.hvp.DEQHessianOperator` itself,
or any scipy ``LinearOperator`` (:func:`torch_product`).

Device: the HVP runs on ``device`` (by default the ``device`` of the object whose bound method ``matvec``
is, e.g. a :class:`~deqlab.implicit.hvp.DEQHessianOperator` on a GPU; else the CPU). ARPACK runs on the
host, so :func:`extreme_eigenvalues` copies each Lanczos vector host -> ``device`` and each product back
(``.detach().cpu()``: one round trip per HVP) and returns host NumPy eigenvalues. Hutchinson's probes are
drawn by a CPU generator (the same probes on every device) and moved to ``device``; only scalars come back.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from deqlab.errors import DeqlabError, InputError, NotConvergedError, require_count, require_number, require_real_dtype
from deqlab.solvers.result import all_finite, describe, tensor_norm


def torch_product(operator) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v ↦ Hv`` on torch vectors from whatever a caller hands the routines below as ``matvec``:

    * a function of a torch vector (``op.matvec`` of a :class:`~deqlab.implicit.hvp.DEQHessianOperator`,
      ``loss_hessian.hvp``, a user's lambda): used as it is;
    * an object with a torch ``hvp`` method (:class:`~deqlab.implicit.curvature.LossHessian`) or, not
      itself callable, a torch ``matvec`` method (:class:`~deqlab.implicit.hvp.DEQHessianOperator`);
    * any other scipy ``LinearOperator`` (NumPy in and out): each product goes through the host in float64.

    Anything else is refused with :class:`~deqlab.errors.InputError`. (Passing a ``LossHessian`` itself
    used to end in ``AttributeError`` inside the first product: scipy's call returned a NumPy array.)"""
    from scipy.sparse.linalg import LinearOperator

    hvp = getattr(operator, "hvp", None)
    if callable(hvp):
        return hvp
    if isinstance(operator, LinearOperator):
        def product(v: torch.Tensor) -> torch.Tensor:
            hv = operator.matvec(v.detach().cpu().numpy().astype(np.float64))
            return torch.as_tensor(np.ravel(hv), dtype=v.dtype, device=v.device)
        return product
    matvec = getattr(operator, "matvec", None)
    if not callable(operator) and callable(matvec):
        return matvec
    if callable(operator):
        return operator
    raise InputError("matvec must be a Hessian-vector product: a function of a torch vector, an operator with "
                     f"a torch .hvp or .matvec method, or a scipy LinearOperator; got {type(operator).__name__}")


def matvec_device(matvec: Callable, device=None) -> torch.device:
    """``device`` if given, else the ``device`` attribute of the object ``matvec`` is bound to, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device(getattr(getattr(matvec, "__self__", None), "device", "cpu"))


def checked(matvec: Callable[[torch.Tensor], torch.Tensor], size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``matvec`` with each product checked: an ``(size,)`` result (else :class:`~deqlab.errors.InputError`),
    finite (else :class:`~deqlab.errors.DeqlabError`: an operator that returns NaN/inf for a finite
    vector has no spectrum; ARPACK failed on it with LAPACK noise on stderr, Hutchinson and Lanczos
    returned NaN). One host read per product, which every caller below makes anyway."""

    def product(v: torch.Tensor) -> torch.Tensor:
        hv = matvec(v)
        if isinstance(hv, np.ndarray):   # a user's product that works in NumPy
            hv = torch.as_tensor(hv, device=v.device)
        if not isinstance(hv, torch.Tensor) or not hv.is_floating_point():
            raise InputError(f"the operator must return a real floating tensor of shape ({size},), returned {describe(hv)}")
        if tuple(hv.shape) != (size,):
            raise InputError(f"the operator must map ({size},) to ({size},), returned shape {tuple(hv.shape)}")
        if hv.dtype != v.dtype or hv.device != v.device:
            # (a float32 operator, e.g. a LossHessian of a float32 model, probed in the default float64 worked in eigsh,
            # which casts, but failed in the trace and the density with torch's 'dot: expected both vectors to have
            # same dtype'; its products carry float32's accuracy either way)
            hv = hv.to(dtype=v.dtype, device=v.device)
        if not all_finite(hv):
            raise DeqlabError("the operator returned NaN or inf for a finite vector: its spectrum is not defined")
        return hv

    return product


def as_linear_operator(matvec: Callable[[torch.Tensor], torch.Tensor], size: int, dtype=torch.float64, device=None):
    """A scipy ``LinearOperator`` (float64, on the host) from a torch HVP that runs on ``device``
    (:func:`matvec_device`): each product copies ``v`` host -> device and ``Hv`` device -> host."""
    from scipy.sparse.linalg import LinearOperator

    matvec = torch_product(matvec)
    device = matvec_device(matvec, device)
    product = checked(matvec, size)

    def mv(v):
        hv = product(torch.as_tensor(np.ravel(v), dtype=dtype, device=device))
        return hv.detach().cpu().numpy().astype(np.float64)  # device -> host for ARPACK

    return LinearOperator((size, size), matvec=mv, rmatvec=mv, dtype=np.float64)


def symmetry_rtol(dtype: torch.dtype) -> float:
    """How far from symmetric a product may look before :func:`require_symmetric` refuses it, relative
    to the Cauchy–Schwarz bound ``‖Hu‖‖v‖ + ‖Hv‖‖u‖``: ``eps^¼`` of the dtype (1.2e-4 in float64,
    1.9e-2 in float32). Round-off in an exact HVP is about ``cond(I − J)·eps``, so a DEQ Hessian passes
    up to ``cond ≈ 1e12`` in float64; a non-symmetric matrix of size ``n`` shows about ``1/√n`` here
    (3e-3 at ``n = 10⁵``)."""
    return float(torch.finfo(dtype).eps) ** 0.25


def _seed(seed, *, minimum: int = -(2**63)) -> int:
    """``seed`` as a Python ``int`` in ``[minimum, 2**63)``: a NumPy integer reached torch's ``manual_seed`` as
    "TypeError: an integer is required", 1.5 as a RuntimeError and 2**70 as an overflow ValueError."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not minimum <= seed < 2**63:
        raise InputError(f"seed must be an integer >= {'0' if minimum == 0 else '-2**63'} and below 2**63, got {seed!r}")
    return int(seed)


def require_symmetric(product: Callable[[torch.Tensor], torch.Tensor], size: int, *, dtype=torch.float64,
                      device=None, seed: int = 0) -> None:
    """Refuse with :class:`~deqlab.errors.InputError` an operator that is not symmetric, which ARPACK's
    ``eigsh`` and Lanczos quadrature assume without checking (on ``A`` non-symmetric they return
    numbers that are not its eigenvalues, without a word). One probe, two products: for random
    ``u, v`` (a CPU generator seeded by ``seed``), ``|vᵀHu − uᵀHv|`` must be within
    :func:`symmetry_rtol` of ``‖Hu‖‖v‖ + ‖Hv‖‖u‖``."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    u, v = (torch.randn(size, generator=gen, dtype=dtype, device="cpu").to(device) for _ in range(2))
    Hu, Hv = product(u), product(v)
    asymmetry = abs(float(v @ Hu) - float(u @ Hv))
    # (the norms by tensor_norm: torch.linalg.vector_norm of an operator's products near 1e-170 is 0, and the
    # round-off of such a symmetric operator would have been refused against a bound of 0)
    norm_u, norm_v, norm_Hu, norm_Hv = (tensor_norm(t) for t in (u, v, Hu, Hv))
    bound = norm_Hu * norm_v + norm_Hv * norm_u
    if asymmetry > symmetry_rtol(dtype) * bound:
        raise InputError(f"the operator is not symmetric: for random u, v, |vᵀHu − uᵀHv| = {asymmetry:.3g} is "
                         f"{asymmetry / bound:.1e} of ‖Hu‖‖v‖ + ‖Hv‖‖u‖ (allowed: {symmetry_rtol(dtype):.1e}); eigsh and "
                         "Lanczos quadrature need a symmetric H (a Hessian), for which these are equal")


#: ARPACK ``eigsh``'s ``which`` for a symmetric operator: largest/smallest algebraic, largest/smallest
#: magnitude, both ends.
EIGSH_WHICH = ("LA", "SA", "LM", "SM", "BE")


def extreme_eigenvalues(matvec, size: int, *, k: int = 5, which: str = "LA", tol: float = 1e-10,
                        maxiter: int | None = None, seed: int = 0, dtype=torch.float64, device=None) -> np.ndarray:
    """The ``k`` eigenvalues of the symmetric ``H`` at the ``which`` end, sorted ascending (host NumPy array).

    ARPACK iterates on the host; the HVPs run on ``device`` (module docstring): one host-device round
    trip per product. ``H`` is first probed for symmetry (:func:`require_symmetric`, two products).
    """
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigsh

    require_count("size", size, minimum=2)
    require_real_dtype(dtype)
    if maxiter is not None:
        require_count("maxiter", maxiter)
    require_number("tol", tol, inclusive=True)   # (0: ARPACK's machine precision)
    seed = _seed(seed, minimum=0)   # (NumPy's seeding refused -1 or 1.5 with its own ValueError/TypeError)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < size:
        # ARPACK needs k < size; clamping would return fewer eigenvalues than asked for without a word
        raise InputError(f"k must be an integer with 1 <= k < size = {size} (ARPACK), got {k!r}")
    if which not in EIGSH_WHICH:
        raise InputError(f"which must be one of {', '.join(EIGSH_WHICH)} (ARPACK's ends of the spectrum), got {which!r}")
    if which == "BE" and k < 2:   # (ARPACK error -13 'NEV and WHICH = 'BE' are incompatible', after the products)
        raise InputError("which='BE' takes eigenvalues from both ends: k must be >= 2")
    product = torch_product(matvec)
    require_symmetric(checked(product, size), size, dtype=dtype, device=matvec_device(product, device), seed=seed)
    op = as_linear_operator(product, size, dtype, device)
    v0 = np.random.default_rng(seed).standard_normal(size)
    try:
        vals = eigsh(op, k=k, which=which, tol=tol, maxiter=maxiter, v0=v0, return_eigenvectors=False)
    except ArpackNoConvergence as exc:   # (a RuntimeError of scipy's, which the CLI would take for a bug)
        raise NotConvergedError(f"eigsh (ARPACK, which={which}) did not converge: {len(exc.eigenvalues)} of {k} "
                                f"eigenvalues to tol {tol:g} within maxiter = {maxiter or 10 * size} restarts; raise "
                                f"maxiter or loosen tol") from None
    except ArpackError as exc:
        if not np.any(op.matvec(v0)):
            # H v0 = 0 for a random v0 means H = 0 (a non-zero H's null space has measure zero): every eigenvalue is 0,
            # which ARPACK reported as 'error -9: Starting vector is zero' (its Lanczos breaks down at once)
            return np.zeros(k)
        raise DeqlabError(f"eigsh (ARPACK, which={which}) failed: {' '.join(str(exc).split())}") from None
    return np.sort(vals)


@dataclass
class TraceEstimate:
    trace: float
    std_error: float
    probes: int


def hutchinson_trace(matvec, size: int, *, probes: int = 64, seed: int = 0, dtype=torch.float64,
                     device=None) -> TraceEstimate:
    """Hutchinson's estimate of ``tr H`` from ``probes`` Rademacher HVPs run on ``device`` (module docstring)."""
    require_count("probes", probes, minimum=2)    # (two at least: the standard error needs a spread)
    seed = _seed(seed)
    require_count("size", size)
    require_real_dtype(dtype)
    matvec = torch_product(matvec)
    device = matvec_device(matvec, device)
    matvec = checked(matvec, size)
    gen = torch.Generator(device="cpu").manual_seed(seed)  # CPU draws: the same probes on every device
    samples = []
    for _ in range(probes):
        signs = torch.randint(0, 2, (size,), generator=gen, device="cpu")
        z = (signs * 2 - 1).to(device=device, dtype=dtype)
        samples.append(float(z @ matvec(z)))
    s = np.asarray(samples)
    return TraceEstimate(float(s.mean()), float(s.std(ddof=1) / np.sqrt(probes)), probes)


# --- spectral density by stochastic Lanczos quadrature --------------------------------------------


@dataclass
class SpectralDensity:
    """Stochastic Lanczos quadrature of the eigenvalue density of a symmetric ``n × n`` operator.

    ``nodes[l, j]`` and ``weights[l, j]`` (both ``(probes, steps)``) are the Gauss quadrature nodes
    (Ritz values of the ``steps``-step Lanczos tridiagonal matrix from probe ``l``) and weights
    (squared first components of its eigenvectors; each row sums to 1). For every polynomial ``p``
    of degree ``≤ 2·steps − 1``, ``Σ_j weights[l, j] p(nodes[l, j]) = v_lᵀ p(H) v_l`` exactly, and the
    average over probes of ``v_lᵀ p(H) v_l`` estimates ``tr p(H) / n`` (Hutchinson). So the measure
    ``(1/probes) Σ_l Σ_j weights[l, j] δ(t − nodes[l, j])`` estimates the spectral measure
    ``(1/n) Σ_i δ(t − λ_i)`` (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019, as PyHessian
    draws it). Rows shorter than ``steps`` (Lanczos broke down on an invariant subspace) are padded
    with zero weights.
    """

    nodes: np.ndarray
    weights: np.ndarray
    size: int

    def density(self, grid: np.ndarray, sigma: float) -> np.ndarray:
        """The measure smoothed by a Gaussian of width ``sigma``: a density on ``grid`` (same shape)
        integrating to 1 over the real line (fraction of eigenvalues per unit of eigenvalue)."""
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.floating)) or not 0 < sigma < np.inf:
            raise InputError(f"sigma must be a finite width > 0, got {sigma!r}")   # (0 or NaN gave a NaN density)
        t = np.asarray(grid, dtype=float)[..., None, None]
        g = np.exp(-0.5 * ((t - self.nodes) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        return (g * self.weights).sum(axis=(-1, -2)) / self.nodes.shape[0]

    def moment(self, k: int) -> float:
        """Estimate of ``tr(Hᵏ)/n`` (exact in expectation for ``k ≤ 2·steps − 1``)."""
        return float((self.weights * self.nodes**k).sum(axis=1).mean())


def lanczos_quadrature(matvec: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor, steps: int,
                       *, breakdown: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature nodes and weights of ``H`` for the start vector ``v`` (shape ``(n,)``).

    ``steps`` Lanczos steps with full reorthogonalisation (the ``steps × n`` basis is kept; without
    it, lost orthogonality makes ghost copies of converged Ritz values) give the tridiagonal
    ``T = tridiag(β, α, β)``; with ``T = Q diag(θ) Qᵀ`` the nodes are ``θ`` and the weights
    ``Q[0, :]²`` (they sum to 1). Stops early when ``β_j < breakdown · max|α|`` (an invariant
    subspace: the quadrature is then exact for every polynomial). Returns ``(nodes, weights)``,
    each of length ``≤ steps``.
    """
    matvec = checked(matvec, v.shape[0])
    # (norms by tensor_norm: torch.linalg.vector_norm sums the squares as they are, so an operator of size 1e-170
    # had β = 0 after one step, every weight on one node, the mean: a wrong density without a word; one of size
    # 1e160 had β = inf and NaN nodes)
    q = v / tensor_norm(v)
    basis = [q]
    alphas, betas = [], []
    for j in range(steps):
        w = matvec(q)
        alpha = torch.dot(w, q)
        alphas.append(float(alpha))
        Q = torch.stack(basis)
        w = w - Q.T @ (Q @ w)  # full reorthogonalisation (twice is enough: Kahan-Parlett)
        w = w - Q.T @ (Q @ w)
        beta = tensor_norm(w)
        if j == steps - 1 or beta < breakdown * max(abs(a) for a in alphas) or beta == 0.0:
            break
        betas.append(beta)
        q = w / beta
        basis.append(q)
    T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
    theta, vecs = np.linalg.eigh(T)
    return theta, vecs[0] ** 2


def spectral_density(matvec: Callable[[torch.Tensor], torch.Tensor], n: int, *, probes: int = 4, steps: int = 40,
                     seed: int = 0, dtype=torch.float64, device=None) -> SpectralDensity:
    """Eigenvalue density of the symmetric ``H`` (``n × n``) known only through ``matvec``
    (``(n,) → (n,)`` torch tensors), by stochastic Lanczos quadrature: ``probes`` Rademacher start
    vectors, ``min(steps, n)`` Lanczos steps each, so ``probes · steps`` matrix-vector products and
    ``steps · n`` numbers of memory. See :class:`SpectralDensity` for what is estimated and
    :meth:`SpectralDensity.density` to draw it. ``H`` is first probed for symmetry
    (:func:`require_symmetric`, two products). Shared by the matrix-free Hessian demo and any
    caller with a matvec (a Jacobian ``I − J``'s symmetric part, a Gauss-Newton matrix). The probes are
    drawn on the CPU (reproducible across devices) and moved to ``device`` (:func:`matvec_device`: the
    operator's when ``matvec`` is a bound method of one with a ``device``, else the CPU).
    """
    for name, count in (("probes", probes), ("steps", steps), ("n", n)):
        require_count(name, count)
    seed = _seed(seed)
    require_real_dtype(dtype)
    steps = min(steps, n)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    matvec = torch_product(matvec)
    device = matvec_device(matvec, device)
    require_symmetric(checked(matvec, n), n, dtype=dtype, device=device, seed=seed)
    nodes = np.zeros((probes, steps))
    weights = np.zeros((probes, steps))
    for probe in range(probes):
        v = (torch.randint(0, 2, (n,), generator=gen, device="cpu") * 2 - 1).to(dtype=dtype, device=device)
        theta, w = lanczos_quadrature(matvec, v, steps)
        nodes[probe, : len(theta)] = theta
        weights[probe, : len(w)] = w
        nodes[probe, len(theta):] = theta[-1] if len(theta) else 0.0  # padded rows: zero weight
    return SpectralDensity(nodes, weights, n)
