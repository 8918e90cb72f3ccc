"""``deqlab bench solvers``."""

from __future__ import annotations

import typer

from deqlab.cli.execute import OVERRIDES, execute


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("solvers", context_settings=OVERRIDES)
    def solvers(ctx: typer.Context) -> None:
        """Steps, f-evals and time of every solver on tanh DEQs (n_z, ||W||_2 sweep); ratios to fixed point."""
        execute("bench_solvers", ctx.args, folder="bench/solvers")
