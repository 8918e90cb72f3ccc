"""Ending cleanly: Ctrl-C, SIGTERM, SIGHUP and the other terminating signals (:data:`HANDLED`), and no
child process outliving the run.

:func:`signals_as_exceptions` turns them into :class:`Terminated` (a ``BaseException``, like
``KeyboardInterrupt``) raised in the main thread, so the one ``except`` that marks a run folder
``.failed`` handles every way a run can be stopped; a signal that follows while a stop is handled
(Ctrl-C pressed twice, SIGTERM then SIGTERM) is :func:`held` back. :func:`stopped_by` finds the stop
behind an exception that replaced it. :func:`end_children` then ends every descendant
process (joblib/loky workers, submitit local jobs, memory-probe children): SIGTERM, a short grace
period, SIGKILL, and waits for them, so nothing writes after the parent has exited. Only
the resource trackers (:func:`resource_tracker_pids`) are left to end with the parent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Iterator

#: Signals whose default action ends the process without a word: each becomes :class:`Terminated`. Beyond
#: SIGTERM/SIGHUP (a scheduler or a closed terminal): SIGQUIT (Ctrl-\\), SIGUSR1/2 (batch systems send them
#: ahead of a time limit), SIGALRM, and the resource limits SIGXCPU/SIGXFSZ. Without a handler a run ended
#: by one of them left its folder ``.partial`` and printed nothing (SIGUSR1: exit 138). SIGINT too, rather
#: than Python's KeyboardInterrupt, which Typer turns into a silent exit 130 (no line, a run folder made
#: just before left ``.partial``) and which libraries catch as their own. Then the rest of Linux's
#: terminating signals, which ended a run the same silent way (SIGVTALRM: exit -26): the timers SIGVTALRM and
#: SIGPROF (:data:`SHARED`: left to a profiler that uses them), SIGPWR (a power failure, sent by a UPS
#: daemon), SIGSYS (a system call a seccomp sandbox refuses), SIGTRAP (a debugger sees it first: ptrace stops
#: the process before any handler runs), SIGIO (the same signal as SIGPOLL; nothing here asks for it) and
#: SIGSTKFLT (unused by the kernel: only ``kill`` sends it). Those left alone are :data:`LEFT`.
HANDLED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM",
                                                    "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGPWR", "SIGSYS",
                                                    "SIGTRAP", "SIGIO", "SIGSTKFLT") if hasattr(signal, name))

#: Signals that end the process by default but are deliberately not handled. SIGKILL and SIGSTOP cannot be.
#: SIGPIPE is ignored by Python (writes raise BrokenPipeError, :mod:`.streams`). SIGSEGV, SIGBUS, SIGFPE and
#: SIGILL are faults of the running instruction: Python's C handler only notes the signal and returns to it,
#: which faults again, and the process hangs (faulthandler reports them when enabled). SIGABRT is abort()'s, in
#: native code (a failed assertion, a corrupted heap): when a handler returns, abort() puts back the default
#: action and raises it again, before the Python handler could run. The real-time signals (SIGRTMIN..SIGRTMAX) are handed out to
#: libraries for their own use (POSIX timers, runtimes, samplers; glibc keeps the two below SIGRTMIN for its
#: threads): replacing one's handler would turn its next timer tick into a stop.
LEFT = tuple(getattr(signal, name) for name in ("SIGKILL", "SIGSTOP", "SIGPIPE", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL",
                                                 "SIGABRT") if hasattr(signal, name)) + (
    tuple(range(signal.SIGRTMIN, signal.SIGRTMAX + 1)) if hasattr(signal, "SIGRTMIN") else ())

#: The sampling profilers' signals, each with the interval timer that sends it (vmprof and gperftools sample
#: on ITIMER_PROF, scalene on ITIMER_VIRTUAL). One is taken only while nobody uses it: its timer unarmed and no
#: other Python handler on it. A profiler's handler installed from C is invisible to :func:`signal.getsignal`,
#: but its armed timer is not; replacing the handler would turn the profiler's next sample into a stop.
SHARED = {getattr(signal, name): getattr(signal, timer) for name, timer in (("SIGPROF", "ITIMER_PROF"),
                                                                             ("SIGVTALRM", "ITIMER_VIRTUAL"))
          if hasattr(signal, name) and hasattr(signal, timer)}

GRACE_SECONDS = 2.0


class Terminated(BaseException):
    """The process received a termination signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name + (" (Ctrl-C)" if signum == signal.SIGINT else "")
        self.exit_code = 128 + signum


