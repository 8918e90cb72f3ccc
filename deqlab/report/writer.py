"""Write a :class:`~deqlab.report.result.Result` into a run folder and print it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.text import Text

from deqlab.report.files import atomic_path
from deqlab.report.progress import activity
from deqlab.report.result import Result
from deqlab.report.tables import to_rich


def save(result: Result, folder: Path) -> list[str]:
    """Write tables (CSV), arrays (NPZ), figures (PNG) and other files into ``folder``; returns the names.

    Every file is written under a temporary name and renamed (:func:`~deqlab.report.files.atomic_path`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, table in result.tables.items():
        with atomic_path(folder / f"{name}.csv") as tmp:
            table.frame.to_csv(tmp, index=False)
        written.append(f"{name}.csv")
    for name, arrays in result.arrays.items():
        with atomic_path(folder / f"{name}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
        written.append(f"{name}.npz")
    # (a few seconds for heatmaps and multi-panel figures: silent on a terminal before)
    with activity("drawing the figures", total=len(result.figures)) as act:
        for name, draw in result.figures.items():
            act.update(description=f"drawing {name}.png")
            fig = draw()
            with atomic_path(folder / f"{name}.png") as tmp:
                fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
            plt.close(fig)
            written.append(f"{name}.png")
            act.advance()
    for name, write in result.files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            write(tmp)
        written.append(name)
    return written


def show(result: Result, console: Console) -> None:
    """Print every table, then the notes, then failures in red."""
    for table in result.tables.values():
        console.print(to_rich(table))
    # Text, never markup: a note quoting 'time [s]' or a path with '[run]' in it must print as written
    for note in result.notes:
        console.print(Text(note))
    for failure in result.failures:
        console.print(Text.assemble(("not converged:", "bold red"), " ", failure))


def show_location(console: Console, label: str, style: str, path, note: str = "") -> None:
    """Print ``label path note`` on one logical line: the path as text, never markup (a folder named
    ``a[/]b`` raised rich's MarkupError, a traceback after a finished run), and soft-wrapped, so a
    path longer than the terminal is never cut by an inserted newline (it stays one line to copy)."""
    console.print(Text.assemble((label, style), " ", str(path), note), soft_wrap=True)
