"""``deqlab nethessian pinn``: a 2-D Poisson PINN trained with the forward-recursion Laplacian.

Problem: ``−Δu = f`` on ``Ω = (0,1)²``, ``u = 0`` on ``∂Ω``, with ``f = 2π² sin(πx) sin(πy)`` so the
exact solution is ``u* = sin(πx) sin(πy)``. Network ``u_θ: R² → R`` (an MLP, ``pinn.hidden``,
``pinn.activation``), loss::

    L(θ) = mean_i (Δu_θ(x_i) + f(x_i))² + w_b · mean_b u_θ(x_b)²

over fixed interior points ``x_i`` and boundary points ``x_b``. The same initial network, points and
Adam schedule are trained once per route in ``routes``:

- ``forward``: ``Δu_θ`` by :func:`deqlab.nethessian.laplacian` (seed 002 eq. 23 summed over k), then
  ordinary backprop to θ through the recursion;
- ``double_backward``: ``Δu_θ = Σ_k ∂/∂x_k (∂u/∂x_k)`` by ``torch.autograd.grad(create_graph=True)``,
  one backward per coordinate, then backprop to θ (third-order graph).

Reported: relative L2 error ``‖u_θ − u*‖₂/‖u*‖₂`` and max error on a ``grid × grid`` grid, the median
wall time of a training step (loss + backward + Adam step), and how far the two routes' loss curves
and solutions differ (the same maths: they agree to round-off amplified by training).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from functools import partial

import numpy as np
import pandas as pd
import torch

from deqlab.benchmarks import torch_threads
from deqlab.report.result import Result, Table
from deqlab.nethessian import laplacian, make_mlp
from deqlab.nethessian import reference as R
from deqlab.report.progress import track

ROUTES = ("forward", "double_backward")


def exact_solution(xy: torch.Tensor) -> torch.Tensor:
    """``u*(x, y) = sin(πx) sin(πy)``, ``(N, 2) → (N, 1)``."""
    return (torch.sin(math.pi * xy[:, :1]) * torch.sin(math.pi * xy[:, 1:]))


def source(xy: torch.Tensor) -> torch.Tensor:
    """``f = −Δu* = 2π² sin(πx) sin(πy)``, ``(N, 2) → (N, 1)``."""
    return 2 * math.pi**2 * exact_solution(xy)


def boundary_points(n: int, generator: torch.Generator, dtype) -> torch.Tensor:
    """``n`` points (rounded down to a multiple of 4) uniformly on the four edges of the unit square, on
    ``generator``'s device."""
    per = n // 4
    t = torch.rand(4, per, generator=generator, dtype=dtype, device=generator.device)
    zeros, ones = torch.zeros(per, dtype=dtype, device=t.device), torch.ones(per, dtype=dtype, device=t.device)
    edges = [torch.stack(p, 1) for p in ((t[0], zeros), (t[1], ones), (zeros, t[2]), (ones, t[3]))]
    return torch.cat(edges)


def laplacian_by(route: str):
    if route == "forward":
        return laplacian
    return partial(R.double_backward_laplacian, create_graph=True)


def train(net, route: str, interior, boundary, cfg) -> dict:
    """Adam with cosine decay; returns loss curve, per-step wall times and the trained network."""
    p = cfg.pinn
    lap_fn = laplacian_by(route)
    f = source(interior)
    opt = torch.optim.Adam(net.parameters(), lr=p.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=p.steps, eta_min=p.lr_final)
    losses, times = [], []
    for _ in track(range(p.steps), f"PINN ({route})"):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        residual = lap_fn(net, interior) + f
        loss = residual.pow(2).mean() + p.boundary_weight * net(boundary).pow(2).mean()
        loss.backward()
        opt.step()
        sched.step()
        times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    return {"loss": np.array(losses), "step_time": np.array(times), "net": net}


def run(cfg) -> Result:
    with torch_threads(cfg.threads):
        return _run(cfg)


