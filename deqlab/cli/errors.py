"""How the command line ends on an error: one ``error: ...`` line on stderr and an exit code, never a
traceback. Bad input and resources that do not fit exit 2, every other failure 1
(:func:`deqlab.cli.execute.run_in_folder` maps the library's errors); signals 128+N
(:mod:`deqlab.cli.termination`)."""

from __future__ import annotations

import sys

import typer


def say_error(message: str) -> None:
    """Print ``error: message`` to stderr as one line (its whitespace, newlines included, made single spaces).

    Through ``sys.stderr``, never ``typer.echo``: click rewraps an ASCII stderr in UTF-8 of its own, so
    under ``LC_ALL=C PYTHONIOENCODING=ascii`` the line held raw UTF-8 bytes where the stream writes the
    escapes of :func:`deqlab.cli.streams.tolerate_unencodable`."""
    sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
    sys.stderr.flush()


def fail(message: str, code: int) -> None:
    """Print ``error: message`` (one line) to stderr and exit with ``code``."""
    say_error(message)
    raise typer.Exit(code)
