"""Standard streams that survive a reader that goes away.

``deqlab converge | head -3`` closes the pipe after three lines, and the next write raises
``BrokenPipeError``: from rich's ``print`` (whose default answer is ``SystemExit(1)``), from Hydra's
log lines in a sweep, from Python's final flush. Any of them would end a run as a failure although
its computation is done and its files (every table is also a CSV) are written or being written.
:func:`guard` wraps ``sys.stdout`` and ``sys.stderr`` so that a broken pipe only silences that stream:
its descriptor is pointed at ``/dev/null`` and the run goes on to its normal end, folder and exit code.

Any other write error (``deqlab converge > /dev/full``, a full disk under a redirected stdout) silences
the stream the same way, so the run's own files are finished and its folder named for what they are,
but the loss is not silent: :func:`lost_output` tells the entry point, which ends with exit 1. (It
marked a complete run folder ``.failed`` with "cannot write: No space left on device", as if the
run's disk were full.)
"""

from __future__ import annotations

import os
import sys


class PipeSafeStream:
    """A text stream whose writes fall silent, instead of raising, once its reader has gone."""

    def __init__(self, stream):
        self._stream = stream
        self.lost: OSError | None = None   # the write error (other than a broken pipe) that silenced it

    def _silence(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())   # later writes and the final flush go nowhere
        finally:
            os.close(devnull)

    def _lose(self, exc: OSError) -> None:
        if not isinstance(exc, BrokenPipeError) and self.lost is None:
            self.lost = exc
        self._silence()

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._lose(exc)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            self._lose(exc)

    def __getattr__(self, name):   # isatty, fileno, encoding, buffer...: the wrapped stream's
        return getattr(self._stream, name)


def fill_closed() -> None:
    """Point a closed standard descriptor (``<&-``, ``>&-``, ``2>&-``) at ``/dev/null``, with a Python stream.

    Python starts with ``sys.stdout`` (``sys.stderr``) ``None`` when its descriptor is closed, and the next
    file or pipe opened takes that number: a joblib sweep's workers then failed on ``None.flush()``
    (stdout closed) or died at start (stderr closed), and what C code or a child wrote to descriptor 1
    or 2 would have gone into whatever file held it."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)   # the lowest free number: ``fd``, the ones below are open
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            os.set_inheritable(fd, True)   # (os.open's are not): a child started without it had it closed again
            if getattr(sys, name) is None:
                setattr(sys, name, open(fd, mode, closefd=False))


#: The narrowest terminal written for. ``COLUMNS=0`` printed nothing at all (not even the run folder's
#: line), ``COLUMNS=1`` a help of 15 characters, and ``COLUMNS=5`` cut every number of a table across lines.
MIN_COLUMNS = 40


def sane_columns() -> None:
    """Raise a ``COLUMNS`` below :data:`MIN_COLUMNS` to it (rich, Typer's help and the tables read it;
    a value that is no number is left alone: rich ignores it)."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        return
    if columns < MIN_COLUMNS:
        os.environ["COLUMNS"] = str(MIN_COLUMNS)


#: the error handler of :func:`tolerate_unencodable` (registered with :mod:`codecs` under this name)
ESCAPE_ERRORS = "deqlab.escape"


def _escape(exc: UnicodeError):
    """Encode what the codec could not: bytes a file name carried undecoded (``surrogateescape``: written
    back as they were), anything else as a backslash escape (``backslashreplace``)."""
    import codecs

    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    piece = exc.object[exc.start:exc.end]
    if all(0xDC80 <= ord(c) <= 0xDCFF for c in piece):
        return bytes(ord(c) - 0xDC00 for c in piece), exc.end
    return codecs.backslashreplace_errors(exc)


def tolerate_unencodable(stream) -> None:
    """Let ``stream`` write what its encoding cannot hold as a backslash escape (``\\xd7``) instead of raising.

    Under a locale that is not UTF-8 (``PYTHONIOENCODING=ascii``, ``PYTHONUTF8=0 LC_ALL=C``) stdout is
    ASCII, and the help of `sysid pendulum` (``trajectories×steps``) ended in a ``UnicodeEncodeError``
    traceback; any table or note with a Greek letter would have done the same. Bytes of a file name that were
    not text (``surrogateescape``) are still written as they were: also on stderr, whose default
    ``backslashreplace`` escapes other characters alike but wrote such bytes as ``\\udcc3``."""
    import codecs

    if getattr(stream, "errors", None) not in ("strict", "surrogateescape", "backslashreplace") \
            or not hasattr(stream, "reconfigure"):
        return
    try:
        codecs.lookup_error(ESCAPE_ERRORS)
    except LookupError:
        codecs.register_error(ESCAPE_ERRORS, _escape)
    try:
        stream.reconfigure(errors=ESCAPE_ERRORS)
    except (AttributeError, ValueError, OSError):   # (not a TextIOWrapper after all, or detached)
        pass


def quiet_libraries() -> None:
    """Keep the libraries' own warnings off stderr, which holds one line for an error and nothing else.
    Matplotlib warns in four lines, at import, when its config folder cannot be written (a read-only
    home, ``MPLCONFIGDIR`` pointing at a file), and then works from a temporary folder; after it, a failed
    run's stderr held five lines."""
    import logging

    logging.getLogger("matplotlib").setLevel(logging.ERROR)


def guard() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` (once) in :class:`PipeSafeStream`, writing what their
    encoding cannot hold escaped (:func:`tolerate_unencodable`)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None:
            tolerate_unencodable(stream)
        if stream is not None and not isinstance(stream, PipeSafeStream):
            try:
                stream.fileno()
            except (AttributeError, OSError, ValueError):   # not a file (a test's capture): leave it
                continue
            setattr(sys, name, PipeSafeStream(stream))


def lost_output() -> tuple[str, OSError] | None:
    """``("stdout" or "stderr", the error)`` if a guarded stream lost output to a write error, after
    flushing both (what is still buffered fails here, not silently at the interpreter's exit)."""
    found = None
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, PipeSafeStream):
            stream.flush()
            if stream.lost is not None and found is None:
                found = (name, stream.lost)
    return found
