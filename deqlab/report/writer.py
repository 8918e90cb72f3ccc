"""Write a :class:`~deqlab.report.result.Result` into a run folder and print it."""

from __future__ import annotations

import numpy as np
from rich.console import Console

from deqlab.cli.run_folder import RunFolder
from deqlab.report.result import Result
from deqlab.report.tables import to_rich


def save(result: Result, folder: RunFolder) -> list[str]:
    """Write tables (CSV), arrays (NPZ), figures (PNG) and other files; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, table in result.tables.items():
        table.frame.to_csv(folder.file(f"{name}.csv"), index=False)
        written.append(f"{name}.csv")
    for name, arrays in result.arrays.items():
        np.savez(folder.file(f"{name}.npz"), **{k: np.asarray(v) for k, v in arrays.items()})
        written.append(f"{name}.npz")
    for name, draw in result.figures.items():
        fig = draw()
        fig.savefig(folder.file(f"{name}.png"), dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(f"{name}.png")
    for name, write in result.files.items():
        write(folder.file(name))
        written.append(name)
    return written


def show(result: Result, console: Console) -> None:
    """Print every table, then the notes, then failures in red."""
    for table in result.tables.values():
        console.print(to_rich(table))
    for note in result.notes:
        console.print(note)
    for failure in result.failures:
        console.print(f"[bold red]not converged:[/] {failure}")
