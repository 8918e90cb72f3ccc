"""The one path from settings to a finished run folder, for a single run and for each sweep job.

``load`` (compose + typed settings) → resource guard → run folder (``.partial``) → ``config.yaml`` →
``deqlab.demos.<command>.run(settings)`` → files written atomically → ``<name>`` or ``<name>.failed``.

Exit codes: 0 success; 2 bad input (before any folder exists, or found by the run: the folder is then
removed) and resources that do not fit; 1 a failed run (``.failed`` with ``error.txt``), or reported
non-convergence under ``strict``; 128+N for signal N (Ctrl-C, SIGTERM, SIGHUP), the folder ``.failed``
naming the signal and child processes ended.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from deqlab.cli.errors import fail
from deqlab.cli.options import option_overrides
from deqlab.errors import DeqlabError, InputError


@dataclass
class Outcome:
    """How one run ended: ``code`` is the exit code, ``message`` the one line for stderr."""

    code: int
    message: str = ""
    result: Any = None
    folder: Path | None = None
    reason: str = ""   # the message without the run folder it names (a sweep's job line names the folder itself)


def settings_yaml(settings) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.structured(settings))


def run_in_folder(command: str, settings, run_dir, *, strict: bool, console, sweep_job: bool = False) -> Outcome:
    """Run ``command`` with ``settings`` inside ``run_dir`` (a :class:`~deqlab.cli.run_folder.RunFolder`)
    and mark the folder. Never raises for a failure the user must see; a bug keeps its traceback.
    ``sweep_job``: bad input only the run could see marks the folder ``.failed`` (exit 2) instead of
    removing it, as a job's bad settings do: the sweep's table and folder account for every job."""
    from deqlab.cli.termination import end_children, held, signals_as_exceptions, stopped_by
    from deqlab.report.files import write_text

    with signals_as_exceptions():
        try:
            write_text(run_dir.file("config.yaml"), settings_yaml(settings))
            from deqlab.report.writer import save, show   # (numpy, pandas, torch: they may fail to load)

            demo = importlib.import_module(f"deqlab.demos.{command}")
            with _warnings_kept(run_dir, console):
                result = _run_on_device(demo, settings)
                save(result, run_dir.path)
                show(result, console)
            if result.failures and strict:
                text = f"{len(result.failures)} failure report(s) and strict=true: " + "; ".join(result.failures)
                folder, _ = run_dir.fail(text)
                return Outcome(1, f"{len(result.failures)} failure report(s) (first: {result.failures[0]}) and "
                                  "strict=true", result, folder)
            try:
                folder = run_dir.finish()
            except OSError as exc:
                return _failed(run_dir, f"cannot finish {run_dir.path}: {exc.strerror or exc}", 1)
            # (still inside: a signal that lands during the rename, or just after it, marks the folder .failed)
            return Outcome(0, "", result, folder)
        except BaseException as exc:
            with held() as hold:
                # a stop first, also where the signal broke into a library's cleanup and came out as its error
                stop = stopped_by(exc)
                if stop is not None:
                    hold.stopping = True
                    end_children()
                    return _failed(run_dir, f"stopped by {stop.name}", stop.exit_code)
                return _ended_by(exc, run_dir, settings, sweep_job=sweep_job)


@contextlib.contextmanager
def _warnings_kept(run_dir, console):
    """Python warnings of the libraries a run uses (NumPy's overflow, torch's pickle protocol, matplotlib's
    layout) go into the run folder's ``warnings.txt``, not to stderr: stderr holds one line for an error,
    and warnings before it (two to four lines each) buried it. Each distinct warning is kept once, and the
    run says on stdout how many there were. The folder keeps them whether the run succeeds or fails."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        # (once per place in the code: "always" kept every one, and a solve that overflows in each of a
        # million iterations would have filled the memory with them)
        warnings.simplefilter("default")
        # torch's forward-mode AD scripts its own decompositions of linalg ops with its deprecated
        # torch.jit.script (torch 2.13): a warning about torch's code, not the run's, on every `deqlab hessian`
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning)
        try:
            yield
        finally:
            seen = list(dict.fromkeys(f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught))
            if seen:
                from deqlab.report.files import write_text

                with contextlib.suppress(OSError):
                    write_text(run_dir.file("warnings.txt"), "\n".join(seen) + "\n")
                    console.print(f"{len(seen)} warning(s) from the libraries the run used: {run_dir.file('warnings.txt').name}",
                                  markup=False, highlight=False)


