"""deqlab's command line: one Typer command per demo, trailing ``key=value`` words are Hydra overrides.

Commands live in :mod:`deqlab.cli.commands` (one module each, discovered here). Nothing heavy is
imported at start-up so ``deqlab --help`` answers quickly.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer
from typer.core import TyperGroup

import deqlab.cli.commands


def _click_exception_types() -> tuple[type, ...]:
    """Click's exception base class(es): Typer ≥ 0.2x vendors click as ``typer._click``, older
    releases use the ``click`` package itself."""
    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except ImportError:
            pass
    return tuple(found)


class OneLineErrors(TyperGroup):
    """The top-level group: a usage error (bad option type, unknown command, missing argument) is
    one ``error: ...`` line on stderr with click's exit code (2), not a multi-line box."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _click_exception_types() as exc:
            message = exc.format_message().strip()
            if message:  # empty for "no arguments: help was shown"
                typer.echo(f"error: {message}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    name="deqlab",
    help="A lab for Deep Equilibrium Models. Each command writes a run folder under outputs/; "
    "trailing key=value words are Hydra overrides (e.g. `deqlab converge seed=3 model.n_z=20`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench = typer.Typer(help="Benchmarks: CSV + table, ratios against a reference measured in the same run.", no_args_is_help=True)
app.add_typer(bench, name="bench")


def _register_commands() -> None:
    for info in sorted(pkgutil.iter_modules(deqlab.cli.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"deqlab.cli.commands.{info.name}")
        if hasattr(module, "register"):
            module.register(app, bench)


_register_commands()


def main() -> None:
    app()
