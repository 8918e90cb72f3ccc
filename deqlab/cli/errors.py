"""Where library errors become exit codes (the only place): bad input and resources that do not fit exit 2,
every other failure 1; signals 128+N (:mod:`deqlab.cli.termination`). One ``error: ...`` line, never a
traceback."""

from __future__ import annotations

import typer

from deqlab.errors import InputError


def fail(message: str, code: int) -> None:
    """Print ``error: message`` (one line) to stderr and exit with ``code``."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


def exit_code(exc: BaseException) -> int:
    """The exit code of a library error: 2 for bad input (resource refusals included), 1 otherwise."""
    return 2 if isinstance(exc, InputError) else 1