def _ended_by(exc: BaseException, run_dir, settings, *, sweep_job: bool = False) -> Outcome:
    """The outcome of a run that raised ``exc`` (not a stop): bad input found by the run (its folder
    removed: nothing to keep; a sweep job's marked ``.failed``), a failure the user must see
    (``.failed``), or a bug, re-raised."""
    if isinstance(exc, InputError) and sweep_job:
        # (removed, it left the job's line naming a folder that was not there, the job out of summary.csv,
        # and the sweep ending in "launched 2 job(s), but its folder holds 1 job folder(s)")
        return _failed(run_dir, str(exc), 2)
    if isinstance(exc, InputError):      # bad input only the run could see (a data file)
        run_dir.discard()
        return Outcome(2, str(exc))
    if isinstance(exc, DeqlabError):
        return _failed(run_dir, str(exc), 1)
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
        # (any open, a font matplotlib reads as well as a file the run writes: not "cannot write <font>")
        return _failed(run_dir, f"{exc.strerror} (a limit on open files, such as ulimit -n?)", 1)
    if isinstance(exc, OSError) and not run_dir.path.is_dir():
        # (removed, or replaced by a file, while the run wrote into it: "cannot write gap.csv: [Errno None] None: ...")
        # Nothing to mark: its error.txt has nowhere to go, and a file put in its place is not the run's to rename.
        message = f"the run folder {run_dir.path} was removed or replaced while the run wrote into it"
        return Outcome(1, message, None, run_dir.path, reason=message)
    if isinstance(exc, OSError):         # a full disk, an unwritable file
        filename = getattr(exc, "filename", None)
        where = f" {_in_folder(filename, run_dir)}" if filename else ""
        writing = not filename or where.strip() != str(filename) or exc.errno in WRITE_ERRORS
        # (a file outside the run folder that the run could not open is not one it failed to write)
        return _failed(run_dir, f"cannot {'write' if writing else 'open'}{where}: {exc.strerror or exc}", 1)
    if isinstance(exc, MemoryError) or _out_of_host_memory(exc):
        return _failed(run_dir, "out of memory (lower the sizes in the settings)", 1)
    if isinstance(exc, RuntimeError) and _out_of_device_memory(exc):
        return _failed(run_dir, f"out of memory on {getattr(settings, 'device', 'the device')} "
                                "(lower the sizes in the settings)", 1)
    _mark_bug(run_dir, exc)   # a bug: never leave a folder that looks like a success
    raise exc


#: the errors of a write that failed for want of room or permission to write
WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def _in_folder(filename, run_dir) -> str:
    """``filename`` relative to the run folder when it lies inside it (the folder is renamed ``.failed``
    before the line is printed: its ``.partial`` path would name a folder that is gone), else as it is."""
    try:
        return str(Path(filename).relative_to(run_dir.path))
    except (TypeError, ValueError):
        return str(filename)


