"""``deqlab converge``."""

from __future__ import annotations

from typing import Optional

import typer

from deqlab.cli.execute import OVERRIDES, execute, option_overrides


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command(context_settings=OVERRIDES)
    def converge(
        ctx: typer.Context,
        init: Optional[str] = typer.Option(None, help="W_z init: default | normal (nn.init.normal_)."),
        solver: Optional[str] = typer.Option(None, help="Solver for z*: fsolve (default), root, anderson, broyden, newton, fixed_point."),
        seed: Optional[int] = typer.Option(None, help="Torch seed for the weights (default 0)."),
        dtype: Optional[str] = typer.Option(None, help="dtype of the finite-depth pass: float32 (default) | float64."),
        restarts: Optional[int] = typer.Option(None, help="Models in the eigenvalue table (default 10)."),
        layers: Optional[int] = typer.Option(None, help="Depth L of the eigenvalue table (default 40)."),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 if any solve did not converge."),
    ) -> None:
        """Finite-depth weight-tied network vs the root-found equilibrium (seed 003 tables)."""
        overrides = option_overrides(
            **{"model.init": init, "solver": solver, "seed": seed, "dtype": dtype, "restarts": restarts,
               "eig_layers": layers, "strict": strict or None}
        )
        execute("converge", [*overrides, *ctx.args])