def stopped_by(exc: BaseException | None) -> Terminated | None:
    """The stop behind ``exc``: ``exc`` itself, or the :class:`Terminated` (or ``KeyboardInterrupt``) that was
    being handled when ``exc`` was raised. A signal that lands inside a library's ``finally`` or ``except``
    comes out as that block's own error (Ctrl-C while OmegaConf composed the settings: an
    ``AttributeError`` traceback, or a bogus "bad override" message via the compose errors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, Terminated):
            return exc
        if isinstance(exc, KeyboardInterrupt):
            return Terminated(signal.SIGINT)
        exc = exc.__cause__ or exc.__context__
    return None


_held: list[int] | None = None   # while a stop is handled: the signals that came meanwhile


class Hold:
    """What a :func:`held` block says of itself: ``stopping`` once it handles a stop, whose outcome (the
    folder marked, the line with its path) a signal held back meanwhile must not replace."""

    stopping: bool = False


@contextlib.contextmanager
def held() -> Iterator[Hold]:
    """Hold back the signals of :data:`HANDLED` while a stop is being handled (the children ended, the folder
    marked, the line printed): a second Ctrl-C or SIGTERM broke into that cleanup, left the folder
    ``.partial`` and printed a traceback from inside the handler. When the block ends, the first signal
    held back is raised, so a stop swallowed by a library cannot make the run unstoppable; unless the
    block set ``stopping``: then the process is already ending for a stop, and a repeated SIGTERM raised
    there replaced the outcome the block returned (the line lost its ``[run folder: ...]``).
    (Not ``pthread_sigmask``: it blocks a signal for one thread, and another thread (torch's, loky's)
    still takes it for Python's handler, which runs in the main thread anyway.)"""
    global _held
    hold = Hold()
    if _held is not None:   # nested in another held block: that one delivers
        yield hold
        return
    _held = []
    try:
        yield hold
    finally:
        pending, _held = _held, None
        if pending and not hold.stopping:
            raise Terminated(pending[0])


def hold_for_good() -> None:
    """Hold back every later signal: the process is about to exit (after its run, or after reporting its
    stop). Python's finalization puts back the default action of a signal it handled, so a signal in the
    interpreter's last steps is ignored outright: a Ctrl-C there killed a finished run without a word."""
    global _held
    if _held is None:
        _held = []
    for sig in HANDLED:
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is _handler:
                signal.signal(sig, signal.SIG_IGN)


def _handler(signum, frame):
    if _held is not None:
        _held.append(signum)
        return
    raise Terminated(signum)


def _in_use(sig: int) -> bool:
    """Whether ``sig`` is a profiler's signal (:data:`SHARED`) that a profiler is using now."""
    if sig not in SHARED:
        return False
    return signal.getsignal(sig) not in (signal.SIG_DFL, _handler) or signal.getitimer(SHARED[sig]) != (0.0, 0.0)


def install_handlers() -> dict:
    """Make the signals of :data:`HANDLED` raise :class:`Terminated`; returns the handlers they replaced.
    A signal ignored by whoever started us stays ignored (`nohup` ignores SIGHUP, a shell's `&` SIGINT
    and SIGQUIT), and a profiler's signal in use stays the profiler's (:data:`SHARED`)."""
    previous = {}
    for sig in HANDLED:
        with contextlib.suppress(ValueError, OSError):   # not the main thread: leave the handlers alone
            if signal.getsignal(sig) == signal.SIG_IGN or _in_use(sig):
                continue
            previous[sig] = signal.signal(sig, _handler)
    return previous


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    previous = install_handlers()
    try:
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, old)


def descendants(pid: int | None = None) -> list[int]:
    """Process ids of every descendant of ``pid`` (default: this process), read from ``/proc``."""
    pid = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: the ppid follows the last ')'
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


#: Modules whose ``_resource_tracker`` is a helper process that must outlive the workers it watches:
#: :mod:`multiprocessing`'s and loky's own (joblib sweeps).
TRACKER_MODULES = ("multiprocessing.resource_tracker", "joblib.externals.loky.backend.resource_tracker")


def resource_tracker_pids() -> set[int]:
    """The pids of the resource trackers this process started (:data:`TRACKER_MODULES`).

    They are spared by :func:`end_children`: each exits by itself as soon as this process does (its pipe
    closes), after unlinking whatever a killed child leaked. Ended early, one is relaunched at exit, and
    the new one prints a ``KeyError`` traceback per resource it never saw registered (loky's did so for
    its temporary folders when SIGTERM stopped a joblib sweep with jobs still queued)."""
    trackers = (getattr(sys.modules.get(name), "_resource_tracker", None) for name in TRACKER_MODULES)
    return {pid for pid in (getattr(t, "_pid", None) for t in trackers) if pid is not None}


def end_children(grace: float = GRACE_SECONDS) -> int:
    """End every descendant process but the resource trackers; returns how many there were."""
    if "joblib" in sys.modules:   # loky keeps a reusable pool of workers: shut it down first
        with contextlib.suppress(Exception):
            from joblib.externals.loky import get_reusable_executor

            get_reusable_executor().shutdown(wait=False, kill_workers=True)
    spared = resource_tracker_pids()
    pids = [pid for pid in descendants() if pid not in spared]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0)):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        pids = [p for p in pids if _alive(p)]
        if not pids:
            break
    for pid in descendants():   # reap our own zombies
        with contextlib.suppress(OSError, ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    return len(pids)
