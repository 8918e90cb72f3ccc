"""Progress: drawn on a terminal, silent in a pipe, and never changing what it wraps."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from deqlab.report.progress import activity, enabled, track

ROOT = Path(__file__).resolve().parents[1]


def test_silent_when_stdout_is_not_a_terminal(monkeypatch):
    monkeypatch.setenv("DEQLAB_PROGRESS", "1")
    assert not enabled()  # pytest captures stdout: not a terminal
    assert list(track(range(3), "x")) == [0, 1, 2]
    with activity("work", unit="calls") as act:
        f = act.counting(lambda v: 2 * v)
        assert [f(1), f(2)] == [2, 4]
    assert act.count == 2


def _run_in_terminal(code: str, env_progress: str, columns: int = 100) -> str:
    """Run ``code`` with stdout and stderr on a pseudo-terminal ``columns`` wide; return what it drew."""
    leader, follower = pty.openpty()
    env = {**os.environ, "DEQLAB_PROGRESS": env_progress, "PYTHONPATH": str(ROOT), "COLUMNS": str(columns)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


CODE = """
import time
from deqlab.report.progress import activity, enabled
print("enabled", enabled())
with activity("eigsh on the HVP", unit="HVPs") as act:
    f = act.counting(lambda: time.sleep(0.05))
    for _ in range(8):
        f()
print("done", act.count)
"""


def test_drawn_on_a_terminal_and_off_by_env():
    out = _run_in_terminal(CODE, "1")
    assert "enabled True" in out and "done 8" in out
    assert "eigsh on the HVP" in out
    quiet = _run_in_terminal(CODE, "0")
    assert "enabled False" in quiet and "eigsh on the HVP" not in quiet


LABELLED = """
from deqlab.report.progress import track
out = list(track([1, 2, 3], "sizes", label=lambda n: f"n_z={n}"))
print("items", out)
"""


def test_labelled_track_names_the_item_and_keeps_items():
    out = _run_in_terminal(LABELLED, "1")
    assert "items [1, 2, 3]" in out and "sizes: n_z=" in out
    assert list(track([1, 2], "x", label=str)) == [1, 2]  # not a terminal: the items unchanged


MARKUP_IN_NAMES = """
from deqlab.report.progress import activity, track
for _ in track([1], "run[/]a"):
    pass
with activity("file [/]x.npz", total=2, unit="[bold]calls") as act:
    act.update(description="model [red]b[/] [/]")
    act.advance()
    act.update(info="info [/]")
print("finished")
"""


def test_names_with_markup_characters_are_drawn_as_written():
    """A description quoting a user's name with '[/]' in it raised rich's MarkupError (a traceback) when
    the bar drew it; descriptions and counts are text, never markup."""
    out = _run_in_terminal(MARKUP_IN_NAMES, "1")
    assert "finished" in out and "Traceback" not in out and "MarkupError" not in out, out[-2000:]
    assert "run[/]a" in out and "file [/]x.npz" in out


@pytest.mark.slow   # (10 s; the spinner and bars of other steps stay in the default run: -m slow)
def test_hessian_survey_of_fixed_points_shows_a_spinner(tmp_path):
    """Every solver from z = 0 plus J's eigenvalues and singular values per sample took minutes at the
    README's --hvp-only size with nothing on the screen; the step now has a spinner."""
    code = ("import sys; from deqlab.cli import main; sys.argv = ['deqlab', 'hessian', '--hvp-only', '--n-z', '8', "
            f"'--batch', '2', 'probes=4', 'top_k=2', 'output_root={tmp_path}']; main()")
    out = _run_in_terminal(code, "1")
    assert "fixed points from z = 0, every solver (batch 2, n_z 8)" in out, out[-2000:]


@pytest.mark.slow   # (7 s: -m slow)
def test_loading_the_libraries_shows_a_spinner(tmp_path):
    """Importing torch, numpy and matplotlib took about 4 s on a busy machine with nothing on the screen
    before a run's first line; it has a spinner on a terminal."""
    code = ("import sys; from deqlab.cli import main; sys.argv = ['deqlab', 'converge', 'restarts=1', "
            f"'solver_table=[anderson]', 'output_root={tmp_path}']; main()")
    out = _run_in_terminal(code, "1")
    assert "loading torch, numpy and matplotlib" in out, out[-2000:]


@pytest.mark.slow   # (8 s; bars drawn on a terminal and sysid's epoch bar stay in the default run: -m slow)
def test_nethessian_check_shows_a_bar_over_its_routes(tmp_path):
    """deqlab nethessian timed every route beside its reference (about 12 s on a busy machine at the
    defaults, more on a wider net) with nothing on the screen; a bar names the route being checked."""
    code = ("import sys; from deqlab.cli import main; sys.argv = ['deqlab', 'nethessian', 'repeats=2', "
            f"'output_root={tmp_path}']; main()")
    out = _run_in_terminal(code, "1")
    assert "nethessian check: " in out and "Traceback" not in out, out[-2000:]


COUNTED_BAR = """
import time
from deqlab.report.progress import activity, track
for n in track([1, 2, 3], "sizes", label=lambda n: f"n_z={n}"):
    time.sleep(0.3)
with activity("drawing the figures", total=2) as act:
    for _ in range(2):
        time.sleep(0.3)
        act.advance()
print("finished")
"""


def test_a_bar_with_a_total_does_not_repeat_its_count():
    """A bar with a total printed its count twice ('drawing train.png ━━━ 2/2 2', 'bench mondeq: n_z=256 ━━ 2/3 2'):
    the M/N column and, beside it, the unit-less count meant for spinners."""
    import re

    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", _run_in_terminal(COUNTED_BAR, "1"))
    assert "finished" in out and re.search(r"\d/[23]", out), out[-2000:]
    assert not re.search(r"\b(\d+)/([23]) +\1(?![:\d])", out), out[-2000:]


EPOCH_BAR = """
import time
from deqlab.demos.sysid import EpochBar
with EpochBar() as bar:
    report = bar.callback("lipschitz_ren", 100)
    for epoch in range(3):
        report(epoch, {"train_loss": 0.758, "val_nrmse": 0.6510, "best": 0.6510})
        time.sleep(0.3)
print("finished")
"""


def test_sysid_epoch_bar_fits_80_columns_with_its_elapsed_time():
    """At 80 columns the training bar of 'lipschitz_ren' cut its elapsed time to '0:00…' and, at 100 epochs,
    its epoch count to '1…': the losses took the room."""
    import re

    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", _run_in_terminal(EPOCH_BAR, "1", columns=80))
    bars = [line for line in out.replace("\r", "\n").splitlines() if "train lipschitz_ren" in line and "NRMSE" in line]
    assert bars and "finished" in out, out[-2000:]
    assert all(re.search(r"\d:\d\d:\d\d", line) and "…" not in line and "━" in line for line in bars), bars