def _run(cfg) -> Result:
    dtype = getattr(torch, cfg.dtype)
    p = cfg.pinn
    torch.manual_seed(cfg.seed)
    net0 = make_mlp(2, list(p.hidden), 1, p.activation, dtype=dtype)
    gen = torch.Generator().manual_seed(cfg.seed)  # the points are drawn on the CPU (the same on every device), then moved
    interior = torch.rand(p.n_interior, 2, generator=gen, dtype=dtype, device="cpu").to(torch.get_default_device())
    boundary = boundary_points(p.n_boundary, gen, dtype).to(torch.get_default_device())
    g = torch.linspace(0, 1, p.grid, dtype=torch.float64)
    X, Y = torch.meshgrid(g, g, indexing="ij")
    grid = torch.stack([X.reshape(-1), Y.reshape(-1)], 1)
    u_star = exact_solution(grid).reshape(p.grid, p.grid)

    result = Result(command="nethessian_pinn")
    runs, rows = {}, []
    for route in cfg.routes:
        out = train(copy.deepcopy(net0), route, interior, boundary, cfg)
        with torch.no_grad():
            u = out["net"](grid.to(dtype)).to(torch.float64).reshape(p.grid, p.grid)
        err = u - u_star
        out["u"] = u.cpu().numpy()
        runs[route] = out
        rows.append({
            "route": route,
            "steps": p.steps,
            "final loss": out["loss"][-1],
            "rel L2 error": float(torch.linalg.vector_norm(err) / torch.linalg.vector_norm(u_star)),
            "max |u - u*|": float(err.abs().max()),
            "median step time [ms]": 1e3 * statistics.median(out["step_time"]),
            "total train time [ms]": 1e3 * float(out["step_time"].sum()),
        })
        if not np.isfinite(out["loss"]).all():
            result.failures.append(f"route {route}: the loss became non-finite")
    frame = pd.DataFrame(rows)
    if "double_backward" in runs:
        ref = frame.loc[frame["route"] == "double_backward", "median step time [ms]"].iloc[0]
        frame["speed-up vs double backward"] = ref / frame["median step time [ms]"]
    arch = f"2→{'→'.join(map(str, p.hidden))}→1 {p.activation}"
    result.tables["pinn"] = Table(
        f"Poisson PINN −Δu = 2π² sin(πx)sin(πy) on (0,1)², {arch}, {cfg.dtype}, {p.steps} Adam steps, seed {cfg.seed}",
        frame,
        formats={"final loss": "{:.3e}", "rel L2 error": "{:.3e}", "max |u - u*|": "{:.3e}",
                 "median step time [ms]": "{:.2f}", "total train time [ms]": "{:.0f}", "speed-up vs double backward": "{:.2f}"},
        caption=f"error on a {p.grid}x{p.grid} grid; step = Laplacian + loss + backward + Adam; speed-up: "
        "double_backward's median step time / the route's (total train time: the sum of every step's); "
        f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}.",
    )
    if len(runs) == 2:
        a, b = runs["forward"], runs["double_backward"]
        gap = np.abs(a["loss"] - b["loss"]) / np.abs(b["loss"])
        early = min(100, p.steps)
        result.notes.append(
            f"Same maths, two routes: the loss curves agree to {gap[:early].max():.1e} (max relative) over the first "
            f"{early} steps and to {gap.max():.1e} over all {p.steps} (round-off differences, amplified by training); "
            f"final solutions differ by {np.abs(a['u'] - b['u']).max():.1e} (max abs) in {cfg.dtype}."
        )
    arrays = {"x": X.cpu().numpy(), "y": Y.cpu().numpy(), "u_exact": u_star.cpu().numpy(), "interior": interior.cpu().numpy(), "boundary": boundary.cpu().numpy()}
    for route, out in runs.items():
        arrays[f"u_{route}"] = out["u"]
        arrays[f"loss_{route}"] = out["loss"]
        arrays[f"step_time_{route}"] = out["step_time"]
    result.arrays["pinn"] = arrays
    from deqlab.report.nethessian_figures import pinn_summary

    main = "forward" if "forward" in runs else next(iter(runs))
    result.figures["pinn"] = partial(
        pinn_summary, X.cpu().numpy(), Y.cpu().numpy(), runs[main]["u"], u_star.cpu().numpy(),
        {r: o["loss"] for r, o in runs.items()}, route=main,
        title=f"Poisson PINN −Δu = f on (0,1)², {arch}, {cfg.dtype}, {p.steps} Adam steps, seed={cfg.seed}",
    )
    return result
