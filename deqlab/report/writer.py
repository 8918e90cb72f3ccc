"""Write a :class:`~deqlab.report.result.Result` into a run folder and print it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.text import Text

from deqlab.report.files import atomic_path
from deqlab.report.progress import activity
from deqlab.report.result import Result, Table
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
    escape = _escaper(getattr(console.file, "encoding", None))
    for table in result.tables.values():
        console.print(to_rich(_escaped_table(table, escape) if escape else table))
    # Text, never markup: a note quoting 'time [s]' or a path with '[run]' in it must print as written
    for note in result.notes:
        console.print(Text(escape(note) if escape else note))
    for failure in result.failures:
        console.print(Text.assemble(("not converged:", "bold red"), " ", escape(failure) if escape else failure))


def _escaper(encoding: str | None):
    """``text -> text`` that a stream of ``encoding`` can hold (None for a UTF encoding, which holds all):
    each character it cannot as a backslash escape (``θ`` as ``\\u03b8``), done *before* rich lays the text out. The stream would escape it too
    (:func:`deqlab.cli.streams.tolerate_unencodable`), but after rich had wrapped the line by the
    unescaped width: under a latin-1 locale a note of 80 columns printed 91. Bytes a file name carried
    undecoded (lone surrogates) are left for the stream, which writes them back as they were."""
    import codecs

    try:
        name = codecs.lookup(encoding or "utf-8").name
    except LookupError:
        name = "utf-8"
    if name.startswith("utf"):
        return None

    def encodable(character: str) -> bool:
        try:
            character.encode(name)
            return True
        except UnicodeEncodeError:
            return 0xD800 <= ord(character) <= 0xDFFF

    def escape(text: str) -> str:
        try:
            text.encode(name)
            return text
        except UnicodeEncodeError:
            return "".join(c if encodable(c) else c.encode("ascii", "backslashreplace").decode("ascii") for c in text)

    return escape


def _escaped_table(table: Table, escape) -> Table:
    """``table`` with its title, caption, column names and text cells passed through ``escape``."""
    names = {c: escape(str(c)) for c in table.frame.columns}
    frame = table.frame.rename(columns=names)
    for c in frame.columns:
        if frame[c].dtype == object:
            frame[c] = frame[c].map(lambda v: escape(v) if isinstance(v, str) else v)
    return replace(table, title=escape(table.title), caption=escape(table.caption), frame=frame,
                   formats={escape(k): v for k, v in table.formats.items()})


def show_location(console: Console, label: str, style: str, path, note: str = "") -> None:
    """Print ``label path note`` on one logical line: the path as text, never markup (a folder named
    ``a[/]b`` raised rich's MarkupError, a traceback after a finished run), and soft-wrapped, so a
    path longer than the terminal is never cut by an inserted newline (it stays one line to copy)."""
    console.print(Text.assemble((label, style), " ", str(path), note), soft_wrap=True)
