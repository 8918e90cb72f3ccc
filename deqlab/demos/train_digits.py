"""``deqlab train digits``: three models trained alike on scikit-learn's digits, with the loss Hessian
of the whole model measured at checkpoints through the implicit rules.

Data: ``sklearn.datasets.load_digits`` (1,797 grey 8×8 images, 10 classes, shipped inside
scikit-learn: no download), pixels standardised with the training split's mean and deviation, a seeded
split into train and test.

Models (float64, the same Adam + cosine schedule, the same batches, widths chosen so that their
parameter counts match the tanh DEQ's within one unit of width):

* ``tanh DEQ``: ``z = tanh(W z + U x + b)`` (unconstrained ``W``), a user module wrapped in
  :class:`deqlab.implicit.DEQ` (registry solver, exact implicit backward), readout ``W_y z + b_y``;
* ``monotone DEQ (PR)``: :class:`deqlab.models.mondeq.MonDEQ` (ReLU, margin ``m``), forward by
  Peaceman–Rachford (``α``), implicit backward by a dense per-sample solve;
* ``MLP``: ``Linear → ReLU → Linear``.

Checkpoints (epoch 0 = at initialisation): the Hessian of the mean cross-entropy on a fixed batch of
``hessian_batch`` training samples w.r.t. *all* parameters, by :class:`deqlab.implicit.curvature.LossHessian`
(matrix-free, exact through the implicit layers): the top eigenvalue (ARPACK Lanczos), the trace
(Hutchinson, on the stochastic-Lanczos probes), the negative-eigenvalue mass
``Σ_{λ<0}|λ| / Σ|λ|`` (the share of the SLQ density's absolute mass at negative eigenvalues: the
near-zero bulk, most of the ``P`` eigenvalues, weighs nothing whatever the sign of its quadrature
node) and the density itself. For the monotone DEQ the
same parameters are viewed as a :class:`~deqlab.implicit.DEQ` of its layer map, started at the
Peaceman–Rachford solution. The checkpoints' solves (forward and linear) are Newton's to ``1e-10``,
which needs no contraction.
"""

from __future__ import annotations

import math
import time
from functools import partial

import numpy as np
import pandas as pd
import torch
from torch import nn

from deqlab.benchmarks import machine_note, torch_threads
from deqlab.errors import IllConditionedError, InputError, NotConvergedError
from deqlab.implicit import DEQ, SolveOptions
from deqlab.implicit.curvature import LossHessian, negative_share
from deqlab.implicit.mondeq import implicit_equilibrium
from deqlab.models.deq_classifier import TanhDEQClassifier
from deqlab.models.mondeq import MonDEQ, mondeq_weight
from deqlab.report import train_figures
from deqlab.report.progress import track
from deqlab.report.result import Result, Table
from deqlab.settings.train_digits import Settings

DATA_EXTRA_HINT = 'scikit-learn is needed for the digits data: pip install "deqlab[data]"'
LABELS = {"tanh_deq": "tanh DEQ", "monotone_deq": "monotone DEQ (PR)", "mlp": "MLP"}


