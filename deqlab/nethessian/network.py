"""Reading an MLP as a chain of affine and elementwise stages (seed 002, eqs. 1–2).

The seed's layer ``a^l = A(W^l a^{l-1} + b^l)`` is two stages: an affine map ``z = W a + b``
(linear in everything: derivatives are mapped by ``W`` alone) and an elementwise ``a = A(z)``
(where all curvature enters). Reading a network as such a chain also covers a last layer without
activation, two ``Linear`` in a row, or an activation applied to the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Union

import torch
from torch import nn

from deqlab.errors import ConfigError
from deqlab.nethessian.activations import Activation, activation_of
from deqlab.solvers.result import all_finite


@dataclass(frozen=True)
class Affine:
    """``z = a Wᵀ + b`` on row vectors; ``weight (n_out, n_in)``, ``bias (n_out,)`` or ``None``."""

    weight: torch.Tensor
    bias: torch.Tensor | None

    @property
    def n_in(self) -> int:
        return self.weight.shape[1]

    @property
    def n_out(self) -> int:
        return self.weight.shape[0]


Stage = Union[Affine, Activation]


def _not_read_as_its_type(m: nn.Module) -> str | None:
    """Why ``m`` computes something else than its type's stages say, or ``None``.

    The recursions read a ``Linear``'s ``weight``/``bias`` and an activation's type, never call the module:
    a subclass of ``Linear``/``Sequential`` that overrides ``forward`` (a masked or scaled weight, a
    residual container) or a module with forward (pre-)hooks was read as the plain layer, and its
    Jacobian and Hessian came back wrong with no word (a ``Linear`` subclass using ``0.5·W``: 17% off)."""
    if m._forward_hooks or m._forward_pre_hooks:
        return f"{type(m).__name__} has forward hooks"
    for base in (nn.Linear, nn.Sequential):
        if isinstance(m, base) and type(m).forward is not base.forward:
            return f"{type(m).__name__} overrides {base.__name__}.forward"
    return None


def _flatten(modules: Iterable[nn.Module]) -> list[nn.Module]:
    out = []
    for m in modules:
        why = _not_read_as_its_type(m) if isinstance(m, nn.Module) else None
        if why is not None:
            raise ConfigError(f"{why}: the recursions read only a Linear's weight and bias and an activation's type, "
                              "not what its forward or hooks compute; use plain nn.Linear/nn.Sequential without hooks "
                              "(torch.nn.utils.parametrize does work: it changes the weight itself)")
        if isinstance(m, nn.Sequential):
            out.extend(_flatten(m))
        else:
            out.append(m)
    return out


def stages(net: nn.Module | Iterable[nn.Module]) -> list[Stage]:
    """The stages of ``net`` (an ``nn.Sequential``, a single module, or a list of modules).

    ``nn.Linear`` becomes :class:`Affine` (sharing the parameters, so autograd reaches them);
    every other module must be a registered elementwise activation. Raises :class:`ConfigError`
    naming every unsupported layer, and for inconsistent widths between ``Linear`` layers.
    """
    modules = _flatten([net] if isinstance(net, nn.Module) else net)
    if not modules:
        raise ConfigError("the network has no layers")
    out: list[Stage] = []
    bad = []
    for m in modules:
        if isinstance(m, nn.Linear):
            out.append(Affine(m.weight, m.bias))
        else:
            try:
                out.append(activation_of(m))
            except ConfigError:
                bad.append(type(m).__name__)
    if bad:
        from deqlab.nethessian.activations import supported_modules

        raise ConfigError(
            f"unsupported layer(s) {', '.join(dict.fromkeys(bad))}: the recursions need nn.Linear and elementwise "
            f"activations with analytic A', A'', A''' ({', '.join(supported_modules())})"
        )
    width = None
    for i, s in enumerate(out):
        if isinstance(s, Affine):
            if width is not None and s.n_in != width:
                raise ConfigError(f"shape mismatch: layer {i} (Linear) expects {s.n_in} inputs but receives {width}")
            width = s.n_out
    return out


def input_width(chain: list[Stage]) -> int | None:
    """Input size fixed by the first ``Linear`` (``None`` if there is none: any width works)."""
    for s in chain:
        if isinstance(s, Affine):
            return s.n_in
    return None


def check_input(chain: list[Stage], x: torch.Tensor) -> None:
    """:class:`ConfigError` unless ``x`` is a finite ``(batch, d)`` tensor in the weights' dtype, with ``d``
    the first ``Linear``'s ``in_features``."""
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ConfigError(f"x must be a tensor of shape (batch, d), got {shape}")
    d = input_width(chain)
    if d is not None and x.shape[1] != d:
        raise ConfigError(f"shape mismatch: x has d={x.shape[1]} features but the first Linear expects {d}")
    for s in chain:
        if isinstance(s, Affine) and s.weight.dtype != x.dtype:
            raise ConfigError(f"dtype mismatch: x is {x.dtype} but the network's weights are {s.weight.dtype}")
    if not all_finite(x):   # (the derivatives would all be NaN, with nothing to say why)
        raise ConfigError("x contains NaN or infinite values")
