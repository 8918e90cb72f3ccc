"""Rich rendering of :class:`~deqlab.report.result.Table` that never cuts a number.

A number cut to ``3.14e-…`` is worse than no number: ``e-15`` and ``e+00`` look alike. So a
:class:`FittedTable` measures itself against the width it is given at render time (the terminal's,
or 80 columns when piped):

- if every numeric cell fits whole, it is a grid whose numeric columns never wrap (their minimum
  width is their widest formatted cell) and whose text columns fold;
- otherwise it falls back to one ``column: value`` block per row, which fits any width ≥ the
  longest ``column: value`` line and folds text beyond that (never a number).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.table import Table as RichTable
from rich.text import Text

from deqlab.report.result import Table

#: Columns a grid row spends on borders and padding: "│ " + " │ " between cells + " │".
_GRID_BORDER = 4
_GRID_PER_COLUMN = 3
#: The narrowest a text column may get before the grid gives way to blocks (a word of 8 letters).
_TEXT_MIN_WIDTH = 8
#: Text words longer than this may be folded before numeric headers wrap mid-word.
_TEXT_WORD_WIDTH = 24


def format_value(value, spec: str | None = None) -> Text:
    """Readable cell text: floats in 4 significant digits unless a spec is given; bools as yes/NO.

    A ``Text``, never markup: a cell (or a header) holding ``[ms]`` or ``[fp]`` prints as written.
    """
    if isinstance(value, (bool, np.bool_)):
        return Text("yes") if value else Text("NO", style="bold red")
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return Text("nan", style="red")
        return Text(spec.format(value) if spec else f"{value:.4g}")
    if spec and isinstance(value, (int, np.integer)):
        return Text(spec.format(value))
    return Text(str(value))


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


class FittedTable:
    """A :class:`Table` as a rich renderable that picks its layout from the width it gets."""

    def __init__(self, table: Table):
        self.table = table
        frame = table.frame
        self.columns = [str(c) for c in frame.columns]
        self.numeric = [_is_numeric(frame[c]) for c in frame.columns]
        self.cells = [[format_value(v, table.formats.get(c)) for c, v in zip(frame.columns, row)]
                      for row in frame.itertuples(index=False)]

    def _cell_width(self, j: int) -> int:
        return max((row[j].cell_len for row in self.cells), default=0)

    def column_widths(self, available: int) -> list[int] | None:
        """Content widths for a grid ``available`` columns wide, or None when none fits.

        Each column starts at its natural width (widest cell or header); while the grid is too
        wide, the widest column that may still shrink loses one column: first down to its longest
        word (headers and text wrap between words), then a numeric column down to its widest cell
        (its header folds; its numbers never do) and a text column down to ``_TEXT_MIN_WIDTH``.
        """
        natural, soft, least = [], [], []
        for j, (name, num) in enumerate(zip(self.columns, self.numeric)):
            cell = self._cell_width(j)
            words = [len(w) for w in name.split()] + ([] if num else [
                min(len(w), _TEXT_WORD_WIDTH) for row in self.cells for w in row[j].plain.split()])
            natural.append(max(cell, Text(name).cell_len, 1))
            least.append(max(cell, 1) if num else min(natural[-1], _TEXT_MIN_WIDTH))
            soft.append(max(least[-1], min(natural[-1], max(words, default=1))))
        budget = available - _GRID_BORDER - _GRID_PER_COLUMN * (len(natural) - 1)
        if sum(least) > budget:
            return None
        widths = list(natural)
        for floor in (soft, least):  # first wrap headers and text at word boundaries, then fold words
            while sum(widths) > budget and any(w > f for w, f in zip(widths, floor)):
                j = max((k for k in range(len(widths)) if widths[k] > floor[k]), key=lambda k: widths[k])
                widths[j] -= 1
        return widths

    def grid(self, widths: list[int]) -> RichTable:
        # Text, never markup: a header such as "time [ms]" must not be read as a rich style tag
        out = RichTable(title=Text(self.table.title), caption=Text(self.table.caption) if self.table.caption else None,
                        title_justify="left", caption_justify="left")
        for name, num, width in zip(self.columns, self.numeric, widths):
            out.add_column(Text(name), justify="right" if num else "left", width=width, overflow="fold")
        for row in self.cells:
            out.add_row(*row)
        return out

    def blocks(self) -> RenderResult:
        """One ``column: value`` block per row, for widths the grid cannot fit."""
        yield Text(self.table.title, style="italic")
        pad = max((len(c) for c in self.columns), default=0)
        for i, row in enumerate(self.cells):
            block = RichTable(box=box.SIMPLE_HEAD, show_header=False, pad_edge=False, title=Text(f"row {i + 1}"),
                              title_justify="left", title_style="bold")
            block.add_column(justify="right", style="bold", overflow="fold", max_width=pad)
            block.add_column(justify="left", overflow="fold")
            for name, cell in zip(self.columns, row):
                block.add_row(Text(name), cell)
            yield block
        if self.table.caption:
            yield Text(self.table.caption, style="dim")

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        widths = self.column_widths(options.max_width)
        if widths is not None:
            yield self.grid(widths)
        else:
            yield Group(*self.blocks())


def to_rich(table: Table) -> FittedTable:
    """The renderable of ``table``: a grid when its numbers fit the console, else one block per row."""
    return FittedTable(table)
