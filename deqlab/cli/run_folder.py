"""Run folders: ``outputs/<command>/<timestamp>/``, never reused, never overwritten.

A run writes into ``<timestamp>.partial/`` and the folder is renamed to ``<timestamp>/`` only when
the command succeeded, so no folder claims a success it did not have. A failure mid-run renames it
to ``<timestamp>.failed/`` with ``error.txt``. The output root is ``./outputs`` unless the config
key ``output_root`` or the environment variable ``DEQLAB_OUTPUT_ROOT`` says otherwise.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

ENV_OUTPUT_ROOT = "DEQLAB_OUTPUT_ROOT"


def output_root(configured: str | None = None) -> Path:
    return Path(os.environ.get(ENV_OUTPUT_ROOT) or configured or "outputs")


class RunFolder:
    """A run's output folder. Use :meth:`create` for a fresh one, :meth:`at` for one Hydra made."""

    def __init__(self, path: Path, final: Path | None = None):
        self.path = Path(path)
        self._final = final

    @staticmethod
    def _candidates(command: str, root: str | Path | None):
        """``(final, partial, failed)`` paths for fresh timestamps, in order of preference."""
        base = output_root(str(root) if root else None) / command
        stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        for attempt in range(1000):
            name = stamp if attempt == 0 else f"{stamp}_{attempt}"
            final = base / name
            yield final, base / f"{name}.partial", base / f"{name}.failed"

    @classmethod
    def fresh_path(cls, command: str, root: str | Path | None = None) -> Path:
        """A ``<root>/<command>/<timestamp>`` path nobody uses yet, not created (for Hydra's sweep dir)."""
        for final, partial, failed in cls._candidates(command, root):
            if not (final.exists() or partial.exists() or failed.exists()):
                return final
        raise RuntimeError(f"could not find a fresh folder name under {output_root(root) / command}")

    @classmethod
    def create(cls, command: str, root: str | Path | None = None) -> "RunFolder":
        for final, partial, failed in cls._candidates(command, root):
            if final.exists() or partial.exists() or failed.exists():
                continue
            partial.parent.mkdir(parents=True, exist_ok=True)
            try:
                partial.mkdir()
            except FileExistsError:
                continue
            return cls(partial, final)
        raise RuntimeError(f"could not create a fresh run folder under {output_root(root) / command}")

    @classmethod
    def at(cls, path: str | Path) -> "RunFolder":
        """Wrap a folder someone else created (a Hydra multirun job's output_dir)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def finish(self) -> Path:
        """Mark the run successful: ``<timestamp>.partial`` → ``<timestamp>``."""
        if self._final is not None and self.path != self._final:
            self.path.rename(self._final)
            self.path = self._final
        return self.path

    def fail(self, message: str) -> Path:
        """Mark the run failed: write ``error.txt`` and rename to ``<timestamp>.failed``."""
        (self.path / "error.txt").write_text(message + "\n")
        if self._final is not None:
            failed = self._final.with_name(self._final.name + ".failed")
            self.path.rename(failed)
            self.path = failed
        return self.path
