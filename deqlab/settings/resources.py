"""The resource guard: estimates of peak memory from settings, checked before anything is allocated.

Each command's settings list :class:`Estimate` s (``memory()``); :func:`check_memory` refuses with a
:class:`~deqlab.errors.ResourceError` (exit 2) naming the estimate, the limit and the key that raises
it. The limit is the memory available now where the run's tensors live: the host's (``MemAvailable``,
or a cgroup limit if lower), or a CUDA device's free memory for a run on that device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deqlab.errors import ResourceError

#: refuse above this fraction of the available memory (the interpreter, torch and scratch need the rest)
FRACTION = 0.8


@dataclass(frozen=True)
class Estimate:
    """One memory estimate of a run: ``bytes`` it would take, the setting ``key`` that raises it and
    ``what`` takes the memory, so that a size that cannot fit is refused naming the key."""

    bytes: float
    key: str     # the setting that raises it
    what: str    # what takes the memory, in words


def dense_bytes(rows: int, cols: int, itemsize: int = 8) -> float:
    return float(rows) * float(cols) * itemsize


def available_memory() -> int:
    """Bytes available to this process now: ``MemAvailable`` of ``/proc/meminfo``, capped by a cgroup
    v2/v1 memory limit; ``os.sysconf`` where ``/proc`` is missing."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return 2**62
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < avail:
            avail = int(text)
    return avail


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


def check_memory(estimates: list[Estimate], limit: int | None = None, where: str = "this machine") -> None:
    """Refuse the largest estimate that does not fit in ``FRACTION`` of the available memory.

    ``limit``: the bytes available (default: :func:`available_memory`, the host's); ``where``: whose
    memory that is, for the message (a run on a GPU passes that device's free memory and its name)."""
    if not estimates:
        return
    limit = available_memory() if limit is None else limit
    worst = max(estimates, key=lambda e: e.bytes)
    if worst.bytes > FRACTION * limit:
        raise ResourceError(
            f"{worst.what} would need about {human(worst.bytes)}, more than the {human(FRACTION * limit)} {where} "
            f"can give ({FRACTION:.0%} of {human(limit)} available); lower {worst.key}"
        )


#: A data archive is read into memory about this many times over (the arrays, their float64 copies, the
#: checks' temporaries).
ARCHIVE_COPIES = 3


def check_archive(path, what: str) -> None:
    """Refuse an ``.npz`` whose arrays, uncompressed as the archive's directory declares them, would not fit
    in memory, before ``np.load`` reads them: a few MB of compressed zeros declare tens of GB, and reading
    them ended in the kernel's OOM killer (no line, the run folder left ``.partial``). Not a zip archive:
    nothing to say here, the reader's own checks answer."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            size = sum(info.file_size for info in archive.infolist())
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return
    limit = available_memory()
    if ARCHIVE_COPIES * size > FRACTION * limit:
        raise ResourceError(f"{what} {str(path)!r} holds {human(size)} of arrays uncompressed; reading them would need about "
                            f"{human(ARCHIVE_COPIES * size)}, more than the {human(FRACTION * limit)} this machine can give")


def npz_shapes(path) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of the arrays of the ``.npz`` archive at ``path``, read from each member's ``.npy``
    header (a few hundred bytes; no array is read), so that a size can be estimated before the file is
    loaded. Anything that is not such an archive, a member whose header cannot be read, or one that holds fewer
    bytes than its header declares (a damaged file, not a large one) gives no entry: the reader's own checks say
    what is wrong with the file (:mod:`deqlab.npz_files`)."""
    import math
    import zipfile

    try:
        p = Path(str(path)).expanduser()   # (RuntimeError: a '~user' that names nobody)
        with zipfile.ZipFile(p) as archive:
            shapes = {}
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as f:
                    header = _npy_header(f)
                    end = f.tell()
                if header is not None and info.file_size - end >= math.prod(header[0]) * header[1]:
                    shapes[info.filename.removesuffix(".npy")] = header[0]
            return shapes
    except Exception:   # (zipfile, zlib and a damaged member raise many types: the reader's checks name them)
        return {}


#: the ``.npy`` format's first bytes, and the longest header read (NumPy's own limit is 10000)
NPY_MAGIC = b"\x93NUMPY"
NPY_MAX_HEADER = 10_000


def _npy_header(f) -> tuple[tuple[int, ...], int] | None:
    """``(shape, itemsize)`` of an ``.npy`` header (versions 1 to 3: magic, version, header length, a dict literal),
    or ``None``. The standard library's ``ast.literal_eval`` reads the literal, as NumPy's own reader does; the
    itemsize is the ``descr``'s (``'<f8'``: 8; a ``'<U'`` character takes 4), 1 for a structured one."""
    import ast
    import re

    head = f.read(len(NPY_MAGIC) + 2)
    if len(head) < len(NPY_MAGIC) + 2 or not head.startswith(NPY_MAGIC) or head[-2] not in (1, 2, 3):
        return None
    size = 2 if head[-2] == 1 else 4
    length = int.from_bytes(f.read(size), "little")
    if length > NPY_MAX_HEADER:
        return None
    try:
        header = ast.literal_eval(f.read(length).decode("utf-8" if head[-2] == 3 else "latin-1"))
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        return None
    shape = header.get("shape") if isinstance(header, dict) else None
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        return None
    simple = re.fullmatch(r"[<>|=]?([a-zA-Z])(\d+)(\[\w+\])?", str(header.get("descr")))
    itemsize = int(simple[2]) * (4 if simple[1] == "U" else 1) if simple else 1
    return shape, itemsize
