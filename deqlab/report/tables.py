"""Rich rendering of :class:`~deqlab.report.result.Table` that never cuts a number.

A number cut to ``3.14e-…`` is worse than no number: ``e-15`` and ``e+00`` look alike, and a header
folded mid-word (``conver|ged``) is hard to read. So a :class:`FittedTable` measures itself against
the width it is given at render time (the terminal's, or 80 columns when piped). One grid whose cells
all stay on one line is taken at once; else, of layouts 1 and 2, the one that prints the fewest lines
(a header that wraps costs one line, a cell that wraps one per row); else 3, else 4:

1. one grid whose headers and text wrap only between words, and whose numbers never wrap;
2. the same grid in parts: the columns split into consecutive groups, each part a grid as in 1.
   that repeats the row's *key* (its leading naming columns: ``family, n_z, solver``) so that a
   row can be followed across parts. The key is ``Table.key`` when set, else the first column
   and those after it (at most :data:`_KEY_MAX_COLUMNS`) that hold text, integers or repeated
   values, stopping at a yes/no column or a column of distinct real numbers (a measurement); a
   table whose first column holds distinct real numbers has no key, and its parts lead with a row
   number (distinct integers, ``restart`` 1..10, are a key of their own). Parts are packed twice:
   with every cell whole, and with words whole;
3. one grid whose headers and text may fold inside words (numbers still never do);
4. one ``column: value`` block per row, which fits any width ≥ the longest ``column: value`` line
   and folds text beyond that (never a number).
"""

from __future__ import annotations

import math
import re
import textwrap

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
#: At most this many leading columns are inferred as a row's key (repeated in every part).
_KEY_MAX_COLUMNS = 4
#: A key may take at most this fraction of a part's width, so that each part shows some columns.
_KEY_MAX_SHARE = 0.45


#: A number printed in scientific notation (``2.19e-05``), and a format spec that is a number alone.
_SCIENTIFIC = re.compile(r"\de[+-]\d")
_PLAIN_SPEC = re.compile(r"\{:\.(\d+)([eEfFgG])\}")


def format_value(value, spec: str | None = None) -> Text:
    """Readable cell text: floats in 4 significant digits unless a spec is given (a non-zero value
    that the spec would print as zero gets 2 significant digits); bools as yes/NO; NaN as a dim ``nan``:
    in a table it is mostly a cell not measured, which the table's caption or row explains
    (``tests/test_tables.py`` holds every command to that). (It printed in red, the colour of ``NO``,
    and read as a failure.)

    A ``Text``, never markup: a cell (or a header) holding ``[ms]`` or ``[fp]`` prints as written.
    """
    if isinstance(value, (bool, np.bool_)):
        return Text("yes") if value else Text("NO", style="bold red")
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return Text("nan", style="dim")
        text = spec.format(value) if spec else f"{value:.4g}"
        if value != 0 and math.isfinite(value) and _reads_as_zero(text):
            # a fixed-point spec chosen for the usual size of a column ("{:.4f}" s) turned a small
            # value into a false zero ("0.0000" for a 3e-5 s gradient): two significant digits instead
            text = f"{value:.2g}"
        return Text(text)
    if spec and isinstance(value, (int, np.integer)):
        return Text(spec.format(value))
    return Text(str(value))


def _reads_as_zero(text: str) -> bool:
    try:
        return float(text) == 0
    except ValueError:   # a spec with words or units around the number
        return False


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


