"""Rich rendering of :class:`~deqlab.report.result.Table`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from rich.table import Table as RichTable

from deqlab.report.result import Table


def format_value(value, spec: str | None = None) -> str:
    """Readable cell text: floats in 4 significant digits unless a spec is given; bools as yes/NO."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "[bold red]NO[/]"
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "[red]nan[/]"
        if spec:
            return spec.format(value)
        return f"{value:.4g}"
    if spec and isinstance(value, (int, np.integer)):
        return spec.format(value)
    return str(value)


def to_rich(table: Table) -> RichTable:
    out = RichTable(title=table.title, caption=table.caption or None, title_justify="left")
    for column in table.frame.columns:
        numeric = pd.api.types.is_numeric_dtype(table.frame[column]) and not pd.api.types.is_bool_dtype(table.frame[column])
        out.add_column(str(column), justify="right" if numeric else "left")
    for row in table.frame.itertuples(index=False):
        out.add_row(*(format_value(v, table.formats.get(c)) for c, v in zip(table.frame.columns, row)))
    return out
