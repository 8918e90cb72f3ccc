"""``deqlab sysid evaluate RUN_DIR --data FILE.npz``: the saved models of a ``deqlab sysid pendulum`` run
on a user's data (``u`` (trajectories, steps, inputs), ``y`` (trajectories, steps, outputs)); the same
table as the training run (training time and epochs of the saved, first-seed models copied from the run's
``sysid_runs.csv``). Works on ``deqlab sysid f16`` runs too. A model whose output is not finite on the data
gets a failure row (NaN metrics, ``status``), never a number that means nothing."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pandas as pd

from deqlab.errors import ConfigError, require_path
from deqlab.settings.resources import check_archive
from deqlab.benchmarks import torch_threads
from deqlab.report.progress import activity
from deqlab.report.result import Result, Table
from deqlab.demos.sysid import FORMATS, NRMSE_CAPTION, evaluate_model, figures
from deqlab.sysid.data import load_arrays
from deqlab.sysid.models import load_model, parameter_count


#: evaluation needs this many trajectories (an NRMSE pooled over fewer says little; the README's rule)
MIN_TRAJECTORIES = 3


def _run_washout(run_dir: Path) -> int:
    import yaml

    from deqlab.settings import checks

    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        raise ConfigError(f"{run_dir} has no config.yaml; give washout=N")
    try:
        washout = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))["washout"]
    except Exception:
        raise ConfigError(f"{cfg_file}: no usable washout; give washout=N") from None
    return checks.count(f"washout (read from {cfg_file})", washout, minimum=0, maximum=10_000_000)


def _finished(run_dir: Path) -> None:
    """Refuse a run folder its run did not finish: ``.partial`` (still running, or killed) or ``.failed``
    (stopped, or a failure): its models may not be trained to the end, and an evaluation of them made a
    run folder that claimed success. A ``.failed`` run's models may still be wanted (a strict run with a
    failure report): renamed without the suffix, they are evaluated."""
    if run_dir.name.endswith(".partial"):
        raise ConfigError(f"{run_dir} is unfinished (.partial: its run is still going, or was killed); "
                          "evaluate a finished `deqlab sysid pendulum` run")
    if run_dir.name.endswith(".failed"):
        why = ""
        with contextlib.suppress(OSError, UnicodeDecodeError):
            lines = (run_dir / "error.txt").read_text(encoding="utf-8").splitlines()
            why = f" ({' '.join(lines[0].split())[:160]})" if lines else ""
        raise ConfigError(f"{run_dir} is a run marked failed{why}: its models may not be trained to the end; "
                          "rename the folder without .failed to evaluate them anyway")


def _model_files(run_dir: Path) -> list[Path]:
    files = sorted((run_dir / "models").glob("*.pt"))
    if not files:
        raise ConfigError(f"{run_dir} holds no saved models (models/*.pt): not a finished `deqlab sysid pendulum` run")
    return files


def _models(run_dir: Path):
    files = _model_files(run_dir)
    import warnings

    with warnings.catch_warnings():
        # torch warns in two lines of stderr about a file in the old pickle format (protocol 4, not its 2)
        # before refusing it: the refusal is one line
        warnings.simplefilter("ignore", UserWarning)
        return [(f.stem, *load_model(f)) for f in files]


def _training_info(run_dir: Path) -> pd.DataFrame:
    """Training time and epochs of the saved (first-seed) models: ``sysid_runs.csv`` (runs with seeds) or
    the older one-seed ``sysid.csv``; empty if neither is there. :class:`ConfigError` for a table that is
    not one of those (empty, not text, without its ``model`` or ``seed`` column: pandas' errors were a
    traceback)."""
    runs, trained = run_dir / "sysid_runs.csv", run_dir / "sysid.csv"
    path = runs if runs.is_file() else trained if trained.is_file() else None
    if path is None:
        return pd.DataFrame()
    try:
        frame = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as exc:   # (pandas' ParserError and EmptyDataError are ValueErrors)
        raise ConfigError(f"{path}: not a table of a `deqlab sysid pendulum` run ({' '.join(str(exc).split())[:120]})") from None
    missing = [c for c in ("model", "seed") if c not in frame.columns and (c == "model" or path == runs)]
    if missing:
        raise ConfigError(f"{path}: not a table of a `deqlab sysid pendulum` run (no column {', '.join(missing)})")
    if path == runs and len(frame):
        frame = frame[frame["seed"] == frame["seed"].iloc[0]]
    # (a model with two rows put a pandas Series, printed over three lines, into each of its table cells; text
    # in a number column was copied as it was: both exit 0)
    twice = frame["model"][frame["model"].duplicated()]
    if len(twice):
        raise ConfigError(f"{path}: not a table of a `deqlab sysid pendulum` run (model {twice.iloc[0]!r} has two rows"
                          f"{' for one seed' if path == runs else ''})")
    for column in ("train time [s]", "epochs"):
        if column in frame.columns and not pd.api.types.is_numeric_dtype(frame[column]):
            raise ConfigError(f"{path}: not a table of a `deqlab sysid pendulum` run (column {column!r} holds text, "
                              "not numbers)")
    return frame.set_index("model")


def _row(name, kind, model, metrics, info, y_hats, result, data_name) -> dict:
    y_hats[name] = metrics.pop("y_hat")
    metrics.pop("NRMSE clean")
    report = metrics.pop("gain_report")
    if report is not None:
        result.notes.append(f"{name}: Lip lower {report.value:.4g} from {report.detail}")
    if metrics["status"] != "ok":
        result.failures.append(f"{name}: {metrics['status']} on {data_name} (NRMSE not defined)")
    row = {"model": name, "kind": kind, "params": parameter_count(model), **metrics}
    for col in ("train time [s]", "epochs"):
        row[col] = info.loc[name, col] if name in info.index and col in info.columns else float("nan")
    return row


def run(cfg) -> Result:
    with torch_threads(cfg.threads):
        return _run(cfg)


def _run(cfg) -> Result:
    run_dir = require_path(cfg.run_dir, "run folder", folder=True)
    _finished(run_dir)
    _model_files(run_dir)   # (first: another command's run folder had read as "no usable washout; give washout=N")
    washout = _run_washout(run_dir) if cfg.washout is None else int(cfg.washout)
    check_archive(require_path(cfg.data_file, "data file"), "data file")
    u, y = load_arrays(cfg.data_file, washout=washout, min_trajectories=MIN_TRAJECTORIES)
    info = _training_info(run_dir)
    models = _models(run_dir)
    for name, kind, model in models:   # refuse a mismatch before any work
        if model.n_u != u.shape[-1] or model.n_y != y.shape[-1]:
            raise ConfigError(f"model {name!r} maps {model.n_u} input(s) to {model.n_y} output(s), but the data has "
                              f"{u.shape[-1]} input(s) and {y.shape[-1]} output(s)")
    result = Result(command="sysid_evaluate")
    rows, y_hats = [], {}
    with activity("evaluate saved models", total=len(models)) as act:
        for name, kind, model in models:
            act.update(description=f"evaluate {name}: simulate, search the Lipschitz lower bound")
            metrics = evaluate_model(model, u, y, washout, cfg.lipschitz, cfg.seed)
            act.advance()
            rows.append(_row(name, kind, model, metrics, info, y_hats, result, Path(cfg.data_file).name))
    # the run's caption, told about this table: every trajectory of the user's file, no noise-free output,
    # and training figures copied from the run
    caption = (NRMSE_CAPTION.replace("over the test trajectories", f"over all {u.shape[0]} trajectories of the data")
               .replace(" NRMSE clean: against the noise-free output.", "")
               + " train time [s], epochs: the saved models' own training, copied from the run.")
    result.tables["sysid"] = Table(title=f"Saved models of {run_dir.name} on {Path(cfg.data_file).name}",
                                   frame=pd.DataFrame(rows), formats=FORMATS, caption=caption)
    result.arrays["predictions"] = {"u": u, "y": y, **{f"y_hat_{k}": v for k, v in y_hats.items()}}
    figures(result, rows, y, y_hats, None, washout, cfg.plot_trajectories, Path(cfg.data_file).name,
            panel="trajectory", subtitle=f"models of {run_dir.name}, float64, seed={cfg.seed}, washout={washout}")
    result.notes.append(f"run {run_dir}; data {cfg.data_file}: {u.shape[0]} trajectories × {u.shape[1]} steps, washout {washout}")
    return result
