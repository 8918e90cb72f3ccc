"""deqlab's command line: one Typer command per demo, trailing ``key=value`` words are Hydra overrides.

Commands live in :mod:`deqlab.commands` (one module each, discovered here). Nothing heavy is
imported at start-up so ``deqlab --help`` answers quickly.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import deqlab.commands

app = typer.Typer(
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
    for info in sorted(pkgutil.iter_modules(deqlab.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"deqlab.commands.{info.name}")
        if hasattr(module, "register"):
            module.register(app, bench)


_register_commands()


def main() -> None:
    app()
