"""The raw timing samples behind a bench table's medians, as plain arrays for its ``.npz``.

A bench prints one median per (row, timed column); :func:`sample_arrays` lays the samples out so
that row ``i`` of ``<column>_s`` holds every timed call of table row ``i`` (seconds per call, in
timing order), padded with NaN to the longest row (``np.nanmedian(a, axis=1)`` gives the medians
back; a row whose column was not measured is all NaN). Label columns are saved beside them, numbers
as numbers and everything else as fixed-width unicode, so ``np.load(..., allow_pickle=False)`` reads
the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def padded(rows: Sequence[Sequence[float] | None]) -> np.ndarray:
    """``(len(rows), longest)`` float64 array, row ``i`` = ``rows[i]`` then NaN (``None``: all NaN)."""
    width = max([len(r) for r in rows if r is not None] + [1])
    out = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        if r is not None and len(r):
            out[i, : len(r)] = np.asarray(r, dtype=float)
    return out


def _label_array(values: Sequence) -> np.ndarray:
    array = np.asarray(list(values))
    if array.dtype.kind in "biuf":
        return array
    return np.asarray(["" if v is None else str(v) for v in values], dtype=str)


def sample_arrays(labels: Mapping[str, Sequence], samples: Mapping[str, Sequence[Sequence[float] | None]]) -> dict[str, np.ndarray]:
    """``labels`` (name → one value per table row) as arrays, and each ``samples[column]`` (one list of
    seconds per table row, or ``None`` where the column was not measured) as ``<column>_s``, padded."""
    n_rows = {len(v) for v in (*labels.values(), *samples.values())}
    if len(n_rows) > 1:
        raise ValueError(f"every label and sample column needs one entry per table row, got lengths {sorted(n_rows)}")
    arrays = {name: _label_array(values) for name, values in labels.items()}
    arrays.update({f"{column}_s": padded(rows) for column, rows in samples.items()})
    return arrays
