"""Sweeps: Hydra multiruns through the basic, joblib and submitit_local launchers, each job through the
same execute path as a single run."""

import pandas as pd
import pytest

JOB_FILES = {"gap.csv", "eigen.csv", "solvers.csv", "convergence.png", "converge.npz", "config.yaml", "output.txt",
             "job.json"}
SMALL = ["restarts=1", "solver_table=[anderson]", "curve_layers=20"]


def sweep_folder(output_root, command="converge"):
    (folder,) = list((output_root / "sweep" / command).iterdir())
    return folder


@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_local"])
def test_sweep_runs_every_job(cli, output_root, launcher):
    r = cli("sweep", "converge", "seed=0,1", *SMALL, f"hydra/launcher={launcher}", f"output_root={output_root}")
    assert r.exit_code == 0, r.output + r.stderr
    folder = sweep_folder(output_root)
    jobs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == ["0", "1"]
    seeds = set()
    for job in jobs:
        assert JOB_FILES <= {p.name for p in job.iterdir()}, job
        seeds.add((job / "config.yaml").read_text().split("seed:")[1].split()[0])
        assert len(pd.read_csv(job / "eigen.csv")) == 1
        assert "Finite depth vs equilibrium" in (job / "output.txt").read_text()   # what the job printed
    assert seeds == {"0", "1"}     # each job ran its own seed, nothing overwritten
    summary = pd.read_csv(folder / "summary.csv")
    assert list(summary["seed"]) == [0, 1] and list(summary["status"]) == ["ok", "ok"]
    assert "Sweep of converge" in " ".join(r.output.split())
    assert not list(folder.rglob("%j"))   # submitit's literal %j folder


