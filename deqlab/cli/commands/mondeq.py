"""``deqlab mondeq`` and ``deqlab bench mondeq``."""

from __future__ import annotations

from typing import Optional

import typer

from deqlab.cli.execute import execute
from deqlab.cli.options import DEVICE_OPTION, INTEGER, NUMBER, OVERRIDES, bench_help, option_help, option_overrides


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command(context_settings=OVERRIDES)
    def mondeq(
        ctx: typer.Context,
        device: Optional[str] = DEVICE_OPTION,
        m: Optional[float] = typer.Option(None, "--m", **NUMBER, help=option_help("mondeq", "model.m", "Monotonicity margin m > 0 of W = (1-m)I - A^T A + B - B^T.")),
        alpha: Optional[float] = typer.Option(None, **NUMBER, help=option_help("mondeq", "alpha", "Peaceman-Rachford / Douglas-Rachford step alpha > 0.")),
        fb_alpha: Optional[str] = typer.Option(None, help=option_help("mondeq", "fb_alpha", "Forward-backward step: a number > 0, or auto (0.9 x its bound 2m/||I-W||^2).")),
        nonlinearity: Optional[str] = typer.Option(None, help=option_help("mondeq", "model.nonlinearity", "relu | tanh | softplus | identity.")),
        n_z: Optional[int] = typer.Option(None, **INTEGER, help=option_help("mondeq", "model.n_z", "Hidden size of the sweep and training models.")),
        seed: Optional[int] = typer.Option(None, **INTEGER, help=option_help("mondeq", "seed", "Torch seed for the weights.")),
        restarts: Optional[int] = typer.Option(None, **INTEGER, help=option_help("mondeq", "eigen.restarts", "Models of each kind in the eigenvalue table.")),
        epochs: Optional[int] = typer.Option(None, **INTEGER, help=option_help("mondeq", "train.epochs", "Training epochs.")),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 if a solve that should converge (monotone models, references, FB at --fb-alpha) did not."),
    ) -> None:
        """Monotone operator DEQs: eigenvalue tables, FB/PR/DR splitting, alpha sweep, training (seed 003)."""
        overrides = option_overrides(
            **{"model.m": m, "alpha": alpha, "fb_alpha": fb_alpha, "model.nonlinearity": nonlinearity,
               "model.n_z": n_z, "seed": seed, "eigen.restarts": restarts, "train.epochs": epochs,
               "strict": strict or None}
        )
        execute("mondeq", [*overrides, *ctx.args], device=device)

    @bench.command("mondeq", context_settings=OVERRIDES,
                   help=bench_help("bench_mondeq", "PR, DR, FB, Anderson vs fixed-point iteration and a dense direct solve: iterations and time.", "about 1 minute"))
    def bench_mondeq(ctx: typer.Context, device: Optional[str] = DEVICE_OPTION) -> None:
        execute("bench_mondeq", ctx.args, folder="bench/mondeq", device=device)
