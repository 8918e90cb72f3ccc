"""Standard streams that survive a reader that goes away.

``deqlab converge | head -3`` closes the pipe after three lines, and the next write raises
``BrokenPipeError``: from rich's ``print`` (whose default answer is ``SystemExit(1)``), from Hydra's
log lines in a sweep, from Python's final flush. Any of them would end a run as a failure although
its computation is done and its files (every table is also a CSV) are written or being written.
:func:`guard` wraps ``sys.stdout`` and ``sys.stderr`` so that a broken pipe only silences that stream:
its descriptor is pointed at ``/dev/null`` and the run goes on to its normal end, folder and exit code.
"""

from __future__ import annotations

import os
import sys


class PipeSafeStream:
    """A text stream whose writes fall silent, instead of raising, once its reader has gone."""

    def __init__(self, stream):
        self._stream = stream

    def _silence(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())   # later writes and the final flush go nowhere
        finally:
            os.close(devnull)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._silence()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._silence()

    def __getattr__(self, name):   # isatty, fileno, encoding, buffer...: the wrapped stream's
        return getattr(self._stream, name)


def guard() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` (once) in :class:`PipeSafeStream`."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, PipeSafeStream):
            try:
                stream.fileno()
            except (AttributeError, OSError, ValueError):   # not a file (a test's capture): leave it
                continue
            setattr(sys, name, PipeSafeStream(stream))
