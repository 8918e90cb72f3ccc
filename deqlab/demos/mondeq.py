"""``deqlab mondeq``: monotone operator DEQs and their splitting solvers (seed 003, second part).

Winston & Kolter (NeurIPS 2020): with ``W = (1 − m)I − AᵀA + B − Bᵀ`` the layer
``z = σ(Wz + Ux + b)``, ``σ = prox_f``, has a unique equilibrium for every input, which
forward-backward (FB), Peaceman–Rachford (PR) and Douglas–Rachford (DR) splitting find.

Tables:

1. ``eigen``: the slides' setup (``n_z = 10``, input of length 3 from NumPy seed 2023, tanh),
   ``restarts`` models of each kind side by side: the lecture's ``nn.Linear`` default init (the
   slides' positive "min EW" table), ``nn.init.normal_`` (the negative table) and the monotone
   parametrisation. Columns: smallest real eigenvalue of ``I − W`` (the slides' "min EW"),
   ``λ_min(sym(I − W))`` (monDEQ's condition, ``≥ m``), the slides' ``‖z^L − z*‖`` (finite depth
   in float32, a norm, not its square), iterations to tolerance of fixed-point iteration and of PR,
   and ``‖z_PR − z*‖`` against an independent scipy ``fsolve`` in float64.
2. ``alpha_sweep``: one monDEQ (``model.*``), iterations to tolerance of FB, PR and DR over
   ``sweep.alphas``, with Anderson and fixed-point iteration (no α) for reference and the FB bound
   ``2m/‖I − W‖₂²``. ``solvers``: each method at the configured ``alpha``/``fb_alpha`` against an
   independent MINPACK solve.
3. ``train``: a monDEQ (PR forward) and an unconstrained DEQ (``train.unconstrained_solver``),
   both with the implicit backward, trained on two spirals: forward iterations per epoch,
   converged fraction, loss, accuracy and ``λ_min(sym(I − W))``.
"""

from __future__ import annotations

import math
import sys
from functools import partial

import numpy as np
import pandas as pd
import torch

from deqlab.benchmarks import torch_threads
from deqlab.report.result import Result, Table
from deqlab.models.mondeq import NONLINEARITIES, MonDEQ, UnconstrainedDEQ, forward_backward_bound, lipschitz, monotonicity
from deqlab.implicit.mondeq import implicit_equilibrium, solve_equilibrium
from deqlab.models.tanh_deq import TanhDEQ
from deqlab.report import mondeq_figures
from deqlab.report.progress import activity, track
from deqlab.solvers.registry import get_solver
from deqlab.solvers.result import SolverStatus
from deqlab.solvers.splitting import SPLITTING_SOLVERS, get_splitting_solver, layer_map
from deqlab.report.words import counted

SPLITTING = tuple(SPLITTING_SOLVERS)
#: ``fb_alpha: auto`` takes this fraction of the forward-backward bound ``2m/‖I − W‖₂²``.
FB_AUTO_FRACTION = 0.9


# --- 1. the slides' eigenvalue tables, side by side with the monotone parametrisation ----------------

def slides_input(cfg) -> torch.Tensor:
    rng = np.random.RandomState(cfg.eigen.input_seed)
    return torch.as_tensor(rng.normal(0.0, cfg.eigen.input_std, size=(1, cfg.eigen.n_x)), dtype=torch.float64)


class _TanhParts:
    """The lecture's tanh network seen as ``(W, c, σ)`` (weight(), injection(x), nl) for the solvers."""

    def __init__(self, model: TanhDEQ):
        self.model = model.to(torch.float64)
        self.nl = NONLINEARITIES["tanh"]

    def weight(self):
        return self.model.W_z.weight

    def injection(self, x):
        return self.model.U_z(x) + self.model.W_z.bias


