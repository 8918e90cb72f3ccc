"""The plain-data result every experiment returns and every reporter consumes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class Table:
    """A table to print and save as ``<name>.csv``.

    ``formats`` maps column names to format specs for printing only (``"{:.3e}"``); the CSV keeps
    full precision. ``key``: how many leading columns name a row; a table too wide for the terminal
    prints in parts that each repeat them (``None``: inferred, see :mod:`deqlab.report.tables`).
    """

    title: str
    frame: pd.DataFrame
    formats: dict[str, str] = field(default_factory=dict)
    caption: str = ""
    key: int | None = None


@dataclass
class Result:
    """What a demo produced.

    Attributes:
        tables: name → :class:`Table` (printed, saved as ``<name>.csv``).
        arrays: name → dict of arrays (saved as ``<name>.npz``).
        figures: name → zero-argument callable returning a matplotlib Figure (saved as ``<name>.png``);
            the callables come from :mod:`deqlab.report` figure functions, so plotting stays out of
            the experiment.
        files: name → callable ``(path) -> None`` writing any other artefact (``hessian.npy``, a model).
        notes: lines printed after the tables.
        failures: problems the user must see (non-convergence); ``--strict`` turns them into exit 1.
        headline: a few named numbers that sum the run up (a sweep's table across jobs shows them).
    """

    command: str
    tables: dict[str, Table] = field(default_factory=dict)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    figures: dict[str, Callable] = field(default_factory=dict)
    files: dict[str, Callable] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    headline: dict[str, float] = field(default_factory=dict)
