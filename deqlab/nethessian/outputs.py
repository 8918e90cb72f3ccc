"""Derivatives of ``J`` and ``Hd`` with respect to the network's outputs (seed 002, eqs. 24–26, corrected).

The seed asks for ``∂J_jk/∂y_m`` and ``∂Hd_jk/∂y_m`` and writes them as ``Σ_q H_jkq / J_mq``
(eq. 25) and ``Σ_q T_jkq / J_mq`` (eq. 26): an element-wise division by Jacobian entries, which is
not a chain rule (kept as a pitfall in :mod:`deqlab.nethessian.pitfalls`, tested to be wrong).

What is well-posed: ``J`` and ``Hd`` are functions of ``x``. They are functions of ``y`` only where
``x ↦ y`` is locally invertible, i.e. ``d = n_out`` and ``det J ≠ 0`` (inverse function theorem);
then ``∂x_q/∂y_m = (J⁻¹)_qm`` and the chain rule gives::

    ∂J_jk/∂y_m  = Σ_q H_jkq (J⁻¹)_qm          ∂Hd_jk/∂y_m = Σ_q T_jkq (J⁻¹)_qm

For ``d ≠ n_out`` (e.g. a scalar PINN output of a 2-D input) the derivative does not exist.
It is also not needed: to train on a loss of ``J``/``Hd``/``Δy``, backpropagate to the
*parameters* through the forward recursion with ordinary autograd, as ``deqlab nethessian pinn`` does.
"""

from __future__ import annotations

import torch

from deqlab.errors import ConfigError, NotConvergedError, require_count, require_number
from deqlab.implicit.conditioning import MAX_COND_EPS

#: Jacobians with a larger 2-norm condition number are treated as not invertible (and, in any dtype, those
#: whose ``cond·eps`` exceeds :data:`~deqlab.implicit.conditioning.MAX_COND_EPS`: :func:`condition_limit`).
MAX_CONDITION = 1e12


def condition_limit(max_condition: float, dtype: torch.dtype) -> float:
    """The largest condition number of a Jacobian in ``dtype`` that :func:`derivatives_wrt_outputs` inverts:
    ``max_condition``, but at most ``MAX_COND_EPS / eps`` of the dtype, the bound of every implicit derivative
    (:mod:`deqlab.implicit.conditioning`). The entries of ``J`` carry the dtype's round-off, so ``J⁻¹`` is off by
    about ``cond·eps``: a float32 Jacobian of condition 1.2e7 passed the fixed 1e12 and its ``∂J/∂y`` came back
    14 % off the float64 route's, without a word (float64: 1e12 as before; float32: 8.4e4)."""
    return min(float(max_condition), MAX_COND_EPS / torch.finfo(dtype).eps)


def derivatives_wrt_outputs(
    jacobian: torch.Tensor, hessian: torch.Tensor, third: torch.Tensor | None = None, *, max_condition: float = MAX_CONDITION
):
    """``(∂J/∂y, ∂Hd/∂y)`` for a square, locally invertible network.

    Args:
        jacobian: ``(batch, n, d)`` with ``n == d``.
        hessian: ``(batch, n, d, d)`` (full Hessian, ``H[b,j,k,q] = ∂J_jk/∂x_q``).
        third: ``(batch, n, d, d)`` with ``T[b,j,k,q] = ∂Hd_jk/∂x_q``, or ``None``.

    Returns:
        ``dJ_dy (batch, n, d, n)`` with ``[b,j,k,m] = ∂J_jk/∂y_m`` and ``dHd_dy`` of the same shape
        (``None`` without ``third``).

    Raises:
        ConfigError: ``n != d`` (ill-posed: ``x`` is not a function of ``y``) or a Jacobian whose
        condition number exceeds ``max_condition`` or, whatever ``max_condition``, ``MAX_COND_EPS/eps`` of its
        dtype (:func:`condition_limit`: not invertible there to any accuracy). Half-precision Jacobians are
        inverted in float32 (LAPACK has no float16/bfloat16) and returned in their own dtype.
    """
    if not isinstance(jacobian, torch.Tensor) or jacobian.ndim != 3 or not jacobian.is_floating_point():
        # (a 2-D one was Python's "not enough values to unpack")
        raise ConfigError(f"jacobian must be a real floating (batch, n, d) tensor, got "
                          f"{tuple(jacobian.shape) if isinstance(jacobian, torch.Tensor) else type(jacobian).__name__}")
    B, n, d = jacobian.shape
    if n != d:
        raise ConfigError(
            f"derivatives with respect to the outputs are ill-posed for n_out={n} != d={d}: "
            "x is not a function of y (backpropagate to the parameters instead)"
        )
    given = [("hessian", hessian)] + ([("third", third)] if third is not None else [])
    for name, t in given:   # (a float64 hessian beside a float32 jacobian was torch's matmul dtype RuntimeError)
        if not isinstance(t, torch.Tensor) or t.shape != (B, n, d, d) or t.dtype != jacobian.dtype:
            got = f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ConfigError(f"shape mismatch: jacobian {tuple(jacobian.shape)} {str(jacobian.dtype).removeprefix('torch.')} "
                              f"needs a {name} of shape {(B, n, d, d)} in its dtype, got {got}")
    # (torch's SVD and inverse have no float16/bfloat16 kernels: "linalg_svd_cpu" not implemented for 'Half')
    lapack = jacobian if jacobian.dtype in (torch.float32, torch.float64) else jacobian.float()
    cond = torch.linalg.cond(lapack.detach())
    limit = condition_limit(max_condition, jacobian.dtype)
    if not bool(torch.all(torch.isfinite(cond) & (cond <= limit))):
        worst = int(torch.argmax(torch.nan_to_num(cond, nan=float("inf"))))
        raise ConfigError(
            f"the Jacobian is not invertible at sample {worst} (condition number {float(cond[worst]):.2e}, above "
            f"{limit:.1e} in {str(jacobian.dtype).removeprefix('torch.')}): x is not locally a function of y there"
        )
    J_inv = torch.linalg.inv(lapack).to(jacobian.dtype).unsqueeze(1)  # (B, 1, d, n): [q, m]
    dJ = torch.matmul(hessian, J_inv)
    dHd = torch.matmul(third, J_inv) if third is not None else None
    return dJ, dHd


