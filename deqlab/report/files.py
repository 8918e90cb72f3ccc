"""Atomic file writes: nothing under a final name is ever half written.

A file is written under a temporary name in the same folder (``.<name>.tmp-<pid>``), flushed to disk,
and renamed over the final name (``os.replace`` is atomic on POSIX). A write that fails (a full disk,
a killed process) leaves at most the temporary file, which :func:`atomic_path` removes when it can.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        # a failed write (a full disk) names no file: "cannot write: No space left on device" did not say which
        if not exc.filename and exc.errno is not None:   # (one without an errno, such as pandas' "Cannot save
            exc.filename = str(path)                      # file into a non-existent directory", names it itself)
        elif exc.filename is not None and str(exc.filename) == str(tmp):
            # (no room for the temporary file's entry: "cannot write .config.yaml.tmp-14470.yaml" named a file
            # the user never asked for)
            exc.filename = str(path)
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        # UTF-8, not the locale's encoding (an ASCII one failed on every "−" of a message); bytes of a file
        # name that were not UTF-8 are written back as they were
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")
