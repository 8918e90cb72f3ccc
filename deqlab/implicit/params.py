"""The tanh DEQ's parameters as named tensors, its loss, and the flattening order of ``θ``.

Model (seed 003, :class:`deqlab.models.tanh_deq.TanhDEQ`), per sample ``s`` of a batch::

    h_s = tanh(W_z h_s + U_z x_s + b_z),    ŷ_s = W_y h_s + b_y,
    L(θ) = ½ Σ_s ‖ŷ_s − y_s‖²          (a *sum* over the batch: per-sample curvatures add up)

Flattening order of ``θ`` (the rows/columns of every Hessian in :mod:`deqlab.implicit`): the selected
groups in the canonical order ``W_z, b_z, U_z, W_y, b_y``, each flattened row-major (C order)::

    W_z (n_z, n_z): index i*n_z + k  ↔  W_z[i, k]
    b_z (n_z,)
    U_z (n_z, n_x): index i*n_x + k  ↔  U_z[i, k]
    W_y (n_y, n_z): index o*n_z + k  ↔  W_y[o, k]
    b_y (n_y,)
"""

from __future__ import annotations

import torch

#: Canonical order of the parameter groups in ``θ``.
GROUPS = ("W_z", "b_z", "U_z", "W_y", "b_y")
#: Groups that enter the fixed-point map ``f`` (the rest enter only the loss).
DYNAMIC = ("W_z", "b_z", "U_z")
#: Groups of the readout ``ŷ = W_y h + b_y``.
READOUT = ("W_y", "b_y")


def check_groups(groups) -> tuple[str, ...]:
    """The groups in canonical order; ``ValueError`` for unknown, repeated or no groups."""
    groups = tuple(groups)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups or len(set(groups)) != len(groups):
        raise ValueError(f"parameter groups must be a non-empty subset of {', '.join(GROUPS)}; got {list(groups)}")
    return tuple(g for g in GROUPS if g in groups)


def model_params(model, dtype=torch.float64) -> dict[str, torch.Tensor]:
    """Detached copies of a :class:`TanhDEQ`'s parameters by group name."""
    return {
        "W_z": model.W_z.weight.detach().to(dtype).clone(),
        "b_z": model.W_z.bias.detach().to(dtype).clone(),
        "U_z": model.U_z.weight.detach().to(dtype).clone(),
        "W_y": model.W_y.weight.detach().to(dtype).clone(),
        "b_y": model.W_y.bias.detach().to(dtype).clone(),
    }


def group_slices(params: dict[str, torch.Tensor], groups) -> dict[str, slice]:
    """Where each selected group lives in ``θ``."""
    out, start = {}, 0
    for g in check_groups(groups):
        n = params[g].numel()
        out[g] = slice(start, start + n)
        start += n
    return out


def flatten(params: dict[str, torch.Tensor], groups=GROUPS) -> torch.Tensor:
    """``θ``: the selected groups, row-major, concatenated in canonical order; shape ``(P,)``."""
    return torch.cat([params[g].reshape(-1) for g in check_groups(groups)])


def unflatten(theta: torch.Tensor, params: dict[str, torch.Tensor], groups=GROUPS) -> dict[str, torch.Tensor]:
    """``params`` with the selected groups replaced by the matching pieces of ``θ`` (differentiably)."""
    out = dict(params)
    for g, sl in group_slices(params, groups).items():
        out[g] = theta[sl].reshape(params[g].shape)
    return out


def loss_at(p: dict[str, torch.Tensor], h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``½ Σ_s ‖W_y h_s + b_y − y_s‖²`` for states ``h`` ``(batch, n_z)`` and targets ``y`` ``(batch, n_y)``."""
    r = h @ p["W_y"].T + p["b_y"] - y
    return 0.5 * (r * r).sum()
