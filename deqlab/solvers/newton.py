"""Newton's method with the exact Jacobian, for small systems.

For ``g(z) = f(z) − z`` the Newton step solves ``(I − J) δ = f(z) − z`` with ``J = ∂f/∂z`` and sets
``z ← z + δ``; convergence is quadratic near a root where ``I − J`` is invertible. ``J`` is formed
densely per sample (:func:`batched_jacobian`: ``n`` reverse passes, batched), so this is meant for
``n`` up to a few hundred. ``f`` must treat batch samples independently (true for DEQs).

A sample whose ``I − J`` is singular at its iterate (``f(z) = sin z + ½`` at ``z = 0``, say) has no Newton
step: it takes a plain step ``z ← f(z)`` instead (``torch.linalg.solve`` raised its ``LinAlgError`` for
the whole batch). The linear algebra needs float32 or float64 (LAPACK has no half-precision LU).
"""

from __future__ import annotations

from typing import Callable

import torch

from deqlab.errors import InputError, first_line
from deqlab.solvers.result import Monitor, SolverResult, describe


def batched_jacobian(f: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobians ``J_b = ∂f(z)_b/∂z_b`` of ``f: (batch, n) → (batch, n_out)``, shape ``(batch, n_out, n)``.

    One forward pass and ``n_out`` backward passes, batched: the vector-Jacobian product of ``f(z)``
    with ``E_i = e_i`` in every sample's row is ``∂ Σ_b f(z)_{b,i} / ∂z``, whose row ``b`` is row ``i``
    of ``J_b`` because samples do not interact. (``torch.autograd.grad`` with
    ``is_grads_batched=True`` rather than ``torch.func.jacrev``, which gives the same numbers but
    imports ``torch._dynamo`` on first use: 1.1 s of the 5.9 s a default ``deqlab converge`` took,
    where this Jacobian is its only ``torch.func`` call; per call this route takes 0.55–1.12× the
    time of ``jacrev`` at ``n`` = 10–400, batch 64, one thread.)

    torch's autograd records nothing under ``torch.inference_mode`` and refuses to save inference
    tensors (a ``z``, or a weight ``f`` closes over, made under it) for a backward pass; ``jacrev``
    differentiates through both, so those cases, and any other this route cannot run, take it.

    Raises:
        InputError: ``f(z)`` is not connected to ``z`` in torch's graph (computed outside torch, or
            detached), so its Jacobian cannot be formed; the zero matrix would be a wrong answer for
            every ``f`` but a constant one.
    """
    if torch.is_inference_mode_enabled() or z.is_inference():
        return _batched_jacobian_by_jacrev(f, z)
    try:
        # (inside a torch.func transform, a linear solve of LossHessian's products, say, requires_grad_ itself raises)
        zz = z.detach().requires_grad_(True)
        with torch.enable_grad():
            out = f(zz)
        if isinstance(out, torch.Tensor) and out.requires_grad:
            n_out = out.shape[-1]
            seeds = torch.eye(n_out, dtype=out.dtype, device=out.device).unsqueeze(1).expand(n_out, *out.shape)
            (jac,) = torch.autograd.grad(out, zz, seeds, is_grads_batched=True, allow_unused=True, materialize_grads=True)
            return jac.transpose(0, 1)                            # (n_out, batch, n) -> (batch, n_out, n)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as exc:
        try:
            return _batched_jacobian_by_jacrev(f, z)
        except RuntimeError:
            raise exc from None   # (this route's message: e.g. "Can't call numpy() on Tensor that requires grad")
    raise InputError("f(z) does not depend on z through torch operations (it was computed outside torch or "
                     "detached), so its Jacobian cannot be formed")


def _batched_jacobian_by_jacrev(f: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """:func:`batched_jacobian` by ``jacrev`` of ``z ↦ Σ_b f(z)_b`` (samples do not interact), ``(batch, n_out, n)``."""
    from torch.func import jacrev   # (imports torch._dynamo: only on this path)

    return jacrev(lambda zz: f(zz).sum(0))(z).transpose(0, 1)   # (n_out, batch, n) -> (batch, n_out, n)


@torch.no_grad()
def newton(
    f: Callable[[torch.Tensor], torch.Tensor],
    z0: torch.Tensor,
    *,
    atol: float = 1e-8,
    rtol: float = 0.0,
    max_iter: int = 50,
) -> SolverResult:
    """Solve ``z = f(z)`` by Newton's method on ``f(z) − z`` with the exact Jacobian.

    ``max_iter`` counts Newton iterations; each costs one evaluation of ``f`` plus a Jacobian
    (reported in ``extras['n_jacobians']``).
    """
    monitor = Monitor(z0, atol=atol, rtol=rtol, max_iter=max_iter, solver="newton")
    if z0.dtype not in (torch.float32, torch.float64):   # (torch's "lu_cpu not implemented for 'Half'")
        raise InputError(f"newton solves its linear systems in float32 or float64; z0 is {describe(z0)}")
    n = z0.shape[1]
    eye = torch.eye(n, dtype=z0.dtype, device=z0.device)
    z = z0
    steps = 0
    n_jac = 0
    for steps in range(1, max_iter + 1):
        fz = f(z)
        monitor.n_fevals += 1
        monitor.observe(z, fz)
        if monitor.done or monitor.hopeless or steps == max_iter:
            break
        try:
            J = batched_jacobian(f, z)                 # (turns grad on for its own pass: newton runs under no_grad)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as exc:
            # (an f that leaves torch, .numpy() or .item() inside, ran the first step and then failed here with
            # torch's "Can't call numpy() on Tensor that requires grad")
            raise InputError(f"newton differentiates f with torch.autograd, and f could not be: {first_line(exc)} (an f that "
                             "leaves torch, e.g. through .numpy(), needs another solver)") from exc
        n_jac += 1
        delta, info = torch.linalg.solve_ex(eye - J, (fz - z).unsqueeze(-1))
        delta = delta.squeeze(-1)
        singular = (info != 0)[:, None] | ~torch.isfinite(delta)   # (no Newton step: a plain one)
        delta = torch.where(singular, fz - z, delta)
        delta = torch.where(monitor.best_ok[:, None], torch.zeros_like(delta), delta)
        z = z + delta
    return monitor.result(steps, n_jacobians=n_jac)