def invert_network(net, y: torch.Tensor, x0: torch.Tensor, *, atol: float = 1e-14, max_iter: int = 50) -> torch.Tensor:
    """``x`` with ``net(x) = y`` near ``x0`` by Newton's method (Jacobians from the forward recursion).

    For a square network; an independent route to ``∂/∂y`` by central differences through the inverse.
    Stops at ``max |Δx| ≤ atol``, or where round-off stops Newton: a step below ``ε^¾ (1 + max|x|)`` that
    is not at most half the one before (quadratic convergence has ended; the floor of ``|Δx|`` is about
    ``cond(J)·ε·|x|``, which can exceed ``atol``: seen on a GPU, whose kernels round differently).
    Raises :class:`~deqlab.errors.NotConvergedError` if neither happens in ``max_iter`` steps or the
    Jacobian is singular at an iterate; :class:`ConfigError` for a bad ``y``, ``atol`` or ``max_iter``.
    """
    from deqlab.nethessian.forward import input_derivatives
    from deqlab.solvers.result import all_finite

    require_number("atol", atol, inclusive=True)   # (0: stop where round-off does)
    require_count("max_iter", max_iter)
    if not isinstance(y, torch.Tensor) or not all_finite(y):
        raise ConfigError("y must be a tensor of finite values")
    # (a network with n_out != d was torch's 'linalg.solve: A must be batches of square matrices', a y of another
    # shape its broadcasting error; x0 itself is checked by input_derivatives)
    value = input_derivatives(net, x0.detach(), jacobian=False).value
    if value.shape[1] != x0.shape[1]:
        raise ConfigError(f"invert_network needs a square network (n_out = d), got n_out = {value.shape[1]}, "
                          f"d = {x0.shape[1]}: x is not a function of y otherwise")
    if tuple(y.shape) != tuple(value.shape) or y.dtype != value.dtype:
        raise ConfigError(f"y must be the shape and dtype of net(x0), {tuple(value.shape)} "
                          f"{str(value.dtype).removeprefix('torch.')}, got {tuple(y.shape)} {str(y.dtype).removeprefix('torch.')}")
    x = x0.detach().clone()
    y = y.detach()
    floor = torch.finfo(x.dtype).eps ** 0.75
    previous = float("inf")
    with torch.no_grad():
        for _ in range(max_iter):
            out = input_derivatives(net, x)
            step, info = torch.linalg.solve_ex(out.jacobian, (out.value - y).unsqueeze(-1))
            if bool(info.any()) or not all_finite(step):
                raise NotConvergedError("Newton inversion of the network stopped: its Jacobian is singular at an "
                                        "iterate (y may lie outside the network's range near x0)")
            step = step.squeeze(-1)
            x = x - step
            size = float(step.abs().max())
            if size <= atol or (size <= floor * (1 + float(x.abs().max())) and size > previous / 2):
                return x
            previous = size
    raise NotConvergedError(f"Newton inversion of the network did not converge in {max_iter} steps")
