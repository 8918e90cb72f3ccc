"""``deqlab sweep COMMAND key=a,b ...``: a Hydra multirun of any command through the configured launcher."""

from __future__ import annotations

import typer

from deqlab.cli.errors import fail
from deqlab.cli.options import OVERRIDES
from deqlab.cli.sweeping import SWEEPABLE, resolve

def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command(context_settings=OVERRIDES,
                 help="Hydra multirun of a command: `deqlab sweep converge seed=0,1,2 hydra/launcher=joblib`. "
                      f"COMMAND is one of: {', '.join(SWEEPABLE)}. Trailing key=value words are overrides; "
                      "a,b,c or range(a,b) sweeps a key. Each job gets its own folder; the sweep ends with a table "
                      "across jobs (summary.csv).")
    def sweep(ctx: typer.Context, command: str = typer.Argument(..., metavar="COMMAND", help="Command to sweep.")) -> None:
        from deqlab.cli.sweeping import run_sweep

        try:
            name = resolve(command)
        except KeyError:
            fail(f"unknown command {command!r} to sweep; choose one of: {', '.join(SWEEPABLE)}", 2)
        run_sweep(name, list(ctx.args))
