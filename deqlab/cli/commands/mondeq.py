"""``deqlab mondeq`` and ``deqlab bench mondeq``."""

from __future__ import annotations

from typing import Optional

import typer

from deqlab.cli.execute import OVERRIDES, execute, option_overrides


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command(context_settings=OVERRIDES)
    def mondeq(
        ctx: typer.Context,
        m: Optional[float] = typer.Option(None, "--m", help="Monotonicity margin m > 0 of W = (1-m)I - A^T A + B - B^T (default 0.05)."),
        alpha: Optional[float] = typer.Option(None, help="Peaceman-Rachford / Douglas-Rachford step alpha > 0 (default 1)."),
        fb_alpha: Optional[float] = typer.Option(None, help="Forward-backward step (default: 0.9 x its bound 2m/||I-W||^2)."),
        nonlinearity: Optional[str] = typer.Option(None, help="relu (default) | tanh | softplus | identity."),
        n_z: Optional[int] = typer.Option(None, help="Hidden size of the sweep and training models (default 32)."),
        seed: Optional[int] = typer.Option(None, help="Torch seed for the weights (default 0)."),
        restarts: Optional[int] = typer.Option(None, help="Models of each kind in the eigenvalue table (default 10)."),
        epochs: Optional[int] = typer.Option(None, help="Training epochs (default 15; 0 skips training)."),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 if a solve that should converge (monotone models, references, FB at --fb-alpha) did not."),
    ) -> None:
        """Monotone operator DEQs: eigenvalue tables, FB/PR/DR splitting, alpha sweep, training (seed 003)."""
        overrides = option_overrides(
            **{"model.m": m, "alpha": alpha, "fb_alpha": fb_alpha, "model.nonlinearity": nonlinearity,
               "model.n_z": n_z, "seed": seed, "eigen.restarts": restarts, "train.epochs": epochs,
               "strict": strict or None}
        )
        execute("mondeq", [*overrides, *ctx.args])

    @bench.command("mondeq", context_settings=OVERRIDES)
    def bench_mondeq(ctx: typer.Context) -> None:
        """PR, DR, FB, Anderson vs fixed-point iteration and a dense direct solve: iterations and time."""
        execute("bench_mondeq", ctx.args, folder="bench/mondeq")
