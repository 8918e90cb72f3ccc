"""The body of ``deqlab sweep``: check every swept value, make the sweep folder, launch, summarise."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import warnings
from pathlib import Path

from deqlab.cli.errors import fail
from deqlab.cli.execute import WRITE_ERRORS, check_resources, import_run_modules, own_overrides, refuse_input, resolve_device
from deqlab.errors import InputError, expand_home

#: CLI names of the sweepable commands → their config names (the underscore spellings work too)
SWEEPABLE = {
    "converge": "converge", "hessian": "hessian", "mondeq": "mondeq", "nethessian": "nethessian",
    "nethessian-pinn": "nethessian_pinn", "lowrank": "lowrank", "sysid-pendulum": "sysid",
    "sysid-evaluate": "sysid_evaluate", "sysid-f16": "sysid_f16", "bench-solvers": "bench_solvers", "bench-hessian": "bench_hessian",
    "bench-lowrank": "bench_lowrank", "bench-mondeq": "bench_mondeq", "bench-nethessian": "bench_nethessian",
    "bench-sysid": "bench_sysid", "train-digits": "train_digits", "bench-curvature": "bench_curvature",
}


def resolve(name: str) -> str:
    if name in SWEEPABLE:
        return SWEEPABLE[name]
    if name in SWEEPABLE.values():
        return name
    if name == "sysid":
        return "sysid"
    raise KeyError(name)


def probes(parsed) -> list[list[str]]:
    """Plain override lists that together try every value of every sweep once (the other sweeps at their
    first value), so bad input fails before any job runs."""
    choices = [list(o.sweep_string_iterator()) if o.is_sweep_override() else [None] for o in parsed]

    def line(o, value):
        return o.input_line if value is None else f"{o.get_key_element()}={value}"

    first = [line(o, c[0]) for o, c in zip(parsed, choices)]
    out = [first]
    for i, (o, values) in enumerate(zip(parsed, choices)):
        for value in values[1:]:
            out.append(first[:i] + [line(o, value)] + first[i + 1:])
    return out


#: The submitit launchers' counts (option → least value; ``None`` leaves the choice to the scheduler): a
#: value below it failed only once the sweep folder existed (``tasks_per_node=0``: an IndexError,
#: ``timeout_min=-1``: jobs "ended without a result") or was passed on to the scheduler as it was.
SUBMITIT_COUNTS = {"timeout_min": 1, "cpus_per_task": 1, "gpus_per_node": 0, "tasks_per_node": 1, "mem_gb": 0, "nodes": 1}
#: The submitit options that multiply a job into several processes, each running it whole: at most 1.
SUBMITIT_ONE = ("tasks_per_node", "nodes")


#: The most joblib workers per CPU core a sweep may ask for (each is a Python process that loads torch).
WORKERS_PER_CORE = 4
#: The file by which a sweep claims a folder the user named (``hydra.sweep.dir``), made with an exclusive create.
CLAIM = ".deqlab-sweep"


def check_launcher_options(launcher) -> None:
    """Refuse a value of the chosen launcher's options that the launcher would refuse (or choke on) only
    when it starts, after the sweep folder exists: that is bad input, exit 2 and no folder.

    joblib checks its own options (``n_jobs=0``, ``prefer``, ``require``, ``batch_size``) when
    ``Parallel`` is built and run: they are given to it here as Hydra's joblib launcher gives them
    (its ``process_joblib_cfg``, backend ``loky``), without starting a worker."""
    from omegaconf import OmegaConf

    target = str(launcher.get("_target_", ""))
    options = {k: v for k, v in OmegaConf.to_container(launcher, resolve=True).items() if k != "_target_"}
    if target.endswith("JoblibLauncher"):
        from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
        from joblib import Parallel, cpu_count, effective_n_jobs

        _check_joblib_memmapping(options)
        process_joblib_cfg(options)
        for name, ignored in (("backend", options.get("backend") not in (None, "loky")), ("prefer", options.get("prefer") == "threads")):
            # (Hydra's launcher sets the loky backend whatever was asked, and loky runs processes: backend=threading,
            # a backend that is none, or prefer=threads ran the jobs in processes, exit 0; a prefer that is none
            # is joblib's to refuse, below)
            if ignored:
                raise InputError(f"hydra.launcher.{name}={options[name]}: Hydra's joblib launcher always runs joblib's "
                                 f"loky backend, in processes; leave hydra.launcher.{name} unset")
        options["backend"] = "loky"
        try:
            Parallel(**options)
            workers = effective_n_jobs(options.get("n_jobs"))
        except (ValueError, TypeError) as exc:
            raise InputError(f"hydra.launcher options refused by joblib: {exc}") from None
        _check_joblib_dispatch(options, workers)
        cores = cpu_count()   # (the cores this process may use, as n_jobs=-1 counts them)
        if workers > WORKERS_PER_CORE * cores:
            # (loky starts the workers as the pool is made, about 15 a second here, whatever the jobs: n_jobs=100000
            # for a sweep of two jobs filled the machine with processes until stopped)
            raise InputError(f"hydra.launcher.n_jobs={options.get('n_jobs')} would start {workers:,} worker processes (joblib "
                             f"starts them all); this machine has {cores} CPU core(s): use at most "
                             f"{WORKERS_PER_CORE * cores} (-1: one per core)")
    elif "submitit" in target:
        for name, least in SUBMITIT_COUNTS.items():
            value = options.get(name)
            if value is not None and value < least:
                raise InputError(f"hydra.launcher.{name} must be at least {least} (or null where its default is), got {value}")
        for name in SUBMITIT_ONE:
            value = options.get(name)
            if value is not None and value > 1:
                # (each task runs the whole job: tasks_per_node=3 ran every job three times at once into one folder,
                # and 100000 would have started that many processes)
                raise InputError(f"hydra.launcher.{name} must be 1, got {value}: a deqlab job is one process, and each "
                                 "task would run the whole job again into the same folder")


#: The memory-map modes joblib documents for ``mmap_mode`` (numpy's long aliases are not among them: joblib
#: turns 'w+' into 'r+' when a worker loads an array, but 'write', numpy's name for 'w+', it passes on:
#: a worker loading an array would overwrite the array's file).
MMAP_MODES = ("r", "r+", "w+", "c")


def _check_joblib_memmapping(options: dict) -> None:
    """``mmap_mode``, ``max_nbytes`` and ``temp_folder``, which joblib reads only when a job's argument holds an
    array over ``max_nbytes`` (a deqlab job's never does): ``mmap_mode=bogus``, ``max_nbytes=-1`` or ``-1M``
    and a ``temp_folder`` that is a file ran the sweep, exit 0, as though they were fine; a ``max_nbytes`` of
    ``''`` or ``infM`` ended in a traceback (an IndexError, an OverflowError from joblib's reading of it)."""
    from joblib.disk import memstr_to_bytes   # (joblib's own reading of '1M': K, M or G, in units of 1024)

    mode = options.get("mmap_mode")
    if mode is not None and mode not in MMAP_MODES:
        raise InputError(f"hydra.launcher.mmap_mode={mode!r} is not a memory-map mode joblib knows: use "
                         + ", ".join(MMAP_MODES))
    size = options.get("max_nbytes")
    if size is not None:
        try:   # (read as they read it: Hydra's launcher a whole number, joblib the rest)
            try:
                nbytes = int(size)
            except ValueError:
                nbytes = memstr_to_bytes(str(size))
        except (ValueError, TypeError, IndexError, OverflowError):
            nbytes = None
        if nbytes is None or nbytes < 0:
            raise InputError(f"hydra.launcher.max_nbytes={size!r} must be a size of at least 0 bytes, such as 1000000 or "
                             "1M (K, M, G), or null: no memory mapping")
    folder = options.get("temp_folder")
    if folder is not None:
        _check_folder(folder, "hydra.launcher.temp_folder")


def _check_joblib_dispatch(options: dict, workers: int) -> None:
    """``pre_dispatch`` and ``timeout``, which joblib reads only once the jobs are being handed out: a
    ``pre_dispatch`` that is no count (``abc``, ``-1``, ``n_jobs-9``) or ``0`` (no job ever dispatched), a
    ``timeout`` of 0 or less (every job "timed out") ended the sweep with exit 1 and a ``.failed`` folder."""
    import math

    from joblib._utils import eval_expr   # (joblib's own reading of it: arithmetic on n_jobs, nothing else)

    pre = options.get("pre_dispatch")
    if pre is not None and pre != "all":
        try:
            amount = int(eval_expr(pre.replace("n_jobs", str(workers))) if isinstance(pre, str) else pre)
        except (ValueError, TypeError, OverflowError):
            amount = None
        if amount is None or amount < 1:
            raise InputError(f"hydra.launcher.pre_dispatch={pre!r} must be all, a count of at least 1 or an expression "
                             f"of n_jobs such as 2*n_jobs (here n_jobs is {workers})")
    timeout = options.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or math.isnan(timeout) or timeout <= 0):
        raise InputError(f"hydra.launcher.timeout must be a number of seconds > 0 (or null: no limit), got {timeout!r}")


def _check_submitit_folder(parsed) -> None:
    """A ``hydra.launcher.submitit_folder`` given by the user must be a folder that can be made: one that is a
    file (``/dev/null``), or under one, failed only once the sweep folder existed (exit 1, a ``.failed``
    folder); a blank one put submitit's files in the working directory."""
    given = [o.value() for o in parsed if o.key_or_group == "hydra.launcher.submitit_folder"]
    if given:
        _check_folder(given[-1], "hydra.launcher.submitit_folder")


def _check_folder(value, key: str) -> None:
    """The folder option ``key`` is a folder, or can be made: neither it nor a folder above it is a file."""
    if value is None or isinstance(value, (list, dict)) or not str(value).strip():
        raise InputError(f"{key} must be a folder path, got {'null' if value is None else repr(value)}")
    if "${" in str(value):   # (resolved by Hydra in the job: left to it)
        return
    path = expand_home(str(value), key)
    for folder in [path, *path.parents]:
        try:
            if folder.exists():
                if not folder.is_dir():
                    raise InputError(f"{key}={str(value)!r}: {folder} is not a folder")
                return
        except OSError:   # (a name too long: the launcher's own error, as the folder is made)
            return


def run_sweep(command: str, args: list[str]) -> None:
    from deqlab.cli.compose import RunOptions, compose, refuse_unread, screen, sweep_jobs, to_settings, unread_given
    from deqlab.cli.run_folder import (create_exclusive, creation_error, missing_folders, output_root, remove_empty,
                                       output_root_origin)

    try:
        parsed = screen(args, sweep=True)
        run = RunOptions()
        unread = []
        for probe in probes(parsed):
            cfg = compose(command, probe, with_hydra=True)
            settings, run = to_settings(command, cfg)
            unread.append(unread_given(settings, probe))
            resolve_device(settings)
            check_resources(settings)
        refuse_unread(unread)
        check_launcher_options(cfg.hydra.launcher)   # (one launcher for every probe: its settings are never swept)
        _check_submitit_folder(parsed)
        import_run_modules(command)
    except InputError as exc:
        refuse_input(exc)
    given = [o.value() for o in parsed if o.key_or_group == "hydra.sweep.dir"]
    try:   # (a '~user' that names nobody)
        asked = expand_home(given[-1], "hydra.sweep.dir") if given else output_root(run.output_root)   # the folder, or its root
    except InputError as exc:
        refuse_input(exc)
    where = f"hydra.sweep.dir={str(given[-1])!r}" if given else output_root_origin(run.output_root)
    if not given and "${" in str(asked):
        # Hydra stores each job's folder in its config unescaped, so the '${' is resolved there: the jobs
        # failed to start (or, with ${oc.env:...}, wrote elsewhere) however the sweep folder was quoted.
        # (A hydra.sweep.dir holding '${' was refused with the other Hydra settings, by compose.)
        fail(f"{where} holds '${{': Hydra would read it as an interpolation in the job folders; use a folder "
             "without '${'", 2)
    made = missing_folders(asked if given else asked / "sweep" / command)
    try:
        if given:
            sweep_dir = asked
            sweep_dir.mkdir(parents=True, exist_ok=True)
            if any(sweep_dir.iterdir()):
                fail(f"hydra.sweep.dir={sweep_dir} exists and is not empty: give a new folder", 2)
            # Claimed by an exclusive create: two sweeps started together in one new folder both found it empty,
            # and both ran their jobs into the same job folders, overwriting each other, and exited 0.
            try:
                with open(sweep_dir / CLAIM, "x") as claim:
                    claim.write(f"this folder is the sweep of deqlab {command} (process {os.getpid()})\n")
            except FileExistsError:
                fail(f"hydra.sweep.dir={sweep_dir} was taken by another sweep started at the same time: give a new folder", 2)
            args = [a for a in args if not a.startswith("hydra.sweep.dir=")]
        else:
            # '<stamp>.partial' while it runs, as a run's folder: one killed outright (SIGKILL, a lost machine)
            # left its bare timestamp name, like a sweep that had succeeded
            sweep_dir, _ = create_exclusive(asked / "sweep" / command)
    except OSError as exc:
        # (no inode left, a name too long: the sweep was refused, but an empty sweep/<command>/ stayed behind)
        remove_empty(made)
        fail(f"cannot create the sweep folder under {where}: {creation_error(exc, asked)}", 2)
    from deqlab.cli.options import quote

    args.append(f"hydra.sweep.dir={quote(str(sweep_dir))}")
    launcher = next((str(o.value()) for o in parsed if o.key_or_group == "hydra/launcher"), "basic")
    if launcher.startswith("submitit") and not any(o.key_or_group == "hydra.launcher.submitit_folder" for o in parsed):
        # Hydra's default `.submitit/%j` leaves a folder literally named %j
        args.append(f"hydra.launcher.submitit_folder={quote(str(sweep_dir / '.submitit'))}")
    print(f"sweep of {command}: {sweep_jobs(parsed)} job(s) into {sweep_dir}", flush=True)
    _launch(command, args, sweep_dir, made=not given)
    _report_unless_stopped(command, sweep_dir, strict=run.strict, expected=sweep_jobs(parsed), made=not given)


def _launch(command: str, args: list[str], sweep_dir: Path, *, made: bool) -> None:
    from deqlab.cli.launch import launch
    from deqlab.cli.termination import end_children, held, signals_as_exceptions, stopped_by

    # end_children() also ends joblib's resource tracker; loky then warns on stderr, on its way out, that
    # it "died unexpectedly" (seen with Python 3.12 on a GPU machine), which would break the one-line end.
    warnings.filterwarnings("ignore", message="resource_tracker: process died unexpectedly")
    with signals_as_exceptions():
        try:
            launch(command, args)
        except BaseException as exc:
            with held() as hold:   # a second signal must not break into the cleanup; it comes after, to main's handler
                stop = stopped_by(exc)
                if stop is None and not isinstance(exc, Exception):
                    raise
                hold.stopping = stop is not None   # (a repeat of the stop is dropped: it lost the folder's line)
                end_children()
                why = f"stopped by {stop.name}" if stop is not None else _launcher_failure(exc)   # a worker that died
                _mark_unfinished(sweep_dir, why)
                sweep_dir = _mark_failed(sweep_dir, f"sweep {why}", made=made)
            if stop is not None:
                fail(f"sweep {why}; unfinished jobs marked .failed in {sweep_dir}", stop.exit_code)
            fail(f"sweep failed: {why}; finished jobs kept, unfinished ones marked .failed in {sweep_dir}", 1)


def _report_unless_stopped(command: str, sweep_dir: Path, *, strict: bool, expected: int, made: bool) -> None:
    """:func:`_report` on the jobs' summaries, with a stop while it runs (reading the jobs, writing
    ``summary.csv``, printing the table) ending the sweep as a stop during its jobs does: the sweep folder
    marked ``.failed`` with ``error.txt``, one line, exit 128+N. Such a stop was one line from the top-level
    handler, and it left the folder ``<stamp>.partial``, or, after the rename that claims success, named
    like a sweep that had succeeded though its table was never printed. A sweep already marked failed
    keeps its own ``error.txt``."""
    from deqlab.cli.termination import held, stopped_by

    final = sweep_dir.with_name(sweep_dir.name.removesuffix(".partial"))
    failed = final.with_name(final.name + ".failed")
    try:
        _report(command, _summaries(sweep_dir), sweep_dir, strict=strict, expected=expected, made=made)
    except BaseException as exc:
        stop = stopped_by(exc)
        if stop is None:
            raise
        with held() as hold:   # a second signal must not break into the marking
            hold.stopping = True
            where = next((p for p in (sweep_dir, final, failed) if p.exists()), sweep_dir) if made else sweep_dir
            if where != failed and not (where / "error.txt").exists():
                where = _mark_failed(where, f"sweep stopped by {stop.name} while reporting its jobs", made=made)
        fail(f"sweep stopped by {stop.name} while reporting its jobs; sweep folder marked .failed: {where}", stop.exit_code)


def _launcher_failure(exc: Exception) -> str:
    """What went wrong with the launcher, in a few words (joblib's message for a dead worker is a
    paragraph; submitit's names pickle files and log paths)."""
    import re
    import textwrap

    text = " ".join(str(exc).split())
    if type(exc).__name__ == "TerminatedWorkerError":
        codes = text.split("exit codes of the workers are", 1)[1].split("}", 1)[0] + "}" if "exit codes of the workers are" in text else ""
        return f"a worker process died (exit code {codes.strip()})" if codes else "a worker process died"
    if isinstance(exc, OSError) and exc.errno == errno.EAGAIN:   # fork refused: joblib's bare "[Errno 11] ..."
        return f"cannot start a job process: {exc.strerror} (a limit on processes, such as ulimit -u?)"
    if isinstance(exc, OSError) and exc.strerror:   # (a full disk while Hydra writes a job's .hydra/ files: "OSError: [Errno 28] ...")
        where = f" {exc.filename}" if exc.filename else " in the sweep folder"
        writing = exc.errno in (*WRITE_ERRORS, errno.EACCES)   # (Hydra writes in folders it made: EACCES is writing too)
        return f"cannot write{where}: {exc.strerror}" if writing else f"{exc.strerror}:{where}"
    if type(exc).__name__ == "UncompletedJobError":   # submitit: the job's process ended without a result
        state = re.search(r"\(state: (\w+)\)", text)
        return "a job process ended without a result" + (f" (submitit state {state.group(1)})" if state else "")
    return textwrap.shorten(f"{type(exc).__name__}: {text}", 200, placeholder=" …")


def _mark_unfinished(sweep_dir: Path, message: str) -> None:
    from deqlab.cli.run_folder import RunFolder

    for partial in sorted(sweep_dir.glob("*.partial")):
        with contextlib.suppress(OSError):
            RunFolder(partial, partial.with_name(partial.name.removesuffix(".partial"))).fail(message)


def _mark_failed(sweep_dir: Path, message: str, *, made: bool) -> Path:
    """A sweep that failed or was stopped says so as a run does: ``error.txt`` in its folder and, for a
    folder deqlab made, the name ``<timestamp>.failed`` (a ``hydra.sweep.dir`` the user named keeps its
    name). Its timestamp name alone had looked like a sweep that succeeded. Returns where the folder is."""
    from deqlab.report.files import write_text

    with contextlib.suppress(OSError):
        write_text(sweep_dir / "error.txt", message + "\n")
    target = sweep_dir.with_name(sweep_dir.name.removesuffix(".partial") + ".failed")
    if made and not target.exists():
        with contextlib.suppress(OSError):
            sweep_dir.rename(target)
            return target
    return sweep_dir


def _summaries(sweep_dir: Path) -> list[dict]:
    jobs = []
    for folder in sorted(sweep_dir.iterdir(), key=lambda p: (len(p.name), p.name)):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        try:
            jobs.append(json.loads((folder / "job.json").read_text()))
        except (OSError, ValueError):
            jobs.append({"job": folder.name.split(".")[0], "overrides": [], "status": "no result",
                         "exit_code": 1, "failures": 0, "folder": folder.name, "headline": {}})
    return jobs


def _overrides(job: dict) -> dict:
    """A job's own ``key=value`` overrides as ``key → value`` (:func:`own_overrides`)."""
    return {key.lstrip("+"): value for key, _, value in (item.partition("=") for item in own_overrides(job.get("overrides", [])))}


def _report(command: str, jobs: list[dict], sweep_dir: Path, *, strict: bool, expected: int, made: bool) -> None:
    """The table across jobs, ``summary.csv``, and the exit: 1 if a job failed, or if fewer job folders
    than jobs launched are in the sweep folder (the jobs went elsewhere: never a sweep that claims success
    for jobs it cannot show); a failed sweep's folder is marked (:func:`_mark_failed`)."""
    import pandas as pd
    from rich.console import Console

    from deqlab.report.files import atomic_path
    from deqlab.report.result import Table
    from deqlab.report.tables import to_rich
    from deqlab.report.writer import show_location

    swept = [_overrides(job) for job in jobs]
    keys = list(dict.fromkeys(k for s in swept for k in s))
    varying = [k for k in keys if len({s.get(k) for s in swept}) > 1]   # the swept values
    rows = []
    for job, values in zip(jobs, swept):
        row = {"job": job.get("job"), **{k: values.get(k) for k in varying}}
        row.update({"status": job.get("status"), "failure reports": job.get("failures", 0)})
        row.update(job.get("headline", {}))
        rows.append(row)
    frame = pd.DataFrame(rows)
    bad = [j for j in jobs if j.get("status") != "ok"]
    reported = [j for j in jobs if j.get("failures")]
    if len(jobs) < expected:
        problem = f"the sweep launched {expected} job(s), but its folder holds {len(jobs)} job folder(s)"
    elif bad:
        problem = f"{len(bad)} of {len(jobs)} job(s) failed: " + "; ".join(f"{j.get('job')}: {j.get('status')}" for j in bad)
    elif reported and strict:
        problem = f"{len(reported)} job(s) reported failures and strict=true: {', '.join(str(j.get('job')) for j in reported)}"
    else:
        problem = None
    try:
        with atomic_path(sweep_dir / "summary.csv") as tmp:
            frame.to_csv(tmp, index=False)
    except OSError as exc:
        problem = "; ".join(filter(None, [problem, f"cannot write summary.csv: {exc.strerror or exc}"]))
    if problem is None and made:
        try:   # the final name last, once everything is in it: the claim of success
            final = sweep_dir.with_name(sweep_dir.name.removesuffix(".partial"))
            sweep_dir = sweep_dir.rename(final)
        except OSError as exc:
            problem = f"cannot rename {sweep_dir} to {final.name}: {exc.strerror or exc}"
    if problem is not None:
        sweep_dir = _mark_failed(sweep_dir, problem, made=made)
    console = Console()
    if len(frame):
        console.print(to_rich(Table(f"Sweep of {command}: {len(jobs)} job(s)", frame)))
    show_location(console, "sweep folder:", "", sweep_dir, f" ({len(reported)} job(s) with failure reports)")
    if problem is not None:
        fail(f"{problem} (sweep folder {sweep_dir})", 1)