def eigen_table(cfg, result: Result) -> pd.DataFrame:
    x = slides_input(cfg)
    n_z, L = cfg.eigen.n_z, cfg.eigen.layers
    fsolve = get_solver("fsolve")
    torch.manual_seed(cfg.seed)
    rows, unguaranteed = [], []
    for r in track(range(cfg.eigen.restarts), "eigen restarts"):
        models = {
            "default init": _TanhParts(TanhDEQ(n_z, cfg.eigen.n_x, 1, init="default")),
            "normal_ init": _TanhParts(TanhDEQ(n_z, cfg.eigen.n_x, 1, init="normal")),
            f"monotone m={cfg.model.m:g}": MonDEQ(n_z, cfg.eigen.n_x, 1, m=cfg.model.m, nonlinearity="tanh",
                                                  init_scale=cfg.model.init_scale),
        }
        for kind, model in models.items():
            with torch.no_grad():
                W = model.weight().detach()
                c = model.injection(x).detach()
            f = layer_map(W, c, model.nl)
            ref = fsolve(f, torch.zeros_like(c), atol=cfg.atol, rtol=cfg.rtol, max_iter=cfg.max_iter)
            # the slides' finite-depth pass: float32, from zeros
            f32 = layer_map(W.float(), c.float(), model.nl)
            z = torch.zeros_like(c, dtype=torch.float32)
            with torch.no_grad():
                for _ in range(L):
                    z = f32(z)
            gap = float(torch.linalg.vector_norm(z.double() - ref.z))
            fp = get_solver("fixed_point")(f, torch.zeros_like(c), atol=cfg.atol, rtol=cfg.rtol, max_iter=cfg.max_iter)
            pr = get_splitting_solver("peaceman_rachford")(W, c, torch.zeros_like(c), nonlinearity=model.nl,
                                                           alpha=cfg.alpha, atol=cfg.atol, rtol=cfg.rtol,
                                                           max_iter=cfg.max_iter)
            eig = torch.linalg.eigvals(torch.eye(n_z, dtype=torch.float64) - W)
            rows.append({
                "model": kind,
                "restart": r + 1,
                "min Re eig(I-W)": float(eig.real.min()),
                "lambda_min(sym(I-W))": monotonicity(W),
                f"||z^{L} - z*|| (float32)": gap,
                "FP steps": fp.n_steps if fp.all_converged else None,
                "||z_FP - z*||": float(torch.linalg.vector_norm(fp.z - ref.z)),
                "PR steps": pr.n_steps if pr.all_converged else None,
                "PR converged": pr.all_converged,
                "||z_PR - z*||": float(torch.linalg.vector_norm(pr.z - ref.z)),
                "z* found (fsolve)": ref.all_converged,
            })
            guaranteed = kind.startswith("monotone")
            if not ref.all_converged:
                # Unconstrained models carry no guarantee: their failures are the demo, reported in the
                # table and a note; a failure on a monotone model is a real failure (strict: exit 1).
                message = (f"eigen table, {kind}, restart {r + 1}: fsolve did not find z* "
                           f"(residual {ref.max_residual:.2e}); its distance columns are to fsolve's best iterate")
                (result.failures if guaranteed else unguaranteed).append(message)
            if guaranteed and not pr.all_converged:
                result.failures.append(f"eigen table, {kind}, restart {r + 1}: Peaceman-Rachford did not converge "
                                       f"({pr.message})")
    if unguaranteed:
        result.notes.append("Not converged where nothing guarantees it (unconstrained W): " + "; ".join(unguaranteed))
    return pd.DataFrame(rows)


# --- 2. the alpha sweep --------------------------------------------------------------------------------

def sweep_problem(cfg) -> tuple[MonDEQ, torch.Tensor]:
    torch.manual_seed(cfg.seed)
    model = MonDEQ(cfg.model.n_z, cfg.sweep.n_x, 1, m=cfg.model.m, nonlinearity=cfg.model.nonlinearity,
                   init_scale=cfg.model.init_scale)
    x = torch.randn(cfg.sweep.batch, cfg.sweep.n_x, dtype=torch.float64)
    return model, x


