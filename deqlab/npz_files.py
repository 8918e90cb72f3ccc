"""Reading a user's ``.npz`` archive (the pendulum data of ``sysid``, the pairs of ``lowrank``) with one
line for every file that is not one.

NumPy's own errors said nothing a user could act on: a ``.npy`` file (what ``np.save`` writes) given for
an ``.npz`` ended in "'numpy.ndarray' object does not support the context manager protocol", a CSV in
"not a readable .npz archive (ValueError)", and a pickled archive invited loading it "unsafely". The
file's first bytes say what it is; the message says that and how to write the archive instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deqlab.errors import InputError, first_line, require_path

#: The first bytes of a zip archive (an ``.npz``), of a ``.npy`` file, and of a pickle (protocol 2 and later)
ZIP_MAGIC = b"PK\x03\x04"
NPY_MAGIC = b"\x93NUMPY"
PICKLE_MAGIC = b"\x80"
#: the words for a file that starts as a zip archive does but cannot be read as one
DAMAGED = "starts like an .npz archive but cannot be read as one (a truncated or damaged file?)"


def read_npz(path, what: str, names: tuple[str, ...], optional: tuple[str, ...] = ()
             ) -> tuple[Path, dict[str, np.ndarray], list[str]]:
    """``(path, {name: array}, every name in the archive)`` of the ``.npz`` archive at ``path``, read
    without unpickling anything; only the arrays ``names`` and ``optional`` are read (those it has).

    ``what`` names the file for the user (``"data file"``); ``names`` also make the hint of how to write
    the archive (``np.savez(FILE, u=..., y=...)``). Raises :class:`InputError` for a path that names no file, an empty
    file, a ``.npy`` file, a pickle, text (a CSV), a zip archive NumPy cannot read, or an archive that
    holds Python objects."""
    p = require_path(path, what)
    named = f"{what} {str(p)!r}"
    save = f"write it with np.savez(FILE, {', '.join(f'{n}=...' for n in names)})"
    try:
        with open(p, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise InputError(f"{named} cannot be read: {exc.strerror or exc}") from None
    if not head:
        raise InputError(f"{named} is empty; {save}")
    if head.startswith(NPY_MAGIC):
        raise InputError(f"{named} is a .npy file (one array, as np.save writes), not an .npz archive of named "
                         f"arrays; {save}")
    if head.startswith(PICKLE_MAGIC):
        raise InputError(f"{named} is a Python pickle, not an .npz archive (data files are never unpickled); {save}")
    if not head.startswith(ZIP_MAGIC):
        kind = "text (a CSV?), not an .npz archive" if _looks_like_text(head) else "not an .npz archive (nor a .npy file, nor text)"
        raise InputError(f"{named} is {kind}; {save}")
    _refuse_false_sizes(p, named, (*names, *optional))
    try:
        with np.load(p, allow_pickle=False) as data:
            return p, {name: np.asarray(data[name]) for name in (*names, *optional) if name in data.files}, list(data.files)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            # (NumPy's words invite loading the file "unsafely"; deqlab never unpickles data files)
            raise InputError(f"{named} holds Python objects, not plain numeric arrays (data files are never "
                             f"unpickled); {save} from numeric arrays") from None
        raise InputError(f"{named} {DAMAGED}: {first_line(exc)}") from None
    except MemoryError:
        raise
    except Exception as exc:   # a truncated or corrupt archive: zipfile, zlib and NumPy raise many types
        raise InputError(f"{named} {DAMAGED}: {first_line(exc)}") from None


def _refuse_false_sizes(path: Path, named: str, names: tuple[str, ...]) -> None:
    """Refuse an array named twice in the archive (``zip`` appends a member of the same name; NumPy reads the
    later), and a member whose ``.npy`` header declares more bytes than the member holds, before NumPy
    allocates them: a 600-byte archive declaring a (10⁶, 10⁶) array made ``np.load`` ask for 7 TiB, a
    ``MemoryError`` that the run reported as "out of memory (lower the sizes in the settings)", exit 1.
    (The archive's directory, checked against the memory available, states the true sizes.) A member that
    cannot be read this far is left to ``np.load``'s own checks."""
    import math
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            listed = [info.filename.removesuffix(".npy") for info in infos]
            members = dict(zip(listed, infos))
            for name in names:
                if listed.count(name) > 1:
                    # (np.load read the later one without a word: a pairs file with two X.npy gave half the eigenvalues)
                    raise InputError(f"{named} holds {listed.count(name)} arrays named {name}: which one is meant is not "
                                     f"clear; write the archive again with np.savez")
                info = members.get(name)
                if info is None:
                    continue
                with archive.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read_header(f, max_header_size=10_000)
                    header = f.tell()
                if dtype.hasobject:
                    continue
                declared = math.prod(shape) * dtype.itemsize
                if declared > info.file_size - header:
                    raise InputError(f"{named} {DAMAGED}: its array {name} declares shape {tuple(shape)} of {dtype} "
                                     f"({declared:,} bytes) but holds {max(0, info.file_size - header):,}")
    except InputError:
        raise
    except Exception:   # (not an archive, a damaged member, an unknown .npy version: np.load says what it is)
        return


def _looks_like_text(head: bytes) -> bool:
    import codecs

    try:   # (incremental: the bytes read may end inside a character)
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return "\x00" not in text


