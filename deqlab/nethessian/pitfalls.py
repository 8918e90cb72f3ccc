"""The seed's wrong or unstable formulas (seed 002), kept only to show where and how they fail.

Never use these for results; the tests assert that each is wrong (or breaks) where predicted.

- :func:`division_diag_hessian` / :func:`division_hessian`: eqs. (21)/(20), which substitute
  ``Σ_q w_jq J_qk^{l-1} = J_jk^l / A'(z_j^l)`` (eq. 18) and so divide by ``A'(z)²``. Algebraically
  equal to eqs. (22)/(23) wherever ``A' ≠ 0``, but ``0/0 = NaN`` where ``A'(z)`` is exactly 0: at a
  stationary point that is a float (``exp(−z²)`` at ``z = 0``) and wherever ``A'`` underflows
  (``tanh``/``sigmoid`` saturated: ``1 − tanh(z)²`` is exactly 0 for ``|z| ≳ 19`` in float64).
  Merely *near* a stationary point the division is harmless: ``(A'·Jz)²/A'²`` keeps its relative
  accuracy (checked for ``sin`` at ``fl(π/2)``, where ``cos = 6e-17``), until ``A'²`` underflows.
- :func:`seed_third`: eqs. (30)–(31) as printed: ``J_jm²`` where ``J_jk²`` is meant, and no factor
  ``J_jk = Σ_q w_jq J_qk`` on the ``2A''`` term.
- :func:`seed_outputs_jacobian`: eq. (25), ``∂J_jk/∂y_m = Σ_q H_jkq / J_mq``: element-wise division,
  not a chain rule (the correct form multiplies by ``J⁻¹``: :mod:`deqlab.nethessian.outputs`).

Internal layout as in :mod:`deqlab.nethessian.forward`: input index first, ``(batch, d, n)``.
"""

from __future__ import annotations

import torch

from deqlab.nethessian.network import Affine, check_input, stages


def _walk(net, x, order):
    chain = stages(net)
    check_input(chain, x)
    B, d = x.shape
    v = x
    J = torch.eye(d, dtype=x.dtype, device=x.device).expand(B, d, d)
    for stage in chain:
        if isinstance(stage, Affine):
            yield "affine", stage, v, J, None
            v = v @ stage.weight.T + (stage.bias if stage.bias is not None else 0)
            J = J @ stage.weight.T
        else:
            derivs = stage(v, order)
            yield "act", stage, v, J, derivs
            v = derivs[0]
            J = derivs[1].unsqueeze(1) * J


def division_diag_hessian(net, x: torch.Tensor) -> torch.Tensor:
    """Seed eq. (21): ``Hd^l_jk = A''/A'² (J^l_jk)² + A' Σ_q w_jq Hd^{l-1}_qk``; ``(batch, n_out, d)``."""
    Hd = torch.zeros(x.shape[0], x.shape[1], x.shape[1], dtype=x.dtype, device=x.device)  # (B, d, n) with n = d before any Linear
    for kind, stage, _v, J, derivs in _walk(net, x, 2):
        if kind == "affine":
            Hd = Hd @ stage.weight.T
        else:
            s1, s2 = derivs[1].unsqueeze(1), derivs[2].unsqueeze(1)
            J_post = s1 * J  # J^l = A'(z) ⊙ (W J^{l-1})
            Hd = s2 / (s1 * s1) * J_post * J_post + s1 * Hd
    return Hd.transpose(1, 2)


def division_hessian(net, x: torch.Tensor) -> torch.Tensor:
    """Seed eq. (20): ``H^l_jkm = A''/A'² J^l_jm J^l_jk + A' Σ_q w_jq H^{l-1}_qkm``; ``(batch, n_out, d, d)``."""
    B, d = x.shape
    H = torch.zeros(B, d, d, d, dtype=x.dtype, device=x.device)
    for kind, stage, _v, J, derivs in _walk(net, x, 2):
        if kind == "affine":
            H = H @ stage.weight.T
        else:
            s1, s2 = derivs[1].unsqueeze(1), derivs[2].unsqueeze(1)
            J_post = s1 * J
            H = (s2 / (s1 * s1)).unsqueeze(1) * J_post.unsqueeze(2) * J_post.unsqueeze(1) + s1.unsqueeze(1) * H
    return H.permute(0, 3, 1, 2)


def seed_third(net, x: torch.Tensor) -> torch.Tensor:
    """Seed eqs. (30)–(31) as printed, ``(batch, n_out, d, d)``:
    ``T_jkm = Jz_jm [A''' Jz_jm² + A'' Hd_jk] + 2A'' H_jkm + A' Σ_q w_jq T_qkm`` (with ``Jz = W J^{l-1}``)."""
    B, d = x.shape
    H = torch.zeros(B, d, d, d, dtype=x.dtype, device=x.device)
    T = torch.zeros(B, d, d, d, dtype=x.dtype, device=x.device)
    for kind, stage, _v, J, derivs in _walk(net, x, 3):
        if kind == "affine":
            H, T = H @ stage.weight.T, T @ stage.weight.T
        else:
            s1, s2, s3 = (derivs[i].unsqueeze(1).unsqueeze(1) for i in (1, 2, 3))
            Jm = J.unsqueeze(1)  # (B, 1, m, n)
            Hd_k = torch.diagonal(H, dim1=1, dim2=2).transpose(1, 2).unsqueeze(2)  # (B, k, 1, n)
            T_new = Jm * (s3 * Jm * Jm + s2 * Hd_k) + 2 * s2 * H + s1 * T
            H = s2 * J.unsqueeze(2) * J.unsqueeze(1) + s1 * H
            T = T_new
    return T.permute(0, 3, 1, 2)


def seed_outputs_jacobian(jacobian: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """Seed eq. (25): ``∂J_jk/∂y_m = Σ_q H_jkq / J_mq``; ``(batch, n, d, n)``."""
    return (hessian.unsqueeze(-1) / jacobian.transpose(1, 2).unsqueeze(1).unsqueeze(1)).sum(-2)