def load_digits_data(test_fraction: float, seed: int):
    """``(x_train, y_train, x_test, y_test)``: standardised float64 pixels ``(n, 64)`` and labels ``(n,)``.

    :class:`InputError` naming the ``[data]`` extra when scikit-learn is missing.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise InputError(DATA_EXTRA_HINT) from None
    data = load_digits()
    x = torch.as_tensor(data.data, dtype=torch.float64)
    y = torch.as_tensor(data.target, dtype=torch.long)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    n_test = round(test_fraction * x.shape[0])
    test, train = perm[:n_test], perm[n_test:]
    mean, std = x[train].mean(0), x[train].std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))  # corner pixels are always 0
    x = (x - mean) / std
    return x[train], y[train], x[test], y[test]


def matched_width(target: int, quadratic: int, linear: int, constant: int) -> int:
    """The width ``w ≥ 1`` whose count ``quadratic·w² + linear·w + constant`` is closest to ``target``."""
    if quadratic:
        w = (-linear + math.sqrt(linear**2 + 4 * quadratic * max(target - constant, 0))) / (2 * quadratic)
    else:
        w = (target - constant) / linear
    candidates = {max(1, math.floor(w)), max(1, math.ceil(w))}
    return min(candidates, key=lambda c: (abs(quadratic * c * c + linear * c + constant - target), c))


# --- the models -----------------------------------------------------------------------------------------

class MonotoneMap(nn.Module):
    """A :class:`MonDEQ`'s layer ``σ(W(A, B) z + U x + b)`` as a user map; shares the monDEQ's parameters."""

    def __init__(self, mon: MonDEQ):
        super().__init__()
        self.A, self.B, self.U, self.m = mon.A, mon.B, mon.U, mon.m
        self.sigma = mon.nl.sigma

    def forward(self, z, x):
        return self.sigma(z @ mondeq_weight(self.A, self.B, self.m).T + self.U(x))


class ReadoutView(nn.Module):
    """``W_y · deq(x) + b_y`` over existing modules (shared parameters): what :class:`LossHessian`
    differentiates at a checkpoint."""

    def __init__(self, deq: DEQ, readout: nn.Linear):
        super().__init__()
        self.deq, self.W_y = deq, readout

    def forward(self, x):
        return self.W_y(self.deq(x))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_models(settings: Settings, n_x: int = 64, n_y: int = 10) -> dict:
    """name → ``(model, forward)``; ``forward(x) -> (logits, forward iterations, converged)``.

    The monotone DEQ's and the MLP's widths are those whose parameter counts come closest to the tanh DEQ's
    (:meth:`Settings.tanh_parameter_count`). Each model is created right after ``torch.manual_seed(seed)``.
    """
    n = settings.n_z
    target = settings.tanh_parameter_count(n_x, n_y)
    opts = SolveOptions(solver=settings.deq_solver, linear_solver=settings.deq_solver, atol=0.0, rtol=settings.rtol,
                        max_iter=settings.max_iter, on_fail="ignore")
    out = {}
    for name in settings.models:
        torch.manual_seed(settings.seed)
        if name == "tanh_deq":
            model = TanhDEQClassifier(n, n_x, n_y, opts)

            def forward(x, model=model):
                logits = model(x)
                return logits, model.deq.stats.n_steps, model.deq.stats.all_converged

        elif name == "monotone_deq":
            model = MonDEQ(matched_width(target, 2, n_x + 1 + n_y, n_y), n_x, n_y, m=settings.m, nonlinearity="relu")

            def forward(x, model=model):
                z, res = implicit_equilibrium(model, x, method="peaceman_rachford", alpha=settings.alpha, atol=0.0,
                                              rtol=settings.rtol, max_iter=settings.max_iter)
                return model.readout(z), res.n_steps, res.all_converged

        else:
            w = matched_width(target, 0, n_x + 1 + n_y, n_y)
            model = nn.Sequential(nn.Linear(n_x, w, dtype=torch.float64), nn.ReLU(),
                                  nn.Linear(w, n_y, dtype=torch.float64))

            def forward(x, model=model):
                return model(x), 0, True

        out[name] = (model, forward)
    return out


#: The checkpoints' solves: tight, so the curvature is the model's and not the solver's.
CURVATURE_ATOL = 1e-10


def curvature_model(name: str, model: nn.Module, x: torch.Tensor, settings: Settings) -> nn.Module:
    """The model as :class:`LossHessian` differentiates it, sharing its parameters: each DEQ as a
    :class:`ReadoutView` with tight Newton solves (no contraction needed), started where the model's own
    solver ends (Newton from zero can fail where the weights are far from contractive: seed 0, epoch 10);
    the monotone DEQ's layer as a :class:`MonotoneMap` started at its Peaceman–Rachford solution."""
    tight = SolveOptions(solver="newton", linear_solver="newton", atol=CURVATURE_ATOL, max_iter=100)
    if name == "tanh_deq":
        view = ReadoutView(DEQ(model.deq.f, model.deq.n_z, opts=tight), model.W_y)
        with torch.no_grad():   # a DEQ of its own: the training layer's state (stats, last solution) is left as is
            trained = DEQ(model.deq.f, model.deq.n_z, opts=model.deq.opts)
            trained(x)
        view.deq.last_solution = trained.last_solution
        return view
    if name == "monotone_deq":
        view = ReadoutView(DEQ(MonotoneMap(model), model.n_z, opts=tight), model.W_y)
        with torch.no_grad():
            z, _ = implicit_equilibrium(model, x, method="peaceman_rachford", alpha=settings.alpha, atol=CURVATURE_ATOL,
                                        rtol=0.0, max_iter=20 * settings.max_iter)
        view.deq.last_solution = z.detach()
        return view
    return model


