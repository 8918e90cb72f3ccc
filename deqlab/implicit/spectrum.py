"""Extreme eigenvalues and the trace of a Hessian known only through ``v ↦ Hv``.

* :func:`extreme_eigenvalues`: ARPACK's implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh``)
  on a :class:`scipy.sparse.linalg.LinearOperator` wrapping the HVP; ``which="LA"`` (largest
  algebraic) and ``"SA"`` (smallest algebraic).
* :func:`hutchinson_trace`: ``tr H ≈ (1/m) Σ_k z_kᵀ H z_k`` with Rademacher probes ``z_k`` (Hutchinson
  1990); the estimator is unbiased with variance ``2(‖H‖_F² − Σ H_ii²)/m``; the standard error below
  is the sample standard deviation over probes divided by ``√m``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


def as_linear_operator(matvec: Callable[[torch.Tensor], torch.Tensor], size: int, dtype=torch.float64):
    """A scipy ``LinearOperator`` (float64) from a torch HVP."""
    from scipy.sparse.linalg import LinearOperator

    def mv(v):
        return matvec(torch.as_tensor(np.ravel(v), dtype=dtype)).detach().cpu().numpy().astype(np.float64)

    return LinearOperator((size, size), matvec=mv, rmatvec=mv, dtype=np.float64)


def extreme_eigenvalues(matvec, size: int, *, k: int = 5, which: str = "LA", tol: float = 1e-10,
                        maxiter: int | None = None, seed: int = 0, dtype=torch.float64) -> np.ndarray:
    """The ``k`` eigenvalues of the symmetric ``H`` at the ``which`` end, sorted ascending."""
    from scipy.sparse.linalg import eigsh

    op = as_linear_operator(matvec, size, dtype)
    v0 = np.random.default_rng(seed).standard_normal(size)
    vals = eigsh(op, k=min(k, size - 1), which=which, tol=tol, maxiter=maxiter, v0=v0, return_eigenvectors=False)
    return np.sort(vals)


@dataclass
class TraceEstimate:
    trace: float
    std_error: float
    probes: int


def hutchinson_trace(matvec, size: int, *, probes: int = 64, seed: int = 0, dtype=torch.float64) -> TraceEstimate:
    """Hutchinson's estimate of ``tr H`` from ``probes`` Rademacher HVPs."""
    if probes < 2:
        raise ValueError(f"probes must be >= 2, got {probes}")
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(probes):
        z = (torch.randint(0, 2, (size,), generator=gen) * 2 - 1).to(dtype)
        samples.append(float(z @ matvec(z)))
    s = np.asarray(samples)
    return TraceEstimate(float(s.mean()), float(s.std(ddof=1) / np.sqrt(probes)), probes)
