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

from deqlab.errors import InputError, require_real_dtype
from deqlab.solvers.result import all_finite, describe

#: Canonical order of the parameter groups in ``θ``.
GROUPS = ("W_z", "b_z", "U_z", "W_y", "b_y")
#: Groups that enter the fixed-point map ``f`` (the rest enter only the loss).
DYNAMIC = ("W_z", "b_z", "U_z")
#: Groups of the readout ``ŷ = W_y h + b_y``.
READOUT = ("W_y", "b_y")


def check_groups(groups) -> tuple[str, ...]:
    """The groups in canonical order; ``ValueError`` for unknown, repeated or no groups. One name alone
    (``"W_z"``) is that group (it was read as its letters: 'got ['W', '_', 'z']')."""
    groups = (groups,) if isinstance(groups, str) else tuple(groups)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups or len(set(groups)) != len(groups):
        raise InputError(f"parameter groups must be a non-empty subset of {', '.join(GROUPS)}; got {list(groups)}")
    return tuple(g for g in GROUPS if g in groups)


def check_problem(params: dict, x: torch.Tensor, y: torch.Tensor, z_star: torch.Tensor | None = None) -> None:
    """The parameters, inputs ``x (B, n_x)``, targets ``y (B, n_y)`` (and ``z_star (B, n_z)``) fit together:
    the shapes of the module docstring, one floating dtype and one device, every entry finite.
    :class:`~deqlab.errors.InputError` otherwise (a mismatch was a torch shape error deep inside, and NaN
    in ``y`` a Hessian full of NaN)."""
    given = {**{g: params[g] for g in GROUPS if g in params}, "x": x, "y": y}
    if z_star is not None:
        given["z_star"] = z_star
    missing = [g for g in GROUPS if g not in params]
    if missing:
        raise InputError(f"missing parameter group(s) {', '.join(missing)}")
    # the model fixes the sizes (data must fit it): n_z from W_z, n_x from U_z, n_y from W_y, batch from x
    n_z, n_x, n_y = params["W_z"].shape[0], params["U_z"].shape[-1], params["W_y"].shape[0]
    batch = x.shape[0] if x.ndim else 0
    want = {"W_z": (n_z, n_z), "b_z": (n_z,), "U_z": (n_z, n_x), "W_y": (n_y, n_z), "b_y": (n_y,),
            "x": (batch, n_x), "y": (batch, n_y), "z_star": (batch, n_z)}
    for name, t in given.items():
        if tuple(t.shape) != want[name]:
            raise InputError(f"{name} must have shape {want[name]} (n_z={n_z}, n_x={n_x}, n_y={n_y} from W_z, U_z, W_y; "
                             f"batch={batch} from x), got {tuple(t.shape)}")
    # (the polish failed on either with NumPy's "zero-size array to reduction operation maximum")
    if batch == 0:
        raise InputError(f"x must hold at least one sample (its first dimension is the batch), got shape {tuple(x.shape)}")
    if n_z == 0:
        raise InputError("the DEQ needs a state: W_z must be (n_z, n_z) with n_z >= 1, got (0, 0)")
    dtypes, devices = {t.dtype for t in given.values()}, {t.device for t in given.values()}
    if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point or len(devices) != 1:
        raise InputError("parameters, x, y (and z_star) must share one floating dtype and one device, got "
                         + ", ".join(f"{k} {describe(t)}" for k, t in given.items()))
    bad = [name for name, t in given.items() if not all_finite(t)]
    if bad:
        raise InputError(f"NaN or infinite values in {', '.join(bad)}")


def model_params(model, dtype=torch.float64) -> dict[str, torch.Tensor]:
    """Detached copies of a :class:`TanhDEQ`'s parameters by group name, in ``dtype`` (a real floating one)."""
    require_real_dtype(dtype)
    if not all(isinstance(getattr(model, k, None), torch.nn.Linear) for k in ("W_z", "U_z", "W_y")):
        # (another module was an AttributeError on model.W_z)
        raise InputError(f"model_params reads a TanhDEQ (Linear layers W_z, U_z, W_y), got {type(model).__name__}")
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
    slices = group_slices(params, groups)
    P = max((sl.stop for sl in slices.values()), default=0)
    if not isinstance(theta, torch.Tensor) or tuple(theta.shape) != (P,):
        raise InputError(f"theta must be a ({P},) tensor for groups {list(slices)}, got {describe(theta)}")
    out = dict(params)
    for g, sl in slices.items():
        out[g] = theta[sl].reshape(params[g].shape)
    return out


def loss_at(p: dict[str, torch.Tensor], h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``½ Σ_s ‖W_y h_s + b_y − y_s‖²`` for states ``h`` ``(batch, n_z)`` and targets ``y`` ``(batch, n_y)``."""
    r = h @ p["W_y"].T + p["b_y"] - y
    return 0.5 * (r * r).sum()
