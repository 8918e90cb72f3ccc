"""Settings of ``deqlab sysid f16 --data-dir DIR``: the F-16 ground vibration test benchmark (nonlinear system
identification benchmarks site, ``F16GVT_Files.zip``) identified with the models of ``sysid pendulum``.
``sysid_f16_preset=tiny`` (``--tiny``) selects a seconds-long configuration (``configs/sysid_f16_preset/``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from deqlab.errors import InputError
from deqlab.settings import checks
from deqlab.settings.resources import Estimate
from deqlab.settings.sysid import (LipschitzSettings, ModelSpec, TrainSettings, check_models, check_run,
                                   unread_model_settings, unread_seeds)

EXCITATIONS = ("sine_sweep", "multisine")   # F16Data_SineSw_* | F16Data_FullMSine_*
FORMATS = ("auto", "csv", "mat")
SOURCE = "F16GVT_Files.zip from the nonlinear system identification benchmarks site (nonlinearbenchmark.org, F-16 Ground Vibration Test)"


@dataclass
class F16Data:
    """Where and how ``deqlab sysid f16`` reads the F-16 ground-vibration benchmark (Nonlinear Benchmark
    data set) and how its records are cut into training, validation and test sequences."""

    data_dir: str = "???"        # the folder holding F16GVT_Files/ (or F16GVT_Files/ itself, its BenchmarkData/, or the zip)
    excitation: str = "sine_sweep"  # sine_sweep | multisine
    format: str = "auto"         # auto (a record's CSV where there is one, else its .mat) | csv | mat
    segment: int = 1024          # training records are cut into sequences of this many samples (REN paper's code)
    val_fraction: float = 0.2    # the last fraction of each training record's sequences: validation (early stopping)
    test_steps: Optional[int] = None  # None: whole _Validation records (cut to the shortest); N: sequences of N samples

    def __post_init__(self) -> None:  # data_dir is checked by Settings: the schema builds a default F16Data
        checks.choice("f16.excitation", self.excitation, EXCITATIONS)
        checks.choice("f16.format", self.format, FORMATS)
        checks.count("f16.segment", self.segment, minimum=2, maximum=10_000_000)
        checks.number("f16.val_fraction", self.val_fraction, minimum=0.0, maximum=1.0, exclusive=True)
        if self.val_fraction >= 1.0:
            raise InputError(f"f16.val_fraction must lie in (0, 1), got {self.val_fraction}")
        if self.test_steps is not None:
            checks.count("f16.test_steps", self.test_steps, minimum=2, maximum=10_000_000)


def default_models() -> Dict[str, ModelSpec]:
    ren = dict(n_x=32, n_v=64, activation="tanh", init_rho=0.95, init_scale=0.1)
    return {
        "ren": ModelSpec(kind="ren", clip=0.1, **ren),
        "lipschitz_ren": ModelSpec(kind="lipschitz_ren", gamma=10.0, **ren),
        "lstm": ModelSpec(kind="lstm", n_h=64),
        "rnn": ModelSpec(kind="rnn", n_h=128),
        "linear": ModelSpec(kind="linear", n_x=16),
    }


@dataclass
class Settings:
    """``deqlab sysid f16``: every model trained with every seed on the identification records of one
    excitation, tested on its ``_Validation`` records (the REN paper's split)."""

    device: str = "cpu"          # cpu | cuda | cuda:N | auto (CUDA when there is one)
    seed: Optional[int] = None   # one seed instead of the list `seeds` (--seed N)
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    dtype: str = "float64"
    threads: int = 1
    f16: F16Data = field(default_factory=F16Data)
    washout: int = 100           # samples ignored in losses and metrics at the start of every sequence
    models: List[str] = field(default_factory=lambda: ["ren", "lipschitz_ren", "lstm", "rnn", "linear"])
    model_settings: Dict[str, ModelSpec] = field(default_factory=default_models)
    train: TrainSettings = field(default_factory=lambda: TrainSettings(
        epochs=70, batch_size=32, seq_len=1024, lr=1e-3, lr_decay=0.97, clip=1.0, patience=15))
    lipschitz: LipschitzSettings = field(default_factory=lambda: LipschitzSettings(steps=[100, 400], settle=5000))
    plot_trajectories: int = 3

    def __post_init__(self) -> None:
        if self.f16.data_dir in ("???", "", None):
            raise InputError(f"f16.data_dir is required (f16.data_dir=DIR; --data-dir DIR on 'deqlab sysid f16'): the folder with the benchmark's files, {SOURCE}")
        check_run(self)
        if self.f16.segment <= self.washout + 1:
            raise InputError(f"f16.segment={self.f16.segment} is too short for washout={self.washout}")
        if self.f16.test_steps is not None and self.f16.test_steps <= self.washout + 1:
            raise InputError(f"f16.test_steps={self.f16.test_steps} is too short for washout={self.washout}")
        check_models(self.models, self.model_settings)

    def unread(self) -> dict[str, str]:
        """The keys this run does not read, and why (:func:`deqlab.cli.compose.refuse_unread`)."""
        return unread_model_settings(self.models, self.model_settings) | unread_seeds(self.seed)

    def memory_estimates(self) -> list[Estimate]:
        # (the data's size is known only once the records are read: the benchmark's is ~15 MB as float64)
        return [self.model_settings[name].memory_estimate(name) for name in self.models]
