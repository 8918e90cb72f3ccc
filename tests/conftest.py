"""Shared test setup: float64 by default where derivatives matter, no progress bars, and every
CLI run writes into a temporary output root."""

import os

import pytest

os.environ.setdefault("DEQLAB_PROGRESS", "0")


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
