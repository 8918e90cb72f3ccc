"""Settings of ``deqlab mondeq``: monotone operator DEQs with splitting solvers (seed 003, second part)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import List

from deqlab.errors import InputError
from deqlab.settings import checks
from deqlab.settings.models import MonDEQSettings
from deqlab.settings.resources import Estimate, dense_bytes
from deqlab.settings.solver import SOLVER_NAMES

SPLITTING_NAMES = ("forward_backward", "peaceman_rachford", "douglas_rachford")
FORWARD_METHODS = (*SPLITTING_NAMES, *SOLVER_NAMES)
BACKWARDS = ("dense", "peaceman_rachford")


@dataclass
class EigenSettings:
    """1. The slides' eigenvalue tables: their tanh network, side by side with a monDEQ."""

    restarts: int = 10
    n_z: int = 10
    n_x: int = 3
    input_seed: int = 2023   # NumPy seed of the input, as in the slides' code
    input_std: float = 0.1
    layers: int = 40         # finite depth of the slides' ||z^L - z*|| column (float32, as in the slides)

    def __post_init__(self) -> None:
        checks.count("eigen.restarts", self.restarts, maximum=10_000)
        checks.count("eigen.n_z", self.n_z, maximum=10_000)
        checks.count("eigen.n_x", self.n_x, maximum=10_000)
        checks.seed("eigen.input_seed", self.input_seed, numpy=True)
        checks.number("eigen.input_std", self.input_std, minimum=0.0, maximum=1e6)
        checks.count("eigen.layers", self.layers, minimum=0, maximum=100_000)


@dataclass
class AlphaSweepSettings:
    """2. Iterations to tolerance against alpha, on one problem (``model.*`` sizes)."""

    n_x: int = 8
    batch: int = 32
    rtol: float = 1e-6
    max_iter: int = 2000
    alphas: List[float] = field(default_factory=lambda: [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0])

    def __post_init__(self) -> None:
        checks.count("sweep.n_x", self.n_x, maximum=100_000)
        checks.count("sweep.batch", self.batch, maximum=100_000)
        checks.relative_tolerance("sweep.rtol", self.rtol)
        checks.count("sweep.max_iter", self.max_iter, maximum=10_000_000)
        checks.numbers("sweep.alphas", self.alphas, minimum=0.0, maximum=1e6, exclusive=True, distinct=True)


@dataclass
class TrainSettings:
    """3. A small training run on synthetic two-spirals data."""

    epochs: int = 15
    samples: int = 512
    batch: int = 64
    lr: float = 0.01
    noise: float = 0.1
    data_seed: int = 0
    rtol: float = 1e-4
    max_iter: int = 200
    unconstrained_solver: str = "fixed_point"  # forward solver of the unconstrained DEQ (any registered solver)
    backward: str = "dense"  # monDEQ's implicit backward: dense (batched n x n solve) | peaceman_rachford (splitting)

    def __post_init__(self) -> None:
        checks.count("train.epochs", self.epochs, minimum=0, maximum=100_000)
        checks.count("train.samples", self.samples, maximum=10_000_000)
        checks.count("train.batch", self.batch, maximum=10_000_000)
        checks.number("train.lr", self.lr, minimum=0.0, maximum=10.0, exclusive=True)
        checks.number("train.noise", self.noise, minimum=0.0, maximum=1e3)
        checks.seed("train.data_seed", self.data_seed)
        checks.relative_tolerance("train.rtol", self.rtol)
        checks.count("train.max_iter", self.max_iter, maximum=10_000_000)
        checks.choice("train.unconstrained_solver", self.unconstrained_solver, FORWARD_METHODS)
        checks.choice("train.backward", self.backward, BACKWARDS)


@dataclass
class Settings:
    """``deqlab mondeq``: the monotone DEQ, the splitting steps and the shared stopping rule of its eigen,
    solver, alpha-sweep and training tables; ``deqlab config mondeq`` prints them composed."""

    device: str = "cpu"   # cpu | cuda | cuda:N | auto (CUDA when there is one)
    seed: int = 0
    dtype: str = "float64"
    threads: int = 1       # torch threads (the matrices are small; more threads only add overhead)
    model: MonDEQSettings = field(default_factory=MonDEQSettings)
    alpha: float = 1.0     # Peaceman-Rachford / Douglas-Rachford step (eigen table, solver table, training)
    fb_alpha: str = "auto"  # forward-backward step: a number > 0, or auto = 0.9 x its bound 2m/||I-W||^2 (a float after checking)
    atol: float = 1e-9     # shared stopping rule ||f(z) - z|| <= atol + rtol ||f(z)|| (eigen and solver tables)
    rtol: float = 0.0
    max_iter: int = 5000
    eigen: EigenSettings = field(default_factory=EigenSettings)
    sweep: AlphaSweepSettings = field(default_factory=AlphaSweepSettings)
    train: TrainSettings = field(default_factory=TrainSettings)

    def __post_init__(self) -> None:
        checks.device("device", self.device)
        checks.seed("seed", self.seed)
        checks.choice("dtype", self.dtype, ("float64",))
        checks.threads("threads", self.threads)
        checks.number("alpha", self.alpha, minimum=0.0, maximum=1e6, exclusive=True)
        if self.fb_alpha != "auto":
            if isinstance(self.fb_alpha, str):
                if not self.fb_alpha.isascii():   # (float() reads any Unicode digit: '٣' and '３' ran with 3)
                    raise InputError(f"fb_alpha must be a number > 0 written with the digits 0-9, or auto; got {self.fb_alpha!r}")
                try:
                    self.fb_alpha = float(self.fb_alpha)
                except ValueError:
                    raise InputError(f"fb_alpha must be a number > 0 or auto, got {self.fb_alpha!r}") from None
            if not 0 < self.fb_alpha <= 1e6:   # NaN fails this too
                raise InputError(f"fb_alpha must be a number > 0 or auto, got {self.fb_alpha:g}")
            checks.number("fb_alpha", self.fb_alpha, minimum=0.0, exclusive=True)   # no subnormal step
        checks.tolerances("", self.atol, self.rtol)
        checks.count("max_iter", self.max_iter, maximum=10_000_000)

    def unread(self) -> dict[str, str]:
        """The keys this run does not read, and why (:func:`deqlab.cli.compose.refuse_unread`)."""
        if self.train.epochs:
            return {}
        why = "train.epochs = 0 trains nothing (give a number of epochs, or drop the key)"
        return {f"train.{f.name}": why for f in fields(self.train) if f.name != "epochs"}

    def memory_estimates(self) -> list[Estimate]:
        n = self.model.n_z
        return [Estimate(8 * dense_bytes(n, n), "model.n_z", f"{n}x{n} operators and their factorisations"),
                Estimate(4 * dense_bytes(max(self.train.batch, self.sweep.batch), n * n) if self.train.backward == "dense"
                         else 0, "model.n_z / train.batch", "the dense backward's batched n x n solves")]
