"""Independent autodiff routes for the quantities of :mod:`deqlab.nethessian.forward`.

Used by the tests, ``deqlab nethessian --check`` and ``deqlab bench nethessian``. Shapes follow
:class:`~deqlab.nethessian.forward.InputDerivatives` (``b`` batch, ``j`` output, ``k, m`` inputs).

- ``torch.func``: ``vmap(jacrev)``, ``vmap(hessian)`` (= ``jacfwd(jacrev)``), ``vmap(jacfwd(hessian))``.
- ``double_backward_diag_hessian``: the classic PINN loop of ``torch.autograd.grad`` with
  ``create_graph=True`` (one backward per input coordinate).
- ``jvp_grad_diag_hessian``: ``vmap`` over basis vectors of ``jvp(grad(f))`` (forward-over-reverse HVPs).
"""

from __future__ import annotations

import torch
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap


def _per_sample(net):
    return lambda xi: net(xi.unsqueeze(0)).squeeze(0)  # (d,) -> (n_out,)


def jacobian_func(net, x: torch.Tensor) -> torch.Tensor:
    """``(batch, n_out, d)`` by ``vmap(jacrev)``."""
    return vmap(jacrev(_per_sample(net)))(x)


def hessian_func(net, x: torch.Tensor) -> torch.Tensor:
    """``(batch, n_out, d, d)`` by ``vmap(torch.func.hessian)``."""
    return vmap(hessian(_per_sample(net)))(x)


def diag_hessian_func(net, x: torch.Tensor) -> torch.Tensor:
    """``(batch, n_out, d)``: the diagonal of ``vmap(hessian)``."""
    return torch.diagonal(hessian_func(net, x), dim1=-2, dim2=-1)


def third_func(net, x: torch.Tensor) -> torch.Tensor:
    """``T[b,j,k,m] = ∂³y_j/∂x_k²∂x_m``, ``(batch, n_out, d, d)``, from ``vmap(jacfwd(hessian))``."""
    D = vmap(jacfwd(hessian(_per_sample(net))))(x)  # (B, n, k, l, m)
    return torch.diagonal(D, dim1=2, dim2=3).permute(0, 1, 3, 2)


def double_backward_diag_hessian(net, x: torch.Tensor, *, create_graph: bool = False) -> torch.Tensor:
    """``(batch, n_out, d)`` by a loop of double backward (``n_out·(d + 1)`` backward passes).

    ``create_graph=True`` keeps the graph so a loss of the result can be backpropagated (PINN training).
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = net(x)
        rows = []
        for j in range(y.shape[1]):
            g = torch.autograd.grad(y[:, j].sum(), x, create_graph=True)[0]
            cols = [
                torch.autograd.grad(g[:, k].sum(), x, retain_graph=True, create_graph=create_graph)[0][:, k]
                for k in range(x.shape[1])
            ]
            rows.append(torch.stack(cols, dim=1))
    return torch.stack(rows, dim=1)


def double_backward_laplacian(net, x: torch.Tensor, *, create_graph: bool = False) -> torch.Tensor:
    """``(batch, n_out)``: the sum of :func:`double_backward_diag_hessian`."""
    return double_backward_diag_hessian(net, x, create_graph=create_graph).sum(-1)


def jvp_grad_diag_hessian(net, x: torch.Tensor) -> torch.Tensor:
    """``(batch, n_out, d)`` by ``vmap`` over basis vectors of ``jvp(grad(y_j))`` (``d`` HVPs per output)."""
    f = _per_sample(net)
    d = x.shape[1]
    basis = torch.eye(d, dtype=x.dtype, device=x.device)
    n_out = f(x[0]).shape[0]
    out = []
    for j in range(n_out):
        fj = lambda xi, j=j: f(xi)[j]  # noqa: E731

        def diag(xi, fj=fj):
            hv = vmap(lambda v: jvp(grad(fj), (xi,), (v,))[1])(basis)  # (d, d): rows H e_k
            return torch.diagonal(hv)

        out.append(vmap(diag)(x))
    return torch.stack(out, dim=1)


def double_backward_hessian(net, x: torch.Tensor) -> torch.Tensor:
    """``(batch, n_out, d, d)`` by a loop of double backward: row ``k`` of ``H`` is ``∂(∂y_j/∂x_k)/∂x``."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = net(x)
        out = []
        for j in range(y.shape[1]):
            g = torch.autograd.grad(y[:, j].sum(), x, create_graph=True)[0]
            out.append(torch.stack([torch.autograd.grad(g[:, k].sum(), x, retain_graph=True)[0] for k in range(x.shape[1])], 1))
    return torch.stack(out, 1)


def jvp_grad_hessian(net, x: torch.Tensor) -> torch.Tensor:
    """``(batch, n_out, d, d)`` by ``vmap`` over basis vectors of ``jvp(grad(y_j))`` (rows ``H e_k``)."""
    f = _per_sample(net)
    basis = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    out = []
    for j in range(f(x[0]).shape[0]):
        fj = lambda xi, j=j: f(xi)[j]  # noqa: E731
        out.append(vmap(lambda xi, fj=fj: vmap(lambda v: jvp(grad(fj), (xi,), (v,))[1])(basis))(x))
    return torch.stack(out, 1)
