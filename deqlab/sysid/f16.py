"""Reader for the F-16 ground vibration test benchmark (Noël & Schoukens, "F-16 aircraft benchmark based on
ground vibration test data", Workshop on Nonlinear System Identification Benchmarks 2017), as distributed by
the nonlinear system identification benchmarks site (nonlinearbenchmark.org) in ``F16GVT_Files.zip``.

Layout of the benchmark's files (``F16GVT_Files/BenchmarkData/``), per excitation ``tag`` (``SineSw`` for
the sine sweeps, ``FullMSine`` for the full multisines)::

    F16Data_<tag>_Level{1,3,5,7}.csv              identification (training) records
    F16Data_<tag>_Level{2,4,6}_Validation.csv     validation records (our test set)
    ... .mat twins: Force (1, N), Voltage (1, N), Acceleration (3, N), Fs

Each CSV has the columns ``Force, Voltage, Acceleration1, Acceleration2, Acceleration3`` (extra columns
such as ``Fs`` are allowed), sampled at 400 Hz; some records end in rows of zeros that are padding, not
data, and are dropped. Input: the shaker force ``u`` (N, 1); outputs: the three accelerations ``y`` (N, 3).

:func:`find_benchmark` accepts the folder that holds ``F16GVT_Files/``, the unzipped ``F16GVT_Files/``,
its ``BenchmarkData/``, or the zip itself (read in place with :mod:`zipfile`). :func:`read_records` reads
and checks the records; :func:`segments` cuts records into equal-length trajectories.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deqlab.errors import InputError, ResourceError, expand_home

EXCITATIONS = {"sine_sweep": "SineSw", "multisine": "FullMSine"}
#: The benchmark's records per excitation: identification (training) levels and validation (test) levels.
TRAINING_LEVELS, VALIDATION_LEVELS = (1, 3, 5, 7), (2, 4, 6)
FORMATS = ("auto", "csv", "mat")
COLUMNS = ("Force", "Voltage", "Acceleration1", "Acceleration2", "Acceleration3")
SAMPLE_RATE = 400.0  # Hz, the benchmark's
SOURCE = ("the F-16 ground vibration test benchmark (F16GVT_Files.zip, 'F-16 Ground Vibration Test' on the "
          "nonlinear system identification benchmarks site, nonlinearbenchmark.org)")
_NAME = re.compile(r"^F16Data_(?P<tag>[A-Za-z]+)_Level(?P<level>\d+)(?P<validation>_Validation)?\.(?P<ext>csv|mat)$")


@dataclass
class Record:
    """One benchmark file: ``u`` (N, 1) force, ``y`` (N, 3) accelerations, padding rows already dropped."""

    name: str
    level: int
    validation: bool
    u: np.ndarray
    y: np.ndarray
    sample_rate: float
    padding: int


@dataclass
class _Source:
    """Where the files are: a folder, or a zip and the members in it (basename → member name)."""

    where: str
    files: dict[str, str]
    archive: Path | None = None

    def size(self, name: str) -> int:
        """The file's size in bytes (a zip member's uncompressed size, as its archive declares it); 0 if
        that cannot be told (reading it will say why)."""
        try:
            if self.archive is None:
                return Path(self.files[name]).stat().st_size
            with zipfile.ZipFile(self.archive) as zf:
                return zf.getinfo(self.files[name]).file_size
        except (OSError, KeyError, zipfile.BadZipFile, ValueError):
            return 0

    def read_bytes(self, name: str) -> bytes:
        """The file's bytes; :class:`InputError` if they cannot be read (a zip member with a bad CRC, a
        broken deflate stream, encryption or an unknown compression method ended in a traceback)."""
        try:
            if self.archive is None:
                return Path(self.files[name]).read_bytes()
            with zipfile.ZipFile(self.archive) as zf:
                return zf.read(self.files[name])
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError) as exc:
            raise InputError(f"{self.where}: cannot read {name} ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:160]}); {_expected()}") from None


def _expected(excitation_tag: str = "SineSw") -> str:
    return (f"expected the benchmark files (F16GVT_Files/BenchmarkData/F16Data_{excitation_tag}_Level1.csv, ..., "
            f"F16Data_{excitation_tag}_Level2_Validation.csv, or their .mat twins) from {SOURCE}")


def _zip_source(path: Path) -> _Source | None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path}: cannot read the zip ({type(exc).__name__}); {_expected()}") from None
    files = {Path(n).name: n for n in names if _NAME.match(Path(n).name)}
    return _Source(where=f"{path} (zip)", files=files, archive=path) if files else None


def _folder_files(folder: Path) -> dict[str, str]:
    return {p.name: str(p) for p in sorted(folder.iterdir()) if p.is_file() and _NAME.match(p.name)} if folder.is_dir() else {}


def find_benchmark(data_dir: str | Path) -> _Source:
    """Locate the benchmark's files under ``data_dir`` (see the module docstring); :class:`InputError` if
    there is no such folder or no benchmark file in any of the places looked at."""
    root = expand_home(data_dir, "F16 data folder")
    try:
        return _find_benchmark(root)
    except OSError as exc:
        # (a name too long, a folder that may not be read: the run took them for its own failure to write,
        # "cannot write <the data folder>", exit 1 and a .failed run folder)
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(root) else ""
        raise InputError(f"F16 data folder {str(root)!r} cannot be read{where}: {exc.strerror or exc}") from None


def _find_benchmark(root: Path) -> _Source:
    if not root.exists():
        raise InputError(f"F16 data folder {str(root)!r} does not exist; {_expected()}")
    if root.is_file():
        if root.suffix.lower() != ".zip":
            raise InputError(f"{root} is a file, not a folder or a zip; {_expected()}")
        found = _zip_source(root)
        if found is None:
            raise InputError(f"{root} holds no F16Data_*.csv/.mat files; {_expected()}")
        return found
    for folder in (root, root / "BenchmarkData", root / "F16GVT_Files" / "BenchmarkData", root / "F16GVT_Files"):
        files = _folder_files(folder)
        if files:
            return _Source(where=str(folder), files=files)
    for archive in [root / "F16GVT_Files.zip", *sorted(p for p in root.glob("*.zip") if p.name != "F16GVT_Files.zip")]:
        if archive.is_file():
            found = _zip_source(archive)
            if found is not None:
                return found
    raise InputError(f"no F16 benchmark files under {root} (looked in it, BenchmarkData/, F16GVT_Files/BenchmarkData/ "
                     f"and *.zip); {_expected()}")


def _drop_padding(signals: np.ndarray) -> tuple[np.ndarray, int]:
    """Drop trailing rows whose every signal is exactly zero (padding). ``signals`` (N, channels)."""
    nonzero = np.flatnonzero(np.any(signals != 0, axis=1))
    end = int(nonzero[-1]) + 1 if nonzero.size else 0
    return signals[:end], signals.shape[0] - end


def exact_float_options() -> dict:
    """``read_csv`` options that parse every number to the nearest double: pandas 2's default parser can
    miss it by an ulp (seen on a GPU machine: the benchmark's values differed from the .mat files'),
    pandas 3's default is exact (and deprecates the option)."""
    import pandas as pd

    return {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


def _read_csv(data: bytes, name: str) -> tuple[np.ndarray, float | None]:
    """``(signals (N, 5) in COLUMNS order, Fs or None)``."""
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(data), **exact_float_options())
    except Exception as exc:  # noqa: BLE001  (empty, binary, malformed: pandas raises many types)
        raise InputError(f"{name}: cannot read as CSV ({type(exc).__name__}); {_expected()}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{name}: wrong columns: expected {', '.join(COLUMNS)} (400 Hz), found {', '.join(frame.columns) or 'none'}; "
                         f"the format of {SOURCE}")
    try:
        signals = frame[list(COLUMNS)].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError(f"{name}: non-numeric values in the columns {', '.join(COLUMNS)}") from None
    fs = None
    if "Fs" in frame.columns:
        values = pd.to_numeric(frame["Fs"], errors="coerce").to_numpy(dtype=np.float64)
        values = values[np.isfinite(values) & (values > 0)]
        fs = float(values[0]) if values.size else None
    return signals, fs


