"""A rich progress bar for long loops in experiments (the library itself stays silent).

``track(iterable, description)`` shows a bar on the terminal (stderr) and is a plain pass-through
when ``DEQLAB_PROGRESS=0`` (tests) or when stderr is not a terminal.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
    if os.environ.get("DEQLAB_PROGRESS", "1") == "0":
        return items
    from rich.console import Console
    from rich.progress import track as rich_track

    console = Console(stderr=True)
    if not console.is_terminal:  # a log file or a pipe gets no bar (and no blank lines)
        return items
    return rich_track(items, description=description, total=total, console=console, transient=True)
