"""``deqlab config COMMAND [key=value ...]``: print a command's settings, every key with its value."""

from __future__ import annotations

import copy
import os
from typing import Optional

import typer

from deqlab.cli.errors import fail
from deqlab.cli.options import DEVICE_OPTION, OVERRIDES, option_overrides
from deqlab.cli.run_folder import ENV_OUTPUT_ROOT, output_root
from deqlab.cli.sweeping import SWEEPABLE, resolve


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command(context_settings=OVERRIDES,
                 help="Print the settings a command would run with (YAML: every key, after the overrides), and exit. "
                      f"COMMAND is one of: {', '.join(SWEEPABLE)}. Keys, types and defaults live in deqlab/settings/.")
    def config(ctx: typer.Context, command: str = typer.Argument(..., metavar="COMMAND", help="Command whose settings to print."),
               device: Optional[str] = DEVICE_OPTION) -> None:
        from deqlab.cli.compose import load
        from deqlab.cli.execute import check_resources, resolve_device, settings_yaml
        from deqlab.errors import InputError

        try:
            name = resolve(command)
        except KeyError:
            fail(f"unknown command {command!r}; choose one of: {', '.join(SWEEPABLE)}", 2)
        try:
            settings, run = load(name, [*option_overrides(device=device), *ctx.args])
            root = output_root(run.output_root)   # (a '~user' that names nobody)
            # A CUDA device where there is none is refused as a run refuses it (this printed `device: cuda`, exit 0),
            # and so is a size that does not fit this machine's memory (`model.n_z=99999` printed, exit 0, where the
            # run refuses it). auto is printed as asked, not as this machine would resolve it: the run may be on
            # another; the memory is checked on a copy resolved here, as the run here would be.
            resolved = copy.copy(settings)
            resolve_device(resolved)
            check_resources(resolved)
        except InputError as exc:
            fail(str(exc), 2)
        typer.echo(f"# deqlab {command}: output_root={run.output_root} strict={str(run.strict).lower()}")
        if os.environ.get(ENV_OUTPUT_ROOT):   # it wins over output_root: say where a run would really go
            typer.echo(f"# runs go under {root} ({ENV_OUTPUT_ROOT} is set)")
        typer.echo(settings_yaml(settings), nl=False)