def test_sweep_jobs_print_at_the_terminal_width(output_root):
    """A job's tables and notes are laid out for the width they are printed at, as a single run's are
    (they were rendered 120 wide whatever the terminal, and wrapped into a mess at 80 columns)."""
    from typer.testing import CliRunner

    from deqlab.cli.app import app

    r = CliRunner().invoke(app, ["sweep", "converge", "seed=0,1", *SMALL, f"output_root={output_root}"],
                           env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "Solvers on the same model" in r.output
    # every line but those naming a folder (the sweep's first and last), which no width can hold
    lines = [line for line in r.output.splitlines() if str(output_root) not in line]
    assert max(len(line) for line in lines) <= 80, r.output
    # and the sweep's own folder line holds its path whole (rich cut one longer than 80 columns into lines)
    assert any(line.startswith(f"sweep folder: {sweep_folder(output_root)} (") for line in r.output.splitlines()), r.output


def test_sweep_prints_its_own_lines_not_hydras_log(output_root):
    """Hydra's launcher logged '[<timestamp>][HYDRA] \t#0 : demo=converge seed=0 output_root=...' (an
    override the user never typed, past any terminal's width) and left an empty launch.log in every job
    folder; the sweep now says where it writes and each job which overrides it ran with."""
    from typer.testing import CliRunner

    from deqlab.cli.app import app

    r = CliRunner().invoke(app, ["sweep", "converge", "seed=0,1", *SMALL, f"output_root={output_root}"],
                           env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "[HYDRA]" not in r.output and "demo=" not in r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("sweep of converge: 2 job(s) into ")
    own = " ".join(SMALL)
    assert f"job 0: seed=0 {own}" in lines and f"job 1: seed=1 {own}" in lines, lines
    (folder,) = (output_root / "sweep" / "converge").iterdir()
    assert not list(folder.rglob("*.log"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["converge", "model.n_z=-1,2"], "model.n_z must be >= 1"),
        (["converge", "model.n_z=2,-1"], "model.n_z must be >= 1"),      # not only the first value is checked
        (["nosuch", "seed=1"], "unknown command 'nosuch'"),
        (["converge", "hydra/launcher=bogus"], "unknown launcher 'bogus'"),
        (["converge", "seed=["], "cannot read the override 'seed=[': '[' is malformed (a bracket or brace left open?)"),
        (["converge", "seed=glob(*)"], "glob() sweeps are not supported"),
        (["converge", "seed=interval(0,1)"], "interval() and glob() sweeps are not supported"),
        (["converge", "seed=0", "+hydra.callbacks.x={_target_:os.makedirs,name:/tmp/deqlab-never}"], "_target_"),
        (["converge", "seed=0", "hydra.callbacks.x={a:1}"], "cannot be changed"),
        (["converge", "seed=0", "hydra.launcher._target_=os.system"], "_target_"),
        (["converge", "seed=0", "hydra.sweep.dir=/proc/deqlab-x"], "cannot create the sweep folder"),
        (["converge", "seed=0,1", "+model.nz=3"], "unknown key 'model.nz'"),
        # sizes that cannot run, counted without listing the values (listing 10⁸ of them took minutes)
        (["converge", "seed=range(0,100000000)"], "the sweep has 100,000,000 jobs, over the limit of 1,000"),
        (["converge", "seed=range(0,40)", "curve_layers=range(1,30)"], "the sweep has 1,160 jobs"),
        (["converge", "seed=range(5,0)"], "sweeps over no values"),
        (["converge", "seed=range(0,1,-1)"], "sweeps over no values"),
        (["converge", "seed=range(0,10,0)"], "range() step must not be 0"),
        (["converge", "seed=range(0,inf)"], "range() needs finite start, stop and step"),
        (["converge", "seed=range(0,40),range(0,30)"], "a sweep inside a list of values is not supported"),
        (["converge", "=3"], "malformed override '=3'"),
        # every job goes into the one sweep folder: swept output roots went unused (exit 0)
        (["converge", "output_root=a,b"], "output_root takes one value"),
        (["converge", "seed=0", "hydra.sweep.dir=/dev/null"], "hydra.sweep.dir='/dev/null': /dev/null is not a folder"),
        # a launcher's options are the launcher's own (the settings' keys were suggested for them)
        (["converge", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.njobs=2"],
         "unknown key 'hydra.launcher.njobs'; did you mean hydra.launcher.n_jobs? (the joblib launcher's options: n_jobs,"),
        (["converge", "seed=0,1", "hydra.launcher.n_jobs=2"],
         "unknown key 'hydra.launcher.n_jobs': the basic launcher takes no options"),
        (["converge", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=abc"],
         "hydra.launcher.n_jobs must be a value like its default -1 (the joblib launcher's option), got 'abc'"),
        # loky starts every worker as the pool is made: 100,000 for a sweep of two jobs filled the machine until stopped
        (["converge", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=100000"],
         "hydra.launcher.n_jobs=100000 would start 100,000 worker processes (joblib starts them all)"),
        # Hydra's joblib launcher runs loky whatever backend is named: a backend that is none ran, exit 0
        (["converge", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.backend=nosuch"],
         "hydra.launcher.backend=nosuch: Hydra's joblib launcher always runs joblib's loky backend"),
        (["converge", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.backend=threading"],
         "hydra.launcher.backend=threading: Hydra's joblib launcher always runs joblib's loky backend"),
        (["converge", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.prefer=threads"],
         "hydra.launcher.prefer=threads: Hydra's joblib launcher always runs joblib's loky backend, in processes"),
        # each submitit task runs the whole job: three of them ran it three times at once into the one folder
        (["converge", "seed=0", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=3"],
         "hydra.launcher.tasks_per_node must be 1, got 3: a deqlab job is one process"),
        (["converge", "seed=0", "hydra/launcher=submitit_slurm", "hydra.launcher.nodes=2"], "hydra.launcher.nodes must be 1, got 2"),
        # every job ran part=example with the swept value ignored
        (["lowrank", "study.n=40,50"], "study.n is not read by any job of the sweep: it is read only by part=study"),
        (["lowrank", "part=example,deq", "study.n=40"], "study.n is not read by any job of the sweep"),
        (["hessian", "hvp_only=true", "seed=0,1", "check_fd=true"], "check_fd is not read by any job of the sweep"),
    ],
)
def test_sweep_bad_input_exits_2_before_any_job(cli, output_root, args, message):
    r = cli("sweep", *args, f"output_root={output_root}")
    assert r.exit_code == 2 and message in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert not (output_root / "sweep").exists()


@pytest.mark.parametrize("args, message", [
    (["sysid-f16"], "f16.data_dir is required: give f16.data_dir=DIR"),
    (["sysid-f16", "f16.data_dir=''"], "f16.data_dir is required (f16.data_dir=DIR;"),
    (["sysid-evaluate", "run_dir=r"], "data_file is required: give data_file=FILE"),
])
def test_a_required_key_of_a_sweep_is_asked_for_as_a_key(cli, output_root, args, message):
    """'deqlab sweep sysid-f16' said to give --data-dir DIR first, an option 'deqlab sweep' does not take."""
    r = cli("sweep", *args, f"output_root={output_root}")
    assert r.exit_code == 2 and r.stderr.strip().count("\n") == 0 and message in r.stderr, r.stderr
    assert not r.stderr.startswith("error: f16.data_dir is required: give --")


def test_sweep_size_counts_every_kind_of_sweep():
    """``sweep_size`` counts a range like Python's ``range`` (floats like Hydra's decimal range), a
    list by its items, a plain value as 1, and the limit sits at the product, not at each key."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from deqlab.cli.compose import MAX_SWEEP_JOBS, screen, sweep_size

    lines = ["seed=range(0,10)", "a=range(10,0,-3)", "b=range(0.5,2.0,0.5)", "c=range(0,0.3,0.1)", "d=1,2,3",
             "e=shuffle(range(0,4))", "f=5"]
    parsed = OverridesParser.create().parse_overrides(lines)
    counted = [sweep_size(o) for o in parsed]
    listed = [len(list(o.sweep_string_iterator())) if o.is_sweep_override() else 1 for o in parsed]
    assert counted == listed == [10, 4, 3, 3, 3, 4, 1]
    assert len(screen([f"seed=range(0,{MAX_SWEEP_JOBS})"], sweep=True)) == 1    # at the limit: allowed


def test_output_root_that_is_a_file_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("DEQLAB_OUTPUT_ROOT", raising=False)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli("sweep", "converge", "seed=0", *SMALL, f"output_root={blocker}")
    assert r.exit_code == 2 and "cannot create the sweep folder" in r.stderr and r.stderr.count("\n") == 1


#: a converge run with a failure report: fixed-point iteration, compared in the solver table, does not
#: converge from the normal init (its reference solve, MINPACK's, does: a failed reference fails the run)
NOT_CONVERGING = ["restarts=1", "model.init=normal", "solver_table=[fixed_point]", "seed=0"]


def test_a_failed_job_is_marked_failed_and_the_sweep_exits_1(cli, output_root):
    r = cli("sweep", "converge", "curve_layers=20,21", *NOT_CONVERGING, "strict=true", f"output_root={output_root}")
    assert r.exit_code == 1 and "2 of 2 job(s) failed" in r.stderr
    folder = sweep_folder(output_root)
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["0.failed", "1.failed"]
    for job in ("0.failed", "1.failed"):
        assert "strict=true" in (folder / job / "error.txt").read_text()
        assert (folder / job / "config.yaml").is_file()
    assert list(pd.read_csv(folder / "summary.csv")["status"]) == ["failed", "failed"]
    # the sweep folder says so as a run's does: it had kept its bare timestamp name, like a sweep that succeeded
    assert folder.name.endswith(".failed") and "2 of 2 job(s) failed" in (folder / "error.txt").read_text()
    assert str(folder) in r.stderr and r.stderr.count("\n") == 1


def test_a_job_that_fails_names_its_folder_once(cli, output_root):
    """A job's line named its folder, then again inside the reason, as "[run folder: ...]"."""
    r = cli("sweep", "hessian", "model.init=normal", "seed=0,1", f"output_root={output_root}")   # (a repelling fixed point: refused)
    assert r.exit_code == 1, r.stderr
    failed = [line for line in r.stdout.splitlines() if line.startswith("job 0 failed: ")]
    assert len(failed) == 1 and "[run folder:" not in failed[0] and failed[0].count("0.failed") == 1, failed
    assert "repelling" in failed[0] or "contract" in failed[0], failed


def test_a_failed_sweep_in_a_folder_the_user_named_keeps_its_name_and_says_why(cli, tmp_path):
    where = tmp_path / "mine"
    r = cli("sweep", "converge", *NOT_CONVERGING, "strict=true", f"hydra.sweep.dir={where}")
    assert r.exit_code == 1
    assert "1 of 1 job(s) failed" in (where / "error.txt").read_text() and (where / "0.failed").is_dir()


def test_a_sweep_that_succeeds_has_no_error_file(cli, output_root):
    r = cli("sweep", "converge", "seed=0", *SMALL, f"output_root={output_root}")
    assert r.exit_code == 0, r.stderr
    folder = sweep_folder(output_root)
    assert not folder.name.endswith(".failed") and not (folder / "error.txt").exists()


def test_failure_reports_without_strict_are_counted(cli, output_root):
    r = cli("sweep", "converge", "curve_layers=20", *NOT_CONVERGING, f"output_root={output_root}")
    assert r.exit_code == 0, r.stderr
    assert "1 job(s) with failure reports" in r.output
    assert (sweep_folder(output_root) / "0" / "failures.txt").is_file()


def test_a_sweep_under_a_folder_with_a_backslash_keeps_its_jobs_inside(cli, tmp_path, monkeypatch):
    """The sweep folder reached Hydra with its backslash doubled: the jobs ran in a folder of that other
    name, and the sweep reported 0 jobs and exit 0."""
    root = tmp_path / "back\\slash"
    monkeypatch.setenv("DEQLAB_OUTPUT_ROOT", str(root))
    r = cli("sweep", "converge", "seed=0", *SMALL)
    assert r.exit_code == 0, r.output + r.stderr
    folder = sweep_folder(root)
    assert (folder / "0" / "gap.csv").is_file() and list(pd.read_csv(folder / "summary.csv")["status"]) == ["ok"]
    assert list(tmp_path.iterdir()) == [root]


@pytest.mark.parametrize("where", ["env", "hydra.sweep.dir"])
def test_a_sweep_folder_that_holds_an_interpolation_is_refused(cli, tmp_path, monkeypatch, where):
    """Hydra resolves each job's folder from its config unescaped: under ``.../${oc.env:VAR}`` the jobs
    wrote into another folder and the sweep reported 0 jobs, exit 0; under ``${x}`` they all failed."""
    folder = str(tmp_path / "${oc.env:HOME}")
    if where == "env":
        monkeypatch.setenv("DEQLAB_OUTPUT_ROOT", folder)
        r = cli("sweep", "converge", "seed=0", *SMALL)
    else:
        monkeypatch.setenv("DEQLAB_OUTPUT_ROOT", str(tmp_path / "out"))
        r = cli("sweep", "converge", "seed=0", *SMALL, f"hydra.sweep.dir='{folder}'")
    said = "holds '${'" if where == "env" else "hydra.sweep.dir must be a plain folder path"
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and said in r.stderr and folder in r.stderr, r.stderr
    assert not list(tmp_path.iterdir())


def test_a_launcher_that_cannot_start_a_process_says_so():
    """joblib's own words for a refused fork were "BlockingIOError: [Errno 11] Resource temporarily unavailable"."""
    import errno

    from deqlab.cli.sweeping import _launcher_failure

    why = _launcher_failure(BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"))
    assert why == "cannot start a job process: Resource temporarily unavailable (a limit on processes, such as ulimit -u?)"


def test_a_full_disk_while_hydra_writes_a_job_folder_says_so_in_words():
    """Hydra writing a job's .hydra/ files on a full disk ended the sweep with "sweep failed: OSError: [Errno 28]
    No space left on device"."""
    import errno

    from deqlab.cli.sweeping import _launcher_failure

    assert _launcher_failure(OSError(errno.ENOSPC, "No space left on device")) == \
        "cannot write in the sweep folder: No space left on device"
    assert _launcher_failure(OSError(errno.ENOSPC, "No space left on device", "/s/1/.hydra/config.yaml")) == \
        "cannot write /s/1/.hydra/config.yaml: No space left on device"


def test_a_group_option_is_a_name_never_a_path_to_another_yaml(cli, output_root, tmp_path):
    """``sysid_preset=../../x`` made Hydra read ``configs/sysid_preset/../../x.yaml``: any YAML file on the
    disk. Its keys bypassed the screening, and in a sweep its ``hydra.callbacks`` were instantiated (here a
    ``logging.FileHandler`` that creates a file). A group option is a plain name."""
    import os

    from deqlab.cli.compose import config_dir

    marker = tmp_path / "instantiated"
    (tmp_path / "evil.yaml").write_text("# @package _global_\nhydra:\n  callbacks:\n    x:\n"
                                        f"      _target_: logging.FileHandler\n      filename: {marker}\n")
    path = os.path.relpath(tmp_path / "evil", config_dir() / "sysid_preset")
    for group in ("+sysid_preset", "hydra/launcher"):
        r = cli("sweep", "lowrank", "rtol=1e-10,1e-9", f"{group}={path}", f"output_root={output_root}")
        assert r.exit_code == 2 and path in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
        assert not marker.exists() and not (output_root / "sweep").exists()
    r = cli("config", "converge", "solver=../sysid_preset/tiny")   # another group's file, inside configs/
    assert r.exit_code == 2 and "unknown solver '../sysid_preset/tiny'; choose one of:" in r.stderr, r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        # Hydra refused these only after the sweep folder was made (exit 1)
        (["hydra/launcher=basic,joblib"], "a Hydra setting takes one value"),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=1,2"], "a Hydra setting takes one value"),
        # the folder deqlab made was not the one Hydra resolved and wrote to; the sweep reported 0 jobs, exit 0
        (["hydra.sweep.dir=SWEEP_A,SWEEP_B"], "a Hydra setting takes one value"),
        (["hydra.sweep.dir=runs/${now:%Y}"], "hydra.sweep.dir must be a plain folder path"),
        (["hydra.sweep.dir=${oc.env:HOME}"], "hydra.sweep.dir must be a plain folder path"),
        (["hydra.sweep.dir=null"], "hydra.sweep.dir must be a folder path, got null"),
        # '' is the working directory (the sweep wrote its jobs into it when it was empty), ' ' a folder named ' '
        (["hydra.sweep.dir=''"], "hydra.sweep.dir must be a folder path, got ''"),
        (["hydra.sweep.dir=' '"], "hydra.sweep.dir must be a folder path, got ' '"),
        # launcher option values the launcher refused only once the sweep folder existed (exit 1)
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "refused by joblib: n_jobs == 0"),
        (["hydra/launcher=joblib", "hydra.launcher.prefer=nope"], "refused by joblib: prefer=nope"),
        (["hydra/launcher=joblib", "hydra.launcher.batch_size=0"], "refused by joblib: batch_size"),
        # joblib reads these only as it hands out the jobs: exit 1, a .failed sweep folder (0: no job ever started)
        (["hydra/launcher=joblib", "hydra.launcher.pre_dispatch=abc"], "hydra.launcher.pre_dispatch='abc' must be all, a count"),
        (["hydra/launcher=joblib", "hydra.launcher.pre_dispatch=0"], "hydra.launcher.pre_dispatch=0 must be all, a count"),
        (["hydra/launcher=joblib", "hydra.launcher.pre_dispatch='n_jobs-9'"], "must be all, a count of at least 1"),
        (["hydra/launcher=joblib", "hydra.launcher.timeout=-1"], "hydra.launcher.timeout must be a number of seconds > 0"),
        (["hydra/launcher=joblib", "hydra.launcher.timeout=0"], "hydra.launcher.timeout must be a number of seconds > 0"),
        # joblib reads these only to memory-map a large array, which a deqlab job never passes: taken as fine (exit 0),
        # or a traceback from joblib's reading of the size ('': IndexError, infM: OverflowError)
        (["hydra/launcher=joblib", "hydra.launcher.mmap_mode=bogus"], "hydra.launcher.mmap_mode='bogus' is not a memory-map mode"),
        (["hydra/launcher=joblib", "hydra.launcher.mmap_mode=write"], "is not a memory-map mode joblib knows: use r, r+, w+, c"),
        (["hydra/launcher=joblib", "hydra.launcher.max_nbytes=-1"], "hydra.launcher.max_nbytes='-1' must be a size of at least 0"),
        (["hydra/launcher=joblib", "hydra.launcher.max_nbytes=-1M"], "hydra.launcher.max_nbytes='-1M' must be a size"),
        (["hydra/launcher=joblib", "hydra.launcher.max_nbytes=''"], "hydra.launcher.max_nbytes='' must be a size"),
        (["hydra/launcher=joblib", "hydra.launcher.max_nbytes=infM"], "hydra.launcher.max_nbytes='infM' must be a size"),
        (["hydra/launcher=joblib", "hydra.launcher.max_nbytes=abc"], "hydra.launcher.max_nbytes='abc' must be a size"),
        (["hydra/launcher=joblib", "hydra.launcher.temp_folder=A_FILE"], "hydra.launcher.temp_folder='A_FILE': A_FILE is not a folder"),
        (["hydra/launcher=joblib", "hydra.launcher.temp_folder=A_FILE/x"], "A_FILE is not a folder"),
        (["hydra/launcher=joblib", "hydra.launcher.temp_folder=' '"], "hydra.launcher.temp_folder must be a folder path, got ' '"),
        # added, an option that is none was handed to joblib as a backend keyword and ignored (exit 0)
        (["hydra/launcher=joblib", "+hydra.launcher.foo=1"], "a Hydra setting is set, never added"),
        # submitit made its folder only once the sweep folder existed: "File exists: /dev/null", exit 1, a .failed folder
        (["hydra/launcher=submitit_local", "hydra.launcher.submitit_folder=/dev/null"],
         "hydra.launcher.submitit_folder='/dev/null': /dev/null is not a folder"),
        (["hydra/launcher=submitit_local", "hydra.launcher.submitit_folder=/dev/null/x/%j"], "/dev/null is not a folder"),
        (["hydra/launcher=submitit_local", "hydra.launcher.submitit_folder=' '"], "submitit_folder must be a folder path, got ' '"),
        (["hydra/launcher=joblib", "++hydra.launcher.n_jobs=1"], "a Hydra setting is set, never added"),
        (["hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=0"], "tasks_per_node must be at least 1"),
        (["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=-1"], "timeout_min must be at least 1"),
    ],
)
def test_hydra_settings_of_a_sweep_take_one_plain_value(cli, output_root, tmp_path, monkeypatch, args, message):
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir(), home.mkdir()
    a_file = tmp_path / "a_file"   # (a regular file where a folder belongs)
    a_file.write_text("")
    args, message = [a.replace("A_FILE", str(a_file)) for a in args], message.replace("A_FILE", str(a_file))
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(home))
    r = cli("sweep", "lowrank", "rtol=1e-10,1e-9", *args, f"output_root={output_root}")
    assert r.exit_code == 2 and message in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert not (output_root / "sweep").exists() and not list(cwd.iterdir()) and not list(home.iterdir())


@pytest.mark.slow   # (4 s; the backslash folder case stays in the default run: -m slow)
def test_a_sweep_under_an_output_root_with_quotes_and_backslashes_summarises_its_jobs(cli, tmp_path, monkeypatch):
    """The sweep folder reached Hydra quoted with every backslash doubled: Hydra wrote the jobs to another
    folder, and the sweep summarised none of them with exit 0."""
    root = tmp_path / "it's a\\b"
    monkeypatch.setenv("DEQLAB_OUTPUT_ROOT", str(root))
    r = cli("sweep", "lowrank", "rtol=1e-10,1e-9")
    assert r.exit_code == 0, r.stderr
    folder = sweep_folder(root, "lowrank")
    assert list(pd.read_csv(folder / "summary.csv")["status"]) == ["ok", "ok"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [root.name]


def test_an_output_root_with_an_interpolation_is_refused_for_a_sweep(cli, tmp_path, monkeypatch):
    """Hydra resolves ``${...}`` in the sweep folder's path (more than once: no escape survives), so the
    jobs went elsewhere; refused before any folder is made."""
    monkeypatch.setenv("DEQLAB_OUTPUT_ROOT", str(tmp_path / "${oc.env:HOME}"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    r = cli("sweep", "lowrank", "rtol=1e-10,1e-9")
    assert r.exit_code == 2 and "holds '${'" in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert not list(tmp_path.iterdir())


def test_a_sweep_missing_job_folders_exits_1(tmp_path):
    """Never a sweep that claims success for jobs it cannot show: fewer job folders than jobs launched is a
    failure, whatever sent the jobs elsewhere."""
    import typer

    from deqlab.cli.sweeping import _report

    folder = tmp_path / "2026-11-30_00-00-00"
    folder.mkdir()
    with pytest.raises(typer.Exit) as info:
        _report("lowrank", [], folder, strict=False, expected=2, made=True)
    assert info.value.exit_code == 1
    assert not folder.exists() and "holds 0 job folder(s)" in (tmp_path / f"{folder.name}.failed" / "error.txt").read_text()


def test_a_key_given_twice_is_counted_once_like_hydra():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from deqlab.cli.compose import sweep_jobs

    parsed = OverridesParser.create().parse_overrides(["seed=0,1", "seed=2,3,4", "rtol=1e-3,1e-4"])
    assert sweep_jobs(parsed) == 6


def test_a_job_refusing_its_input_keeps_a_failed_folder_and_a_row(cli, output_root, tmp_path):
    """Bad input that only the job's run could see (a pairs file that is text) removed the job's folder, as a
    single run's: its line named a folder that was not there, summary.csv had no row for it, and the sweep
    ended in "the sweep launched 2 job(s), but its folder holds 1 job folder(s)"."""
    import numpy as np

    rng = np.random.default_rng(0)
    A = rng.normal(size=(5, 5))
    X = rng.normal(size=(5, 2))
    good, text = tmp_path / "good.npz", tmp_path / "text.npz"
    np.savez(good, X=X, Y=(A + A.T) @ X)
    text.write_text("a,b\n1,2\n")
    r = cli("sweep", "lowrank", "part=pairs", f"pairs_file={good},{text}", f"output_root={output_root}")
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "1 of 2 job(s) failed" in r.stderr, r.stderr
    assert "job folder(s)" not in r.stderr
    folder = sweep_folder(output_root, "lowrank")
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["0", "1.failed"]
    assert "is text (a CSV?)" in (folder / "1.failed" / "error.txt").read_text()
    assert list(pd.read_csv(folder / "summary.csv")["status"]) == ["ok", "failed"]


def test_a_sweep_folder_that_cannot_be_made_leaves_no_command_folder(cli, output_root, monkeypatch):
    """On a disk with no inode left (or a name too long) the sweep's own mkdir failed after sweep/<command>/
    was made: the sweep was refused, exit 2, but the empty folders stayed behind (a single run removes them)."""
    monkeypatch.setattr("deqlab.cli.run_folder._stamp", lambda: "x" * 300)   # ENAMETOOLONG on the sweep's folder
    r = cli("sweep", "converge", "seed=0,1", f"output_root={output_root}")
    assert r.exit_code == 2 and "cannot create the sweep folder under" in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert not output_root.exists()


def test_a_sweep_folder_named_by_the_user_that_cannot_be_made_leaves_none_of_its_parents(cli, output_root):
    """hydra.sweep.dir=a/b/<a name too long>: a and b were made, the sweep refused, and they stayed behind."""
    asked = output_root / "a" / "b" / ("x" * 300)
    r = cli("sweep", "converge", "seed=0,1", f"hydra.sweep.dir={asked}")
    assert r.exit_code == 2 and "cannot create the sweep folder under hydra.sweep.dir=" in r.stderr, r.stderr
    assert not output_root.exists()


def test_two_sweeps_started_together_in_one_new_folder_the_user_named_do_not_share_it(tmp_path):
    """Both found the new folder empty and both ran their jobs into the same job folders, overwriting each
    other, and exited 0. The folder is claimed by an exclusive create now: one sweep runs, the other is refused
    in one line with exit 2 (before or after the claim, whichever it meets)."""
    import os
    import subprocess
    import sys

    where = tmp_path / "mine"
    env = {**os.environ, "DEQLAB_OUTPUT_ROOT": str(tmp_path / "root"), "DEQLAB_PROGRESS": "0"}
    runs = [subprocess.Popen([sys.executable, "-m", "deqlab", "sweep", "converge", *SMALL, "seed=0",
                              f"hydra.sweep.dir={where}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    ended = sorted((p.wait(timeout=300), p.stderr.read()) for p in runs)
    assert [code for code, _ in ended] == [0, 2], ended
    assert ended[1][1].count("\n") == 1 and f"hydra.sweep.dir={where}" in ended[1][1], ended[1][1]
    assert JOB_FILES <= {f.name for f in (where / "0").iterdir()}


@pytest.mark.parametrize("where", ["reading the jobs", "after the rename"])
def test_a_stop_while_the_sweep_reports_marks_its_folder_failed(cli, output_root, monkeypatch, where):
    """SIGTERM after the jobs, while the sweep read their summaries or printed its table: the top-level
    handler printed its line and the sweep folder stayed '<stamp>.partial', or, after the rename that claims
    success, kept the name of a sweep that had succeeded. Now: one line, exit 143, the folder .failed."""
    import os
    import signal

    import deqlab.cli.sweeping as sweeping
    import deqlab.report.writer as writer
    from deqlab.cli.termination import signals_as_exceptions

    def stop_after(real):
        def wrapper(*args, **kwargs):
            value = real(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGTERM)
            return value
        return wrapper

    if where == "reading the jobs":
        monkeypatch.setattr(sweeping, "_summaries", stop_after(sweeping._summaries))
    else:
        monkeypatch.setattr(writer, "show_location", stop_after(writer.show_location))
    with signals_as_exceptions():   # (installed by deqlab's main, which the in-process runner does not call)
        r = cli("sweep", "converge", "seed=0,1", *SMALL, f"output_root={output_root}")
    assert r.exit_code == 128 + signal.SIGTERM, (r.output, r.stderr)
    assert r.stderr.count("\n") == 1 and "sweep stopped by SIGTERM while reporting its jobs" in r.stderr, r.stderr
    folder = sweep_folder(output_root)
    assert folder.name.endswith(".failed") and "stopped by SIGTERM" in (folder / "error.txt").read_text(), folder
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["0", "1"]   # the finished jobs kept
