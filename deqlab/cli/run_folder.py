"""Run folders: ``<output_root>/<command>/<timestamp>/``, created exclusively, never reused.

A run writes into ``<name>.partial/``; the folder is renamed to ``<name>/`` only when the command
succeeded, or to ``<name>.failed/`` with a non-empty ``error.txt`` when it did not, so no folder
claims a success it did not have.

Exclusive creation: ``mkdir`` of ``<name>.partial`` is atomic, and a name is kept only if neither
``<name>`` nor ``<name>.failed`` exists *after* that ``mkdir`` succeeded. Since a folder only ever
moves from ``.partial`` to its final name by an atomic rename, two runs can never end up with the
same name, however many start in the same second. The output root is ``./outputs`` unless the key
``output_root`` or the environment variable ``DEQLAB_OUTPUT_ROOT`` says otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import os
import shutil
from pathlib import Path

from deqlab.errors import InputError, expand_home
from deqlab.report.files import write_text

ENV_OUTPUT_ROOT = "DEQLAB_OUTPUT_ROOT"
MAX_ATTEMPTS = 10_000


def output_root(configured: str | None = None) -> Path:
    """``DEQLAB_OUTPUT_ROOT``, else ``configured``, else ``outputs``; ``~`` is the user's home folder (a
    literal ``~`` folder was made in the working directory while the CSV writer expanded it: the run failed)."""
    variable = os.environ.get(ENV_OUTPUT_ROOT)
    if variable and not variable.strip():
        # (output_root=' ' is refused by the settings; the variable made a folder named ' ' in the working directory)
        raise InputError(f"{ENV_OUTPUT_ROOT} must name a folder, got {variable!r} (unset it to use output_root)")
    given = variable or configured or "outputs"
    return expand_home(given, ENV_OUTPUT_ROOT if os.environ.get(ENV_OUTPUT_ROOT) else "output_root")


def output_root_origin(configured: str | None = None) -> str:
    """Where :func:`output_root` came from, for messages: ``DEQLAB_OUTPUT_ROOT='…'`` or ``output_root='…'``."""
    name = ENV_OUTPUT_ROOT if os.environ.get(ENV_OUTPUT_ROOT) else "output_root"
    return f"{name}={str(output_root(configured))!r}"


def creation_error(exc: OSError, path: Path) -> str:
    """Why no folder could be made at or under ``path``, in words: ``exc``'s, unless ``path`` or a folder
    above it is a symbolic link to nothing or not a folder (mkdir then said "File exists", of a folder that
    does not)."""
    for folder in [Path(path), *Path(path).parents]:
        try:
            if folder.is_symlink() and not folder.exists():
                return f"{folder} is a symbolic link to {os.readlink(folder)}, which does not exist"
            if folder.exists() and not folder.is_dir():   # (hydra.sweep.dir=/dev/null: "File exists")
                return f"{folder} is not a folder"
        except OSError:   # (a name too long: pathlib's checks raise it too, and ended in a traceback)
            continue
    return exc.strerror or str(exc)


def _stamp() -> str:
    return _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its ancestors that do not exist yet, deepest first (what ``mkdir -p`` makes)."""
    made = []
    for folder in [path, *path.parents]:
        try:
            if folder.exists():
                break
        except OSError:   # (a name too long: mkdir will say so, and the caller answers in one line)
            pass
        made.append(folder)
    return made


def create_exclusive(base: Path, suffix: str = ".partial") -> tuple[Path, Path]:
    """Create ``base/<stamp>[_n]<suffix>`` exclusively; returns ``(created, final name)``."""
    base.mkdir(parents=True, exist_ok=True)
    stamp = _stamp()
    for attempt in range(MAX_ATTEMPTS):
        name = stamp if attempt == 0 else f"{stamp}_{attempt}"
        partial = base / f"{name}{suffix}"
        try:
            partial.mkdir()
        except FileExistsError:
            continue
        except FileNotFoundError:   # a refused run removed the empty command folder meanwhile
            base.mkdir(parents=True, exist_ok=True)
            continue
        final = base / name
        if suffix and (final.exists() or (base / f"{name}.failed").exists()):
            partial.rmdir()   # someone finished under this name before we reserved it
            continue
        return partial, final
    raise OSError(f"no fresh folder name under {base} after {MAX_ATTEMPTS} attempts")


class RunFolder:
    """A run's output folder, ``.partial`` while the run lasts."""

    def __init__(self, path: Path, final: Path, made: list[Path] | None = None):
        self.path = Path(path)
        self.final = Path(final)
        self.made = list(made or [])   # folders above the run's that creating it made, deepest first

    @classmethod
    def create(cls, command: str, root: str | Path | None = None) -> "RunFolder":
        base = output_root(str(root) if root else None) / command
        made = missing_folders(base)
        try:
            partial, final = create_exclusive(base)
        except OSError:
            remove_empty(made)   # (no inode left for the run's folder: the command folder stayed behind)
            raise
        return cls(partial, final, made)

    def file(self, name: str) -> Path:
        return self.path / name

    def finish(self) -> Path:
        """Mark the run successful: ``<name>.partial`` → ``<name>``."""
        if self.path != self.final:
            os.rename(self.path, self.final)
            self.path = self.final
        return self.path

    def fail(self, message: str) -> tuple[Path, str | None]:
        """Mark the run failed: ``error.txt`` with ``message``, then ``<name>.failed``.

        Returns the folder and, if ``error.txt`` could not be written (a full disk), why not.
        """
        problem = None
        try:
            write_text(self.path / "error.txt", message.rstrip() + "\n")
        except OSError as exc:
            problem = f"could not write its error.txt: {exc.strerror or exc}"
            note = message.rstrip()[:200]
            try:   # a one-line note still fits where a file did not
                (self.path / "error.txt").write_text(note + "\n", encoding="utf-8", errors="surrogateescape")
                if note == message.rstrip():   # (the note is the whole message: nothing is missing)
                    problem = None
                else:
                    problem = f"its error.txt holds the first 200 characters: {exc.strerror or exc}"
            except OSError:
                pass
        failed = self.final.with_name(self.final.name + ".failed")
        with contextlib.suppress(OSError):
            os.rename(self.path, failed)
            self.path = failed
        return self.path, problem

    def discard(self) -> None:
        """Remove the folder (bad input found only once the run had started: nothing to keep)."""
        shutil.rmtree(self.path, ignore_errors=True)
        remove_empty(self.made)


def remove_empty(made: list[Path]) -> None:
    """Remove the folders a run made above its own (``outputs/sysid/f16``...), deepest first, each only
    while empty: rmdir never removes another run's folder."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENAMETOOLONG):   # (never made: hydra.sweep.dir=a/b/<a name too long>)
                continue
            break
