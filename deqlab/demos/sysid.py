"""``deqlab sysid pendulum``: identify the explicit-Euler inverted pendulum (seed 003, part 3; errata in
``shared/seeds/README.md``) with a contracting REN, a Lipschitz-bounded REN and LSTM / Elman RNN /
linear state-space baselines, all trained the same way (:mod:`deqlab.sysid.training`).

Every model is trained with every seed (``seeds``; ``seed`` for one). Table ``sysid`` (one row per model):
the test NRMSE (``RMSE/std(y)`` per output after the washout, see :mod:`deqlab.sysid.metrics`) over the
seeds as mean ± sample std, min, max, the mean's ratio to the noise floor (simulator data), fit %, NRMSE
against the noise-free output, training time, and for the first seed's model the lower bound of the
incremental gain (:mod:`deqlab.sysid.gain`: ascent or linearisation, the ``by`` column says which) and the
guarantee (physical units: output per input). Table ``sysid_runs``: one row per model and seed. The claims
(REN within 1.2× of the noise floor, no worse than the LSTM) are judged on the mean. Models are saved as
``models/<name>.pt`` (first seed) and ``models/seed<k>/<name>.pt``. :func:`identify` is shared with
``sysid f16``.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deqlab.errors import require_path
from deqlab.settings.resources import check_archive
from deqlab.benchmarks import torch_threads
from deqlab.models.pendulum import PendulumParams
from deqlab.report import sysid_figures
from deqlab.report.result import Result, Table
from deqlab.sysid.data import Dataset, check_arrays, load_dataset, pendulum_dataset
from deqlab.sysid.gain import GainReport, GainSettings, incremental_gain_lower_bound
from deqlab.sysid.metrics import fit_percent, nrmse, simulate
from deqlab.sysid.models import make_model, parameter_count, save_model
from deqlab.sysid.training import TrainSettings, train

FORMATS = {"NRMSE": "{:.4f}", "fit %": "{:.1f}", "NRMSE clean": "{:.4f}", "train time [s]": "{:.4g}",
           "Lip lower": "{:.3g}", "Lip bound": "{:.3g}"}
NRMSE_CAPTION = ("NRMSE = sqrt(mean((ŷ−y)²))/std(y) per output over the test trajectories after the washout "
                 "(std with mean subtraction), averaged over outputs; fit % = 100(1 − NRMSE). NRMSE clean: against the noise-free output. Lip columns: "
                 "‖Δy‖₂/‖Δu‖₂ in physical units from the zero state; 'lower' is the larger of a multi-start ascent over input "
                 "pairs and the H∞ norm of the linearisation at constant-input equilibria ('by' says which), 'bound' the guaranteed bound (nan: the model has none, only a Lipschitz REN has one). "
                 "status: 'non-finite output' when the simulated output overflowed (its metrics are NaN, not results).")

def run_seeds(cfg) -> list[int]:
    """The seeds to train with: ``seed`` alone if it is set (not None), else the list ``seeds``."""
    return [cfg.seed] if cfg.seed is not None else list(cfg.seeds)


def make_dataset(cfg) -> Dataset:
    d = cfg.data
    if d.path is not None:
        check_archive(require_path(d.path, "data file"), "data file")
        return load_dataset(d.path, washout=cfg.washout, fractions=tuple(d.fractions), seed=d.seed)
    params = PendulumParams(**{k: float(v) for k, v in dataclasses.asdict(cfg.pendulum).items()})
    with np.errstate(over="ignore", invalid="ignore"):   # a blow-up is reported by the check below
        data = pendulum_dataset(params, trajectories=d.trajectories, steps=d.steps, hold=d.hold,
                                noise_std=float(d.noise_std), angle_spread=float(d.angle_spread),
                                rate_spread=float(d.rate_spread), signal=d.signal, amplitude=float(d.amplitude),
                                min_dwell=d.min_dwell, max_dwell=d.max_dwell, n_sines=d.n_sines, f_max=float(d.f_max),
                                fractions=tuple(d.fractions), seed=d.seed)
    # The settings decide the data: what a user's file must pass (finite, not constant after the
    # washout), a simulation must pass too (m = 1e-12 kg blew the Euler steps up to NaN).
    check_arrays(data.u, data.y, washout=cfg.washout,
                 source="the pendulum simulation (pendulum.* and data.* settings)")
    return data


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
            from rich.table import Column

            # at 80 columns the line (with the training loss) was too long and rich cut the elapsed time and the
            # epoch count ('0:00…', '1…'): those keep their width, the validation NRMSE goes last
            self.progress = Progress(
                TextColumn("{task.description}", style="bold", markup=False, table_column=Column(no_wrap=True)),
                BarColumn(bar_width=20), MofNCompleteColumn(table_column=Column(min_width=7, no_wrap=True)),
                TimeElapsedColumn(table_column=Column(min_width=7, no_wrap=True)),
                TextColumn("{task.fields[info]}", markup=False, table_column=Column(no_wrap=True, overflow="ellipsis")),
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
                                 # what early stopping watches (the training loss is in curves.npz)
                                 info=f"val NRMSE {info['val_nrmse']:.4f} (best {info['best']:.4f})")
        return report


def gain_settings(lip_cfg) -> GainSettings:
    """The ``lipschitz`` config block → :class:`~deqlab.sysid.gain.GainSettings`."""
    steps = [int(v) for v in lip_cfg.steps]
    return GainSettings(steps=steps, pairs=int(lip_cfg.pairs), iters=int(lip_cfg.iters), lr=float(lip_cfg.lr),
                        levels=int(lip_cfg.levels), settle=int(lip_cfg.settle))


def short_method(report: GainReport) -> str:
    """The table's short label of how the lower bound was found (details go to the notes)."""
    return "H∞ of linearisation" if report.method == "linearisation" else f"ascent, T={report.horizon}"


