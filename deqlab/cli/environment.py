"""Environment variables that the libraries deqlab loads read at start-up, checked (or set) before they load.

``OMP_NUM_THREADS=abc`` (or ``0``, ``-1``, ``٣``) made libgomp print an empty line and "libgomp: Invalid value
for environment variable OMP_NUM_THREADS" on stderr as torch loaded, and the run went on with the default
thread count; OpenBLAS and MKL ignore a value they cannot read without a word. A thread count the user set
and the run did not use is bad input: one line naming the variable, exit 2, before anything runs.
"""

from __future__ import annotations

import os
import re

#: The thread-count variables of the OpenMP runtime and the BLAS libraries torch and NumPy load. OpenMP's
#: also takes a list, one count per level of nested parallelism (``4,2``).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_COUNT = r"\s*0*[1-9][0-9]*\s*"
_READABLE = {"OMP_NUM_THREADS": re.compile(rf"{_COUNT}(,{_COUNT})*", re.ASCII)}


def bad_thread_variable() -> str | None:
    """The one line for the first thread-count variable set to what its library cannot read, else ``None``.
    An empty value is left alone: the libraries read it as unset."""
    for name in THREAD_VARIABLES:
        value = os.environ.get(name, "")
        if not value:
            continue
        if not _READABLE.get(name, re.compile(_COUNT, re.ASCII)).fullmatch(value):
            list_form = " (or a list such as 4,2)" if name in _READABLE else ""
            return (f"environment variable {name}={value!r} is not a number of threads: set it to a whole number "
                    f">= 1{list_form} or unset it")
    return None


def draw_into_files() -> None:
    """Matplotlib's backend is Agg: deqlab only writes figures to files (the writer selects Agg anyway). A
    ``MPLBACKEND`` naming no backend (``MPLBACKEND=nosuch``) made matplotlib raise a ValueError as it loaded,
    inside the run: a traceback and a .failed run folder; an interactive one would be loaded for nothing."""
    os.environ["MPLBACKEND"] = "Agg"
