"""deqlab's command line: one Typer command per demo, trailing ``key=value`` words are Hydra overrides.

Commands live in :mod:`deqlab.cli.commands` (one module each, discovered here). Nothing heavy is
imported at start-up so ``deqlab --help`` answers quickly.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer
from typer.core import TyperArgument, TyperGroup

import deqlab.cli.commands
from deqlab.cli.errors import say_error
from deqlab.cli.options import PATH, PATH_KEYS


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

    def main(self, args=None, *rest, standalone_mode: bool = True, **kwargs):
        args = list(sys.argv[1:] if args is None else args)
        flags = _flag_options(self)
        args = _flag_values(args, flags)
        if (repeated := _repeated_option(args)) is not None:
            say_error(f"option {repeated} is given twice: give it once")
            sys.exit(2)
        if not standalone_mode:
            return super().main(args, *rest, standalone_mode=False, **kwargs)
        try:
            code = super().main(args, *rest, standalone_mode=False, **kwargs)
        except _click_exception_types() as exc:
            message = exc.format_message().strip()
            ctx = getattr(exc, "ctx", None)
            if message.startswith("No such command") and ctx is not None and hasattr(ctx.command, "list_commands"):
                # say what to type instead ('deqlab bench foo' named no bench)
                message = f"{message.rstrip('.')}; choose one of: {', '.join(ctx.command.list_commands(ctx))}"
            if message:
                say_error(message)
            elif type(exc).__name__ == "NoArgsIsHelpError":  # `deqlab bench` alone: its help was asked for
                sys.exit(0)
            sys.exit(exc.exit_code)
        except typer.Abort:
            say_error("stopped by SIGINT (Ctrl-C)")
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


OVERRIDES_EPILOG = ("Trailing key=value words override any setting (e.g. seed=3 model.n_z=20); `deqlab config <command> "
                    "key=value ...` prints every key with its value. Keys, types and defaults: deqlab/settings/.")


def _flag_options(group) -> set[str]:
    """Every boolean flag of every command (``--strict``, ``--check-fd``...); their help shows no ``<bool>``."""
    names: set[str] = set()
    todo = [group]
    while todo:
        command = todo.pop()
        for param in getattr(command, "params", []):
            if getattr(param, "is_flag", False) and getattr(param, "opts", None):
                param.metavar = ""
                names.update(o for o in param.opts if o.startswith("--"))
            if isinstance(param, TyperArgument) and param.name in PATH_KEYS:
                _show_type(param, PATH["metavar"])
        _quiet_help_option(command)
        if getattr(command, "allow_extra_args", False) or (getattr(command, "context_settings", None) or {}).get("allow_extra_args"):
            command.epilog = OVERRIDES_EPILOG
        todo.extend(getattr(command, "commands", {}).values())
    return names


def _show_type(argument, label: str) -> None:
    """Show ``label`` in the type column of a positional argument's help. An option shows its metavar
    there (``--data <path>``); an argument shows the type of its annotation (``run_dir <str>``): Typer
    0.29 derives it from the annotation alone, and a ``Path`` annotation would hand the value to
    Typer's path conversion (which reads '' as '.') instead of the path_text parser."""
    argument.display_type_rich = lambda ctx: label


def _quiet_help_option(command) -> None:
    """``--help`` is a flag too: no ``<bool>`` beside it."""
    original = command.get_help_option

    def get_help_option(ctx):
        option = original(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option


def _repeated_option(args: list[str]) -> str | None:
    """The first ``--option`` given twice (``--seed 1 --seed 2``, ``--seed=1 --seed 2``), else ``None``. Click keeps the
    last value without a word, as Hydra does for ``seed=1 seed=2``, which is refused (a mistake either would hide)."""
    seen = set()
    for word in args:
        if word == "--":
            break
        name = word.partition("=")[0]
        if name.startswith("--") and len(name) > 2 and name != "--help":
            if name in seen:
                return name
            seen.add(name)
    return None


def _flag_values(args: list[str], flags: set[str]) -> list[str]:
    """``--strict true`` / ``--strict=false`` as a user may write them → ``--strict`` / nothing."""
    out, i = [], 0
    while i < len(args):
        word = args[i]
        name, _, value = word.partition("=")
        if name in flags and value.lower() in ("true", "false"):
            out += [name] if value.lower() == "true" else []
        elif word in flags and i + 1 < len(args) and args[i + 1].lower() in ("true", "false"):
            out += [word] if args[i + 1].lower() == "true" else []
            i += 1
        else:
            out.append(word)
        i += 1
    return out


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


def _installed_version() -> str:
    """The installed distribution's version (its metadata); this source tree's ``__version__`` when
    deqlab runs uninstalled (``PYTHONPATH``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deqlab")
    except PackageNotFoundError:
        from deqlab import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"deqlab {_installed_version()}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="Print deqlab's version and exit.")) -> None:
    """The options of ``deqlab`` itself, before any command (``--version``, handled by its callback)."""


def _register_commands() -> None:
    for info in sorted(pkgutil.iter_modules(deqlab.cli.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"deqlab.cli.commands.{info.name}")
        if hasattr(module, "register"):
            module.register(app, bench)


_register_commands()


def main() -> None:
    app()