def evaluate_model(model, u_test, y_test, washout, lip_cfg, seed, y_clean=None, *, sample_time=None,
                   gain: bool = True) -> dict:
    """Test metrics of one model: NRMSE, fit, optional noise-free NRMSE, the incremental-gain lower bound
    (:func:`~deqlab.sysid.gain.incremental_gain_lower_bound`, how it was found in ``gain_report``) and the
    guarantee. A model whose simulated output is not finite gets NaN metrics and ``status`` saying so,
    never an ``inf`` or a ``0.0`` that would read as a result."""
    with np.errstate(over="ignore", invalid="ignore"):
        y_hat = simulate(model, u_test)
    finite = bool(np.isfinite(y_hat).all())
    err = nrmse(y_hat, y_test, washout) if finite else float("nan")
    report = None
    if finite and gain:
        report = incremental_gain_lower_bound(model, u_test, gain_settings(lip_cfg), seed=seed, sample_time=sample_time)
    bound = model.lipschitz_bound()
    return {"y_hat": y_hat, "NRMSE": err, "fit %": fit_percent(err) if finite else float("nan"),
            "NRMSE clean": nrmse(y_hat, y_clean, washout) if y_clean is not None and finite else float("nan"),
            "Lip lower": report.value if report is not None else float("nan"),
            "Lip lower by": short_method(report) if report is not None else ("—" if finite else "not computed"),
            "Lip bound": float("nan") if bound is None else bound,
            "status": "ok" if finite else "non-finite output",
            "gain_report": report}


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
            physical: bool = False, panel: str = "test trajectory", subtitle: str = "", output: str | None = None):
    """``output``: what the data's first output is, when known (the plotted channel; 'y₀' otherwise)."""
    y_label, unit = ("angle φ [rad]", "rad/(N·m)") if physical else ("y₀ (units of the data)", "units of y / units of u")
    if output is not None and not physical:
        y_label = f"{output} (units of the data)"
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


