"""Input derivatives of MLPs by forward recursion (seed 002, corrected): Jacobian, diagonal
Hessian, Laplacian, full Hessian and the third-derivative term ``∂Hd_jk/∂x_m``.

Public API::

    from deqlab.nethessian import input_derivatives, laplacian
    out = input_derivatives(net, x, diag_hessian=True, laplacian=True, hessian=True, third=True)
    out.jacobian (batch, n_out, d), out.diag_hessian (batch, n_out, d), out.laplacian (batch, n_out),
    out.hessian (batch, n_out, d, d), out.third (batch, n_out, d, d)

See :mod:`deqlab.nethessian.forward` for the recursions, :mod:`.outputs` for derivatives with
respect to the outputs (seed eqs. 24–26 done correctly), :mod:`.pitfalls` for the seed's wrong or
unstable variants (kept to be shown wrong), :mod:`.reference` for the autodiff routes we test against.
"""

from deqlab.nethessian.activations import ACTIVATIONS, Activation, Gaussian, Sin, activation_of, register_activation
from deqlab.nethessian.forward import HESSIAN_METHODS, InputDerivatives, input_derivatives, laplacian
from deqlab.nethessian.network import Affine, stages
from deqlab.nethessian.outputs import derivatives_wrt_outputs

__all__ = [
    "ACTIVATIONS", "Activation", "Affine", "Gaussian", "HESSIAN_METHODS", "InputDerivatives", "Sin", "activation_of",
    "derivatives_wrt_outputs", "input_derivatives", "laplacian", "make_mlp", "register_activation", "stages",
]


def make_mlp(d: int, hidden, n_out: int, activation: str = "tanh", *, dtype=None, device=None):
    """``nn.Sequential(Linear(d, h1), A, …, Linear(h_last, n_out))`` with ``activation`` from :data:`ACTIVATIONS`.

    The weights are drawn on the default device (the same draws for a seed on every machine), then
    moved to ``device`` and cast to ``dtype`` when given."""
    from torch import nn

    from deqlab.errors import ConfigError, require_count, require_real_dtype

    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}; choose one of: {', '.join(ACTIVATIONS)}")
    if dtype is not None:   # (an integer dtype was torch's TypeError from Module.to)
        require_real_dtype(dtype)
    # (a NumPy integer or a float width was "object is not iterable" from list(); a string was read as its characters)
    if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__"):
        hidden = [hidden]
    hidden = list(hidden)
    # (torch made a 0-wide layer with only a warning, and a 2.5- or −4-wide one with a TypeError)
    for name, width in [("d", d), *((f"hidden[{i}]", h) for i, h in enumerate(hidden)), ("n_out", n_out)]:
        require_count(name, width)
    widths = [d, *hidden]
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(widths[-1], n_out))
    net = nn.Sequential(*layers)
    return net.to(device=device, dtype=dtype) if (dtype is not None or device is not None) else net
