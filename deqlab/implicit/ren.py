"""The REN's equilibrium layer ``w = σ(pre + D₁₁ w)`` with strictly lower-triangular ``D₁₁`` and its
implicit backward (Revay, Wang & Manchester 2021): a row-by-row forward pass, exact in one sweep, and a
triangular back substitution for the gradient instead of a graph of ``O(n_v)`` small operations.

Shapes: ``pre`` (batch, n_v), ``D₁₁`` (n_v, n_v), ``w`` (batch, n_v).
"""

from __future__ import annotations

import torch

from deqlab.errors import InputError
from deqlab.implicit.first_order import refuse_second_order

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def equilibrium_layer(pre: torch.Tensor, D11: torch.Tensor, act) -> torch.Tensor:
    """Solve ``w = σ(pre + D₁₁ w)`` for strictly lower-triangular ``D₁₁`` (n_v, n_v) row by row.

    ``pre`` (batch, n_v). Row ``i`` only needs ``w₀ … w_{i−1}``, so one pass is exact (no iteration,
    no solver tolerance). Returns ``w`` (batch, n_v).
    """
    n_v = pre.shape[-1]
    ws = [act(pre[:, 0])]
    for i in range(1, n_v):
        ws.append(act(pre[:, i] + torch.stack(ws, dim=-1) @ D11[i, :i]))
    return torch.stack(ws, dim=-1)


_DERIVATIVES = {
    "tanh": lambda v, w: 1.0 - w * w,
    "relu": lambda v, w: (v > 0).to(w.dtype),
}


#: Why :func:`equilibrium_layer_fast` refuses forward mode and second derivatives.
FIRST_ORDER_ONLY = ("the REN's row-by-row equilibrium layer with the implicit backward gives first derivatives only, "
                    "by reverse mode (its backward holds σ'(v) fixed; forward-mode jvp/jacfwd and second derivatives "
                    "through it would be wrong): for those use equilibrium_backward='autograd'")


class _RowByRowEquilibrium(torch.autograd.Function):
    """``w = σ(pre + D₁₁w)`` row by row without an autograd graph, and its backward by the implicit
    function theorem: with ``S = diag σ'(v)``, ``(I − S D₁₁) dw = S (dpre + dD₁₁ w)``, so for an output
    gradient ``g`` solve the unit upper-triangular ``(I − S D₁₁)ᵀ a = g`` and return
    ``∂pre = S a``, ``∂D₁₁ = Σ_batch (S a) wᵀ`` (masked to the strictly lower triangle).
    Same values as the autograd route through the row loop (tested), at a fraction of its cost:
    no graph of ``O(n_v)`` small operations per time step, one back substitution instead. First
    derivatives by reverse mode only: differentiating its gradients again, or a forward-mode JVP through
    it, raises :class:`~deqlab.errors.InputError` (the former failed with a misleading in-place RuntimeError
    from torch, the latter with torch's NotImplementedError). Written in ``setup_context`` form with a
    generated vmap rule, so ``torch.func.grad``/``jacrev``/``vmap`` work through it (every ``torch.func``
    transform of a REN was torch's RuntimeError 'it must override the setup_context staticmethod')."""

    generate_vmap_rule = True

    @staticmethod
    def forward(pre, D11, activation):
        act = ACTIVATIONS[activation]
        n_v = pre.shape[-1]
        w = torch.empty_like(pre)
        w[:, 0] = act(pre[:, 0])
        for i in range(1, n_v):
            w[:, i] = act(pre[:, i] + w[:, :i] @ D11[i, :i])
        return w

    @staticmethod
    def setup_context(ctx, inputs, output):
        pre, D11, activation = inputs
        ctx.save_for_backward(pre, output, D11)
        ctx.activation = activation

    @staticmethod
    def backward(ctx, g):
        pre, w, D11 = ctx.saved_tensors
        with torch.no_grad():   # first order only: under create_graph the results refuse to be differentiated
            v = pre + w @ D11.T
            s = _DERIVATIVES[ctx.activation](v, w)  # (batch, n_v)
            n_v = D11.shape[0]
            # back substitution for a = g + D₁₁ᵀ S a (D₁₁ strictly lower: a_j needs a_{j+1…})
            sa = torch.empty_like(g)
            sa[:, -1] = s[:, -1] * g[:, -1]
            for j in range(n_v - 2, -1, -1):
                sa[:, j] = s[:, j] * (g[:, j] + sa[:, j + 1:] @ D11[j + 1:, j])
            dD11 = None
            if ctx.needs_input_grad[1]:  # (else D₁₁ fixed, e.g. an input-gain ascent with frozen weights)
                lower = torch.ones(n_v, n_v, dtype=D11.dtype, device=D11.device).tril_(-1)  # torch.tril is slow on the autograd thread
                dD11 = (sa.T @ w) * lower
        # (w's graph reaches pre and D₁₁: differentiating these gradients again meets the refusal)
        return (refuse_second_order(sa, w, FIRST_ORDER_ONLY),
                None if dD11 is None else refuse_second_order(dD11, w, FIRST_ORDER_ONLY), None)

    @staticmethod
    def jvp(ctx, *_):
        raise InputError(FIRST_ORDER_ONLY)


def equilibrium_layer_fast(pre: torch.Tensor, D11: torch.Tensor, activation: str) -> torch.Tensor:
    """:func:`equilibrium_layer` with the implicit-function backward (:class:`_RowByRowEquilibrium`).
    ``activation`` is a name in :data:`ACTIVATIONS`; first derivatives by reverse mode only."""
    return _RowByRowEquilibrium.apply(pre, D11, activation)
