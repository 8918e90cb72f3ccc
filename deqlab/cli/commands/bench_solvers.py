"""``deqlab bench solvers``."""

from __future__ import annotations

from typing import Optional

import typer

from deqlab.cli.execute import execute
from deqlab.cli.options import DEVICE_OPTION, OVERRIDES, bench_help


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("solvers", context_settings=OVERRIDES,
                   help=bench_help("bench_solvers", "Steps, f-evals and time of every solver on tanh DEQs (n_z, ||W||_2 sweep); ratios to fixed point.", "about 5 minutes"))
    def solvers(ctx: typer.Context, device: Optional[str] = DEVICE_OPTION) -> None:
        execute("bench_solvers", ctx.args, folder="bench/solvers", device=device)