def checkpoint_epochs(epochs: int, checkpoints: int) -> list[int]:
    """``checkpoints`` epochs evenly spaced from 0 (initialisation) to ``epochs`` (distinct, ascending)."""
    if checkpoints == 0:
        return []
    if checkpoints == 1:
        return [epochs]
    return sorted({round(i * epochs / (checkpoints - 1)) for i in range(checkpoints)})


def measure_curvature(name, model, x, y, settings: Settings) -> dict:
    """Top eigenvalue, Hutchinson trace, negative mass and the SLQ density of the mean cross-entropy's Hessian."""
    start = time.perf_counter()
    try:
        op = LossHessian(curvature_model(name, model, x, settings), nn.functional.cross_entropy, x, y)
        density = op.spectral_density(probes=settings.slq_probes, steps=settings.lanczos_steps, seed=settings.seed)
        top = float(op.eigenvalues(1, "LA", tol=settings.eig_tol, seed=settings.seed)[-1])
    except (NotConvergedError, IllConditionedError) as exc:   # (a checkpoint near a fold has no trustworthy curvature)
        return {"error": str(exc), "seconds": time.perf_counter() - start}
    # Rademacher probes have ‖v‖² = P, so P · (quadrature of t) on each probe is exactly Hutchinson's vᵀHv
    samples = op.shape[0] * (density.weights * density.nodes).sum(axis=1)
    return {"top": top, "trace": float(samples.mean()),
            "trace_se": float(samples.std(ddof=1) / math.sqrt(len(samples))) if len(samples) > 1 else float("nan"),
            "negative_mass": negative_share(density), "density": density, "products": op.n_products,
            "seconds": time.perf_counter() - start}


def _checkpoint(name, model, x, y, settings, result: Result, rows: list, densities: dict, epoch: int) -> None:
    """One row of the curvature table (NaN and a note where a checkpoint's solve did not converge)."""
    label = LABELS[name]
    c = measure_curvature(name, model, x, y, settings)
    if "error" in c:
        result.notes.append(f"{label}, epoch {epoch}: no curvature ({c['error']})")
        c = {"top": float("nan"), "trace": float("nan"), "trace_se": float("nan"), "negative_mass": float("nan"),
             "seconds": c["seconds"]}
    else:
        densities.setdefault(label, {})[epoch] = c["density"]
    rows.append({"model": label, "epoch": epoch, "top eigenvalue": c["top"], "trace": c["trace"],
                 "trace std. error": c["trace_se"], "negative mass": c["negative_mass"], "time (s)": c["seconds"]})


def run(settings: Settings) -> Result:
    """Train every model of ``settings.models`` and measure its curvature at the checkpoints."""
    with torch_threads(settings.threads):
        return _run(settings)


