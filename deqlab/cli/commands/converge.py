"""``deqlab converge``."""

from __future__ import annotations

from typing import Optional

import typer

from deqlab.cli.execute import execute
from deqlab.cli.options import DEVICE_OPTION, INTEGER, OVERRIDES, option_help, option_overrides


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command(context_settings=OVERRIDES)
    def converge(
        ctx: typer.Context,
        device: Optional[str] = DEVICE_OPTION,
        init: Optional[str] = typer.Option(None, help=option_help("converge", "model.init", "W_z init: default | normal (nn.init.normal_).")),
        solver: Optional[str] = typer.Option(None, help=option_help("converge", "solver", "Solver for z*: fsolve, root, anderson, broyden, newton, fixed_point.")),
        seed: Optional[int] = typer.Option(None, **INTEGER, help=option_help("converge", "seed", "Torch seed for the weights.")),
        dtype: Optional[str] = typer.Option(None, help=option_help("converge", "dtype", "dtype of the finite-depth pass: float32 | float64.")),
        restarts: Optional[int] = typer.Option(None, **INTEGER, help=option_help("converge", "restarts", "Models in the eigenvalue table.")),
        layers: Optional[int] = typer.Option(None, **INTEGER, help=option_help("converge", "eig_layers", "Depth L of the eigenvalue table.")),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 if any solve did not converge."),
    ) -> None:
        """Finite-depth weight-tied network vs the root-found equilibrium (seed 003 tables)."""
        overrides = option_overrides(
            **{"model.init": init, "solver": solver, "seed": seed, "dtype": dtype, "restarts": restarts,
               "eig_layers": layers, "strict": strict or None}
        )
        execute("converge", [*overrides, *ctx.args], device=device)
