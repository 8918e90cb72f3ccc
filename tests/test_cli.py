"""The CLI as a whole: help, speed of start-up, module entry point."""

import os
import subprocess
from pathlib import Path
import sys

import pytest

from tests.helpers import assert_one_line_error


def test_help_lists_every_command(cli):
    r = cli("--help")
    assert r.exit_code == 0
    for command in ("converge", "sweep", "bench"):
        assert command in r.output


def test_help_is_fast_and_imports_no_torch():
    code = "import sys, time; t=time.perf_counter(); import deqlab.cli; print(time.perf_counter()-t, 'torch' in sys.modules, 'hydra' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "False" and out[2] == "False"
    assert float(out[0]) < 3.0   # generous: about 0.2 s here; catches an eager torch import (~2 s)


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "deqlab", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "converge" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["converge", "--seed", "abc"], "Invalid value for '--seed'"),
        (["bogus"], "No such command 'bogus'"),
        (["sweep"], "Missing argument 'COMMAND'"),
        (["converge", "--strict=maybe"], "does not take a value"),
        (["bench", "nosuch"], "No such command 'nosuch'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(cli, args, message):
    r = cli(*args)
    assert r.exit_code == 2
    assert r.stderr.strip().startswith("error: ") and message in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_flags_show_no_bool_metavar_and_accept_true_false(cli, output_root):
    r = cli("converge", "--help")
    assert "<bool>" not in r.output and "--strict" in r.output
    assert "Trailing key=value words override any setting" in " ".join(r.output.split())
    ok = cli("converge", "--strict", "false", "model.n_z=0")       # parsed as a flag value, then refused
    assert ok.exit_code == 2 and "model.n_z must be >= 1" in ok.stderr


def test_bench_alone_prints_its_help_and_exits_0(cli):
    r = cli("bench")
    assert r.exit_code == 0 and "solvers" in r.output and "hessian" in r.output


def test_bench_help_lists_keys_and_run_time(cli):
    r = cli("bench", "lowrank", "--help")
    text = " ".join(r.output.split())
    assert "Keys: device, seed, threads, n, rank, k" in text and "Takes about" in text


@pytest.mark.parametrize("args, option", [
    (["converge", "--seed", "1", "--seed", "2"], "--seed"),
    (["converge", "--seed=1", "--seed", "2"], "--seed"),
    (["hessian", "--check-fd", "--check-fd"], "--check-fd"),
    (["sysid", "pendulum", "--tiny", "--models", "ren", "--models", "lstm"], "--models"),
])
def test_an_option_given_twice_is_refused(cli, output_root, args, option):
    """`--seed 1 --seed 2` ran with seed 2, exit 0 (click keeps the last), where `seed=1 seed=2` is refused."""
    r = cli(*args)
    assert_one_line_error(r, f"option {option} is given twice: give it once")
    assert not output_root.exists()


def test_option_help_names_existing_keys():
    """Every `Key x` in an option's help exists in that command's settings (help and schema cannot drift)."""
    import re

    from deqlab.cli.compose import schema_keys
    from deqlab.settings import settings_class

    commands = Path(__file__).resolve().parents[1] / "deqlab" / "cli" / "commands"
    src = "\n".join(p.read_text() for p in commands.glob("*.py"))
    for command, key in re.findall(r'option_help\("(\w+)", "([\w.]+)"', src):
        assert key in schema_keys(settings_class(command)), (command, key)


def test_option_help_shows_the_default_a_run_uses():
    """`hessian --help` once said --n-z defaults to 10 and --n-x to 3 (TanhDEQSettings' class defaults)
    while a run used hessian's own model, n_z=6 and n_x=2."""
    import re

    from deqlab.cli.compose import load
    from deqlab.cli.options import default_of

    def shown(value):
        value = getattr(value, "name", value)
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        return str(value).lower() if isinstance(value, bool) else str(value)

    commands = Path(__file__).resolve().parents[1] / "deqlab" / "cli" / "commands"
    src = "\n".join(p.read_text() for p in commands.glob("*.py"))
    pairs = sorted(set(re.findall(r'option_help\("(\w+)", "([\w.]+)"', src)))
    assert ("hessian", "model.n_z") in pairs
    required = {"sysid_f16": ["f16.data_dir=somewhere"]}   # a key without a default
    settings = {command: load(command, required.get(command, []))[0] for command, _ in pairs}   # (one compose each)
    for command, key in pairs:
        value = settings[command]
        for part in key.split("."):
            value = getattr(value, part)
        assert default_of(command, key) == shown(value), (command, key)


def test_config_prints_the_resolved_settings(cli):
    r = cli("config", "hessian", "solver=broyden", "model.n_z=4")
    assert r.exit_code == 0
    assert "name: broyden" in r.output and "atol: 1.0e-14" in r.output and "n_z: 4" in r.output
    bad = cli("config", "hessian", "model.nz=4")
    assert bad.exit_code == 2 and "did you mean model.n_z" in bad.stderr


def test_config_says_where_runs_go_when_the_environment_overrides_output_root(cli, output_root):
    """DEQLAB_OUTPUT_ROOT wins over output_root: the header once said output_root=outputs and nothing
    more, while every run went elsewhere."""
    r = cli("config", "converge")
    assert r.exit_code == 0
    assert f"# runs go under {output_root} (DEQLAB_OUTPUT_ROOT is set)" in r.output, r.output


def test_option_help_keeps_units_in_brackets(cli):
    """Typer reads help as rich markup: "[rad]" vanished and "--noise" read "on the angle ."."""
    r = cli("sysid", "pendulum", "--help")
    assert r.exit_code == 0
    assert "Measurement noise σ on the angle [rad]. Key data.noise_std" in r.output, r.output


def test_an_unknown_command_names_the_commands_there_are(cli):
    """'deqlab bench foo' said only "No such command 'foo'."; the line now says what to type instead."""
    r = cli("bench", "foo")
    assert r.exit_code == 2
    assert "No such command 'foo'; choose one of: solvers, hessian, lowrank, mondeq" in r.stderr, r.stderr
    r = cli("sysid", "foo")
    assert r.exit_code == 2 and "choose one of: pendulum, f16, evaluate" in r.stderr, r.stderr


def test_sysid_evaluate_requires_data(cli, tmp_path):
    r = cli("sysid", "evaluate", str(tmp_path))
    assert r.exit_code == 2 and "data_file is required: give --data FILE (or data_file=FILE)" in r.stderr
    r = cli("sysid", "f16")
    assert r.exit_code == 2 and "f16.data_dir is required: give --data-dir DIR (or f16.data_dir=DIR)" in r.stderr


def test_a_required_option_may_be_given_as_its_key(cli, tmp_path):
    """--data-dir and --data are typed doors onto keys f16.data_dir and data_file, like every option."""
    r = cli("sysid", "f16", f"f16.data_dir={tmp_path / 'nowhere'}")
    assert r.exit_code == 2 and "F16 data folder" in r.stderr and "does not exist" in r.stderr
    r = cli("sysid", "evaluate", str(tmp_path / "missing"), f"data_file={tmp_path / 'd.npz'}")
    assert r.exit_code == 2 and "does not exist" in r.stderr


@pytest.mark.slow   # (8 s; test_device_auto_runs_on_what_there_is stays in the default run: -m slow)
def test_every_command_takes_a_device(cli, output_root):
    """--device on every command; a CUDA device where there is none is one line and exit 2."""
    import torch

    for args in (["converge"], ["hessian"], ["mondeq"], ["nethessian"], ["nethessian", "pinn"], ["lowrank"],
                 ["sysid", "f16", "--data-dir", "nowhere"], ["train", "digits"], ["bench", "curvature"],
                 ["sysid", "pendulum"], ["bench", "solvers"], ["bench", "hessian"], ["bench", "lowrank"],
                 ["bench", "mondeq"], ["bench", "nethessian"], ["bench", "sysid"]):
        assert "--device" in cli(*args, "--help").output, args
        bad = cli(*args, "--device", "gpu")
        assert bad.exit_code == 2 and "device must be cpu, cuda, cuda:N or auto" in bad.stderr, (args, bad.stderr)
        if not torch.cuda.is_available():
            r = cli(*args, "--device", "cuda")
            cpu_only = args in (["train", "digits"], ["bench", "curvature"])   # refused up front: not checked on CUDA
            expected = "runs on the CPU only" if cpu_only else "finds no CUDA device"
            assert r.exit_code == 2 and expected in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
    assert not output_root.exists()


def test_config_refuses_a_cuda_device_that_is_not_there_like_a_run(cli, monkeypatch):
    """`deqlab config converge --device cuda` printed `device: cuda`, exit 0, on a machine where the run itself (and
    a sweep of it) refuses that device in one line. auto is printed as asked: the run may be on another machine."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for args in (["--device", "cuda"], ["device=cuda:1"]):
        assert_one_line_error(cli("config", "converge", *args), "finds no CUDA device here; use --device cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    # (config now checks the sizes against the device's free memory, as a run does: the fake device has some)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 << 30, 16 << 30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "a fake GPU")
    assert_one_line_error(cli("config", "hessian", "--device", "cuda:3"), "device cuda:3 asked for, but there are 1 CUDA")
    r = cli("config", "converge", "--device", "cuda")
    assert r.exit_code == 0 and "device: cuda" in r.output, r.stderr
    assert_one_line_error(cli("config", "converge", "--device", "cuda", "model.n_z=99999"), "cuda (a fake GPU) can give")
    r = cli("config", "converge", "--device", "auto")
    assert r.exit_code == 0 and "device: auto" in r.output, r.stderr

def test_config_refuses_a_size_this_machine_cannot_hold_like_a_run(cli, output_root):
    """`deqlab config converge model.n_z=99999` printed the settings, exit 0, where the run refuses them in one
    line (the resource guard). `--device auto` is still printed as asked, its memory checked as the run here would be."""
    for args in (["converge", "model.n_z=99999"], ["converge", "--device", "auto", "model.n_z=99999"],
                 ["mondeq", "model.n_z=99999"]):
        assert_one_line_error(cli("config", *args), "would need about")
        run = cli(*args)
        assert run.exit_code == 2 and "would need about" in run.stderr, run.stderr
    r = cli("config", "converge", "--device", "auto")
    assert r.exit_code == 0 and "device: auto" in r.output, r.stderr
    assert not output_root.exists()


def test_device_auto_runs_on_what_there_is(cli, output_root):
    import torch

    r = cli("converge", "--device", "auto", "--restarts", "1", "solver_table=[anderson]", "curve_layers=10")
    assert r.exit_code == 0, r.stderr
    (folder,) = list((output_root / "converge").iterdir())
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"device: {expected}" in (folder / "config.yaml").read_text()


@pytest.mark.parametrize("value", ["", "' '"])
def test_an_empty_output_root_is_refused(cli, tmp_path, monkeypatch, value):
    """`output_root=` silently meant ./outputs, a folder the user did not name."""
    monkeypatch.delenv("DEQLAB_OUTPUT_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    r = cli("lowrank", f"output_root={value}")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "output_root must name a folder" in r.stderr, r.stderr
    assert not list(tmp_path.iterdir())


def test_the_outputs_line_prints_the_folder_as_written_and_whole(tmp_path, monkeypatch):
    """A folder with '[/]' in its name raised rich's MarkupError (a traceback, after the run had finished)
    from the 'outputs:' line, and a path longer than the terminal was cut by inserted newlines."""
    from typer.testing import CliRunner

    from deqlab.cli.app import app

    root = tmp_path / "a[/]b [bold]c" / ("long-name-" * 8)
    monkeypatch.setenv("DEQLAB_OUTPUT_ROOT", str(root))
    r = CliRunner().invoke(app, ["lowrank"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output + r.stderr
    (folder,) = (root / "lowrank").iterdir()
    assert f"outputs: {folder}" in r.output.splitlines(), r.output[-1000:]


def test_a_home_folder_in_output_root_is_expanded_and_an_unquoted_one_explained(cli, tmp_path, monkeypatch):
    """`output_root=~/runs` was Hydra's lexer message alone; quoted, a literal '~' folder was made in the
    working directory while the CSV writer expanded '~' elsewhere, and the run failed."""
    monkeypatch.delenv("DEQLAB_OUTPUT_ROOT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    r = cli("converge", "output_root=~/runs")
    assert r.exit_code == 2 and "quote a value" in r.stderr and "output_root='~/runs'" in r.stderr, r.stderr
    r = cli("converge", "--restarts", "2", "solver_table=[fixed_point]", "output_root='~/runs'")
    assert r.exit_code == 0, r.output
    assert [p.name for p in (tmp_path / "home" / "runs" / "converge").iterdir()]
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize("text", ["a${x}b", "${oc.env:HOME}", "a\\b", "C:\\dir\\", "a\\${x}", "x\\\\${y}\\\\", "it's",
                                  "\\'", "new\nline\n", "a,b c=d", "~/x", "", "plain", "a\\", "a\\\\", "a\\'",
                                  "\\'\\", "[x],{y}=~ é", "${x}", "a\\\\${x}", "/r/a'b\\c/${oc.env:HOME}/\\"])
def test_a_quoted_value_comes_out_of_hydra_as_written(text):
    """An option's value (a data folder) or the sweep folder, quoted for Hydra, read back through Hydra's
    override parser and OmegaConf's interpolation, is the text itself: ``${...}`` was resolved
    (``${oc.env:HOME}`` became /root, ``${x}`` an error) and a backslash inside a path came out doubled
    (``--pairs 'a\\b'`` looked for ``a\\\\b``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from deqlab.cli.options import quote

    value = OverridesParser.create().parse_override(f"key={quote(text)}").value()
    assert OmegaConf.to_container(OmegaConf.create({"key": value, "x": "X"}), resolve=True)["key"] == text


@pytest.mark.parametrize("option, key, value", [
    ("--seed", "seed", "1.0"), ("--seed", "seed", "-0.0"), ("--layers", "eig_layers", "2.0"),
    ("--restarts", "restarts", "1e1"), ("--seed", "seed", "0x10"), ("--seed", "seed", "3,4"),
])
def test_an_integer_option_refuses_what_its_key_refuses(cli, output_root, option, key, value):
    """Typer's own integer conversion ran `--seed 1.0` and `--seed -0.0` (seed 1 and 0) where `seed=1.0`
    is refused: an option and its key must take the same values. (model.n_z=0, refused after the
    types, keeps a missed refusal from running the demo.)"""
    by_key = cli("converge", f"{key}={value}", "model.n_z=0")
    assert by_key.exit_code == 2 and "model.n_z" not in by_key.stderr, by_key.stderr
    assert_one_line_error(cli("converge", option, value, "model.n_z=0"),
                          f"Invalid value for '{option}': must be an integer, got {value!r}")


@pytest.mark.parametrize("args, override", [
    (["converge", "--seed", "1_000"], "seed=1_000"), (["converge", "--seed", " 7 "], "seed= 7 "),
    (["converge", "--seed", "-1"], "seed=-1"), (["mondeq", "--m", ".5"], "model.m=.5"),
    (["mondeq", "--m", "1e309"], "model.m=1e309"), (["mondeq", "--m", "nan"], "model.m=nan"),
    (["mondeq", "--alpha", "-0.0"], "alpha=-0.0"), (["hessian", "--fd-step", "1_0.5"], "fd_step=1_0.5"),
])
def test_a_number_option_is_read_like_its_key(cli, output_root, args, override):
    """What `key=value` takes, the option takes, and both end in the same line."""
    command = args[0]
    tail = ["model.n_z=99999"]   # refused by the resource guard, after every check of the settings
    by_option, by_key = cli(*args, *tail), cli(command, override, *tail)
    assert by_option.exit_code == by_key.exit_code == 2, (by_option.stderr, by_key.stderr)
    same = [r.stderr.split(", more than")[0] for r in (by_option, by_key)]   # (the memory free varies between runs)
    assert same[0] == same[1], same


def _deqlab(*args, **env):
    import os

    return subprocess.run([sys.executable, "-m", "deqlab", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"}, {"PYTHONUTF8": "0", "LC_ALL": "C"}])
def test_help_prints_under_a_locale_that_is_not_utf8(env):
    """An ASCII stdout ended `sysid pendulum --help` (trajectories×steps) in a UnicodeEncodeError traceback:
    what the encoding cannot hold is now written as a backslash escape."""
    r = _deqlab("sysid", "pendulum", "--help", COLUMNS="200", **env)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "trajectories\\xd7steps" in r.stdout, r.stdout


@pytest.mark.parametrize("columns", ["0", "1", "-5"])
def test_help_is_readable_at_any_columns(columns):
    """COLUMNS=0 printed an empty help, COLUMNS=1 one of 15 characters (and cut every table's numbers)."""
    r = _deqlab("--help", COLUMNS=columns)
    assert r.returncode == 0 and not r.stderr, r.stderr
    assert "converge" in r.stdout and "Usage:" in r.stdout, r.stdout


@pytest.mark.parametrize("digits", ["٣", "３"])
def test_a_list_option_refuses_the_digits_its_key_refuses(cli, output_root, digits):
    """int() reads any Unicode digit: `--hidden ٣` ran a width-3 network while mlp.hidden=[٣] is refused."""
    assert cli("nethessian", f"mlp.hidden=[{digits}]").exit_code == 2
    assert_one_line_error(cli("nethessian", "--hidden", digits, "batch=0"), "--hidden must be comma-separated int values")


@pytest.mark.parametrize("args, override", [
    (["converge", "--device", "cpu "], "device=cpu "), (["converge", "--init", " normal"], "model.init= normal"),
    (["converge", "--dtype", "float64\t"], "dtype=float64\t"),
])
def test_a_text_option_takes_the_spaces_its_key_takes(cli, output_root, args, override):
    """Hydra strips the spaces around an unquoted value, so `device=cpu ` runs; `--device 'cpu '` was refused."""
    # (a size refused by the resource guard, after every check of the settings: nothing runs)
    by_option, by_key = cli(*args, "model.n_z=99999"), cli(args[0], override, "model.n_z=99999")
    same = [r.stderr.split(", more than")[0] for r in (by_option, by_key)]   # (the memory free varies between runs)
    assert same[0] == same[1] and "would need about" in same[1], same


@pytest.mark.parametrize("args, option", [
    (["sysid", "pendulum", "--data", ""], "--data"), (["sysid", "evaluate", "run", "--data", ""], "--data"),
    (["sysid", "evaluate", ""], "'run_dir'"), (["sysid", "f16", "--data-dir", ""], "--data-dir"),
    (["lowrank", "--pairs", ""], "--pairs"),
])
def test_an_empty_path_is_refused_naming_its_option(cli, output_root, args, option):
    """Typer read `--data ''` as '.', the working directory ("data file '.' is a folder, not a file"), and
    `--data-dir ''` searched the working directory for the F-16 files; `--pairs ''` said to give --pairs."""
    assert_one_line_error(cli(*args), "must name a file or folder, got an empty path")
    assert option in cli(*args).stderr
    assert not output_root.exists()


def test_an_empty_data_path_key_is_refused(cli, output_root):
    assert_one_line_error(cli("sysid", "pendulum", "data.path=", "--tiny"), "data.path must name a .npz file")


@pytest.mark.parametrize("name, value", [("OMP_NUM_THREADS", "abc"), ("OMP_NUM_THREADS", "0"), ("MKL_NUM_THREADS", "-1"),
                                         ("OPENBLAS_NUM_THREADS", "٣"), ("OMP_NUM_THREADS", "4,,2"), ("OMP_NUM_THREADS", "")])
def test_a_thread_count_variable_no_library_can_read_is_one_line(tmp_path, name, value):
    """OMP_NUM_THREADS=abc made libgomp print an empty line and its own complaint on stderr as torch loaded, and
    the run went on with the default thread count; OpenBLAS and MKL ignored a bad value without a word."""
    r = _deqlab("converge", "restarts=1", DEQLAB_OUTPUT_ROOT=str(tmp_path / "out"), **{name: value})
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr == f"error: environment variable {name}={value!r} is not a number of threads: set it to a whole number >= 1" + \
        (" (or a list such as 4,2)" if name == "OMP_NUM_THREADS" else "") + " or unset it\n", r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["2", " 3 ", "4,2"])
def test_a_thread_count_variable_libraries_read_is_taken(value):
    r = _deqlab("config", "converge", OMP_NUM_THREADS=value, MKL_NUM_THREADS=value.replace("4,2", "4"), OPENBLAS_NUM_THREADS="")
    assert r.returncode == 0 and not r.stderr, r.stderr


@pytest.mark.parametrize("digits", ["٣", "３"])
@pytest.mark.parametrize("args, said", [
    (["mondeq", "--fb-alpha", "{d}"], "fb_alpha must be a number > 0 written with the digits 0-9, or auto; got '{d}'"),
    (["mondeq", "fb_alpha='{d}'"], "fb_alpha must be a number > 0 written with the digits 0-9, or auto; got '{d}'"),
    (["mondeq", "model.m='{d}'"], "model.m must be a number written with the digits 0-9, got '{d}'"),
    (["converge", "seed='{d}'"], "seed must be an integer written with the digits 0-9, got '{d}'"),
    (["converge", "seed={d}"], "cannot read the override 'seed={d}': write numbers with the digits 0-9"),
    (["converge", "--seed", "'{d}'"], "Invalid value for '--seed': must be an integer"),
    (["sysid", "pendulum", "seeds=[1,'{d}']"], "seeds[1] must be an integer written with the digits 0-9, got '{d}'"),
    (["sysid", "pendulum", "model_settings.ren.n_x='{d}'"], "model_settings.ren.n_x must be an integer written with the digits 0-9"),
    (["sysid", "pendulum", "train.time_limit='{d}'"], "train.time_limit must be a number written with the digits 0-9"),
])
def test_a_number_in_other_digits_than_0_to_9_is_refused_everywhere(cli, output_root, digits, args, said):
    """int() and float() read any Unicode digit: `--fb-alpha ٣` and `seed='３'` (quoted, as the advice for `seed=３`
    said to write it) ran with 3, while `seed=３` and `--seed ３` were refused. Every door now refuses them."""
    after = "washout=-1" if args[0] == "sysid" else "model.n_z=99999"   # (refused after the types, if the digits were not)
    assert_one_line_error(cli(*[a.format(d=digits) for a in args], after), said.format(d=digits))
    assert not output_root.exists()


@pytest.mark.slow   # (9 s: -m slow)
def test_a_matplotlib_backend_that_does_not_exist_does_not_fail_the_run(tmp_path):
    """MPLBACKEND=nosuch made matplotlib raise a ValueError as it loaded, inside the run: a traceback and a
    .failed run folder. deqlab only draws into files: its backend is Agg whatever the variable says."""
    r = _deqlab("converge", "restarts=1", "solver_table=[fixed_point]", DEQLAB_OUTPUT_ROOT=str(tmp_path / "out"),
                MPLBACKEND="nosuch")
    assert r.returncode == 0 and not r.stderr, r.stderr[-500:]
    (folder,) = (tmp_path / "out" / "converge").iterdir()
    assert not folder.name.endswith((".failed", ".partial")) and (folder / "convergence.png").is_file()


@pytest.mark.parametrize("name, value", [("OMP_PROC_BIND", "abc"), ("OMP_SCHEDULE", "fast"), ("GOMP_SPINCOUNT", "x")])
def test_an_openmp_variable_libgomp_cannot_read_is_one_line(tmp_path, name, value):
    """libgomp checks every OMP_* variable as torch loads it, and printed an empty line and its complaint on stderr
    for one it cannot read; the run went on with the default."""
    from deqlab.cli.environment import _libgomp

    if _libgomp() is None:
        pytest.skip("this torch ships no libgomp")
    r = _deqlab("converge", "restarts=1", DEQLAB_OUTPUT_ROOT=str(tmp_path / "out"), **{name: value})
    assert r.returncode == 2 and r.stderr == f"error: environment variable {name}={value!r} is not a value the OpenMP runtime " \
        "(libgomp) can read: set it as OpenMP documents or unset it\n", r.stderr
    assert not (tmp_path / "out").exists()


def test_openmp_variables_libgomp_reads_are_taken():
    r = _deqlab("config", "converge", OMP_PROC_BIND="spread", OMP_SCHEDULE="dynamic,4", OMP_STACKSIZE="8M", GOMP_SPINCOUNT="1000")
    assert r.returncode == 0 and not r.stderr, r.stderr


def test_version_prints_the_installed_version_and_exits_0(cli):
    """There was no --version ('no such option'); it reads the installed distribution's metadata."""
    from importlib.metadata import version

    r = cli("--version")
    assert r.exit_code == 0 and r.output == f"deqlab {version('deqlab')}\n", r.output + r.stderr
    r = cli("--version", "converge")   # eager: answered before any command runs
    assert r.exit_code == 0 and r.output.startswith("deqlab ")


def test_a_positional_path_shows_path_as_its_type_like_the_path_options(cli):
    """'sysid evaluate --help' showed run_dir <str> beside --data <path> (Typer types an argument by its
    annotation)."""
    r = cli("sysid", "evaluate", "--help")
    assert r.exit_code == 0
    row = next(line for line in r.output.splitlines() if "run_dir" in line and "run folder" in line)
    assert "<path>" in row and "<str>" not in row, row


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "PYTHONIOENCODING": "ascii"}])
def test_the_error_line_is_written_in_the_streams_encoding(env):
    """click rewrapped an ASCII stderr in UTF-8 of its own: under LC_ALL=C PYTHONIOENCODING=ascii the
    error line held raw UTF-8 bytes (é as C3 A9). It is now escaped like everything else printed."""
    r = subprocess.run([sys.executable, "-m", "deqlab", "converge", "model.n_z=é"], capture_output=True,
                       env={**os.environ, **env}, timeout=120)
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1, r.stderr
    assert r.stderr.isascii() and b"\\xe9" in r.stderr, r.stderr


def test_a_note_is_escaped_before_it_is_wrapped(tmp_path):
    """Under a latin-1 stdout a note's Greek and sub/superscript letters were escaped (\\u1d40) after rich had
    wrapped the line by its unescaped width: a note of 80 columns printed 91."""
    r = subprocess.run([sys.executable, "-m", "deqlab", "lowrank"], capture_output=True, timeout=120,
                       env={**os.environ, "COLUMNS": "80", "PYTHONIOENCODING": "latin-1", "DEQLAB_OUTPUT_ROOT": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    # (the folder's line is soft-wrapped on purpose: a path is never cut)
    lines = [line for line in r.stdout.decode("latin-1").splitlines() if not line.startswith("outputs:")]
    assert any("\\u1d40" in line for line in lines), r.stdout   # (Ŷᵀ of the seed method's note)
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