def _mark_bug(run_dir, exc: BaseException) -> None:
    """A bug (the caller re-raises it, traceback kept): never leave a folder that looks like a success;
    the traceback goes into its error.txt, and the children are ended."""
    import traceback

    from deqlab.cli.termination import end_children

    run_dir.fail(f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
    end_children()


def _out_of_host_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's failure to allocate host memory: a ``RuntimeError`` ("DefaultCPUAllocator:
    can't allocate memory"), not a ``MemoryError``, which a run whose sizes the resource guard underestimated
    ended with as if it were a bug (a traceback)."""
    return isinstance(exc, RuntimeError) and "DefaultCPUAllocator" in str(exc) and "allocate memory" in str(exc)


def _out_of_device_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's out-of-memory error of a GPU (a ``RuntimeError``, not a ``MemoryError``:
    the resource guard's estimate missed what the run needed)."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, oom)


def _run_on_device(demo, settings):
    """``demo.run(settings)``, with tensors created without a device landing on ``settings.device``."""
    device = getattr(settings, "device", "cpu")
    if device == "cpu":
        return demo.run(settings)
    import torch

    with torch.device(device):
        return demo.run(settings)


def _failed(run_dir, message: str, code: int) -> Outcome:
    folder, problem = run_dir.fail(message)
    suffix = f" ({problem})" if problem else ""
    return Outcome(code, f"{message} [run folder: {folder}]{suffix}", None, folder, reason=f"{message}{suffix}")


def import_run_modules(command: str) -> None:
    """Import what a run of ``command`` needs (numpy, pandas, torch, matplotlib) before its folder exists.

    Under a memory limit (``ulimit -v``) a compiled library fails to load: a ``MemoryError`` (or a
    ``SystemError``), an ``ImportError`` naming a shared object, or OpenBLAS ending the process from C.
    Just after the folder was made that left it ``.partial``, after a traceback; here it is a
    :class:`ResourceError` (one line, exit 2) and no folder. Any other ``ImportError`` is a bug and keeps
    its traceback."""
    from deqlab.errors import ResourceError
    from deqlab.report.progress import activity

    hint = "(a memory limit such as ulimit -v?)"
    try:
        # (a spinner on a terminal: loading torch and matplotlib takes seconds on a busy machine)
        with activity("loading torch, numpy and matplotlib"):
            importlib.import_module("deqlab.report.writer")
            importlib.import_module(f"deqlab.demos.{command}")
    except (MemoryError, SystemError):   # (SystemError: an extension short of memory, "error return without exception set")
        raise ResourceError(f"not enough memory to load the libraries the run needs {hint}") from None
    except ImportError as exc:
        lines = [line for line in str(exc).splitlines() if "shared object" in line]
        if not lines:
            raise
        text = lines[-1].strip().removeprefix("Original error was:").strip()   # (numpy's wording)
        raise ResourceError(f"cannot load the libraries the run needs: {text} {hint}") from None


def check_resources(settings) -> None:
    """The resource guard, against the memory of the device the run's tensors will live on (call after
    :func:`resolve_device`): the host's, or the CUDA device's free memory."""
    from deqlab.settings.resources import check_memory

    estimates = getattr(settings, "memory_estimates", None)
    if estimates is None:
        return
    device = getattr(settings, "device", "cpu")
    if device == "cpu":
        check_memory(estimates())
        return
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    check_memory(estimates(), limit=free, where=f"{device} ({torch.cuda.get_device_name(torch.device(device))})")


def resolve_device(settings) -> None:
    """Turn ``auto`` into ``cuda``/``cpu`` and refuse a CUDA device that is not there (imports torch only
    when a device other than the CPU is asked for)."""
    name = getattr(settings, "device", "cpu")
    if name == "cpu":
        return
    import torch

    if name == "auto":
        settings.device = "cuda" if torch.cuda.is_available() else "cpu"
        return
    if not torch.cuda.is_available():
        raise InputError(f"device {name} asked for, but torch {torch.__version__} finds no CUDA device here; use --device cpu")
    index = int(name.split(":")[1]) if ":" in name else 0
    if index >= torch.cuda.device_count():
        raise InputError(f"device {name} asked for, but there are {torch.cuda.device_count()} CUDA device(s)")


def refuse_input(exc: InputError) -> None:
    """Bad input: one line, exit 2, unless the error came from a signal breaking into the composition
    (OmegaConf's cleanup raised its own error, turned into a bogus "bad override"): that is the stop."""
    from deqlab.cli.termination import stopped_by

    stop = stopped_by(exc)
    if stop is not None:
        raise stop
    fail(str(exc), 2)


def execute(command: str, overrides: Sequence[str], *, folder: str | None = None, device: str | None = None,
            preset: Sequence[str] = ()):
    """A single run of ``command`` from the command line: returns the Result or exits. ``preset``: overrides
    that come before the user's and are not theirs (``--tiny``'s), so never refused as unread."""
    from rich.console import Console

    from deqlab.cli.compose import load
    from deqlab.cli.run_folder import RunFolder, creation_error, output_root, output_root_origin
    from deqlab.cli.termination import held, stopped_by
    from deqlab.report.writer import show_location

    try:
        settings, run = load(command, [*option_overrides(device=device), *overrides], preset=preset)
        output_root(run.output_root)   # (a '~user' that names nobody: one line now, not when the folder is made)
        resolve_device(settings)
        check_resources(settings)
        import_run_modules(command)
    except InputError as exc:
        refuse_input(exc)
    console = Console()
    run_dir = None
    try:
        with held():   # a signal while the folder is made is raised once `run_dir` names it
            try:
                run_dir = RunFolder.create(folder or command, run.output_root)
            except OSError as exc:
                fail(f"cannot create a run folder under {output_root_origin(run.output_root)}: "
                     f"{creation_error(exc, output_root(run.output_root))}", 2)
        outcome = run_in_folder(command, settings, run_dir, strict=run.strict, console=console)
    except BaseException as exc:
        # a signal between the folder's creation and the run's own handler left it .partial
        stop = stopped_by(exc)
        if stop is None or run_dir is None or not run_dir.path.name.endswith(".partial"):
            raise
        with held() as hold:
            hold.stopping = True
            outcome = _failed(run_dir, f"stopped by {stop.name}", stop.exit_code)
    if outcome.code:
        if outcome.folder is not None and outcome.code == 1 and outcome.result is not None:
            show_location(console, "outputs (marked failed):", "red", outcome.folder)
        fail(outcome.message, outcome.code)
    show_location(console, "outputs:", "green", outcome.folder)
    return outcome.result


def own_overrides(overrides: list[str]) -> list[str]:
    """The ``key=value`` overrides a user gave a sweep job (Hydra's, the command's name and the output root,
    which every job shares, left out)."""
    return [item for item in overrides
            if not (key := item.partition("=")[0].lstrip("+")).startswith("hydra") and key not in ("demo", "output_root")]


def run_job(command: str, cfg) -> dict:
    """One sweep job (inside Hydra's launcher): the same path as a single run, into the job's folder.

    The job folder is Hydra's ``<sweep dir>/<num>.partial``; it becomes ``<num>`` or ``<num>.failed``.
    What the job printed is kept in ``output.txt``. Returns a summary for the sweep's table.
    """
    from hydra.core.hydra_config import HydraConfig
    from rich.console import Console

    from deqlab.cli.compose import to_settings
    from deqlab.cli.run_folder import RunFolder
    from deqlab.cli.streams import guard, quiet_libraries
    from deqlab.report.files import write_text

    # A joblib worker is a fresh process, where main() did not run: its libraries' warnings off stderr, and
    # its own streams guarded as main()'s are: what they cannot encode (ASCII under a non-UTF-8 locale) written
    # escaped, and a reader that went away (`deqlab sweep ... | head -1`) only silencing the printing (the job's
    # print raised BrokenPipeError, and the sweep of two finished jobs ended .failed, 'Broken pipe').
    quiet_libraries()
    guard()
    path = Path(HydraConfig.get().runtime.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    final = path.with_name(path.name.removesuffix(".partial"))
    run_dir = RunFolder(path, final)
    overrides = list(HydraConfig.get().overrides.task)
    buffer = io.StringIO()
    # rendered for where it is printed (COLUMNS, the terminal, else 80), like a single run: at a fixed 120
    # every wide table and note of a job wrapped line by line on an 80-column terminal
    console = Console(file=buffer, width=Console().width, force_terminal=False)
    try:
        settings, run = to_settings(command, cfg)
        resolve_device(settings)
        check_resources(settings)
    except InputError as exc:
        outcome = _failed(run_dir, str(exc), 2)
    else:
        outcome = run_in_folder(command, settings, run_dir, strict=run.strict, console=console, sweep_job=True)
    folder = outcome.folder or final
    text = buffer.getvalue()
    with_failures = bool(outcome.result is not None and outcome.result.failures)
    try:
        write_text(Path(folder) / "output.txt", text + (f"error: {outcome.message}\n" if outcome.code else ""))
        if with_failures:
            write_text(Path(folder) / "failures.txt", "\n".join(outcome.result.failures) + "\n")
    except OSError:
        pass
    print(f"job {final.name}: {' '.join(own_overrides(overrides)) or '(no overrides)'}\n{text}", end="", flush=True)
    status = "ok" if outcome.code == 0 else ("failed" if outcome.code in (1, 2) else "stopped")
    # (the job's folder by its name in the sweep folder, which is renamed from '.partial' once the sweep ends)
    print(f"job {final.name} {status}" + (f": {Path(folder).name} ({outcome.reason or outcome.message})" if outcome.code else ""),
          flush=True)
    headline = dict(getattr(outcome.result, "headline", {}) or {}) if outcome.result is not None else {}
    summary = {"job": final.name, "overrides": overrides, "status": status, "exit_code": outcome.code,
               "failures": len(outcome.result.failures) if outcome.result is not None else 0,
               "folder": Path(folder).name, "headline": headline}
    try:
        write_text(Path(folder) / "job.json", json.dumps(summary, default=float, indent=1))
    except OSError:
        pass
    if outcome.code >= 128:
        # Stopped by a signal: the sweep stops too. Hydra's basic launcher runs the jobs in this process,
        # where the run's own handler had taken the signal, and went on with the next job.
        from deqlab.cli.termination import Terminated

        raise Terminated(outcome.code - 128)
    return summary


__all__ = ["execute", "own_overrides", "run_job", "run_in_folder"]
