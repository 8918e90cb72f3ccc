"""How the command line ends on an error: one ``error: ...`` line on stderr and an exit code, never a
traceback. Bad input and resources that do not fit exit 2, every other failure 1
(:func:`deqlab.cli.execute.run_in_folder` maps the library's errors); signals 128+N
(:mod:`deqlab.cli.termination`)."""

from __future__ import annotations

import typer


def fail(message: str, code: int) -> None:
    """Print ``error: message`` (one line) to stderr and exit with ``code``."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)
