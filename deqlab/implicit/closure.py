"""What a map's value depends on, as autograd sees it: the check that the implicit rules see all of it.

The implicit rules of :func:`deqlab.implicit.layer.fixed_point` differentiate ``F(z, *args)`` with respect to
``z`` and ``args`` only. Two kinds of map break them without any error from torch:

* a map that holds a tensor requiring grad that is not among its arguments (a closure or global
  ``nn.Parameter``, a module kept in a Python list, ``f.W_eff = A * 0.5`` set from outside): the solve
  treats it as a constant, so it gets no gradient through ``z*`` (``G.grad`` stayed ``None``; a readout's
  ``Linear`` reused inside ``f`` through a list got a gradient 3.4% off and a loss Hessian 13% off);
* a map whose value moves with ``z`` but whose graph does not reach ``z`` (``tanh(W z.detach() + …)``): the
  rules drop ``(I − J)⁻¹`` (a gradient 20% off).

:func:`require_closed_map` evaluates the map once more at the solution, on fresh leaves for ``z`` and
every floating argument, and walks the graph of its value: every leaf it reaches that requires grad must
be one of those leaves, and ``z``'s leaf must be reached unless the value does not move with ``z``.
A detach of only part of the map's dependence on ``z`` keeps ``z`` reachable and cannot be seen here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from deqlab.errors import InputError


def reached_leaves(out: torch.Tensor) -> tuple[set, list[torch.Tensor]]:
    """The graph of ``out``: its ``grad_fn`` nodes and the leaf tensors requiring grad it reaches (the
    ``variable`` of each ``AccumulateGrad`` node; ``out`` itself when it is such a leaf)."""
    if out.grad_fn is None:
        return set(), [out] if out.requires_grad else []
    seen: set = set()
    leaves: list[torch.Tensor] = []
    stack = [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)   # (AccumulateGrad: the leaf it accumulates into)
        if variable is not None:
            leaves.append(variable)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return seen, leaves


def probe_direction(z: torch.Tensor) -> torch.Tensor:
    """A fixed random direction like ``z`` (seeded, drawn on the CPU: the same on every device)."""
    return torch.randn(z.shape, generator=torch.Generator(device="cpu").manual_seed(1), dtype=z.dtype,
                       device="cpu").to(z.device)


def changes_with_z(Fz: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> bool:
    """Whether ``Fz``'s value moves when ``z`` moves by ``√eps`` along :func:`probe_direction` (central
    difference, against ``100 eps`` of the value's size): a map independent of ``z`` does not."""
    u = probe_direction(z)
    eps = float(torch.finfo(z.dtype).eps)
    with torch.no_grad():
        h = eps ** 0.5 * max(1.0, float(z.abs().max()))
        moved = Fz(z + h * u) - Fz(z - h * u)
        scale = float(Fz(z).abs().max()) + h
    return float(moved.abs().max()) > 100 * eps * scale


def severed_map_error(map_name: str, inside: str) -> InputError:
    """The error for a map whose value moves with ``z`` while autograd sees no dependence on ``z``
    (:func:`require_closed_map`; the DEQ curvature's own check of the map's VJP says the same)."""
    return InputError(f"{map_name} changes with z, but autograd sees no dependence on z at the fixed point (df/dz = 0): "
                      f"a .detach(), a torch.no_grad() block or a computation outside torch inside {inside}? Its implicit "
                      "derivatives would leave out (I - df/dz)^-1")


def _wrapped(tensors: Iterable) -> bool:
    return any(isinstance(t, torch.Tensor) and (torch._C._functorch.is_functorch_wrapped_tensor(t) or t.is_inference())
               for t in tensors)


def require_closed_map(F: Callable, z: torch.Tensor, args: tuple, *, map_name: str, outside: str, remedy: str,
                       names: Callable[[set, list[torch.Tensor]], list[str]] | None = None) -> None:
    """:class:`InputError` when ``F(z, *args)`` depends, through autograd, on a tensor requiring grad that is
    not ``z`` or one of ``args``, or when its value moves with ``z`` but its graph does not reach ``z``.

    Args:
        F: the map; ``z`` ``(batch, n)`` its fixed point; ``args`` its other arguments.
        map_name: how the message names the map (``"F(z, *args)"``, ``"the DEQ's map f"``).
        outside: what the message says a hidden tensor is not (``"among its arguments"``).
        remedy: what the message tells the user to do about a hidden tensor.
        names: optional ``(graph nodes, hidden leaves) -> names`` of the hidden tensors, for the message.

    Costs one evaluation of ``F`` with grad (two more only when ``z`` is not reached). Skipped without grad
    mode (no derivative will be taken) and inside ``torch.func`` transforms and for inference tensors (their
    graph is not the plain one walked here; the call outside the transform is checked).
    """
    if not torch.is_grad_enabled() or _wrapped((z, *args)):
        return
    z_leaf = z.detach().requires_grad_()
    leaves = tuple(a.detach().requires_grad_(a.requires_grad)
                   if isinstance(a, torch.Tensor) and (a.is_floating_point() or a.is_complex()) else a for a in args)
    out = F(z_leaf, *leaves)
    if not isinstance(out, torch.Tensor):
        return   # (the solve has refused such a value already)
    nodes, reached = reached_leaves(out)
    own = [z_leaf, *(a for a in leaves if isinstance(a, torch.Tensor))]
    hidden = [t for t in reached if not any(t is o for o in own)]
    if hidden:
        named = names(nodes, hidden) if names is not None else []
        which = ", ".join(named) if named else ", ".join(f"one of shape {tuple(t.shape)}" for t in hidden[:4]) + (
            f" and {len(hidden) - 4} more" if len(hidden) > 4 else "")
        raise InputError(f"{map_name} uses tensor(s) ({which}) that require grad but are not {outside}: the implicit "
                         f"derivatives see only those, so whatever such a tensor was computed from would get no "
                         f"gradient through z*; {remedy}")
    if not any(t is z_leaf for t in reached) and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
        if changes_with_z(lambda zz: F(zz, *args), z.detach()):
            raise severed_map_error(map_name, "it")
