"""Refusing the derivatives a first-order implicit backward cannot give (forward mode, second order).

A layer whose backward is ``(∂f/∂θ)ᵀ (I − J)⁻ᵀ v`` evaluated at a *detached* ``z*`` with a *fixed* ``J``
(the monDEQ layer, the REN's row-by-row layer) has the right gradient and nothing more: a second
derivative taken through that gradient, or a JVP through the layer, sees ``z*`` as a constant and
misses ``dz*/dθ``: a wrong number with nothing to show it. :func:`refuse_second_order` ties a
backward's result to the layer's graph through a node whose backward and JVP raise
:class:`~deqlab.errors.InputError`, so differentiating the gradient again raises instead.
"""

from __future__ import annotations

import torch

from deqlab.errors import InputError


class _SecondOrderRefused(torch.autograd.Function):
    """``u`` unchanged; its backward and JVP raise with ``message``. ``anchor`` (a tensor whose graph reaches
    the layer's inputs) is an input only so that the engine does not prune this node when a second
    derivative is asked for with respect to those inputs."""

    generate_vmap_rule = True

    @staticmethod
    def forward(u, anchor, message):
        return u.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.message = inputs[2]

    @staticmethod
    def backward(ctx, *_):
        raise InputError(ctx.message)

    @staticmethod
    def jvp(ctx, *_):
        raise InputError(ctx.message)


def refuse_second_order(u: torch.Tensor, anchor: torch.Tensor, message: str) -> torch.Tensor:
    """``u`` (a gradient made by a first-order backward), such that differentiating it again raises
    :class:`InputError` with ``message``. Only under ``create_graph`` (grad mode on inside the backward:
    ``torch.autograd.grad(..., create_graph=True)``, ``torch.func`` transforms); else ``u`` as it is."""
    if not torch.is_grad_enabled() or not isinstance(anchor, torch.Tensor) or not anchor.requires_grad:
        return u
    return _SecondOrderRefused.apply(u, anchor, message)
