"""Extreme eigenvalues and the trace of a Hessian known only through ``v ↦ Hv``.

* :func:`extreme_eigenvalues`: ARPACK's implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh``)
  on a :class:`scipy.sparse.linalg.LinearOperator` wrapping the HVP; ``which="LA"`` (largest
  algebraic) and ``"SA"`` (smallest algebraic).
* :func:`hutchinson_trace`: ``tr H ≈ (1/m) Σ_k z_kᵀ H z_k`` with Rademacher probes ``z_k`` (Hutchinson
  1990); the estimator is unbiased with variance ``2(‖H‖_F² − Σ H_ii²)/m``; the standard error below
  is the sample standard deviation over probes divided by ``√m``.

Device: the HVP runs on ``device`` (by default the ``device`` of the object whose bound method ``matvec``
is, e.g. a :class:`~deqlab.implicit.hvp.DEQHessianOperator` on a GPU; else the CPU). ARPACK runs on the
host, so :func:`extreme_eigenvalues` copies each Lanczos vector host -> ``device`` and each product back
(``.detach().cpu()``: one round trip per HVP) and returns host NumPy eigenvalues. Hutchinson's probes are
drawn by a CPU generator (the same probes on every device) and moved to ``device``; only scalars come back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


def matvec_device(matvec: Callable, device=None) -> torch.device:
    """``device`` if given, else the ``device`` attribute of the object ``matvec`` is bound to, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device(getattr(getattr(matvec, "__self__", None), "device", "cpu"))


def as_linear_operator(matvec: Callable[[torch.Tensor], torch.Tensor], size: int, dtype=torch.float64, device=None):
    """A scipy ``LinearOperator`` (float64, on the host) from a torch HVP that runs on ``device``
    (:func:`matvec_device`): each product copies ``v`` host -> device and ``Hv`` device -> host."""
    from scipy.sparse.linalg import LinearOperator

    device = matvec_device(matvec, device)

    def mv(v):
        hv = matvec(torch.as_tensor(np.ravel(v), dtype=dtype, device=device))
        return hv.detach().cpu().numpy().astype(np.float64)  # device -> host for ARPACK

    return LinearOperator((size, size), matvec=mv, rmatvec=mv, dtype=np.float64)


def extreme_eigenvalues(matvec, size: int, *, k: int = 5, which: str = "LA", tol: float = 1e-10,
                        maxiter: int | None = None, seed: int = 0, dtype=torch.float64, device=None) -> np.ndarray:
    """The ``k`` eigenvalues of the symmetric ``H`` at the ``which`` end, sorted ascending (host NumPy array).

    ARPACK iterates on the host; the HVPs run on ``device`` (module docstring): one host-device round
    trip per product.
    """
    from scipy.sparse.linalg import eigsh

    op = as_linear_operator(matvec, size, dtype, device)
    v0 = np.random.default_rng(seed).standard_normal(size)
    vals = eigsh(op, k=min(k, size - 1), which=which, tol=tol, maxiter=maxiter, v0=v0, return_eigenvectors=False)
    return np.sort(vals)


@dataclass
class TraceEstimate:
    trace: float
    std_error: float
    probes: int


def hutchinson_trace(matvec, size: int, *, probes: int = 64, seed: int = 0, dtype=torch.float64,
                     device=None) -> TraceEstimate:
    """Hutchinson's estimate of ``tr H`` from ``probes`` Rademacher HVPs run on ``device`` (module docstring)."""
    if probes < 2:
        raise ValueError(f"probes must be >= 2, got {probes}")
    device = matvec_device(matvec, device)
    gen = torch.Generator(device="cpu").manual_seed(seed)  # CPU draws: the same probes on every device
    samples = []
    for _ in range(probes):
        signs = torch.randint(0, 2, (size,), generator=gen, device="cpu")
        z = (signs * 2 - 1).to(device=device, dtype=dtype)
        samples.append(float(z @ matvec(z)))
    s = np.asarray(samples)
    return TraceEstimate(float(s.mean()), float(s.std(ddof=1) / np.sqrt(probes)), probes)
