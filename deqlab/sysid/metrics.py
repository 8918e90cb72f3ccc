"""Accuracy and robustness measures.

- ``NRMSE = sqrt(mean_k,i (ŷ − y)²) / std(y)``, per output channel over all test trajectories and the
  steps after the washout (``k ≥ washout``), ``std`` with mean subtraction; averaged over channels.
- ``fit % = 100 (1 − NRMSE)`` (the usual ``100(1 − ‖ŷ − y‖/‖y − ȳ‖)`` on the pooled samples).
- :func:`empirical_lipschitz`: a *lower* bound of the incremental ℓ₂ gain ``‖y(u_a) − y(u_b)‖/‖u_a − u_b‖``
  (both from the model's zero initial state) found by gradient ascent over input pairs.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from deqlab.errors import InputError, require_count


def real_array(name: str, a, ndim: int) -> np.ndarray:
    """``a`` as a finite real float64 array of ``ndim`` dimensions; else :class:`InputError` naming it."""
    if np.iscomplexobj(a):
        raise InputError(f"{name} must be real, got complex entries")
    try:
        a = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a numeric array") from None
    if a.ndim != ndim:
        raise InputError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return a


def nrmse(y_hat: np.ndarray, y: np.ndarray, washout: int) -> float:
    """NRMSE of ``y_hat`` against ``y`` (both ``(trajectories, steps, outputs)``) after ``washout`` steps
    (module docstring). ``ValueError`` where it is undefined: different shapes, no step after the
    washout, or a channel of ``y`` that is constant there (its std divides; it gave 1e300 or NaN)."""
    if y_hat.shape != y.shape or y.ndim != 3:
        raise InputError(f"y_hat and y must both be (trajectories, steps, outputs), got {y_hat.shape} and {y.shape}")
    # (a washout of 2.5 failed in slicing with a TypeError; True was taken as 1)
    if isinstance(washout, bool) or not isinstance(washout, numbers.Integral) or not 0 <= washout < y.shape[1]:
        raise InputError(f"washout must lie in [0, steps = {y.shape[1]}) as an integer, got {washout!r}")
    e = (y_hat[:, washout:] - y[:, washout:]).reshape(-1, y.shape[-1])
    ref = y[:, washout:].reshape(-1, y.shape[-1])
    if not np.isfinite(ref).all():   # (a NaN in y read as 'output channel(s) [0] of y are constant')
        raise InputError("y contains NaN or infinite values after the washout: NRMSE is undefined")
    std = ref.std(axis=0)
    if not (std > 0).all():
        raise InputError(f"output channel(s) {np.flatnonzero(~(std > 0)).tolist()} of y are constant after the washout: NRMSE is undefined")
    return float(np.mean(np.sqrt(np.mean(e**2, axis=0)) / std))


def fit_percent(nrmse_value: float) -> float:
    """The system-identification "fit" ``100 (1 − NRMSE)`` in percent (100 is a perfect simulation)."""
    return 100.0 * (1.0 - nrmse_value)


def model_device(model) -> torch.device:
    """The device of ``model``'s parameters (the CPU for a model without any)."""
    return next(model.parameters(), torch.empty(0, device="cpu")).device


def simulate(model, u: np.ndarray) -> np.ndarray:
    """Free-run simulation from the zero state: host ``u`` (T, steps, n_u) → host ``ŷ`` (T, steps, n_y);
    runs on the model's device (``u`` copied there, ``ŷ`` copied back with ``.cpu()``)."""
    with torch.no_grad():
        y, _ = model(torch.as_tensor(u, dtype=torch.float64, device=model_device(model)))
    return y.detach().cpu().numpy()


def empirical_lipschitz(model, u_ref: np.ndarray, *, steps: int, pairs: int, iters: int, lr: float = 0.05,
                        seed: int = 0) -> float:
    """Largest ``‖Δy‖₂/‖Δu‖₂`` over ``pairs`` input pairs of length ``steps`` after ``iters`` Adam steps
    of ascent on ``log‖Δy‖ − log‖Δu‖``. Starts from windows of ``u_ref`` (T, ≥steps, n_u) and small
    perturbations; step sizes are in units of the input's std. A lower bound of the true constant.
    Runs on the model's device; the windows and perturbations are drawn by a CPU generator (the same
    draws on every device) and moved there."""
    u_ref = real_array("u_ref", u_ref, 3)   # (NaN gave no finite ratio and 0.0 came back as the bound)
    steps, pairs = require_count("steps", steps), require_count("pairs", pairs)
    iters = require_count("iters", iters, minimum=0)
    if u_ref.shape[0] == 0 or steps > u_ref.shape[1]:   # (torch's "random_ expects 'from' to be less than 'to'")
        raise InputError(f"steps = {steps} must not exceed the {u_ref.shape[1]} steps of u_ref's {u_ref.shape[0]} trajectories")
    g = torch.Generator(device="cpu").manual_seed(seed)
    device = model_device(model)
    u_ref = torch.as_tensor(u_ref, dtype=torch.float64, device="cpu")
    scale = u_ref.reshape(-1, u_ref.shape[-1]).std(0).clamp_min(1e-12)
    idx = torch.randint(0, u_ref.shape[0], (pairs,), generator=g, device="cpu")
    start = torch.randint(0, u_ref.shape[1] - steps + 1, (pairs,), generator=g, device="cpu")
    base = torch.stack([u_ref[i, s:s + steps] for i, s in zip(idx.tolist(), start.tolist())]) / scale
    delta = 0.1 * torch.randn(base.shape, generator=g, dtype=torch.float64, device="cpu")
    base, delta, scale = base.to(device), delta.to(device), scale.to(device)
    base.requires_grad_(True)
    delta.requires_grad_(True)
    opt = torch.optim.Adam([base, delta], lr=lr)
    grads = [p.requires_grad for p in model.parameters()]   # (restored as they were: frozen ones stay frozen)
    for p in model.parameters():
        p.requires_grad_(False)
    best = 0.0
    try:
        for _ in range(iters + 1):
            ya, _ = model(base * scale)
            yb, _ = model((base + delta) * scale)
            num = (ya - yb).flatten(1).norm(dim=1)
            den = (delta * scale).flatten(1).norm(dim=1).clamp_min(1e-30)
            ratio = num / den
            best = max(best, float(ratio.detach().max()))
            loss = -(torch.log(num + 1e-30) - torch.log(den)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        for p, grad in zip(model.parameters(), grads):
            p.requires_grad_(grad)
    return best
