"""Helpers every test file shares: run-folder and one-line-error assertions, central differences, and the
devices tests are parametrised over."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch
from torch import nn

#: The devices a device-parametrised test runs on: ``@pytest.mark.parametrize("device", devices)``. The CPU
#: always; CUDA when this machine has it, else the CUDA case is reported as skipped with the reason.
devices = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")),
]


def run_folder(root: Path, command: str, *, finished: bool = True) -> Path:
    """The one run folder under ``root/command`` (nested commands: ``"sysid/pendulum"``); with
    ``finished`` it must be a success (no ``.partial`` / ``.failed`` suffix)."""
    folders = [p for p in (Path(root) / command).iterdir() if p.is_dir() and p.name != "pinn"]
    assert len(folders) == 1, folders
    if finished:
        assert not folders[0].name.endswith((".partial", ".failed")), folders[0]
    return folders[0]


def run_folders(root: Path, command: str) -> list[Path]:
    base = Path(root) / command
    return [p for p in base.iterdir() if p.is_dir() and p.name != "pinn"] if base.exists() else []


def assert_one_line_error(result, text: str, code: int = 2) -> str:
    """``result`` (click's) exited with ``code`` and printed exactly one ``error: ...`` line containing
    ``text``, no traceback; returns the line."""
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert text in lines[0], lines[0]
    assert "Traceback" not in result.output + result.stderr
    return lines[0]


def central_differences(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, step: float) -> torch.Tensor:
    """Jacobian of ``fn`` at ``x`` (flattened input) by central differences, shape ``fn(x).shape + (x.numel(),)``:
    column ``i`` is ``(fn(x + h eᵢ) − fn(x − h eᵢ)) / 2h`` (truncation error ``O(h²)``, round-off ``O(ε/h)``)."""
    flat = x.reshape(-1)
    cols = []
    for e in torch.eye(flat.numel(), dtype=x.dtype, device=x.device):
        plus = fn((flat + step * e).reshape(x.shape))
        minus = fn((flat - step * e).reshape(x.shape))
        cols.append((plus - minus) / (2 * step))
    return torch.stack(cols, dim=-1)


class ContractingCell(nn.Module):
    """A user's map ``f(z, x) = tanh(W z + U x + b) + c ⊙ sin(z)/4``, contracting (``‖J‖ ≤ 0.5``), float64;
    not the tanh layer, so tests of the generic DEQ cannot lean on its closed form."""

    def __init__(self, n, d):
        super().__init__()
        self.W = nn.Linear(n, n, dtype=torch.float64)
        self.U = nn.Linear(d, n, bias=False, dtype=torch.float64)
        self.c = nn.Parameter(0.5 * torch.rand(n, dtype=torch.float64))
        with torch.no_grad():
            self.W.weight.mul_(0.25 / torch.linalg.matrix_norm(self.W.weight, ord=2))

    def forward(self, z, x):
        return torch.tanh(self.W(z) + self.U(x)) + self.c * torch.sin(z) / 4


def read_csv_exact(path):
    """``pd.read_csv`` with every number parsed to the nearest double (for bit-for-bit comparisons), with
    the options the F16 reader uses (:func:`deqlab.sysid.f16.exact_float_options`)."""
    import pandas as pd

    from deqlab.sysid.f16 import exact_float_options

    return pd.read_csv(path, **exact_float_options())


def tanh_equilibrium_of(params: dict, x: torch.Tensor) -> torch.Tensor:
    """The tanh DEQ's fixed point for a property test's random problem: the default solve (Anderson), else
    fixed-point iteration, else Newton; a draw where none converges is rejected (hypothesis ``reject``).

    The properties are about the derivatives *at* ``z*``, not about a solver: a draw where Anderson fails
    (n_z = 3, n_x = 1, batch 1, seed 36 of ``test_hessian.make_problem`` stalled at residual 2e-2 before
    Anderson's stall safeguard, while plain iteration converges in 83 steps) says nothing about them."""
    from hypothesis import reject

    from deqlab.errors import NotConvergedError
    from deqlab.implicit.hessian import TIGHT, solve_equilibrium
    from deqlab.implicit.layer import SolveOptions

    for solver in ("anderson", "fixed_point", "newton"):
        try:
            return solve_equilibrium(params["W_z"], params["b_z"], params["U_z"], x,
                                     opts=SolveOptions(solver=solver, atol=TIGHT.atol, max_iter=TIGHT.max_iter))
        except NotConvergedError:
            continue
    reject()


def overriding(defaults, *overrides: str) -> list[str]:
    """``defaults`` (a test file's fast ``key=value`` settings) without the keys ``overrides`` set, then the
    overrides: the command line refuses a key set twice, so a test that changes one default replaces it."""
    keys = {item.split("=", 1)[0].lstrip("+") for item in overrides if "=" in item and not item.startswith("-")}
    return [item for item in defaults if item.split("=", 1)[0].lstrip("+") not in keys] + list(overrides)
