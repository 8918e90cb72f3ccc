"""``deqlab sysid pendulum``: identify the explicit-Euler inverted pendulum (seed 003, part 3; errata in
``shared/seeds/README.md``) with a contracting REN, a Lipschitz-bounded REN and LSTM / Elman RNN /
linear state-space baselines, all trained the same way (:mod:`deqlab.sysid.training`).

Table ``sysid``: model, kind, parameter count, test NRMSE (``RMSE/std(y)`` per output after the
washout, see :mod:`deqlab.sysid.metrics`), fit %, test NRMSE against the noise-free output (simulator
data only), training time, epochs, the empirical Lipschitz lower bound and the guaranteed bound
(physical units: output per input). Trained models are saved as ``models/<name>.pt``.
"""

from __future__ import annotations


import dataclasses
import os
from contextlib import contextmanager
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deqlab.benchmarks import torch_threads
from deqlab.report.result import Result, Table
from deqlab.models.pendulum import PendulumParams
from deqlab.report import sysid_figures
from deqlab.sysid.data import Dataset, load_dataset, pendulum_dataset
from deqlab.sysid.metrics import empirical_lipschitz, fit_percent, nrmse, simulate
from deqlab.sysid.models import make_model, parameter_count, save_model
from deqlab.sysid.training import TrainSettings, train

FORMATS = {"NRMSE": "{:.4f}", "fit %": "{:.1f}", "NRMSE clean": "{:.4f}", "train time [s]": "{:.1f}",
           "Lip lower": "{:.3g}", "Lip bound": "{:.3g}"}
NRMSE_CAPTION = ("NRMSE = sqrt(mean((ŷ−y)²))/std(y) per output over the test trajectories after the washout "
                 "(std with mean subtraction), averaged over outputs; fit % = 100(1 − NRMSE). NRMSE clean: against the noise-free output. Lip columns: "
                 "‖Δy‖₂/‖Δu‖₂ in physical units from the zero state; 'lower' by gradient ascent, 'bound' guaranteed.")



def make_dataset(cfg) -> Dataset:
    d = cfg.data
    if d.path is not None:
        return load_dataset(d.path, washout=cfg.washout, fractions=tuple(d.fractions), seed=d.seed)
    params = PendulumParams(**{k: float(v) for k, v in dataclasses.asdict(cfg.pendulum).items()})
    return pendulum_dataset(params, trajectories=d.trajectories, steps=d.steps, hold=d.hold, noise_std=float(d.noise_std),
                            angle_spread=float(d.angle_spread), rate_spread=float(d.rate_spread), signal=d.signal,
                            amplitude=float(d.amplitude), min_dwell=d.min_dwell, max_dwell=d.max_dwell,
                            n_sines=d.n_sines, f_max=float(d.f_max), fractions=tuple(d.fractions), seed=d.seed)


class EpochBar:
    """A rich progress bar over epochs with the latest losses (silent unless :func:`deqlab.report.progress.enabled`)."""

    def __init__(self):
        from deqlab.report.progress import enabled

        self.enabled = enabled()
        self.progress = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                     console=Console(stderr=True), transient=True)
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)

    @contextmanager
    def step(self, description: str):
        """A spinner line for a step between epochs (one live display at a time, so not a new one)."""
        if self.progress is None:
            yield
            return
        task = self.progress.add_task(description, total=None, info="")
        try:
            yield
        finally:
            self.progress.remove_task(task)

    def callback(self, name: str, epochs: int):
        if self.progress is None:
            return None
        task = self.progress.add_task(f"train {name}", total=epochs, info="")

        def report(epoch: int, info: dict) -> None:
            self.progress.update(task, completed=epoch + 1,
                                 info=f"loss {info['train_loss']:.3e}  val NRMSE {info['val_nrmse']:.4f}  best {info['best']:.4f}")
        return report


def evaluate_model(model, u_test, y_test, washout, lip_cfg, seed, y_clean=None) -> dict:
    """Test metrics of one model: NRMSE, fit, optional noise-free NRMSE, Lipschitz lower bound and guarantee."""
    y_hat = simulate(model, u_test)
    finite = bool(np.isfinite(y_hat).all())
    err = nrmse(y_hat, y_test, washout) if finite else float("inf")
    steps = min(int(lip_cfg.steps), u_test.shape[1])
    lower = empirical_lipschitz(model, u_test, steps=steps, pairs=int(lip_cfg.pairs), iters=int(lip_cfg.iters),
                                lr=float(lip_cfg.lr), seed=seed) if finite else float("nan")
    bound = model.lipschitz_bound()
    return {"y_hat": y_hat, "NRMSE": err, "fit %": fit_percent(err),
            "NRMSE clean": nrmse(y_hat, y_clean, washout) if y_clean is not None and finite else float("nan"),
            "Lip lower": lower, "Lip bound": float("nan") if bound is None else bound}


