"""Environment variables that the libraries deqlab loads read at start-up, checked (or set) before they load.

``OMP_NUM_THREADS=abc`` (or ``0``, ``-1``, ``٣``) made libgomp print an empty line and "libgomp: Invalid value
for environment variable OMP_NUM_THREADS" on stderr as torch loaded, and the run went on with the default
thread count; OpenBLAS and MKL ignore a value they cannot read without a word. A thread count the user set
and the run did not use is bad input: one line naming the variable, exit 2, before anything runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

#: The thread-count variables of the OpenMP runtime and the BLAS libraries torch and NumPy load. OpenMP's
#: also takes a list, one count per level of nested parallelism (``4,2``).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_COUNT = r"\s*0*[1-9][0-9]*\s*"
_READABLE = {"OMP_NUM_THREADS": re.compile(rf"{_COUNT}(,{_COUNT})*", re.ASCII)}


def bad_thread_variable() -> str | None:
    """The one line for the first thread-count variable set to what its library cannot read, else ``None``.
    An empty value is left alone where the library reads it as unset (the BLAS libraries; libgomp refuses it)."""
    for name in THREAD_VARIABLES:
        value = os.environ.get(name)
        if value is None or (not value and name not in _READABLE):
            continue
        if not _READABLE.get(name, re.compile(_COUNT, re.ASCII)).fullmatch(value):
            list_form = " (or a list such as 4,2)" if name in _READABLE else ""
            return (f"environment variable {name}={value!r} is not a number of threads: set it to a whole number "
                    f">= 1{list_form} or unset it")
    return None


#: The prefixes of the variables the OpenMP runtime (libgomp, which torch loads) reads as it loads.
OPENMP_PREFIXES = ("OMP_", "GOMP_")
#: libgomp's words for a variable it cannot read
_LIBGOMP_REFUSAL = re.compile(r"libgomp: (?:Invalid|Unknown) value for environment variable (\w+)")


def bad_openmp_variable() -> str | None:
    """The one line for the first ``OMP_*`` / ``GOMP_*`` variable that torch's OpenMP runtime cannot read
    (``OMP_PROC_BIND=abc``, ``OMP_SCHEDULE=fast``...), else ``None``. libgomp checks each as it loads, and
    prints an empty line and its complaint on stderr, then runs with the default: its own grammar decides, so
    it is asked, by loading it in a short child process (about 30 ms), and only when such a variable is set."""
    if not any(name.startswith(OPENMP_PREFIXES) for name in os.environ):
        return None
    library = _libgomp()
    if library is None:
        return None
    try:
        probe = subprocess.run([sys.executable, "-S", "-c", "import ctypes, sys; ctypes.CDLL(sys.argv[1])", library],
                               capture_output=True, text=True, timeout=60, errors="replace")
    except (OSError, subprocess.SubprocessError):
        return None
    for line in probe.stderr.splitlines():
        refused = _LIBGOMP_REFUSAL.match(line.strip())
        if refused and refused.group(1) in os.environ:
            name = refused.group(1)
            return (f"environment variable {name}={os.environ[name]!r} is not a value the OpenMP runtime (libgomp) can "
                    "read: set it as OpenMP documents or unset it")
    return None


def _libgomp() -> str | None:
    """The OpenMP runtime torch ships (``torch/lib/libgomp*.so*``), found without importing torch."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        found = sorted(Path(folder, "lib").glob("libgomp*.so*"))
        if found:
            return str(found[0])
    return None


def draw_into_files() -> None:
    """Matplotlib's backend is Agg: deqlab only writes figures to files (the writer selects Agg anyway). A
    ``MPLBACKEND`` naming no backend (``MPLBACKEND=nosuch``) made matplotlib raise a ValueError as it loaded,
    inside the run: a traceback and a .failed run folder; an interactive one would be loaded for nothing."""
    os.environ["MPLBACKEND"] = "Agg"
