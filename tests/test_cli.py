"""The CLI as a whole: help, speed of start-up, module entry point."""

import subprocess
import sys

import pytest


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