def _read_mat(data: bytes, name: str) -> tuple[np.ndarray, float | None]:
    from scipy.io import loadmat

    try:
        mat = loadmat(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001  (not a MATLAB file: scipy raises many types)
        raise InputError(f"{name}: cannot read as a .mat file ({type(exc).__name__}); {_expected()}") from None
    missing = [k for k in ("Force", "Acceleration") if k not in mat]
    if missing:
        raise InputError(f"{name}: missing variable(s) {', '.join(missing)}; expected Force (1×N), Voltage (1×N), "
                         f"Acceleration (3×N), Fs as in {SOURCE}")
    force, acc = _numbers(mat, "Force", name), _numbers(mat, "Acceleration", name)
    if force.ndim != 2 or 1 not in force.shape or acc.ndim != 2 or 3 not in acc.shape:
        raise InputError(f"{name}: Force must be 1×N and Acceleration 3×N, got {force.shape} and {acc.shape}")
    force = force.reshape(-1)
    acc = acc if acc.shape[1] == 3 and acc.shape[0] != 3 else acc.T
    if acc.shape[0] != force.size:
        raise InputError(f"{name}: Force has {force.size} samples but Acceleration {acc.shape[0]}")
    volt = (_numbers(mat, "Voltage", name) if "Voltage" in mat else np.zeros_like(force)).reshape(-1)
    if volt.size != force.size:
        raise InputError(f"{name}: Voltage has {volt.size} samples but Force {force.size}")
    rates = _numbers(mat, "Fs", name).reshape(-1) if "Fs" in mat else np.empty(0)
    fs = float(rates[0]) if rates.size else None
    if fs is not None and not (np.isfinite(fs) and fs > 0):
        # (Fs = 0 ended in a ZeroDivisionError traceback when the time step 1/Fs was formed)
        raise InputError(f"{name}: Fs must be a positive sample rate in Hz (the benchmark's is {SAMPLE_RATE:g}), got {fs:g}")
    return np.column_stack([force, volt, acc]), fs


def _numbers(mat: dict, key: str, name: str) -> np.ndarray:
    """The .mat variable ``key`` as float64; :class:`InputError` when it is not numbers (a string, a cell array or
    a struct ended in a ValueError or TypeError traceback), or when it is complex with an imaginary part that is not
    zero: the cast to float64 kept the real part with only a ComplexWarning, and the model was fitted to half of
    each sample. A complex variable whose every imaginary part is exactly zero is taken (its real part): MATLAB
    stores a real signal so after ``complex(x)`` or arithmetic that passed through complex numbers, and nothing of
    it is lost."""
    value = mat[key]
    if np.iscomplexobj(value):
        imag = np.asarray(value).imag
        bad = int(np.count_nonzero(imag != 0))   # (a NaN imaginary part counts: it is not zero)
        if bad:
            raise InputError(f"{name}: {key} is complex ({bad} of {imag.size} values have a non-zero imaginary part); "
                             f"the benchmark's signals are real: save real({key}) if that is the measured signal")
        value = np.asarray(value).real
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        dtype = np.asarray(value).dtype
        kind = ("text" if dtype.kind in "US" else "a struct" if dtype.names else "a cell array" if dtype.kind == "O"
                else f"values of type {dtype}")
        raise InputError(f"{name}: {key} must be numbers, got {kind}; expected Force (1×N), Voltage (1×N), "
                         f"Acceleration (3×N), Fs as in {SOURCE}") from None


def _check_size(source: _Source, names: list[str], max_bytes: int | None) -> None:
    """:class:`ResourceError` when the files ``names`` hold more than ``max_bytes`` (``None``: no limit), before
    any is read: each is read whole (a zip member too), then parsed; a zip of a few MB whose members declare
    tens of GB of CSV (compressed zeros) was read into memory until the kernel's OOM killer ended the run."""
    if max_bytes is None:
        return
    size = sum(source.size(name) for name in names)
    if size > max_bytes:
        raise ResourceError(f"{source.where}: its {len(names)} F16 record files hold {size / 2**20:.1f} MiB, more than "
                            f"the {max_bytes / 2**20:.1f} MiB that may be read here (the benchmark's records are a few MB each)")


def read_records(data_dir: str | Path, excitation: str, *, file_format: str = "auto",
                 min_steps: int = 2, max_bytes: int | None = None) -> tuple[list[Record], list[Record], str]:
    """``(training records, validation records, where)`` for ``excitation`` (``sine_sweep`` | ``multisine``).

    ``file_format``: ``csv``, ``mat`` or ``auto`` (a level's CSV if there is one, else its .mat). Every
    record is checked: the benchmark's columns, numbers, no NaN/inf, at least ``min_steps`` samples after
    the padding is dropped, one sample rate for all. :class:`InputError` (one line, naming what was expected
    and where the data comes from) otherwise. ``max_bytes``: the most the chosen files may hold together (their
    sizes as the folder or zip declares them, checked before any is read; :class:`ResourceError` beyond it).
    """
    if excitation not in EXCITATIONS:
        raise InputError(f"unknown f16.excitation {excitation!r}; choose one of: {', '.join(EXCITATIONS)}")
    if file_format not in FORMATS:
        raise InputError(f"unknown f16.format {file_format!r}; choose one of: {', '.join(FORMATS)}")
    tag = EXCITATIONS[excitation]
    source = find_benchmark(data_dir)
    chosen: dict[tuple[int, bool], str] = {}
    for base in sorted(source.files):
        m = _NAME.match(base)
        if m["tag"] != tag or (file_format != "auto" and m["ext"] != file_format):
            continue
        key = (int(m["level"]), m["validation"] is not None)
        if key not in chosen or (file_format == "auto" and m["ext"] == "csv"):
            chosen[key] = base
    train_keys = sorted(k for k in chosen if not k[1])
    test_keys = sorted(k for k in chosen if k[1])
    if not train_keys or not test_keys:
        found = sorted({_NAME.match(b)["tag"] for b in source.files})
        raise InputError(f"{source.where}: no {'training' if not train_keys else 'validation'} records for the "
                         f"{excitation} excitation ({tag}{'' if file_format == 'auto' else ', ' + file_format} files; "
                         f"found excitations: {', '.join(found) or 'none'}); {_expected(tag)}")
    _check_size(source, [chosen[key] for key in train_keys + test_keys], max_bytes)
    records, rates = [], set()
    for key in train_keys + test_keys:
        base = chosen[key]
        raw = source.read_bytes(base)
        signals, fs = (_read_csv if base.endswith(".csv") else _read_mat)(raw, base)
        signals, padding = _drop_padding(signals)
        if not np.isfinite(signals).all():
            row = int(np.flatnonzero(~np.isfinite(signals).all(axis=1))[0])
            raise InputError(f"{base}: NaN or infinite value in row {row + 1} (after the header); the benchmark's records are complete")
        if signals.shape[0] < min_steps:
            raise InputError(f"{base}: {signals.shape[0]} samples after dropping {padding} padding row(s), need at least "
                             f"{min_steps} (the benchmark's records hold tens of thousands at 400 Hz)")
        rate = SAMPLE_RATE if fs is None else fs
        rates.add(rate)
        records.append(Record(name=base, level=key[0], validation=key[1], u=signals[:, :1].copy(),
                              y=signals[:, 2:5].copy(), sample_rate=rate, padding=padding))
    if len(rates) != 1:
        raise InputError(f"{source.where}: the records disagree on the sample rate ({', '.join(f'{r:g}' for r in sorted(rates))} Hz)")
    return [r for r in records if not r.validation], [r for r in records if r.validation], source.where


def segments(records: list[Record], length: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Cut every record into consecutive, non-overlapping pieces of ``length`` samples (the remainder of each
    record is dropped): ``u`` (pieces, length, 1), ``y`` (pieces, length, 3), and the pieces per record."""
    us, ys, counts = [], [], []
    for r in records:
        n = r.u.shape[0] // length
        counts.append(n)
        if n:
            us.append(r.u[: n * length].reshape(n, length, -1))
            ys.append(r.y[: n * length].reshape(n, length, -1))
    if not us:
        raise InputError(f"records of {max(r.u.shape[0] for r in records)} samples or fewer are too short for segments of {length}")
    return np.concatenate(us), np.concatenate(ys), counts