def model_seed(seed: int, name: str) -> int:
    """Weights seed of a model: from ``seed`` and its name, not its place in ``models`` (so adding a
    model to the list does not change the others)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63


def model_writer(model, kind, kwargs):
    def write(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_model(model, kind, kwargs, path)
    return write


def figures(result: Result, rows: list[dict], y_test, y_hats, sample_time, washout, n_plot, title_prefix,
            physical: bool = False, panel: str = "test trajectory", subtitle: str = ""):
    y_label, unit = ("angle φ [rad]", "rad/(N·m)") if physical else ("y₀ (units of the data)", "units of y / units of u")
    if n_plot > 0:
        result.figures["predictions"] = lambda: sysid_figures.predictions(
            y_test, y_hats, sample_time=sample_time, washout=washout, trajectories=n_plot,
            title=f"{title_prefix}: measured vs simulated output", y_label=y_label, panel=panel, subtitle=subtitle)
    result.figures["robustness_accuracy"] = lambda: sysid_figures.robustness_accuracy(
        [{"name": r["model"], "nrmse": r["NRMSE"], "lipschitz_lower": r["Lip lower"],
          "lipschitz_bound": r["Lip bound"]} for r in rows],
        title=f"{title_prefix}: robustness vs accuracy", unit=unit, subtitle=subtitle)


def run(cfg) -> Result:
    with torch_threads(cfg.threads):
        return _run(cfg)


def _run(cfg) -> Result:
    result = Result(command="sysid")
    data = make_dataset(cfg)
    u_tr, y_tr = data.part("train")
    u_va, y_va = data.part("val")
    u_te, y_te = data.part("test")
    y_clean = data.y_clean[data.split["test"]] if data.y_clean is not None else None
    result.arrays["dataset"] = data.arrays()
    base = dict(epochs=cfg.train.epochs, batch_size=cfg.train.batch_size, seq_len=cfg.train.seq_len,
                lr=float(cfg.train.lr), lr_decay=float(cfg.train.lr_decay), clip=float(cfg.train.clip),
                patience=cfg.train.patience, washout=cfg.washout, seed=cfg.seed,
                time_limit=None if cfg.train.time_limit is None else float(cfg.train.time_limit))
    rows, curves, y_hats = [], {}, {}
    with EpochBar() as bar:
        for i, name in enumerate(cfg.models):
            spec = cfg.model_settings[name]
            kind, kwargs = spec.kind, spec.kwargs()
            torch.manual_seed(model_seed(cfg.seed, name))
            model = make_model(kind, kwargs, u_tr, y_tr)
            settings = TrainSettings(**{**base, **spec.train_overrides()})
            hist = train(model, u_tr, y_tr, u_va, y_va, settings, progress=bar.callback(name, settings.epochs))
            with bar.step(f"evaluate {name}: simulate the test set, search the Lipschitz lower bound"):
                metrics = evaluate_model(model, u_te, y_te, cfg.washout, cfg.lipschitz, cfg.seed, y_clean)
            y_hats[name] = metrics.pop("y_hat")
            rows.append({"model": name, "kind": kind, "params": parameter_count(model), **metrics,
                         "train time [s]": hist.seconds, "epochs": len(hist.val_nrmse), "best ep": hist.best_epoch + 1,
                         "stopped": hist.stopped})
            curves[name] = np.asarray(hist.val_nrmse)
            result.arrays.setdefault("curves", {})[f"{name}_val_nrmse"] = np.asarray(hist.val_nrmse)
            result.arrays["curves"][f"{name}_train_loss"] = np.asarray(hist.train_loss)
            result.files[f"models/{name}.pt"] = model_writer(model, kind, kwargs)
            if hist.stopped == "non_finite" or not np.isfinite(metrics["NRMSE"]):
                result.failures.append(f"{name}: training produced non-finite values (stopped: {hist.stopped})")
    frame = pd.DataFrame(rows)
    result.tables["sysid"] = Table(title="System identification: test set", frame=frame, formats=FORMATS, caption=NRMSE_CAPTION)
    result.arrays["predictions"] = {"u": u_te, "y": y_te, **({"y_clean": y_clean} if y_clean is not None else {}),
                                    **{f"y_hat_{k}": v for k, v in y_hats.items()}}
    subtitle = f"float64, seed={cfg.seed}, washout={cfg.washout}"
    figures(result, rows, y_te, y_hats, data.sample_time, cfg.washout, cfg.plot_trajectories,
            "pendulum" if cfg.data.path is None else Path(cfg.data.path).name, physical=cfg.data.path is None,
            subtitle=subtitle)
    val_floor = nrmse(data.y_clean[data.split["val"]], y_va, cfg.washout) if data.y_clean is not None else None
    result.figures["training_curves"] = lambda: sysid_figures.training_curves(
        curves, title="Validation NRMSE during training", noise_floor=val_floor, subtitle=subtitle)
    source = f"data file {cfg.data.path}" if cfg.data.path is not None else (
        f"pendulum simulator (sample time {data.sample_time:g} s, noise σ = {cfg.data.noise_std} rad)")
    result.notes.append(f"data: {source}; trajectories train/val/test = "
                        f"{len(data.split['train'])}/{len(data.split['val'])}/{len(data.split['test'])}, "
                        f"{data.u.shape[1]} steps, washout {cfg.washout}")
    if y_clean is not None:
        floor = nrmse(y_clean, y_te, cfg.washout)
        result.notes.append(f"noise floor (NRMSE of the noise-free output against the measured test output): {floor:.4f}")
        result.arrays["predictions"]["noise_floor"] = np.asarray(floor)
        if data.meta.get("flipped"):
            result.notes.append(f"{data.meta['flipped']} trajectories went over the top (|φ − π| > π)")
    result.notes.append(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float64, {os.cpu_count()} cores")
    return result
