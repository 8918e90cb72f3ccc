"""Progress bars and spinners for the demos' long steps (the library itself stays silent and
takes plain callbacks at most).

* :func:`track` ``(iterable, description)``: a bar over a loop.
* :func:`activity` ``(description, total=None)``: a context manager for a step that is not a loop
  of the demo's own (eigsh calling an HVP, a training run calling back per epoch). It yields an
  :class:`Activity` whose :meth:`~Activity.advance` / :meth:`~Activity.update` move it and whose
  :meth:`~Activity.counting` wraps a function so that each call counts as one unit of work
  (``"eigsh (largest): 240 HVPs"``). Without ``total`` it is a spinner with a counter and the
  elapsed time; with one, a bar.

Nothing is drawn when ``DEQLAB_PROGRESS=0`` (the tests), when stdout is not a terminal (a pipe or a
log file gets only the results), or when stderr is not one (the bar goes to stderr, so it never
mixes with the tables on stdout). Bars are transient: they vanish when the step ends.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    """Whether progress may be drawn here (see the module docstring)."""
    if os.environ.get("DEQLAB_PROGRESS", "1") == "0":
        return False
    try:
        return sys.stdout.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def _console():
    from rich.console import Console

    return Console(stderr=True)


def track(items: Iterable[T], description: str, total: int | None = None,
          label: Callable[[T], str] | None = None) -> Iterable[T]:
    """``items`` unchanged, with a transient bar on the terminal while they are consumed; with
    ``label``, the bar also names the item in progress (``"bench solvers: symmetric n_z=1024"``)."""
    if not enabled():
        return items
    if label is not None:
        return _labelled(list(items), description, label)
    from rich.markup import escape
    from rich.progress import track as rich_track

    # (rich_track's description column reads markup: escaped, a name such as 'run[/]1' prints as written)
    return rich_track(items, description=escape(description), total=total, console=_console(), transient=True)


def _labelled(items: list[T], description: str, label: Callable[[T], str]) -> Iterator[T]:
    with activity(description, total=len(items)) as act:
        for item in items:
            act.update(description=f"{description}: {label(item)}")
            yield item
            act.advance()


class Activity:
    """Handle of one running :func:`activity`; every method is a no-op when nothing is drawn."""

    def __init__(self, progress, task, unit: str, bar: bool = False):
        self._progress, self._task, self.unit, self.count = progress, task, unit, 0
        self._bar = bar

    def advance(self, n: int = 1) -> None:
        self.count += n
        if self._progress is not None:
            # a bar shows M/N already: its count column only names a unit ('240 HVPs'), never the bare number again
            # ('drawing train.png ━━━ 2/2 2')
            count = "" if self._bar and not self.unit else f"{self.count} {self.unit}".rstrip()
            self._progress.update(self._task, advance=n, count=count)

    def update(self, *, description: str | None = None, completed: float | None = None, total: float | None = None,
               info: str | None = None) -> None:
        """Change the description, the position (of ``total``), or the trailing ``info`` text."""
        if self._progress is None:
            return
        fields = {k: v for k, v in (("description", description), ("completed", completed), ("total", total)) if v is not None}
        if info is not None:
            fields["count"] = info
        self._progress.update(self._task, **fields)

    def counting(self, fn: Callable[..., T]) -> Callable[..., T]:
        """``fn`` itself, advancing this activity by one on every call (e.g. an HVP given to eigsh)."""

        def counted(*args, **kwargs):
            out = fn(*args, **kwargs)
            self.advance()
            return out

        return counted


@contextmanager
def activity(description: str, total: float | None = None, unit: str = "") -> Iterator[Activity]:
    """A spinner (``total=None``) or bar for one long step; see the module docstring."""
    if not enabled():
        yield Activity(None, None, unit)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    # descriptions and counts as text, never markup: they quote names (files, models) a user chose, and
    # '[/]' in one raised rich's MarkupError from the bar's refresh thread
    columns = [SpinnerColumn(), TextColumn("{task.description}", style="bold", markup=False)]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn("{task.fields[count]}", markup=False), TimeElapsedColumn()]
    progress = Progress(*columns, console=_console(), transient=True)
    try:
        progress.start()
    except RuntimeError:   # (its refresh thread cannot start: a limit on memory or processes) the step runs undrawn
        yield Activity(None, None, unit)
        return
    try:
        task = progress.add_task(description, total=total, count="")
        yield Activity(progress, task, unit, bar=total is not None)
    finally:
        progress.stop()