@dataclass
class Parts:
    """Train/validation/test arrays ``u`` (T, steps, n_u), ``y`` (T, steps, n_y) of one identification problem
    (the parts may differ in trajectory length), the test set's noise-free output if known, the sample time."""

    u_train: np.ndarray
    y_train: np.ndarray
    u_val: np.ndarray
    y_val: np.ndarray
    u_test: np.ndarray
    y_test: np.ndarray
    y_clean: np.ndarray | None = None
    sample_time: float | None = None
    y_clean_val: np.ndarray | None = None  # the validation set's noise-free output (its noise floor in a figure)


def spread(values) -> dict:
    """Mean, sample std (0 for one value), min and max of per-seed results (NaNs propagate)."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}


SEED_FORMATS = {"NRMSE mean": "{:.4f}", "± std": "{:.4f}", "min": "{:.4f}", "max": "{:.4f}", "×floor": "{:.3f}",
                "fit %": "{:.1f}", "NRMSE clean": "{:.4f}", "train time [s]": "{:.4g}", "Lip lower": "{:.3g}", "Lip bound": "{:.3g}"}
SEED_CAPTION = ("NRMSE over the seeds (mean, sample std, min, max); fit % = 100(1 − mean NRMSE); NRMSE clean: mean against "
                "the noise-free output; train time: mean per seed. Lip columns describe the saved model (first seed): "
                "‖Δy‖₂/‖Δu‖₂ from the zero state; 'lower' is the larger of a multi-start ascent over input pairs and the H∞ "
                "norm of the linearisation at constant-input equilibria ('by' says which), 'bound' the guaranteed bound (nan: the model has none, only a Lipschitz REN has one).")


def identify(cfg, parts: Parts, *, title: str, physical: bool, command: str = "sysid", output: str | None = None) -> Result:
    """Train every model of ``cfg.models`` with every seed (:func:`run_seeds`) on ``parts`` and report.

    Tables: ``sysid`` (one row per model: the NRMSE over seeds as mean ± std, min, max; the gain columns of
    the first seed's model, which is the one saved as ``models/<name>.pt``), ``sysid_runs`` (one row per
    model and seed). Other seeds' models are saved as ``models/seed<k>/<name>.pt``. Shared by
    ``sysid pendulum`` and ``sysid f16``.
    """
    result = Result(command=command)
    seeds = run_seeds(cfg)
    p = parts
    base = {"epochs": cfg.train.epochs, "batch_size": cfg.train.batch_size, "seq_len": cfg.train.seq_len,
                "lr": float(cfg.train.lr), "lr_decay": float(cfg.train.lr_decay), "clip": float(cfg.train.clip),
                "patience": cfg.train.patience, "washout": cfg.washout,
                "time_limit": None if cfg.train.time_limit is None else float(cfg.train.time_limit)}
    floor = nrmse(p.y_clean, p.y_test, cfg.washout) if p.y_clean is not None else None
    if floor is not None and not floor > 0:
        # noise-free simulator data (data.noise_std=0): no noise floor to compare with
        result.notes.append("the test output is noise-free (noise floor 0): no ×floor column and no floor claim")
        floor = None
    runs, first, curves, y_hats = [], {}, {}, {}
    with EpochBar() as bar:
        for seed in seeds:
            for name in cfg.models:
                spec = cfg.model_settings[name]
                kind, kwargs = spec.kind, spec.kwargs()
                torch.manual_seed(model_seed(seed, name))
                model = make_model(kind, kwargs, p.u_train, p.y_train)
                own = spec.train_overrides()
                settings = TrainSettings(**{**base, **own, "seed": seed})
                label = name if len(seeds) == 1 else f"{name} (seed {seed})"
                hist = train(model, p.u_train, p.y_train, p.u_val, p.y_val, settings, progress=bar.callback(label, settings.epochs))
                is_first = seed == seeds[0]
                what = "simulate the test set" + (", search the Lipschitz lower bound" if is_first else "")
                with bar.step(f"evaluate {label}: {what}"):
                    metrics = evaluate_model(model, p.u_test, p.y_test, cfg.washout, cfg.lipschitz, seed, p.y_clean,
                                             sample_time=p.sample_time, gain=is_first)
                y_hat = metrics.pop("y_hat")
                report = metrics.pop("gain_report")
                runs.append({"model": name, "seed": seed, "kind": kind, "params": parameter_count(model),
                             "NRMSE": metrics["NRMSE"], "fit %": metrics["fit %"], "NRMSE clean": metrics["NRMSE clean"],
                             "train time [s]": hist.seconds, "epochs": len(hist.val_nrmse), "best ep": hist.best_epoch + 1,
                             "stopped": hist.stopped, "status": metrics["status"]})
                curves_arr = result.arrays.setdefault("curves", {})
                curves_arr[f"{name}_seed{seed}_val_nrmse"] = np.asarray(hist.val_nrmse)
                curves_arr[f"{name}_seed{seed}_train_loss"] = np.asarray(hist.train_loss)
                path = f"models/{name}.pt" if is_first else f"models/seed{seed}/{name}.pt"
                result.files[path] = model_writer(model, kind, kwargs)
                if hist.stopped == "non_finite" or metrics["status"] != "ok":
                    result.failures.append(f"{name} (seed {seed}): training produced non-finite values "
                                           f"(stopped: {hist.stopped}, test output: {metrics['status']})")
                if is_first:
                    first[name] = {**metrics, "kind": kind, "params": parameter_count(model)}
                    y_hats[name] = y_hat
                    curves[name] = np.asarray(hist.val_nrmse)
                    if report is not None:
                        result.notes.append(f"{name}: Lip lower {report.value:.4g} from {report.detail} (ascent {report.ascent:.4g}, "
                                            f"linearisation {report.linearisation:.4g}"
                                            + (f"; {report.unsettled} input level(s) without a stable equilibrium" if report.unsettled else "") + ")")
    run_frame = pd.DataFrame(runs)
    rows = []
    for name in cfg.models:
        mine = run_frame[run_frame["model"] == name]
        st = spread(mine["NRMSE"])
        f = first[name]
        row = {"model": name, "kind": f["kind"], "params": f["params"], "seeds": len(mine), "NRMSE mean": st["mean"],
               "± std": st["std"], "min": st["min"], "max": st["max"]}
        if floor is not None:
            row["×floor"] = st["mean"] / floor
        row.update({"fit %": fit_percent(st["mean"]), "NRMSE clean": float(np.mean(mine["NRMSE clean"])),
                    "train time [s]": float(mine["train time [s]"].mean()), "Lip lower": f["Lip lower"], "Lip lower by": f["Lip lower by"],
                    "Lip bound": f["Lip bound"]})
        rows.append(row)
    frame = pd.DataFrame(rows)
    seed_caption, runs_caption = SEED_CAPTION, NRMSE_CAPTION
    if p.y_clean is None:
        # measured data (F-16, a user's file) has no noise-free output: no NRMSE clean column of nan, like ×floor
        frame, run_frame = frame.drop(columns="NRMSE clean"), run_frame.drop(columns="NRMSE clean")
        seed_caption = seed_caption.replace(" NRMSE clean: mean against the noise-free output;", "")
        runs_caption = runs_caption.replace(" NRMSE clean: against the noise-free output.", "")
    result.tables["sysid"] = Table(title=f"System identification: test set, {len(seeds)} seed(s) {', '.join(map(str, seeds))}",
                                   frame=frame, formats=SEED_FORMATS, caption=seed_caption)
    result.tables["sysid_runs"] = Table(title="Every training run (model × seed)", frame=run_frame, formats=FORMATS,
                                        caption=runs_caption)
    result.arrays["predictions"] = {"u": p.u_test, "y": p.y_test, **({"y_clean": p.y_clean} if p.y_clean is not None else {}),
                                    **{f"y_hat_{k}": v for k, v in y_hats.items()}, "seed": np.asarray(seeds[0])}
    fig_rows = [{"model": name, "NRMSE": first[name]["NRMSE"], "Lip lower": first[name]["Lip lower"],
                 "Lip bound": first[name]["Lip bound"]} for name in cfg.models]
    subtitle = f"float64, seed={seeds[0]} (first of {len(seeds)}), washout={cfg.washout}"
    figures(result, fig_rows, p.y_test, y_hats, p.sample_time, cfg.washout, cfg.plot_trajectories, title, physical=physical,
            subtitle=subtitle, output=output)
    val_floor = nrmse(p.y_clean_val, p.y_val, cfg.washout) if p.y_clean_val is not None else None
    val_floor = val_floor if val_floor is not None and val_floor > 0 else None   # log axis: no line at 0
    result.figures["training_curves"] = lambda: sysid_figures.training_curves(
        curves, title="Validation NRMSE during training", noise_floor=val_floor, subtitle=subtitle)
    if floor is not None:
        result.notes.append(f"noise floor (NRMSE of the noise-free output against the measured test output): {floor:.4f}")
        result.arrays["predictions"]["noise_floor"] = np.asarray(floor)
    result.notes.extend(claims(frame, floor, len(seeds)))
    result.notes.append(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float64, {os.cpu_count()} cores")
    return result


def claims(frame: pd.DataFrame, floor: float | None, n_seeds: int) -> list[str]:
    """The identification claims, judged on the mean NRMSE over seeds: the contracting REN within
    1.2× of the noise floor (simulator data only) and no worse than the LSTM."""
    mean = frame.set_index("model")["NRMSE mean"]
    out = []
    over = f"mean over {n_seeds} seed(s)"
    if "ren" in mean.index and floor is not None:
        ratio = mean["ren"] / floor
        out.append(f"claim 'REN within 1.2× of the noise floor': {'met' if ratio <= 1.2 else 'NOT met'} "
                   f"({over}: {mean['ren']:.4f} = {ratio:.3f}× the floor {floor:.4f})")
    if "ren" in mean.index and "lstm" in mean.index:
        ok = mean["ren"] <= mean["lstm"]
        out.append(f"claim 'REN no worse than the LSTM': {'met' if ok else 'NOT met'} ({over}: REN {mean['ren']:.4f}, LSTM {mean['lstm']:.4f})")
    return out


def _run(cfg) -> Result:
    data = make_dataset(cfg)
    u_tr, y_tr = data.part("train")
    u_va, y_va = data.part("val")
    u_te, y_te = data.part("test")
    y_clean = data.y_clean[data.split["test"]] if data.y_clean is not None else None
    y_clean_val = data.y_clean[data.split["val"]] if data.y_clean is not None else None
    parts = Parts(u_tr, y_tr, u_va, y_va, u_te, y_te, y_clean, data.sample_time, y_clean_val)
    title = "pendulum" if cfg.data.path is None else Path(cfg.data.path).name
    result = identify(cfg, parts, title=title, physical=cfg.data.path is None)
    result.arrays["dataset"] = data.arrays()
    source = f"data file {cfg.data.path}" if cfg.data.path is not None else (
        f"pendulum simulator (sample time {data.sample_time:g} s, noise σ = {cfg.data.noise_std} rad)")
    result.notes.insert(0, f"data: {source}; trajectories train/val/test = "
                           f"{len(data.split['train'])}/{len(data.split['val'])}/{len(data.split['test'])}, "
                           f"{data.u.shape[1]} steps, washout {cfg.washout}")
    if data.meta.get("flipped"):
        result.notes.append(f"{data.meta['flipped']} trajectories went over the top (|φ − π| > π)")
    return result
