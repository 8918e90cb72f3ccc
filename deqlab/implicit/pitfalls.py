"""Known-wrong formulas, kept only so tests and ``deqlab hessian`` can show that they are wrong.

**The "2 MᵀZ" mixed term** (seed 001, "strict translation of the factor of 2"): with
``M = ∇²_{hθ}(λᵀf)`` (``N×P``) and ``Z = dh*/dθ``, seed 001 at one point writes Term B as ::

    Σ_r λ_r [∂²f_r/∂θ² + 2 MᵀZ + Zᵀ ∂²f_r/∂h² Z]        ← WRONG in general

The correct mixed term is ``ZᵀM + MᵀZ`` (one from differentiating ``∂f/∂θ``, one from differentiating
``∂f/∂h``): ``MᵀZ`` is not symmetric, so ``2MᵀZ ≠ ZᵀM + MᵀZ`` and the "Hessian" is not even symmetric.
Seeds README errata: relative error 0.87 on a tanh DEQ with N = 6, P = 54. Never use it.
"""

from __future__ import annotations

import torch

from deqlab.implicit.hessian import GenericPieces


def two_mtz_hessian(pieces: GenericPieces) -> torch.Tensor:
    """PITFALL: the Hessian with the mixed term ``2 MᵀZ`` instead of ``ZᵀM + MᵀZ`` (same layout as
    :meth:`GenericPieces.hessian`). Returned only to measure how wrong it is."""
    Z, M = pieces.Z, pieces.S_ht
    dd = Z.T @ pieces.l_hh @ Z + pieces.S_tt + 2 * (M.T @ Z) + Z.T @ pieces.S_hh @ Z
    rd = pieces.l_rh @ Z
    return torch.cat([torch.cat([dd, rd.T], 1), torch.cat([rd, pieces.l_rr], 1)], 0)
