"""Shared test setup: float64 by default where derivatives matter, no progress bars, and every
CLI run writes into a temporary output root."""

import os

import pytest

os.environ.setdefault("DEQLAB_PROGRESS", "0")


def _start_children_with_the_default_signal_actions() -> None:
    """The fault tests send SIGINT, SIGHUP, ... to deqlab processes and expect them handled. A child
    inherits an ignored signal, and deqlab rightly keeps it ignored (``nohup`` ignores SIGHUP, a
    non-interactive shell's ``&`` SIGINT and SIGQUIT): pytest started that way failed six of those tests.
    So the test process puts back the default action of each signal deqlab handles (Python's own
    handler for SIGINT, so Ctrl-C still stops pytest); a test that wants one ignored sets it in its child."""
    import signal

    from deqlab.cli.termination import HANDLED

    for sig in HANDLED:
        # (Python itself ignores SIGXFSZ, so that a write past `ulimit -f` fails instead of killing the
        # process; subprocess puts back its default action in every child: restore_signals)
        if signal.getsignal(sig) is signal.SIG_IGN and sig != getattr(signal, "SIGXFSZ", None):
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)


_start_children_with_the_default_signal_actions()


@pytest.fixture()
def output_root(tmp_path, monkeypatch):
    """A fresh output root for CLI runs (``DEQLAB_OUTPUT_ROOT``)."""
    root = tmp_path / "outputs"
    monkeypatch.setenv("DEQLAB_OUTPUT_ROOT", str(root))
    return root


@pytest.fixture()
def cli():
    """Invoke the deqlab Typer app in-process: ``cli("converge", "seed=1")`` → click Result."""
    from typer.testing import CliRunner

    from deqlab.cli.app import app

    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, list(args), env={"COLUMNS": "200"})

    return invoke
