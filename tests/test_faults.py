"""Faults end cleanly: bad input fast and without torch, a full disk, SIGTERM/SIGHUP, runs started
together, sizes that cannot fit. Each ends in one line and a non-zero exit, never a folder that claims
success."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import helpers

SMALL = ["--restarts", "1", "solver_table=[anderson]", "curve_layers=10"]


def deqlab(*args, root: Path, env: dict | None = None, **kw) -> subprocess.Popen:
    full = {**os.environ, "DEQLAB_OUTPUT_ROOT": str(root), "DEQLAB_PROGRESS": "0", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "deqlab", *args], env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_bad_input_is_refused_without_importing_torch(tmp_path):
    """A torch that cannot be imported proves bad input is answered before torch (and any solver) loads."""
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('torch imported while checking input')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), str(Path(__file__).resolve().parents[1])])}
    for args, text in [(["converge", "--init", "Normal"], "unknown model.init 'Normal'"),
                       (["hessian", "solver.memory=0", "solver=anderson"], "solver.memory"),
                       (["mondeq", "+train.epoch=3", "--epochs", "0"], "unknown key 'train.epoch'"),
                       (["converge", "model.n_z=99999"], "would need about")]:
        start = time.perf_counter()
        p = deqlab(*args, root=tmp_path / "out", env=env)
        out, err = p.communicate(timeout=60)
        elapsed = time.perf_counter() - start
        assert p.returncode == 2, (args, err)
        assert err.count("\n") == 1 and text in err and "torch imported" not in err, err
        assert elapsed < 20, elapsed   # about 0.5 s on a quiet machine; generous for a loaded CI box
    assert not (tmp_path / "out").exists()


def test_full_disk_mid_run_is_one_line_and_a_failed_folder(cli, output_root, monkeypatch):
    import numpy as np

    def no_space(file, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(getattr(file, "name", file)))

    monkeypatch.setattr(np, "savez", no_space)
    r = cli("converge", *SMALL)
    line = helpers.assert_one_line_error(r, "No space left on device", code=1)
    assert "cannot write" in line
    (folder,) = list((output_root / "converge").iterdir())
    assert folder.name.endswith(".failed")
    assert "No space left on device" in (folder / "error.txt").read_text()
    assert not list(folder.glob("*.npz"))   # no final name holds a truncated file
    assert not list(folder.glob(".*tmp*"))  # nor is a temporary left behind


@pytest.mark.parametrize("args", [
    # (11 s; a single run's stdout that cannot be written stays in the default run below: -m slow)
    pytest.param(["converge", *SMALL], marks=pytest.mark.slow),
    ["sweep", "converge", "restarts=1", "solver_table=[anderson]", "seed=0,1"],
])
def test_a_reader_that_goes_away_does_not_fail_the_run(tmp_path, args):
    """`deqlab converge | head`: the pipe is closed before the tables are printed. The run's files are
    all there (every table is also a CSV), so it ends as a success, silently, not as a .failed folder."""
    read, write = os.pipe()
    os.close(read)                          # the reader is gone before the first line
    full = {**os.environ, "DEQLAB_OUTPUT_ROOT": str(tmp_path), "DEQLAB_PROGRESS": "0"}
    p = subprocess.run([sys.executable, "-m", "deqlab", *args], env=full, stdout=write, stderr=subprocess.PIPE,
                       text=True, timeout=300)
    os.close(write)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    folders = [f for f in tmp_path.rglob("*") if f.is_dir() and f.parent.name == "converge"]
    assert folders and not [f for f in folders if f.suffix in (".failed", ".partial")], folders
    assert all((f / "gap.csv").exists() for f in folders if f.parent.parent == tmp_path)


def test_a_reader_that_goes_away_after_the_first_line_does_not_fail_a_joblib_sweep(tmp_path):
    """`deqlab sweep ... hydra/launcher=joblib | head -1`: the jobs print from joblib's worker processes, where
    main() had not guarded the streams, so a job's print raised BrokenPipeError and the sweep of two finished jobs
    ended exit 1, .failed, with two lines on stderr ('sweep failed: Broken pipe'). (A reader gone before the first
    line, as above, does not show it: the parent's guarded stdout then goes quiet for its children too.)"""
    full = {**os.environ, "DEQLAB_OUTPUT_ROOT": str(tmp_path), "DEQLAB_PROGRESS": "0"}
    p = subprocess.Popen([sys.executable, "-m", "deqlab", "sweep", "converge", "restarts=1", "solver_table=[anderson]",
                          "seed=0,1", "hydra/launcher=joblib"], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().startswith("sweep of converge")
    p.stdout.close()                        # head -1 has its line and is gone
    err = p.stderr.read()
    assert p.wait(timeout=300) == 0 and err == "", err
    folders = [f for f in tmp_path.rglob("*") if f.is_dir() and f.parent.parent.name == "sweep"]
    assert folders and not [f for f in folders if f.suffix in (".failed", ".partial")], folders


#: signal(7): the signals whose default action ends the process on Linux (Term or Core), real-time ones aside.
ENDS_THE_PROCESS = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1",
                    "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGXCPU", "SIGXFSZ", "SIGVTALRM",
                    "SIGPROF", "SIGIO", "SIGPWR", "SIGSYS")
#: the ones HANDLED gained after a fault probe found each ending a run without a word, its folder left .partial
ADDED = ("SIGVTALRM", "SIGPROF", "SIGPWR", "SIGSYS", "SIGTRAP", "SIGIO", "SIGSTKFLT")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the table of default actions is Linux's")
def test_every_signal_that_ends_the_process_is_handled_or_left_for_a_reason():
    """Each terminating signal is in exactly one of HANDLED and LEFT (whose comment says why), the real-time
    ones included: one in neither ended a run with no line and its folder .partial (SIGVTALRM: exit -26)."""
    from deqlab.cli.termination import HANDLED, LEFT

    terminating = {getattr(signal, name) for name in ENDS_THE_PROCESS} | set(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
    assert not set(HANDLED) & set(LEFT)
    assert {signal.Signals(s).name for s in terminating - set(HANDLED) - set(LEFT)} == set()
    assert set(HANDLED) | set(LEFT) <= terminating | {signal.SIGSTOP}


@pytest.mark.parametrize("sig", [signal.SIGPROF, signal.SIGVTALRM], ids=lambda s: signal.Signals(s).name)
def test_a_profilers_signal_in_use_is_left_to_the_profiler(sig):
    """SIGPROF and SIGVTALRM are the sampling profilers' (vmprof, scalene): taken while the profiler samples,
    its next sample would stop the run. Left alone while another Python handler holds it or its interval
    timer is armed (a handler installed from C shows only that); taken otherwise."""
    from deqlab.cli.termination import SHARED, _handler, install_handlers

    def sample(signum, frame):
        pass

    def taken() -> bool:
        previous = install_handlers()
        try:
            return signal.getsignal(sig) is _handler
        finally:
            for other, old in previous.items():
                signal.signal(other, old)

    before = signal.signal(sig, signal.SIG_DFL)
    try:
        assert taken()
        signal.signal(sig, sample)
        assert not taken() and signal.getsignal(sig) is sample
        signal.signal(sig, signal.SIG_DFL)
        signal.setitimer(SHARED[sig], 10_000.0)   # (never reached: the test takes well under a second of CPU)
        try:
            assert not taken() and signal.getsignal(sig) == signal.SIG_DFL
        finally:
            signal.setitimer(SHARED[sig], 0)
    finally:
        signal.signal(sig, before)


# (5 s each; the other signals take the same handler as SIGTERM: -m slow)
@pytest.mark.parametrize("sig", [signal.SIGTERM, *(pytest.param(s, marks=pytest.mark.slow)
                                                   for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGQUIT,
                                                             *(getattr(signal, name) for name in ADDED)))],
                         ids=lambda s: signal.Signals(s).name)
def test_termination_signal_marks_the_folder_failed(tmp_path, sig):
    """(SIGUSR1, which batch systems send ahead of a time limit, and SIGQUIT ended a run without a word,
    its folder left .partial; so did SIGVTALRM, SIGPROF, SIGPWR, SIGSYS, SIGTRAP, SIGIO and SIGSTKFLT.)"""
    p = deqlab("converge", "--restarts", "5000", "solver_table=[fixed_point]", root=tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline and not list((tmp_path / "converge").glob("*.partial/config.yaml")):
        time.sleep(0.1)
    time.sleep(0.5)
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 128 + sig, err
    name = signal.Signals(sig).name
    assert err.count("\n") == 1 and f"stopped by {name}" in err, err
    (folder,) = list((tmp_path / "converge").iterdir())
    assert folder.name.endswith(".failed") and name in (folder / "error.txt").read_text()


@pytest.mark.slow   # (9 s: -m slow)
def test_a_signal_ignored_by_whoever_started_the_run_stays_ignored(tmp_path):
    """Under `nohup` SIGHUP is ignored; deqlab installed its handler anyway, so closing the terminal
    stopped a nohup run. A signal ignored at start is left ignored: the run finishes."""
    p = deqlab("converge", "--restarts", "200", "solver_table=[fixed_point]", root=tmp_path,
               preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    deadline = time.time() + 60
    while time.time() < deadline and not list((tmp_path / "converge").glob("*.partial/config.yaml")):
        time.sleep(0.05)
    p.send_signal(signal.SIGHUP)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and err == "", err
    (folder,) = list((tmp_path / "converge").iterdir())
    assert folder.suffix == "" and (folder / "gap.csv").exists()


@pytest.mark.slow   # (7 s; a probe child that dies, fails or hangs stays in the default run (test_hessian_bench.py): -m slow)
def test_sigterm_during_a_memory_probe_is_one_line_and_leaves_no_process(tmp_path):
    """bench hessian measures peak memory in child processes; SIGTERM while one runs ends in one line,
    and no process outlives the run. (When they were multiprocessing children, ending them ended
    multiprocessing's semaphore tracker too, and its successor printed a KeyError traceback per semaphore.)"""
    from deqlab.cli.termination import descendants

    p = deqlab("bench", "hessian", "n_z=5", "n_x=2", "batch=3", "ladder=[4,6]", "repeats=1", "warmup=0",
               "unroll_steps=80", "top_k=2", "memory=true", root=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and not [c for c in descendants(p.pid) if b"probe_child_main" in _cmdline(c)]:
        time.sleep(0.05)
    assert [c for c in descendants(p.pid) if b"probe_child_main" in _cmdline(c)], "no memory probe was seen running"
    family = descendants(p.pid)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert err.count("\n") == 1 and "stopped by SIGTERM" in err and "Traceback" not in err, err
    time.sleep(1.0)
    assert not [pid for pid in family if _cmdline(pid)], "a child of the run outlived it"
    assert list(tmp_path.glob("bench/hessian/*.failed/error.txt"))


@pytest.mark.slow   # (18 s: several runs at once; one run's folder is tested everywhere else: -m slow)
def test_runs_started_together_get_their_own_folders(tmp_path):
    procs = [deqlab("converge", *SMALL, root=tmp_path) for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    folders = sorted((tmp_path / "converge").iterdir())
    assert len(folders) == 4 and all(not f.name.endswith((".partial", ".failed")) for f in folders)
    assert all((f / "gap.csv").is_file() for f in folders)


@pytest.mark.slow   # (14 s: several sweeps at once: -m slow)
def test_sweeps_started_together_get_their_own_folders(tmp_path):
    procs = [deqlab("sweep", "converge", "seed=0", "restarts=1", "solver_table=[anderson]", "curve_layers=10",
                    f"output_root={tmp_path}", root=tmp_path) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    sweeps = sorted((tmp_path / "sweep" / "converge").iterdir())
    assert len(sweeps) == 3
    assert all((s / "0" / "gap.csv").is_file() and (s / "summary.csv").is_file() for s in sweeps)


@pytest.mark.slow   # (11 s; SIGTERM to a sweep stays in the default run on the basic launcher: -m slow)
def test_sigterm_to_a_joblib_sweep_ends_its_workers(tmp_path):
    """(With a job still queued (3 jobs, 2 workers) loky's resource tracker, ended with the workers, was
    relaunched and printed a KeyError traceback per temporary folder.)"""
    from deqlab.cli.termination import descendants

    p = deqlab("sweep", "converge", "seed=0,1,2", "restarts=5000", "solver_table=[fixed_point]", "hydra/launcher=joblib",
               "hydra.launcher.n_jobs=2", f"output_root={tmp_path}", root=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("sweep/converge/*/*.partial/config.yaml")):
        time.sleep(0.2)
    assert descendants(p.pid), "the sweep should have worker processes"
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in err and err.count("\n") == 1, err
    snapshot = {f: f.stat().st_mtime_ns for f in tmp_path.rglob("*") if f.is_file()}
    time.sleep(3)
    assert {f: f.stat().st_mtime_ns for f in tmp_path.rglob("*") if f.is_file()} == snapshot  # nothing writes on
    assert not list(tmp_path.glob("sweep/converge/*/*.partial"))
    assert list(tmp_path.glob("sweep/converge/*/*.failed/error.txt"))
    (sweep,) = (tmp_path / "sweep" / "converge").iterdir()   # the sweep folder too: .failed, saying why
    assert sweep.name.endswith(".failed") and "stopped by SIGTERM" in (sweep / "error.txt").read_text()


def test_sigterm_to_a_sweep_on_the_basic_launcher_stops_the_sweep(tmp_path):
    """The basic launcher runs the jobs in the sweep's own process: the run's handler took SIGTERM, marked
    job 0 stopped, and the sweep went on with jobs 1 and 2 (exit 1, "1 of 3 job(s) failed")."""
    p = deqlab("sweep", "converge", "seed=0,1,2", "restarts=5000", "solver_table=[fixed_point]",
               f"output_root={tmp_path}", root=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("sweep/converge/*/*.partial/config.yaml")):
        time.sleep(0.1)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM and "sweep stopped by SIGTERM" in err and err.count("\n") == 1, err
    jobs = sorted(f.name for f in tmp_path.glob("sweep/converge/*/*") if f.is_dir())
    assert jobs == ["0.failed"], jobs
    (sweep,) = (tmp_path / "sweep" / "converge").iterdir()   # the sweep folder too: .failed, saying why
    assert sweep.name.endswith(".failed") and "stopped by SIGTERM" in (sweep / "error.txt").read_text()


def test_a_sweep_killed_outright_leaves_a_folder_that_does_not_look_finished(tmp_path):
    """SIGKILL cannot be handled: the sweep's folder, named by its bare timestamp from the start, was left
    looking like a sweep that had succeeded. It is '<stamp>.partial' until the sweep ends."""
    p = deqlab("sweep", "converge", "seed=0,1", "restarts=5000", "solver_table=[fixed_point]",
               f"output_root={tmp_path}", root=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("sweep/converge/*/*.partial/config.yaml")):
        time.sleep(0.1)
    p.kill()
    p.communicate(timeout=60)
    (sweep,) = (tmp_path / "sweep" / "converge").iterdir()
    assert sweep.name.endswith(".partial") and not (sweep / "summary.csv").exists(), sweep


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:   # it ended meanwhile
        return b""


@pytest.mark.parametrize("launcher, worker, says", [
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], b"popen_loky", "a worker process died"),
    # (~20 s: submitit's local launcher polls its jobs; -m slow. The joblib case above stays in the default run.)
    pytest.param(["hydra/launcher=submitit_local"], b"submitit.local._local", "a job process ended without a result",
                 marks=pytest.mark.slow),
])
def test_a_sweep_worker_that_dies_ends_the_sweep_in_one_line(tmp_path, launcher, worker, says):
    """SIGKILL to a joblib worker or a submitit job process mid-job (what the OOM killer does): exit 1,
    one line naming what died (not submitit's paragraph of pickle and log paths, cut mid-path), no
    traceback, the job it ran marked .failed, nothing left .partial."""
    from deqlab.cli.termination import descendants

    p = deqlab("sweep", "converge", "seed=0,1", "restarts=5000", "solver_table=[fixed_point]", *launcher,
               f"output_root={tmp_path}", root=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("sweep/converge/*/*.partial/config.yaml")):
        time.sleep(0.2)
    workers = [pid for pid in descendants(p.pid) if worker in _cmdline(pid)]
    assert workers, f"the sweep should have {worker!r} processes"
    os.kill(workers[0], signal.SIGKILL)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err and says in err, err
    assert not list(tmp_path.glob("sweep/converge/*/*.partial"))
    assert list(tmp_path.glob("sweep/converge/*/*.failed/error.txt"))
    (sweep,) = (tmp_path / "sweep" / "converge").iterdir()   # the sweep folder too: .failed, saying why
    assert sweep.name.endswith(".failed") and says in (sweep / "error.txt").read_text()


@pytest.mark.parametrize(
    "args, text",
    [
        (["converge", "model.n_z=99999"], "lower model.n_z"),
        (["hessian", "--hvp-only", "--n-z", "200000"], "model.n_z must be <= 100000"),
        (["hessian", "--hvp-only", "--n-z", "60000", "--batch", "64"], "lower model.n_z / batch"),
        (["nethessian", "--hidden", "100000,100000"], "lower mlp.hidden"),
        (["nethessian", "pinn", "pinn.grid=1000000"], "pinn.grid must be <= 100000"),
        (["nethessian", "pinn", "pinn.grid=99999"], "lower pinn.grid"),
        (["mondeq", "--n-z", "100000"], "lower model.n_z"),
        (["converge", "layers=[0,1000000000]"], "layers[1] must be <= 100000"),
        (["lowrank", "--part", "study", "study.n=100000", "study.k=[1]"], "lower study.n"),
        # MAX_STATE alone let these through: a REN of 7.2 GB per copy of its (2n_x + n_v)² matrices
        (["sysid", "pendulum", "--tiny", "model_settings.ren.n_x=10000", "model_settings.ren.n_v=10000"],
         "lower model_settings.ren.n_x / model_settings.ren.n_v"),
        (["sysid", "pendulum", "--tiny", "--models", "lstm", "model_settings.lstm.n_h=10000"], "lower model_settings.lstm.n_h"),
        (["sysid", "f16", "--tiny", "--data-dir", "nowhere", "model_settings.ren.n_x=10000"], "lower model_settings.ren.n_x"),
        # (no estimate at all: the bench started a forward solve of 1e6 x 1e5 states, and ran until killed)
        (["bench", "curvature", "eig_n_z=100000", "batch=1000000"], "lower eig_n_z / batch"),
        (["bench", "curvature", "hvp_n_z=5000"], "lower hvp_n_z / batch"),
        (["train", "digits", "n_z=2000", "lanczos_steps=10000"], "lower n_z / lanczos_steps"),
    ],
)
def test_sizes_that_cannot_fit_are_refused_up_front(cli, output_root, args, text):
    r = cli(*args)
    helpers.assert_one_line_error(r, text)
    assert not output_root.exists()


def test_a_matrix_free_hessian_is_not_sized_for_the_reference_routes_it_does_not_run(monkeypatch):
    """`deqlab hessian --hvp-only --n-z 300 --batch 256` was refused where 18 GiB were free: "the unrolled reference
    routes would need about 22.9 GiB ... lower unroll_steps", routes that only the dense mode runs."""
    from deqlab.cli.compose import load
    from deqlab.cli.execute import check_resources

    monkeypatch.setattr("deqlab.settings.resources.available_memory", lambda: 8 * 2**30)
    settings, _ = load("hessian", ["hvp_only=true", "model.n_z=300", "batch=256"])
    check_resources(settings)
    assert "unroll_steps" not in [e.key for e in settings.memory_estimates()]
    # the dense mode counts them where it runs them, P <= max_reference_p (n_z = 10: P = 141), and only there
    # (n_z = 20: P = 481 > 400, routes (b)-(d) skipped)
    dense, _ = load("hessian", ["model.n_z=10", "batch=256"])
    assert "unroll_steps" in [e.key for e in dense.memory_estimates()]
    dense, _ = load("hessian", ["model.n_z=20", "batch=256"])
    assert "unroll_steps" not in [e.key for e in dense.memory_estimates()]


def test_bad_input_seen_only_by_the_run_leaves_no_folders(cli, output_root, tmp_path):
    """A data folder that does not exist is found once the run has its folder: the run folder and the
    command folders it made (``outputs/sysid/f16``) are removed; folders that were there stay."""
    r = cli("sysid", "f16", "--data-dir", str(tmp_path / "nowhere"), "--tiny")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert not output_root.exists() or not any(output_root.iterdir())
    keep = output_root / "sysid" / "f16"
    keep.mkdir(parents=True)
    r = cli("sysid", "f16", "--data-dir", str(tmp_path / "nowhere"), "--tiny")
    assert r.exit_code == 2 and keep.is_dir() and not any(keep.iterdir())


def test_a_run_on_a_gpu_is_sized_against_the_gpus_free_memory(monkeypatch):
    """With ``device=cuda`` the resource guard compares the estimates with the device's free memory (its
    tensors live there), and the message names the device; the host's memory is not consulted."""
    import torch

    from deqlab.cli.execute import check_resources
    from deqlab.errors import ResourceError
    from deqlab.settings.converge import Settings as ConvergeSettings

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr("deqlab.settings.resources.available_memory", lambda: 1)  # would refuse anything
    settings = ConvergeSettings(device="cuda")
    check_resources(settings)  # the default run fits in 2 GiB
    settings.model.n_z = 40_000
    with pytest.raises(ResourceError, match=r"cuda \(Fake GPU\) can give .*of 2 GiB available\); lower model.n_z"):
        check_resources(settings)


def test_a_gpu_out_of_memory_is_one_line_and_a_failed_folder(cli, output_root, monkeypatch):
    """torch's CUDA out-of-memory error is a RuntimeError, not a MemoryError: where the resource guard's
    estimate falls short on a GPU the run still ends in one line, exit 1, with a .failed folder."""
    import torch

    from deqlab.demos import converge

    def allocate(settings):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(converge, "run", allocate)
    r = cli("converge", *SMALL)
    helpers.assert_one_line_error(r, "out of memory on cpu (lower the sizes in the settings)", code=1)
    (folder,) = list((output_root / "converge").iterdir())
    assert folder.name.endswith(".failed") and "out of memory" in (folder / "error.txt").read_text()


def test_torch_failing_to_allocate_host_memory_is_one_line_and_a_failed_folder(cli, output_root, monkeypatch):
    """torch's CPU allocator raises a RuntimeError ("DefaultCPUAllocator: can't allocate memory"), not a
    MemoryError: where the resource guard's estimate fell short the run ended as a bug, with a traceback."""
    import torch

    from deqlab.demos import converge

    def allocate(settings):
        return torch.empty(10**13, dtype=torch.float64)   # (80 TB: refused by the allocator at once, nothing touched)

    monkeypatch.setattr(converge, "run", allocate)
    r = cli("converge", *SMALL)
    helpers.assert_one_line_error(r, "out of memory (lower the sizes in the settings)", code=1)
    (folder,) = list((output_root / "converge").iterdir())
    assert folder.name.endswith(".failed") and "out of memory" in (folder / "error.txt").read_text()


def test_a_runtime_error_that_is_a_bug_keeps_its_traceback_and_fails_the_folder(cli, output_root, monkeypatch):
    from deqlab.demos import converge

    def broken(settings):
        raise RuntimeError("shape mismatch deep inside")

    monkeypatch.setattr(converge, "run", broken)
    r = cli("converge", *SMALL)
    assert r.exit_code != 0 and isinstance(r.exception, RuntimeError)
    (folder,) = list((output_root / "converge").iterdir())
    assert folder.name.endswith(".failed") and "Traceback" in (folder / "error.txt").read_text()


def deqlab_with(setup: str, *args, root: Path) -> subprocess.CompletedProcess:
    """``python -m deqlab args`` through the real entry point, ``setup`` (Python source) run first: it
    patches a function to send a signal at an exact point, where a timed signal would only sometimes land."""
    code = "\n".join(["import os, signal, sys, time", setup, f"sys.argv = ['deqlab', *{list(args)!r}]",
                      "from deqlab.cli import main", "main()"])
    full = {**os.environ, "DEQLAB_OUTPUT_ROOT": str(root), "DEQLAB_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300)


#: ``load`` (composing the settings) receives Ctrl-C, as ``python -m deqlab converge`` does for about a second
CTRL_C_WHILE_COMPOSING = """
import deqlab.cli.compose as compose
def load(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(10)
compose.load = load
"""


@pytest.mark.parametrize("cleanup", ["", "AttributeError('NoneType object has no attribute _invalidate_flags_cache')",
                                     "__import__('deqlab.errors').errors.InputError('bad override: ...')"])
def test_ctrl_c_while_the_settings_are_composed_is_one_line(tmp_path, cleanup):
    """Typer turned Ctrl-C outside a run into a silent exit 130; and where the signal landed inside
    OmegaConf's cleanup, which raised its own error, the run ended in that error's traceback (or a bogus
    "bad override", exit 2)."""
    setup = CTRL_C_WHILE_COMPOSING
    if cleanup:
        setup = setup.replace("    time.sleep(10)", f"    try:\n        time.sleep(10)\n    finally:\n        raise {cleanup}")
    r = deqlab_with(setup, "converge", *SMALL, root=tmp_path)
    assert r.returncode == 130 and r.stderr == "error: stopped by SIGINT (Ctrl-C)\n", (r.returncode, r.stderr)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_signal_just_after_the_run_folder_is_made_marks_it_failed(tmp_path):
    """Between the folder's creation and the run's own handler (pandas and matplotlib loading, a second
    or so) a signal left the folder .partial."""
    setup = """
from deqlab.cli.run_folder import RunFolder
_create = RunFolder.create.__func__
def create(cls, *args, **kwargs):
    folder = _create(cls, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)
    return folder
RunFolder.create = classmethod(create)
"""
    r = deqlab_with(setup, "converge", *SMALL, root=tmp_path)
    assert r.returncode == 143 and r.stderr.count("\n") == 1 and "stopped by SIGTERM" in r.stderr, r.stderr
    (folder,) = list((tmp_path / "converge").iterdir())
    assert folder.name.endswith(".failed") and "SIGTERM" in (folder / "error.txt").read_text()


def test_a_second_signal_during_the_cleanup_does_not_break_into_it(tmp_path):
    """Ctrl-C, then SIGTERM while the first stop ends the children: the second signal broke into the
    handler's cleanup (the folder left .partial, a traceback from inside the handler)."""
    setup = """
import deqlab.cli.termination as termination
import deqlab.demos.converge as converge
_end = termination.end_children
def end_children(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    return _end(*args, **kwargs)
termination.end_children = end_children
def run(settings):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(10)
converge.run = run
"""
    r = deqlab_with(setup, "converge", *SMALL, root=tmp_path)
    # the first stop's outcome: its code and its line naming the folder (the held-back SIGTERM, raised once
    # the cleanup ended, replaced it with a bare 'stopped by SIGTERM', exit 143)
    assert r.returncode == 130 and r.stderr.count("\n") == 1 and "stopped by SIGINT" in r.stderr, r.stderr
    (folder,) = list((tmp_path / "converge").iterdir())
    assert f"[run folder: {folder}]" in r.stderr, r.stderr
    assert folder.name.endswith(".failed") and "stopped by SIGINT" in (folder / "error.txt").read_text()


@pytest.mark.slow   # (7 s: -m slow)
def test_a_signal_in_the_interpreters_last_steps_leaves_a_finished_run_alone(tmp_path):
    """Once the run is done, Python's own handlers (put back) made a Ctrl-C during the shutdown kill the
    finished run silently (exit -2, no line)."""
    setup = "import atexit\natexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.5)))"
    r = deqlab_with(setup, "converge", *SMALL, root=tmp_path)
    assert r.returncode == 0 and r.stderr == "", (r.returncode, r.stderr)
    helpers.run_folder(tmp_path, "converge")


@pytest.mark.parametrize("failure, says", [
    ("ImportError('libtorch_cpu.so: failed to map segment from shared object')", "cannot load the libraries the run needs"),
    # (the same path with another message; 2.4 s: -m slow)
    pytest.param("MemoryError()", "not enough memory to load the libraries the run needs", marks=pytest.mark.slow),
])
def test_a_library_that_cannot_load_is_one_line_and_no_folder(tmp_path, failure, says):
    """Under `ulimit -v` torch or numpy fails to load; the run folder had just been made, so it was left
    .partial behind a traceback. (A fake torch fails the same way, on any machine.)"""
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(f"raise {failure}\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), str(Path(__file__).resolve().parents[1])])}
    for args in (["converge", *SMALL], ["sweep", "converge", "seed=0,1", "restarts=1"]):
        p = deqlab(*args, root=tmp_path / "out", env=env)
        out, err = p.communicate(timeout=120)
        assert p.returncode == 2 and err.count("\n") == 1 and says in err and "ulimit -v" in err, (args, err)
        assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("closed", [1, 2])
def test_a_joblib_sweep_with_stdout_or_stderr_closed_runs(tmp_path, closed):
    """`deqlab sweep ... >&-` (or `2>&-`): the workers failed on `None.flush()` (or, their stderr closed,
    died at start), and the sweep ended with exit 1 and no job run."""
    full = {**os.environ, "DEQLAB_OUTPUT_ROOT": str(tmp_path), "DEQLAB_PROGRESS": "0"}
    p = subprocess.run([sys.executable, "-m", "deqlab", "sweep", "converge", "seed=0,1", "restarts=1", "solver_table=[anderson]",
                        "curve_layers=10", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], env=full, capture_output=True,
                       text=True, timeout=300, preexec_fn=lambda: os.close(closed))
    assert p.returncode == 0 and (closed == 2 or p.stderr == ""), p.stderr
    (sweep,) = list((tmp_path / "sweep" / "converge").iterdir())
    assert sorted(f.name for f in sweep.iterdir() if f.is_dir()) == ["0", "1"] and (sweep / "summary.csv").is_file()


def test_too_many_open_files_is_named_as_such(cli, output_root, monkeypatch):
    """Under `ulimit -n` the first open past the limit (matplotlib reading a font) read "cannot write
    .../DejaVuSans.ttf: Too many open files"."""
    import matplotlib.figure

    def no_descriptor(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files", "/venv/matplotlib/mpl-data/fonts/ttf/DejaVuSans.ttf")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", no_descriptor)
    r = cli("converge", *SMALL)
    line = helpers.assert_one_line_error(r, "Too many open files (a limit on open files, such as ulimit -n?)", code=1)
    assert "cannot write" not in line
    (folder,) = list((output_root / "converge").iterdir())
    assert folder.name.endswith(".failed")


@pytest.mark.parametrize("args", [
    ["converge", *SMALL],
    # (7 s; a sweep whose reader goes away stays in the default run above: -m slow)
    pytest.param(["sweep", "converge", "restarts=1", "solver_table=[anderson]", "seed=0,1"], marks=pytest.mark.slow),
])
def test_stdout_that_cannot_be_written_is_one_line_and_leaves_the_run_complete(tmp_path, args):
    """`deqlab converge > /dev/full`: printing the tables failed after every file was written, and the run
    folder was marked .failed with "cannot write: No space left on device", as if its own disk were full
    (a sweep: "sweep failed: OSError ..."). Like a broken pipe the stream falls silent and the run ends
    normally, but the lost output is one line and exit 1."""
    full = {**os.environ, "DEQLAB_OUTPUT_ROOT": str(tmp_path), "DEQLAB_PROGRESS": "0"}
    with open("/dev/full", "w") as devfull:
        p = subprocess.run([sys.executable, "-m", "deqlab", *args], env=full, stdout=devfull, stderr=subprocess.PIPE,
                           text=True, timeout=300)
    assert p.returncode == 1 and p.stderr == "error: lost what was printed to stdout: No space left on device\n", p.stderr
    runs = [f.parent for f in tmp_path.rglob("gap.csv")]
    assert len(runs) == (2 if args[0] == "sweep" else 1) and not [f for f in runs if f.suffix in (".failed", ".partial")], runs


def test_a_run_folder_that_cannot_be_made_leaves_no_command_folder(cli, output_root, monkeypatch):
    """On a disk with no inode left (or a name too long) the run's own mkdir fails after its command
    folder was made: the run was refused, exit 2, but an empty ``converge/`` stayed behind."""
    monkeypatch.setattr("deqlab.cli.run_folder._stamp", lambda: "x" * 300)   # ENAMETOOLONG on the run's folder
    r = cli("converge", *SMALL)
    helpers.assert_one_line_error(r, "cannot create a run folder under DEQLAB_OUTPUT_ROOT=")
    assert not output_root.exists()


@pytest.mark.slow   # (6 s; the sweep under that locale stays in the default run: -m slow)
def test_a_failed_run_under_a_locale_that_is_not_utf8_is_marked_failed(tmp_path):
    """Under an ASCII locale (PYTHONUTF8=0 LC_ALL=C) error.txt was written in the locale's encoding: the
    "−" of the refusal raised UnicodeEncodeError, a traceback, and the folder stayed .partial. Files are
    UTF-8 whatever the locale."""
    p = deqlab("hessian", "--init", "normal", "--n-z", "3", "--seed", "617", root=tmp_path / "out",
               env={"PYTHONUTF8": "0", "LC_ALL": "C", "PYTHONIOENCODING": ""})
    out, err = p.communicate(timeout=300)
    assert p.returncode == 1 and "Traceback" not in err and err.count("\n") == 1, err
    (folder,) = (tmp_path / "out" / "hessian").iterdir()
    assert folder.name.endswith(".failed"), folder
    assert "cond₂(I − J)" in (folder / "error.txt").read_text(encoding="utf-8")


@pytest.mark.slow
def test_a_sweep_under_a_locale_that_is_not_utf8_keeps_what_its_jobs_printed(tmp_path):
    """A job's output.txt (its tables, box-drawn) failed to encode in ASCII: every job of a sweep under
    LC_ALL=C failed and the sweep exited 1."""
    p = deqlab("sweep", "lowrank", "rtol=1e-10", root=tmp_path / "out", env={"PYTHONUTF8": "0", "LC_ALL": "C", "PYTHONIOENCODING": ""})
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0 and "Traceback" not in err, err
    (sweep,) = (tmp_path / "out" / "sweep" / "lowrank").iterdir()
    assert "─" in (sweep / "0" / "output.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("below", ["", "sub"])
def test_an_output_root_that_is_a_dangling_link_is_named_so(cli, tmp_path, monkeypatch, below):
    """A DEQLAB_OUTPUT_ROOT that is a symbolic link to nothing was refused with "File exists", of a folder
    that does not exist."""
    link = tmp_path / "runs"
    link.symlink_to(tmp_path / "gone")
    monkeypatch.setenv("DEQLAB_OUTPUT_ROOT", str(link / below))
    line = helpers.assert_one_line_error(cli("lowrank"), f"{link} is a symbolic link to {tmp_path / 'gone'}, which does not exist")
    assert "File exists" not in line
    assert not (tmp_path / "gone").exists()


@pytest.mark.slow   # (4 s: -m slow)
def test_an_unwritable_matplotlib_config_folder_adds_nothing_to_stderr(tmp_path):
    """Matplotlib warned in four lines on stderr when its config folder could not be written (a read-only
    home): a failed run's one line came after them."""
    p = deqlab("lowrank", "--pairs", str(tmp_path / "none.npz"), root=tmp_path / "out",
               env={"MPLCONFIGDIR": os.devnull + "/matplotlib"})
    out, err = p.communicate(timeout=300)
    assert p.returncode == 2 and err.count("\n") == 1 and "pairs file" in err, err


def test_library_warnings_go_into_the_run_folder_not_to_stderr(cli, output_root, monkeypatch):
    """NumPy's overflow RuntimeWarning, torch's pickle-protocol UserWarning...: two to four lines each on
    stderr, before a failed run's one line. They are kept in the folder's warnings.txt instead."""
    import warnings

    import deqlab.demos.lowrank as demo
    from deqlab.errors import NotConvergedError

    def run(settings):
        for _ in range(3):   # (kept once)
            warnings.warn("overflow encountered in dot", RuntimeWarning)
        raise NotConvergedError("the solve did not converge")

    monkeypatch.setattr(demo, "run", run)
    r = cli("lowrank")
    helpers.assert_one_line_error(r, "the solve did not converge", code=1)
    assert "overflow" not in r.stderr
    (folder,) = (output_root / "lowrank").iterdir()
    assert folder.name.endswith(".failed")
    kept = (folder / "warnings.txt").read_text().splitlines()
    assert len(kept) == 1 and kept[0].startswith("RuntimeWarning: overflow encountered in dot"), kept
    assert "1 warning(s) from the libraries the run used: warnings.txt" in r.stdout


def test_a_full_disk_names_the_file_it_could_not_write(cli, output_root, monkeypatch):
    """A write that fails for want of space raises an OSError that names no file: the line said "cannot write:
    No space left on device". The file is named, relative to the run folder (whose .partial path is gone)."""
    import pandas as pd

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", no_space)
    r = cli("converge", *SMALL)
    helpers.assert_one_line_error(r, "cannot write gap.csv: No space left on device [run folder: ", code=1)
    (folder,) = list((output_root / "converge").iterdir())
    assert folder.name.endswith(".failed") and (folder / "error.txt").read_text() == "cannot write gap.csv: No space left on device\n"


def test_a_temporary_file_that_cannot_be_made_is_named_by_the_file_it_stands_for(cli, output_root, monkeypatch):
    """With no room left for a directory entry the temporary file's creation fails, naming it: the line said
    "cannot write .config.yaml.tmp-14470.yaml: No space left on device", a file the user never asked for."""
    from pathlib import Path

    real = Path.write_text

    def no_entry(self, *args, **kwargs):
        if ".tmp-" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", no_entry)
    r = cli("converge", *SMALL)
    helpers.assert_one_line_error(r, "cannot write config.yaml: No space left on device [run folder: ", code=1)


def test_an_error_file_that_fits_only_as_a_short_note_is_not_called_missing(tmp_path, monkeypatch):
    """On a disk too full for error.txt's temporary copy, the short note written in its place held the whole
    message, and the line still said "could not write <the .partial path, gone by then>/error.txt"."""
    import shutil

    from deqlab.cli import run_folder

    def no_space(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_folder, "write_text", no_space)
    for message, problem in (("cannot write gap.csv: No space left on device", None),
                             ("x" * 300, "its error.txt holds the first 200 characters: No space left on device")):
        (tmp_path / "run.partial").mkdir()
        folder = run_folder.RunFolder(tmp_path / "run.partial", tmp_path / "run")
        path, said = folder.fail(message)
        assert path == tmp_path / "run.failed" and said == problem
        assert (path / "error.txt").read_text() == message[:200] + "\n"
        shutil.rmtree(path)


@pytest.mark.parametrize("args", [
    ["converge", "output_root={long}"], ["sweep", "converge", "seed=0", "output_root={long}"],
    ["lowrank", "--pairs", "{long}.npz"], ["sysid", "pendulum", "--tiny", "--data", "{long}.npz"],
    ["sysid", "f16", "--tiny", "--data-dir", "{long}"], ["sysid", "evaluate", "{long}", "--data", "d.npz"],
    ["sysid", "evaluate", "run_dir={long}", "--data", "d.npz"],
])
def test_a_path_whose_name_is_too_long_is_one_line_and_no_folder(cli, tmp_path, monkeypatch, args):
    """An output root with a 300-character name ended in a traceback (pathlib's exists() raises ENAMETOOLONG);
    a data file or folder with one ended as "cannot write <it>", exit 1 and a .failed run folder."""
    long = str(tmp_path / ("x" * 300))
    root = tmp_path / "out"
    if "output_root={long}" in args:
        monkeypatch.delenv("DEQLAB_OUTPUT_ROOT", raising=False)
    else:
        monkeypatch.setenv("DEQLAB_OUTPUT_ROOT", str(root))
    r = cli(*[a.format(long=long) for a in args])
    helpers.assert_one_line_error(r, "File name too long")
    assert not root.exists()


@pytest.mark.parametrize("args, what", [
    (["converge", "output_root='~nosuchuser/x'"], "output_root"),
    (["config", "converge", "output_root='~nosuchuser/x'"], "output_root"),
    (["sweep", "converge", "seed=0", "output_root='~nosuchuser/x'"], "output_root"),
    (["sweep", "converge", "seed=0", "hydra.sweep.dir='~nosuchuser/x'"], "hydra.sweep.dir"),
    (["lowrank", "--pairs", "~nosuchuser/x.npz"], "pairs file"), (["sysid", "pendulum", "--tiny", "--data", "~nosuchuser/x.npz"], "data file"),
    (["sysid", "f16", "--tiny", "--data-dir", "~nosuchuser"], "F16 data folder"),
    (["sysid", "evaluate", "~nosuchuser/run", "--data", "d.npz"], "run folder"),
])
def test_a_home_folder_of_a_user_who_does_not_exist_is_one_line(cli, tmp_path, monkeypatch, args, what):
    """pathlib's expanduser() raises a bare RuntimeError ("Could not determine home directory") for ~nosuchuser:
    every path a user gives (output root, sweep folder, data files and folders) ended in a traceback."""
    monkeypatch.delenv("DEQLAB_OUTPUT_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    line = helpers.assert_one_line_error(cli(*args), f"{what} '~nosuchuser")
    assert line.endswith("starts with ~nosuchuser, but there is no user 'nosuchuser' here"), line
    assert not list(tmp_path.iterdir())


def test_an_output_root_variable_naming_a_user_who_does_not_exist_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DEQLAB_OUTPUT_ROOT", "~nosuchuser/runs")
    monkeypatch.chdir(tmp_path)
    for args in (["converge"], ["config", "converge"], ["sweep", "converge", "seed=0"]):
        helpers.assert_one_line_error(cli(*args), "DEQLAB_OUTPUT_ROOT '~nosuchuser/runs' starts with ~nosuchuser")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("value", [" ", "\t"])
def test_an_output_root_variable_that_is_blank_is_refused_like_the_key(cli, tmp_path, monkeypatch, value):
    """output_root=' ' is refused; DEQLAB_OUTPUT_ROOT=' ' made a folder named ' ' in the working directory
    and the run (or sweep) went into it, exit 0."""
    monkeypatch.setenv("DEQLAB_OUTPUT_ROOT", value)
    monkeypatch.chdir(tmp_path)
    for args in (["lowrank"], ["config", "lowrank"], ["sweep", "lowrank", "rtol=1e-10"]):
        helpers.assert_one_line_error(cli(*args), f"DEQLAB_OUTPUT_ROOT must name a folder, got {value!r}")
    assert not list(tmp_path.iterdir())


def test_torch_warning_about_its_own_scripted_decompositions_is_not_kept(cli, output_root, monkeypatch):
    """torch 2.13's forward-mode AD of linalg ops calls its own deprecated ``torch.jit.script``, so every
    ``deqlab hessian`` ended with "1 warning(s) from the libraries the run used" about torch's code; that
    one is dropped, a deprecation from anything else is still kept."""
    import warnings

    import deqlab.demos.lowrank as demo
    from deqlab.errors import NotConvergedError

    def run(settings):
        import torch

        A = torch.eye(3, dtype=torch.float64) * 2
        torch.func.jvp(lambda A: torch.linalg.solve(A, torch.ones(3, dtype=torch.float64)), (A,), (A,))
        warnings.warn("some other deprecation", DeprecationWarning)
        raise NotConvergedError("the solve did not converge")

    monkeypatch.setattr(demo, "run", run)
    r = cli("lowrank")
    helpers.assert_one_line_error(r, "the solve did not converge", code=1)
    (folder,) = (output_root / "lowrank").iterdir()
    kept = (folder / "warnings.txt").read_text().splitlines()
    assert len(kept) == 1 and kept[0].startswith("DeprecationWarning: some other deprecation"), kept


@pytest.mark.parametrize("replaced_by_a_file", [False, True])
def test_a_run_folder_removed_mid_run_is_said_so(cli, output_root, monkeypatch, replaced_by_a_file):
    """'rm -rf' of the .partial folder while the run wrote into it ended in "cannot write gap.csv: [Errno None]
    None: <path>" (pandas' own OSError, given the file name as if it had an errno), and a file put in the
    folder's place was renamed to <name>.failed."""
    import shutil

    import pandas as pd

    original = pd.DataFrame.to_csv

    def folder_gone(self, path, *args, **kwargs):
        folder = Path(path).parent
        if folder.is_dir():
            shutil.rmtree(folder)
            if replaced_by_a_file:
                folder.write_text("the user's\n")
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", folder_gone)
    r = cli("converge", *SMALL)
    line = helpers.assert_one_line_error(r, "was removed or replaced while the run wrote into it", code=1)
    assert "Errno None" not in line and line.count(str(output_root)) == 1, line
    left = list((output_root / "converge").iterdir())
    if replaced_by_a_file:   # the file in its place keeps its name and content
        assert [p.name.endswith(".partial") and p.read_text() == "the user's\n" for p in left] == [True]
    else:
        assert left == []


@pytest.mark.parametrize("check", ["draw_into_files", "bad_openmp_variable"])
def test_a_signal_during_the_environment_checks_is_one_line(tmp_path, check):
    """With an OMP_* variable set, the OpenMP probe's child process runs before the app's handler of stops: a
    SIGTERM then (30 ms into 'OMP_PROC_BIND=true deqlab converge') ended in a traceback and exit 1."""
    code = ("import os, signal, sys; import deqlab.cli.environment as e; "
            f"setattr(e, {check!r}, lambda: os.kill(os.getpid(), signal.SIGTERM)); "
            "sys.argv = ['deqlab', 'converge']; from deqlab.cli import main; main()")
    env = {**os.environ, "DEQLAB_OUTPUT_ROOT": str(tmp_path), "OMP_PROC_BIND": "true"}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 128 + signal.SIGTERM and p.stderr == "error: stopped by SIGTERM\n", p.stderr
    assert not list(tmp_path.iterdir())


def test_a_removed_working_directory_is_named_in_one_line(tmp_path):
    """Run from a folder removed under it, deqlab said "cannot compose the configuration from the overrides: No such
    file or directory", blaming the overrides."""
    gone = tmp_path / "gone"
    gone.mkdir()
    code = (f"import os, runpy, sys; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); sys.argv = ['deqlab', 'converge']; "
            "runpy.run_module('deqlab', run_name='__main__')")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 2 and p.stderr == ("error: the working directory no longer exists (removed while this shell "
                                              "was in it): cd to a folder that does, and run again\n"), p.stderr