def _run(settings: Settings) -> Result:
    x_tr, y_tr, x_te, y_te = load_digits_data(settings.test_fraction, settings.data_seed)
    n_train = x_tr.shape[0]
    x_h, y_h = x_tr[: settings.hessian_batch], y_tr[: settings.hessian_batch]
    checkpoints = checkpoint_epochs(settings.epochs, settings.checkpoints)
    batches = math.ceil(n_train / settings.batch)
    result = Result(command="train_digits")
    summary, history, curvature, densities = [], [], [], {}
    for name, (model, forward) in build_models(settings).items():
        label = LABELS[name]
        opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, settings.epochs * batches))
        order = torch.Generator().manual_seed(settings.seed)
        failed, train_seconds = 0, 0.0
        steps_first = steps_last = float("nan")

        checkpoint = partial(_checkpoint, name, model, x_h, y_h, settings, result, curvature, densities)
        if 0 in checkpoints:
            checkpoint(0)
        for epoch in track(range(1, settings.epochs + 1), f"training {label}"):
            perm = torch.randperm(n_train, generator=order)
            steps, ok = [], []
            model.train()
            start = time.perf_counter()
            for i in range(0, n_train, settings.batch):
                idx = perm[i : i + settings.batch]
                logits, n_steps, converged = forward(x_tr[idx])
                loss = nn.functional.cross_entropy(logits, y_tr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                steps.append(n_steps)
                ok.append(converged)
            train_seconds += time.perf_counter() - start
            failed += len(ok) - sum(ok)
            with torch.no_grad():
                test_logits, _, test_ok = forward(x_te)
                accuracy = float((test_logits.argmax(1) == y_te).double().mean())
            mean_steps = float(np.mean(steps))
            steps_first = mean_steps if epoch == 1 else steps_first
            steps_last = mean_steps
            history.append({"model": label, "epoch": epoch, "test accuracy": accuracy, "mean iterations": mean_steps,
                            "max iterations": max(steps), "batches not converged": len(ok) - sum(ok),
                            "test solve converged": bool(test_ok)})
            if epoch in checkpoints:
                checkpoint(epoch)
        last = [h for h in history if h["model"] == label]
        summary.append({"model": label, "parameters": parameter_count(model),
                        "test accuracy": last[-1]["test accuracy"] if last else float("nan"),
                        "iterations/batch, first epoch": steps_first, "iterations/batch, last epoch": steps_last,
                        "batches not converged": f"{failed} of {settings.epochs * batches}",
                        "training time (s)": train_seconds})
        if name == "tanh_deq" and failed:
            result.notes.append(f"{label}: {failed} of {settings.epochs * batches} training batches' forward solves did "
                                f"not converge in {settings.max_iter} iterations (nothing guarantees them).")
        if name == "monotone_deq" and failed:
            result.failures.append(f"{label}: {failed} training batches' Peaceman-Rachford solves did not converge "
                                   f"in {settings.max_iter} iterations (monotone: they should)")
    _tables(settings, result, summary, history, curvature, densities, n_train, x_te.shape[0])
    return result


def _tables(settings, result, summary, history, curvature, densities, n_train, n_test) -> None:
    result.tables["summary"] = Table(
        f"digits: {n_train} train / {n_test} test images, {settings.epochs} epochs, batch {settings.batch}, Adam "
        f"lr={settings.lr:g} (cosine to 0), forward rtol={settings.rtol:g}, max_iter={settings.max_iter}, "
        f"seed {settings.seed}",
        pd.DataFrame(summary),
        formats={"test accuracy": "{:.4f}", "iterations/batch, first epoch": "{:.1f}",
                 "iterations/batch, last epoch": "{:.1f}", "training time (s)": "{:.1f}"},
        caption="Forward iterations: mean over the epoch's batches (MLP: none). " + machine_note("float64"),
    )
    result.tables["history"] = Table("Per epoch: test accuracy and forward iterations", pd.DataFrame(history),
                                     formats={"test accuracy": "{:.4f}", "mean iterations": "{:.1f}"})
    if curvature:
        result.tables["curvature"] = Table(
            f"Loss Hessian of the whole model (mean cross-entropy on {settings.hessian_batch} training images, all "
            f"parameters; exact through the implicit layers): top eigenvalue by Lanczos (tol {settings.eig_tol:g}), "
            f"trace by Hutchinson on the {settings.slq_probes} SLQ probes, negative mass = sum of |eigenvalue| over "
            f"negative eigenvalues / sum of |eigenvalue| (SLQ, {settings.lanczos_steps} Lanczos steps)",
            pd.DataFrame(curvature),
            formats={"top eigenvalue": "{:.4g}", "trace": "{:.4g}", "trace std. error": "{:.2g}",
                     "negative mass": "{:.4f}", "time (s)": "{:.1f}"},
        )
    frame = pd.DataFrame(history)
    if len(frame):
        by = {k: g for k, g in frame.groupby("model", sort=False)}
        result.figures["training"] = partial(
            train_figures.accuracy_and_iterations,
            {k: g["epoch"].to_numpy() for k, g in by.items()},
            {k: g["test accuracy"].to_numpy() for k, g in by.items()},
            {k: g["mean iterations"].to_numpy() for k, g in by.items() if g["mean iterations"].max() > 0},
            max_iter=settings.max_iter,
            title=f"digits: test accuracy and forward iterations per epoch (float64, seed {settings.seed})",
        )
        # the model of each row as plain strings ('<U..', no pickle): the rows are every model's epochs in turn
        result.arrays["history"] = {c.replace(" ", "_"): (frame[c].to_numpy(dtype=str) if c == "model" else frame[c].to_numpy())
                                    for c in frame.columns}
    if densities:
        pairs = {label: (min(d), max(d), d[min(d)], d[max(d)]) for label, d in densities.items()}
        result.figures["spectral_density"] = partial(
            train_figures.spectral_densities, pairs,
            title=f"Loss Hessian spectral density (SLQ, {settings.slq_probes}×{settings.lanczos_steps}), "
                  f"first and last checkpoint (seed {settings.seed})",
        )
        for label, d in densities.items():
            key = label.split(" ")[0].lower()
            for epoch, dens in d.items():
                result.arrays[f"density_{key}_epoch{epoch}"] = {"nodes": dens.nodes, "weights": dens.weights}