def alpha_sweep(cfg, model: MonDEQ, x: torch.Tensor, result: Result):
    opts = dict(atol=0.0, rtol=cfg.sweep.rtol, max_iter=cfg.sweep.max_iter)
    rows = []
    steps = {name: [] for name in SPLITTING}
    conv = {name: [] for name in SPLITTING}
    diverged = {name: [] for name in SPLITTING}
    for alpha in track(list(cfg.sweep.alphas), "alpha sweep"):
        for name in SPLITTING:
            res = solve_equilibrium(model, x, method=name, alpha=float(alpha), **opts)
            steps[name].append(res.n_steps)
            conv[name].append(res.all_converged)
            # by status, not by the residual: a solve that met NaN/inf returns its best finite iterate,
            # so its residual is finite (and the figure once drew those runs as merely not converged)
            diverged[name].append(res.status in (SolverStatus.DIVERGED, SolverStatus.NONFINITE))
            rows.append({"alpha": float(alpha), "method": name, "steps": res.n_steps, "converged": res.all_converged,
                         "max residual": res.max_residual, "message": res.message, "time [ms]": 1e3 * res.wall_time})
    refs = {}
    for name in ("anderson", "fixed_point"):
        res = solve_equilibrium(model, x, method=name, **opts)
        refs[name] = (res.n_steps, res.all_converged)
        rows.append({"alpha": float("nan"), "method": name, "steps": res.n_steps, "converged": res.all_converged,
                     "max residual": res.max_residual, "message": res.message, "time [ms]": 1e3 * res.wall_time})
    result.arrays["alpha_sweep_diverged"] = {k: np.asarray(v) for k, v in diverged.items()}
    return pd.DataFrame(rows), steps, conv, refs


def solver_table(cfg, model: MonDEQ, x: torch.Tensor, fb_alpha: float, result: Result) -> pd.DataFrame:
    opts = dict(atol=cfg.atol, rtol=cfg.rtol, max_iter=cfg.max_iter)
    ref = solve_equilibrium(model, x, method="root", atol=cfg.atol, rtol=cfg.rtol, max_iter=200)
    if not ref.all_converged:
        result.failures.append(f"solver table: the MINPACK reference did not converge (residual {ref.max_residual:.2e})")
    rows = []
    for name, alpha in (("peaceman_rachford", cfg.alpha), ("douglas_rachford", cfg.alpha),
                        ("forward_backward", fb_alpha), ("anderson", None), ("fixed_point", None)):
        res = solve_equilibrium(model, x, method=name, alpha=alpha or 1.0, **opts)
        rows.append({"method": name, "alpha": alpha, "converged": res.all_converged, "steps": res.n_steps,
                     "max residual": res.max_residual, "||z - z_ref||": float((res.z - ref.z).norm(dim=-1).max()),
                     "time [ms]": 1e3 * res.wall_time, "message": res.message})
        if not res.all_converged and name in SPLITTING:
            result.failures.append(f"solver table: {name} (alpha={alpha:g}) {res.message}, "
                                   f"residual {res.max_residual:.2e}")
    return pd.DataFrame(rows)


# --- 3. training on two spirals -------------------------------------------------------------------------