class FittedTable:
    """A :class:`Table` as a rich renderable that picks its layout from the width it gets."""

    def __init__(self, table: Table, *, numbered: bool = False):
        """``numbered``: lead with a ``row`` column (1, 2, ...) as the key, for a table whose own
        columns name no row but that must be printed in parts."""
        self.table = table
        frame = table.frame
        self.columns = [str(c) for c in frame.columns]
        self.numeric = [_is_numeric(frame[c]) for c in frame.columns]
        self.cells = [[format_value(v, table.formats.get(c)) for c, v in zip(frame.columns, row)]
                      for row in frame.itertuples(index=False)]
        for j, column in enumerate(frame.columns):
            if self.numeric[j] and pd.api.types.is_float_dtype(frame[column]):
                self._one_notation(j, frame[column], table.formats.get(column))
        self.key = self._key_columns()
        if numbered:
            self.columns.insert(0, "row")
            self.numeric.insert(0, True)
            for i, row in enumerate(self.cells):
                row.insert(0, Text(str(i + 1)))
            self.key = [0]
        self.natural, self.soft, self.least = self._floors()
        # a column's width at which no cell wraps (its header may, between words): text cells are kept whole
        # before headers are, since a wrapped cell doubles its row and a wrapped header costs one line
        self.whole = [max(s, min(n, self._cell_width(j))) for j, (s, n) in enumerate(zip(self.soft, self.natural))]

    def _one_notation(self, j: int, values: pd.Series, spec: str | None) -> None:
        """Column ``j`` in one notation: when its cells mix scientific and positional numbers (a general
        ``{:.3g}`` printing ``0.747`` above ``2.19e-05``, or a small value's two-digit fallback under a
        fixed-point spec), every finite number of the column is printed in scientific notation with the
        spec's significant digits, so that digits and exponents line up down the column; a column printed in
        exponents by the default spec keeps its trailing zeros for the same reason."""
        shown = [row[j].plain for row in self.cells]
        kinds = {bool(_SCIENTIFIC.search(s)) for s, v in zip(shown, values) if math.isfinite(v) and v != 0}
        # the default '{:.4g}' drops trailing zeros: '4.03e-08' above '4.724e-08'; one exponent column, one width
        widths = {len(s.lstrip("-")) for s, v in zip(shown, values) if math.isfinite(v) and v != 0}
        if len(kinds) < 2 and not (kinds == {True} and spec is None and len(widths) > 1):
            return
        match = _PLAIN_SPEC.fullmatch(spec or "{:.4g}")
        if match is None:   # a spec with words or units around the number: left as written
            return
        digits, kind = int(match.group(1)), match.group(2).lower()
        decimals = max(digits - 1, 1) if kind == "g" else 2
        for row, v in zip(self.cells, values):
            if math.isfinite(v):
                row[j] = Text(f"{v:.{decimals}e}")

    def _key_columns(self) -> list[int]:
        """The leading columns that name a row (module docstring, layout 2)."""
        frame = self.table.frame
        if self.table.key is not None:
            return list(range(min(max(self.table.key, 0), len(self.columns))))
        if frame.shape[1] == 0:
            return []
        first = frame.iloc[:, 0]
        if self.numeric[0] and first.nunique() == len(first) and not pd.api.types.is_integer_dtype(first):
            return []   # distinct real numbers: a measurement, not a name (a unique count, restart 1..10, is one)
        key = [0]
        for j in range(1, min(_KEY_MAX_COLUMNS, frame.shape[1])):
            column = frame.iloc[:, j]
            measured = pd.api.types.is_float_dtype(column) and column.nunique() == len(column)
            if pd.api.types.is_bool_dtype(column) or measured:
                break
            key.append(j)
        return key

    def _cell_width(self, j: int) -> int:
        return max((row[j].cell_len for row in self.cells), default=0)

    def _floors(self) -> tuple[list[int], list[int], list[int]]:
        """Per column: its natural width (widest cell or header), its *soft* floor (its longest word:
        headers and text wrap between words; a numeric column never below its widest cell) and its
        *least* width (a numeric column's widest cell; text down to ``_TEXT_MIN_WIDTH``)."""
        natural, soft, least = [], [], []
        for j, (name, num) in enumerate(zip(self.columns, self.numeric)):
            cell = self._cell_width(j)
            words = [len(w) for w in name.split()] + ([] if num else [
                min(len(w), _TEXT_WORD_WIDTH) for row in self.cells for w in row[j].plain.split()])
            natural.append(max(cell, Text(name).cell_len, 1))
            least.append(max(cell, 1) if num else min(natural[-1], _TEXT_MIN_WIDTH))
            soft.append(max(least[-1], min(natural[-1], max(words, default=1))))
        return natural, soft, least

    @staticmethod
    def _budget(available: int, n_columns: int) -> int:
        return available - _GRID_BORDER - _GRID_PER_COLUMN * (n_columns - 1)

    def _shrink(self, columns: list[int], budget: int, floors: list[list[int]]) -> list[int] | None:
        """Widths of ``columns`` summing to at most ``budget``: each starts at its natural width and,
        while the grid is too wide, the widest column that may still shrink loses one, down to each
        floor in turn (``self.soft``, then maybe ``self.least``); None when the last floor is too wide."""
        if sum(floors[-1][j] for j in columns) > budget:
            return None
        widths = [self.natural[j] for j in columns]
        for floor in floors:
            low = [floor[j] for j in columns]
            while sum(widths) > budget and any(w > f for w, f in zip(widths, low)):
                k = max((i for i in range(len(widths)) if widths[i] > low[i]), key=lambda i: widths[i])
                widths[k] -= 1
        return widths

    def column_widths(self, available: int) -> list[int] | None:
        """Content widths of every column in one grid ``available`` columns wide (layouts 1 and 3),
        or None when even the least widths do not fit."""
        columns = list(range(len(self.columns)))
        return self._shrink(columns, self._budget(available, len(columns)), [self.whole, self.soft, self.least])

    def parts(self, available: int) -> list[tuple[list[int], list[int]]] | None:
        """The layout as ``[(columns, widths)]``, one entry per grid (layouts 1 and 2), or None when
        neither fits. One grid whose cells are all whole (only headers wrap) is taken at once; else, of
        the one grid with words whole, the parts whose cells are whole and the parts with words whole,
        the one that prints the fewest lines (a model name wrapped onto a second line in every row of a
        30-row table printed 60 lines where one more part printed 30)."""
        columns = list(range(len(self.columns)))
        one = self._shrink(columns, self._budget(available, len(columns)), [self.whole, self.soft])
        if one is not None and all(w >= self.whole[j] for j, w in zip(columns, one)):
            return [(columns, one)]
        candidates = [] if one is None else [[(columns, one)]]
        for floor in (self.whole, self.soft):
            split = self._split(available, floor)
            if split is not None:
                candidates.append(split)
        return min(candidates, key=self._lines) if candidates else None   # (min: the first of equals)

    def _lines(self, layout: list[tuple[list[int], list[int]]]) -> int:
        """How many lines ``layout`` prints: per grid a title, three rules, its header and its rows, each
        as tall as its most wrapped cell."""
        def tall(text: str, width: int) -> int:
            return max(1, len(textwrap.wrap(text, max(width, 1))))

        lines = 0
        for columns, widths in layout:
            lines += 4 + max(tall(self.columns[j], w) for j, w in zip(columns, widths))
            lines += sum(max(tall(row[j].plain, w) for j, w in zip(columns, widths)) for row in self.cells)
        return lines

    def _split(self, available: int, floor: list[int]) -> list[tuple[list[int], list[int]]] | None:
        """Parts that each repeat the key (layout 2), no column below ``floor``; None when they do not fit."""
        if not self.key:   # no naming column: :meth:`layout` numbers the rows
            return None
        columns = list(range(len(self.columns)))
        key = self._narrowed_key(_KEY_MAX_SHARE * available, floor)
        if not key:   # parts whose rows could not be matched up: not a layout
            return None
        if floor is self.whole and not self._tells_rows_apart(key) and self._tells_rows_apart(self.key):
            return None   # cells kept whole at the price of the key column that names the rows: not worth it
        rest = [j for j in columns if j not in key]
        if not rest or any(sum(floor[k] for k in key + [j]) > self._budget(available, len(key) + 1) for j in rest):
            return None
        # Each part's own columns (with a separator each) may be `room` wide beside the key. As few
        # parts as the widest packing needs, then the narrowest cap that still needs no more: parts
        # of even widths, never a last part of one lone column.
        room = self._budget(available, len(key) + 1) - sum(floor[k] for k in key) + _GRID_PER_COLUMN
        fewest = len(self._pack(rest, room, floor))
        low, high = max(floor[j] + _GRID_PER_COLUMN for j in rest), room
        while low < high:
            mid = (low + high) // 2
            low, high = (low, mid) if len(self._pack(rest, mid, floor)) <= fewest else (mid + 1, high)
        floors = [self.whole, self.soft] if floor is self.soft else [floor]
        return [(key + group, self._shrink(key + group, self._budget(available, len(key + group)), floors))
                for group in self._pack(rest, low, floor)]

    def _narrowed_key(self, limit: float, floor: list[int]) -> list[int]:
        """The key cut to at most ``limit`` columns at ``floor`` widths: each cut drops the last column that the
        others still tell the rows apart without (``batch`` beside ``task, dtype, method``), else
        the last one. Dropping the last one blindly once printed parts keyed by ``task, dtype,
        batch`` whose rows no reader could match to their method."""
        key = list(self.key)
        while key and sum(floor[j] for j in key) > limit:
            spare = [j for j in reversed(key) if self._tells_rows_apart([k for k in key if k != j])]
            key.remove(spare[0] if spare else key[-1])
        return key

    def _tells_rows_apart(self, columns: list[int]) -> bool:
        rows = [tuple(row[j].plain for j in columns) for row in self.cells]
        return bool(columns) and len(set(rows)) == len(rows)

    def _pack(self, rest: list[int], cap: int, floor: list[int]) -> list[list[int]]:
        """``rest`` cut greedily into consecutive groups whose ``floor`` widths, one separator each, sum to
        at most ``cap``."""
        groups: list[list[int]] = []
        used = cap + 1
        for j in rest:
            width = floor[j] + _GRID_PER_COLUMN
            if used + width > cap:
                groups.append([])
                used = 0
            groups[-1].append(j)
            used += width
        return groups

    def grid(self, widths: list[int], columns: list[int] | None = None, title: str | None = None,
             caption: str | None = None) -> RichTable:
        """A rich grid of ``columns`` (default all) at ``widths``; title and caption default to the table's."""
        columns = list(range(len(self.columns))) if columns is None else columns
        title = self.table.title if title is None else title
        caption = self.table.caption if caption is None else caption
        # Text, never markup: a header such as "time [ms]" must not be read as a rich style tag
        out = RichTable(title=Text(title), caption=Text(caption) if caption else None,
                        title_justify="left", caption_justify="left")
        for j, width in zip(columns, widths):
            out.add_column(Text(self.columns[j]), justify="right" if self.numeric[j] else "left", width=width,
                           overflow="fold")
        for row in self.cells:
            out.add_row(*(row[j] for j in columns))
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

    def layout(self, available: int) -> tuple[FittedTable, list[tuple[list[int], list[int]]]] | None:
        """Layouts 1 and 2 (module docstring) as ``(table, parts)``: ``table`` is this one, or its
        ``numbered`` copy when the parts need a row number as their key; None when neither fits."""
        parts = self.parts(available)
        if parts is None and not self.key and self.columns:
            numbered = FittedTable(self.table, numbered=True)
            parts = numbered.parts(available)
            return None if parts is None else (numbered, parts)
        return None if parts is None else (self, parts)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        layout = self.layout(options.max_width)
        if layout is not None and len(layout[1]) == 1:
            (columns, widths), = layout[1]
            yield self.grid(widths, columns)
        elif layout is not None:
            fitted, parts = layout
            n = len(parts)
            grids = [fitted.grid(widths, columns, title=f"{self.table.title} (part {i + 1} of {n})", caption="")
                     for i, (columns, widths) in enumerate(parts)]
            # the caption once, at the full width, not squeezed under the last part
            yield Group(*grids, *([Text(self.table.caption)] if self.table.caption else []))
        elif (widths := self.column_widths(options.max_width)) is not None:
            yield self.grid(widths)
        else:
            yield Group(*self.blocks())


def to_rich(table: Table) -> FittedTable:
    """The renderable of ``table``: a grid, or a grid in parts, or one block per row (module docstring)."""
    return FittedTable(table)
