"""Checks shared by the bench tests: the ``.npz`` of raw timing samples behind a table's medians."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: The CSV keeps full precision; the median of the saved samples may differ from the printed one only by
#: the last bits of the unit conversion (seconds → ms) and of the two-middle-sample mean.
SAMPLE_MEDIAN_RTOL = 1e-12


def load_samples(path: Path) -> dict[str, np.ndarray]:
    """Every array of ``path``, read with ``allow_pickle=False`` (object arrays would raise)."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def assert_reproduces(samples: dict[str, np.ndarray], frame: pd.DataFrame, *, labels: list[str],
                      columns: dict[str, tuple[str, float]]) -> None:
    """The npz ties to ``frame`` row by row: each of ``labels`` equals the table's column of that name,
    and for ``column → (samples array, scale)`` the nan-median of each row's samples times ``scale``
    equals the table's median (NaN where the table has NaN, i.e. nothing was timed)."""
    for label in labels:
        assert samples[label].shape == (len(frame),), label
        np.testing.assert_array_equal(samples[label], frame[label].to_numpy(), err_msg=label)
    for column, (name, scale) in columns.items():
        rows = samples[name]
        assert rows.ndim == 2 and rows.shape[0] == len(frame), name
        expected = frame[column].to_numpy(float)
        timed = ~np.isnan(rows).all(axis=1)
        assert (timed == ~np.isnan(expected)).all(), f"{name}: samples where the table has none, or none where it has a median"
        medians = scale * np.nanmedian(rows[timed], axis=1)
        np.testing.assert_allclose(medians, expected[timed], rtol=SAMPLE_MEDIAN_RTOL, atol=0, err_msg=column)