def two_spirals(samples: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved spirals in the plane: ``x (samples, 2)`` float64, labels ``(samples,)`` in {0, 1};
    drawn on the CPU (a seed gives the same data on every device), returned on torch's default device."""
    with torch.device("cpu"):
        g = torch.Generator().manual_seed(seed)
        t = 0.5 + 3 * math.pi * torch.rand(samples, generator=g, dtype=torch.float64)
        label = torch.randint(0, 2, (samples,), generator=g)
        angle = t + math.pi * label
        x = torch.stack([t * torch.cos(angle), t * torch.sin(angle)], 1) / math.pi
        x = x + noise * torch.randn(samples, 2, generator=g, dtype=torch.float64)
    device = torch.get_default_device()
    return x.to(device), label.to(device)


def train_table(cfg, result: Result):
    tc = cfg.train
    X, Y = two_spirals(tc.samples, tc.noise, tc.data_seed)
    torch.manual_seed(cfg.seed)
    mon = MonDEQ(cfg.model.n_z, 2, 2, m=cfg.model.m, nonlinearity=cfg.model.nonlinearity, init_scale=cfg.model.init_scale)
    unc = UnconstrainedDEQ(cfg.model.n_z, 2, 2, nonlinearity=cfg.model.nonlinearity, init="default")
    with torch.no_grad():  # same input and readout layers: only W differs
        unc.U.load_state_dict(mon.U.state_dict())
        unc.W_y.load_state_dict(mon.W_y.state_dict())
    runs = {
        "monotone (peaceman_rachford)": (mon, dict(method="peaceman_rachford", alpha=cfg.alpha)),
        f"unconstrained ({tc.unconstrained_solver})": (unc, dict(method=tc.unconstrained_solver)),
    }
    backward_opts = {"dense": {}, "peaceman_rachford": {"alpha": cfg.alpha, "atol": 0.0, "rtol": tc.rtol,
                                                         "max_iter": tc.max_iter}}
    rows, unguaranteed = [], {}
    for label, (model, opts) in runs.items():
        opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
        perm_gen = torch.Generator().manual_seed(tc.data_seed + 1)
        for epoch in track(range(1, tc.epochs + 1), f"training {label}"):
            perm = torch.randperm(tc.samples, generator=perm_gen, device="cpu").to(X.device)
            steps, ok, losses, correct = [], [], [], 0
            for i in range(0, tc.samples, tc.batch):
                idx = perm[i:i + tc.batch]
                backward = tc.backward if model is mon else "dense"  # the splitting backward needs monotonicity
                z, res = implicit_equilibrium(model, X[idx], atol=0.0, rtol=tc.rtol, max_iter=tc.max_iter,
                                              backward=backward, backward_options=backward_opts[backward], **opts)
                logits = model.readout(z)
                loss = torch.nn.functional.cross_entropy(logits, Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps.append(res.n_steps)
                ok.append(res.all_converged)
                losses.append(float(loss.detach()))
                correct += int((logits.argmax(1) == Y[idx]).sum())
            W = model.weight().detach()
            rows.append({"model": label, "epoch": epoch, "mean steps": float(np.mean(steps)), "max steps": max(steps),
                         "converged batches": float(np.mean(ok)), "loss": float(np.mean(losses)),
                         "accuracy": correct / tc.samples, "lambda_min(sym(I-W))": monotonicity(W),
                         "||W||_2": float(torch.linalg.matrix_norm(W, 2))})
            if not all(ok):
                if model is mon:
                    result.failures.append(f"training, {label}, epoch {epoch}: {len(ok) - sum(ok)} of {len(ok)} forward "
                                           f"solves did not converge in {tc.max_iter} steps")
                else:
                    unguaranteed.setdefault(label, []).append(f"epoch {epoch}: {len(ok) - sum(ok)} of {len(ok)}")
    for label, epochs in unguaranteed.items():
        # one line per model (a clause per epoch once filled ten lines of the terminal)
        result.notes.append(f"Training, not converged where nothing guarantees it (unconstrained W): {label}'s forward "
                            f"solve missed its tolerance in {tc.max_iter} steps on some batches in {len(epochs)} of "
                            f"{tc.epochs} epochs; batches that missed it: " + ", ".join(epochs) + ".")
    return pd.DataFrame(rows)


# --- the command ------------------------------------------------------------------------------------------

def run(cfg) -> Result:
    # small matrices: extra threads only add overhead on a loaded machine
    with torch_threads(cfg.threads):
        return _run(cfg)


def _run(cfg) -> Result:
    result = Result(command="mondeq")

    eigen = eigen_table(cfg, result)
    result.tables["eigen"] = Table(
        f"Slides' tanh network (default / normal_ init) vs monotone W, {counted(cfg.eigen.restarts, 'restart')}, "
        f"n_z={cfg.eigen.n_z}, PR alpha={cfg.alpha:g}",
        eigen,
        formats={"min Re eig(I-W)": "{:.4f}", "lambda_min(sym(I-W))": "{:.4f}",
                 f"||z^{cfg.eigen.layers} - z*|| (float32)": "{:.3e}", "||z_PR - z*||": "{:.2e}", "||z_FP - z*||": "{:.2e}"},
        caption="min Re eig: the slides' 'min EW' column; lambda_min(sym) >= m is monDEQ's condition. "
                "Steps nan (empty in eigen.csv) = not converged.",
    )
    summary = eigen.groupby("model", sort=False).agg(
        **{"min Re eig (min)": ("min Re eig(I-W)", "min"), "min Re eig (max)": ("min Re eig(I-W)", "max"),
           "lambda_min sym (min)": ("lambda_min(sym(I-W))", "min"), "lambda_min sym (max)": ("lambda_min(sym(I-W))", "max"),
           "FP converged": ("FP steps", "count"), "PR converged": ("PR converged", "sum"),
           "median PR steps": ("PR steps", "median")}).reset_index()
    result.tables["eigen_summary"] = Table(
        "Eigenvalue table per model kind", summary, formats={c: "{:.4f}" for c in summary.columns[1:5]},
        caption=f"FP converged, PR converged: restarts (of {cfg.eigen.restarts}) whose solve converged; median PR steps: "
                "over those (nan: none did).")

    model, x = sweep_problem(cfg)
    W = model.weight().detach()
    m_w, L_w = monotonicity(W), lipschitz(W)
    bound = forward_backward_bound(W, cfg.model.m)
    fb_alpha = FB_AUTO_FRACTION * bound if cfg.fb_alpha == "auto" else float(cfg.fb_alpha)
    if fb_alpha >= bound:
        warning = (f"warning: forward_backward alpha={fb_alpha:g} is not below its convergence bound "
                   f"2m/||I-W||^2 = {bound:.4g} (m={cfg.model.m:g}, ||I-W||_2={L_w:.4g}); it may diverge "
                   f"(--fb-alpha auto takes 0.9 x the bound; any value below it converges)")
        print(warning, file=sys.stderr)
        result.notes.append(warning)
    result.tables["sweep_problem"] = Table(
        "The sweep problem's monotonicity and the forward-backward step bound it implies",
        pd.DataFrame([{"n_z": cfg.model.n_z, "m": cfg.model.m, "lambda_min(sym(I-W))": m_w, "||I-W||_2": L_w,
                       "FB bound 2m/||I-W||^2": bound, "fb_alpha": fb_alpha}]),
        formats={"m": "{:g}", "lambda_min(sym(I-W))": "{:.4g}", "||I-W||_2": "{:.4g}", "FB bound 2m/||I-W||^2": "{:.4g}",
                 "fb_alpha": "{:.4g}"},
        caption="forward-backward converges for alpha < 2m/||I-W||_2^2 (m: the parametrisation's margin, "
                "<= lambda_min of the symmetric part); fb_alpha: the step of the solvers table.",
    )
    sweep, steps, conv, refs = alpha_sweep(cfg, model, x, result)
    result.tables["alpha_sweep"] = Table(
        f"Iterations to relative residual {cfg.sweep.rtol:g} against alpha (n_z={cfg.model.n_z}, "
        f"{cfg.model.nonlinearity}, m={cfg.model.m:g}, batch {cfg.sweep.batch}); FB bound 2m/L^2 = {bound:.4g}",
        sweep, formats={"max residual": "{:.2e}", "time [ms]": "{:.1f}"},
        caption="anderson and fixed_point take no alpha (alpha = nan).",
    )
    # (seconds of MINPACK per sample and thousands of FB/fixed-point steps, silent on the terminal before)
    with activity("solver table: the MINPACK reference, then each method at its configured step"):
        solvers = solver_table(cfg, model, x, fb_alpha, result)
    result.tables["solvers"] = Table(
        f"Each method on the sweep problem at alpha={cfg.alpha:g} (PR, DR) and fb_alpha={fb_alpha:.4g} (FB), "
        f"atol={cfg.atol:g}; z_ref by MINPACK hybr",
        solvers, formats={"max residual": "{:.2e}", "||z - z_ref||": "{:.2e}", "time [ms]": "{:.1f}", "alpha": "{:.4g}"},
        caption="anderson and fixed_point take no alpha (alpha = nan).",
    )
    alphas = np.asarray(list(cfg.sweep.alphas), dtype=float)
    result.figures["alpha_sweep"] = partial(
        mondeq_figures.alpha_sweep, alphas, {k: np.array(v) for k, v in steps.items()},
        {k: np.array(v) for k, v in conv.items()}, refs, bound=bound, max_iter=cfg.sweep.max_iter,
        diverged=result.arrays["alpha_sweep_diverged"],
        title=f"monDEQ (n_z={cfg.model.n_z}, {cfg.model.nonlinearity}, m={cfg.model.m:g}): iterations vs step α",
        subtitle=f"rtol={cfg.sweep.rtol:g}, batch={cfg.sweep.batch}, float64, seed={cfg.seed}",
    )
    fb_fail = [a for a, ok in zip(alphas, conv["forward_backward"]) if not ok and a > bound]
    result.notes.append(
        f"Sweep problem: lambda_min(sym(I-W)) = {m_w:.4g} (>= m = {cfg.model.m:g}), ||I-W||_2 = {L_w:.4g}, "
        f"FB bound 2m/L^2 = {bound:.4g}. FB failed at alpha above the bound: {[float(a) for a in fb_fail] or 'none'}; "
        f"PR converged at {sum(conv['peaceman_rachford'])}/{len(alphas)} alphas, DR at {sum(conv['douglas_rachford'])}/{len(alphas)}."
    )

    train = train_table(cfg, result)
    if len(train):
        result.tables["train"] = Table(
            f"Training on two spirals ({cfg.train.samples} points, {cfg.train.epochs} epochs, Adam lr={cfg.train.lr:g}, "
            f"forward rtol={cfg.train.rtol:g}, max_iter={cfg.train.max_iter})",
            train, formats={"mean steps": "{:.1f}", "converged batches": "{:.2f}", "loss": "{:.3f}", "accuracy": "{:.3f}",
                            "lambda_min(sym(I-W))": "{:.3f}", "||W||_2": "{:.2f}"},
            caption="steps: forward-solve iterations per batch in the epoch; converged batches: the fraction of the "
                    "epoch's batches whose forward solve converged.",
            key=2,   # model, epoch: the step counts are measurements, not names to repeat in every part
        )
        by = {k: g for k, g in train.groupby("model", sort=False)}
        result.figures["train"] = partial(
            mondeq_figures.training_iterations, np.arange(1, cfg.train.epochs + 1),
            {k: g["mean steps"].to_numpy() for k, g in by.items()}, {k: g["max steps"].to_numpy() for k, g in by.items()},
            {k: g["converged batches"].to_numpy() for k, g in by.items()}, max_iter=cfg.train.max_iter,
            title=f"Forward iterations during training (n_z={cfg.model.n_z}, {cfg.model.nonlinearity}, float64, seed={cfg.seed})",
        )
    p = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    result.arrays["mondeq"] = {
        "A": p["A"], "B": p["B"], "U": p["U.weight"], "b": p["U.bias"], "W": W.cpu().numpy(), "x": x.cpu().numpy(),
        "alphas": alphas,
        "sweep_steps": np.array([steps[k] for k in SPLITTING]),
        "sweep_converged": np.array([conv[k] for k in SPLITTING]),
        "fb_bound": np.array(bound),
    }
    return result
