"""``deqlab sysid pendulum`` and ``deqlab sysid evaluate`` (issue 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deqlab.cli.execute import execute
from deqlab.cli.options import (DEVICE_OPTION, INTEGER, NUMBER, OVERRIDES, bench_help, option_help, option_overrides,
                                PATH, path_text, split_list)


def _exists(path: str) -> bool:
    """Whether ``path`` names anything; a path the system cannot look up (a name too long) names nothing
    (``Path.exists`` raised for it: a traceback)."""
    try:
        return Path(path).exists()
    except OSError:
        return False


def register(app: typer.Typer, bench: typer.Typer) -> None:
    sysid = typer.Typer(help="System identification with Recurrent Equilibrium Networks: the pendulum (seed 003) and "
                             "the F-16 GVT benchmark.", no_args_is_help=True)
    app.add_typer(sysid, name="sysid")

    @sysid.command(context_settings=OVERRIDES)
    def pendulum(
        ctx: typer.Context,
        device: Optional[str] = DEVICE_OPTION,
        models: Optional[str] = typer.Option(None, help=option_help("sysid", "models", "Comma-separated models to train.")),
        data: Optional[str] = typer.Option(None, **PATH, help="Train on a user's .npz (u: trajectories×steps×inputs, y: …×outputs) instead of the simulator."),
        epochs: Optional[int] = typer.Option(None, **INTEGER, help=option_help("sysid", "train.epochs", "Maximum training epochs per model.")),
        noise: Optional[float] = typer.Option(None, **NUMBER, help=option_help("sysid", "data.noise_std", "Measurement noise σ on the angle [rad].")),
        seed: Optional[int] = typer.Option(None, **INTEGER, help="One seed instead of the list `seeds` (key seed; default: the list)."),
        seeds: Optional[str] = typer.Option(None, help=option_help("sysid", "seeds", "Comma-separated seeds; the table shows mean ± std over them.")),
        tiny: bool = typer.Option(False, "--tiny", help="Seconds-long configuration (same as sysid_preset=tiny)."),
    ) -> None:
        """Train a contracting REN, a Lipschitz REN and LSTM/RNN/linear baselines on pendulum data."""
        overrides = option_overrides(**{
            "models": split_list(models, "--models", str), "data.path": data,
            "train.epochs": epochs, "data.noise_std": noise, "seed": seed, "seeds": split_list(seeds, "--seeds", int),
            "sysid_preset": "tiny" if tiny else None})
        execute("sysid", [*overrides, *ctx.args], folder="sysid/pendulum", device=device)

    @sysid.command("f16", context_settings=OVERRIDES)
    def f16(
        ctx: typer.Context,
        device: Optional[str] = DEVICE_OPTION,
        data_dir: Optional[str] = typer.Option(None, "--data-dir", **PATH, help="Folder with the F-16 GVT benchmark: the one holding "
                                                "F16GVT_Files/, F16GVT_Files/ itself, its BenchmarkData/, or F16GVT_Files.zip "
                                                "(nonlinearbenchmark.org; not downloaded by deqlab). Key f16.data_dir: "
                                                "give this option or f16.data_dir=DIR."),
        excitation: Optional[str] = typer.Option(None, help=option_help("sysid_f16", "f16.excitation", "sine_sweep | multisine.")),
        models: Optional[str] = typer.Option(None, help=option_help("sysid_f16", "models", "Comma-separated models to train.")),
        epochs: Optional[int] = typer.Option(None, **INTEGER, help=option_help("sysid_f16", "train.epochs", "Maximum training epochs per model.")),
        seed: Optional[int] = typer.Option(None, **INTEGER, help="One seed instead of the list `seeds` (key seed; default: the list)."),
        seeds: Optional[str] = typer.Option(None, help=option_help("sysid_f16", "seeds", "Comma-separated seeds.")),
        tiny: bool = typer.Option(False, "--tiny", help="Seconds-long configuration (same as sysid_f16_preset=tiny)."),
    ) -> None:
        """Identify the F-16 ground vibration test benchmark (REN paper's protocol) from a copy of its data."""
        overrides = option_overrides(**{
            "f16.data_dir": data_dir, "f16.excitation": excitation, "models": split_list(models, "--models", str),
            "train.epochs": epochs, "seed": seed, "seeds": split_list(seeds, "--seeds", int),
            "sysid_f16_preset": "tiny" if tiny else None})
        execute("sysid_f16", [*overrides, *ctx.args], folder="sysid/f16", device=device)

    @sysid.command(context_settings=OVERRIDES)
    def evaluate(
        ctx: typer.Context,
        device: Optional[str] = DEVICE_OPTION,
        run_dir: str = typer.Argument(..., parser=path_text, help="A finished `deqlab sysid pendulum` run folder."),
        data: Optional[str] = typer.Option(None, "--data", **PATH, help=".npz with u (trajectories, steps, inputs) and y (trajectories, "
                                            "steps, outputs). Key data_file: give this option or data_file=PATH."),
    ) -> None:
        """Evaluate the saved models of a run on a user's data (same table)."""
        first = run_dir
        if "=" in first and not _exists(first):
            # `run_dir=PATH`, the key=value form every setting takes (or another override in its place):
            # an override, not a folder named "run_dir=PATH"
            overrides = [first, *option_overrides(data_file=data)]
        else:
            overrides = option_overrides(run_dir=first, data_file=data)
        execute("sysid_evaluate", [*overrides, *ctx.args], folder="sysid/evaluate", device=device)

    @bench.command("sysid", context_settings=OVERRIDES,
                   help=bench_help("bench_sysid", "REN training step: implicit vs autograd backward of the equilibrium layer; LSTM for scale.", "about 1 minute"))
    def bench_sysid(ctx: typer.Context, device: Optional[str] = DEVICE_OPTION) -> None:
        execute("bench_sysid", ctx.args, folder="bench/sysid", device=device)
