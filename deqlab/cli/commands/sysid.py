"""``deqlab sysid pendulum`` and ``deqlab sysid evaluate`` (issue 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deqlab.cli.execute import DEVICE_OPTION, OVERRIDES, bench_help, execute, option_help, option_overrides, split_list


def register(app: typer.Typer, bench: typer.Typer) -> None:
    sysid = typer.Typer(help="System identification of the pendulum with Recurrent Equilibrium Networks (seed 003).",
                        no_args_is_help=True)
    app.add_typer(sysid, name="sysid")

    @sysid.command(context_settings=OVERRIDES)
    def pendulum(
        ctx: typer.Context,
        device: Optional[str] = DEVICE_OPTION,
        models: Optional[str] = typer.Option(None, help=option_help("sysid", "models", "Comma-separated models to train.")),
        data: Optional[Path] = typer.Option(None, help="Train on a user's .npz (u: trajectories×steps×inputs, y: …×outputs) instead of the simulator."),
        epochs: Optional[int] = typer.Option(None, help=option_help("sysid", "train.epochs", "Maximum training epochs per model.")),
        noise: Optional[float] = typer.Option(None, help=option_help("sysid", "data.noise_std", "Measurement noise σ on the angle [rad].")),
        seed: Optional[int] = typer.Option(None, help=option_help("sysid", "seed", "Seed for weights and batch order.")),
        tiny: bool = typer.Option(False, "--tiny", help="Seconds-long configuration (same as sysid_preset=tiny)."),
    ) -> None:
        """Train a contracting REN, a Lipschitz REN and LSTM/RNN/linear baselines on pendulum data."""
        overrides = option_overrides(**{
            "models": split_list(models, "--models", str), "data.path": str(data) if data is not None else None,
            "train.epochs": epochs, "data.noise_std": noise, "seed": seed, "sysid_preset": "tiny" if tiny else None})
        execute("sysid", [*overrides, *ctx.args], folder="sysid/pendulum", device=device)

    @sysid.command(context_settings=OVERRIDES)
    def evaluate(
        ctx: typer.Context,
        device: Optional[str] = DEVICE_OPTION,
        run_dir: Path = typer.Argument(..., help="A finished `deqlab sysid pendulum` run folder."),
        data: Path = typer.Option(..., "--data", help=".npz with u (trajectories, steps, inputs) and y (trajectories, steps, outputs)."),
    ) -> None:
        """Evaluate the saved models of a run on a user's data (same table)."""
        overrides = option_overrides(run_dir=str(run_dir), data_file=str(data))
        execute("sysid_evaluate", [*overrides, *ctx.args], folder="sysid/evaluate", device=device)

    @bench.command("sysid", context_settings=OVERRIDES,
                   help=bench_help("bench_sysid", "REN training step: implicit vs autograd backward of the equilibrium layer; LSTM for scale.", "about 1 minute"))
    def bench_sysid(ctx: typer.Context, device: Optional[str] = DEVICE_OPTION) -> None:
        execute("bench_sysid", ctx.args, folder="bench/sysid", device=device)
