"""Settings of ``deqlab sysid pendulum`` and ``deqlab sysid evaluate``."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from deqlab.errors import InputError
from deqlab.settings import checks
from deqlab.settings.resources import Estimate

KINDS = ("ren", "lipschitz_ren", "lstm", "rnn", "linear")
SIGNALS = ("piecewise", "multisine", "mixed")
SIZE_KEYS = {"ren": ("n_x", "n_v"), "lipschitz_ren": ("n_x", "n_v"), "lstm": ("n_h",), "rnn": ("n_h",), "linear": ("n_x",)}
#: keys of ``train`` a model may override in its ``model_settings`` entry
TRAIN_KEYS = ("lr", "lr_decay", "epochs", "batch_size", "patience", "clip")
MAX_STATE = 10_000


@dataclass
class ModelSpec:
    """One entry of ``model_settings``: a model kind, its sizes, and optional training overrides."""

    kind: str = "ren"
    n_x: Optional[int] = None        # state size (ren, lipschitz_ren, linear)
    n_v: Optional[int] = None        # equilibrium width (ren, lipschitz_ren)
    n_h: Optional[int] = None        # hidden size (lstm, rnn)
    gamma: Optional[float] = None    # Lipschitz bound (lipschitz_ren)
    activation: Optional[str] = None  # tanh | relu (RENs)
    init_rho: Optional[float] = None  # RENs start near A = rho I
    init_scale: Optional[float] = None
    lr: Optional[float] = None
    lr_decay: Optional[float] = None
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    patience: Optional[int] = None
    clip: Optional[float] = None

    def check(self, name: str) -> None:
        key = f"model_settings.{name}"
        checks.choice(f"{key}.kind", self.kind, KINDS)
        for size in SIZE_KEYS[self.kind]:
            if getattr(self, size) is None:
                raise InputError(f"{key}.{size} is required for a {self.kind} model")
            checks.count(f"{key}.{size}", getattr(self, size), maximum=MAX_STATE)
        unused = [k for k in ("n_x", "n_v", "n_h", "gamma", "activation", "init_rho", "init_scale")
                  if getattr(self, k) is not None and k not in self.constructor_keys()]
        if unused:
            raise InputError(f"{key}: a {self.kind} model takes no {', '.join(unused)}")
        if self.kind == "lipschitz_ren":
            if self.gamma is None:
                raise InputError(f"{key}.gamma is required for a lipschitz_ren model")
            checks.number(f"{key}.gamma", self.gamma, minimum=0.0, maximum=1e6, exclusive=True)
        if self.activation is not None:
            checks.choice(f"{key}.activation", self.activation, ("tanh", "relu"))
        if self.init_rho is not None:
            checks.number(f"{key}.init_rho", self.init_rho, minimum=0.0, maximum=1.0)
            if self.init_rho >= 1.0:
                raise InputError(f"{key}.init_rho must lie in [0, 1), got {self.init_rho}")
        if self.init_scale is not None:
            checks.number(f"{key}.init_scale", self.init_scale, minimum=0.0, maximum=1e3)
        for k in ("epochs", "batch_size", "patience"):
            if getattr(self, k) is not None:
                checks.count(f"{key}.{k}", getattr(self, k), maximum=1_000_000)
        for k in ("lr", "lr_decay", "clip"):
            if getattr(self, k) is not None:
                checks.number(f"{key}.{k}", getattr(self, k), minimum=0.0, maximum=1e3, exclusive=True)

    def memory_estimate(self, name: str) -> Estimate:
        """Peak memory of training and analysing this model, from its sizes: its largest matrix (a REN's
        ``(2n_x + n_v)²`` ``X`` and ``H``, an LSTM's ``4n_h²`` weights and ``(2n_h)²`` linearisation, an RNN's
        ``n_h²``, a linear model's ``n_x²``) held in about 16 float64 copies: parameters, gradients, Adam's two
        moments, the explicit form's blocks, the linearisation's Jacobians, the H∞ sweep's complex solves
        (measured: about 13 at ``n_x = n_v = 600``). ``MAX_STATE`` alone let ``n_x = n_v = 10000`` through,
        a REN of 7.2 GB per copy."""
        side = {"ren": 2 * (self.n_x or 0) + (self.n_v or 0), "lipschitz_ren": 2 * (self.n_x or 0) + (self.n_v or 0),
                "lstm": 2 * (self.n_h or 0), "rnn": self.n_h or 0, "linear": self.n_x or 0}.get(self.kind, 0)
        keys = " / ".join(f"model_settings.{name}.{k}" for k in SIZE_KEYS.get(self.kind, ()))
        return Estimate(16 * 8.0 * side * side, keys, f"the {name} model ({self.kind}) and its analysis")

    def constructor_keys(self) -> tuple[str, ...]:
        sizes = SIZE_KEYS[self.kind]
        extra = {"ren": ("activation", "init_rho", "init_scale"),
                 "lipschitz_ren": ("gamma", "activation", "init_rho", "init_scale")}.get(self.kind, ())
        return (*sizes, *extra)

    def kwargs(self) -> dict:
        """Constructor arguments of the model (training overrides and unset options left out)."""
        return {k: getattr(self, k) for k in self.constructor_keys() if getattr(self, k) is not None}

    def train_overrides(self) -> dict:
        return {k: getattr(self, k) for k in TRAIN_KEYS if getattr(self, k) is not None}


def check_models(models: List[str], model_settings: Dict[str, ModelSpec]) -> None:
    """``models`` names at least one configured model, and every configured model is well formed."""
    if not models:
        raise InputError("models is empty; name at least one of model_settings")
    for i, name in enumerate(models):
        if not isinstance(name, str) or name not in model_settings:
            raise InputError(f"model {name!r} is not in model_settings; configured: {', '.join(model_settings)}")
        if name in models[:i]:
            raise InputError(f"models names {name!r} twice")   # it would be trained twice, its files overwritten
    for name, spec in model_settings.items():
        spec.check(name)


def unread_model_settings(models: List[str], model_settings: Dict[str, ModelSpec]) -> dict[str, str]:
    """``{key: why}`` for the settings of the models ``models`` does not name: they are not trained (a run's
    ``unread()``, :func:`deqlab.cli.compose.refuse_unread`)."""
    return {f"model_settings.{name}": f"model {name} is not trained, as models = [{','.join(models)}] does not "
                                      "name it (add it to models)"
            for name in model_settings if name not in models}


def unread_seeds(seed: Optional[int]) -> dict[str, str]:
    """``{"seeds": why}`` while ``seed`` is set: one seed runs instead of the list (a run's ``unread()``)."""
    return {} if seed is None else {
        "seeds": "seed and seeds both given: seed runs one seed instead of the list seeds; give one of them"}


#: The keys that shape the pendulum simulator's data (and the pendulum itself): a data file (``data.path``)
#: is used as it is, without them; the option that sets one, where there is one.
SIMULATOR_KEYS = {"data.trajectories": "", "data.steps": "", "data.hold": "", "data.noise_std": " (--noise)",
                  "data.angle_spread": "", "data.rate_spread": "", "data.signal": "", "data.amplitude": "",
                  "data.min_dwell": "", "data.max_dwell": "", "data.n_sines": "", "data.f_max": "", "pendulum": ""}


def unread_simulator_settings(data_path: Optional[str]) -> dict[str, str]:
    """``{key: why}`` for the simulator's settings (:data:`SIMULATOR_KEYS`) while a data file is given."""
    return {} if data_path is None else {
        key: f"it{option} sets the pendulum simulator's data, but a data file is given (data.path, --data): the "
             "file is used as it is; drop one of them" for key, option in SIMULATOR_KEYS.items()}


def default_models() -> Dict[str, ModelSpec]:
    ren = dict(n_x=8, n_v=16, activation="tanh", init_rho=0.95, init_scale=0.1)
    return {
        # the contracting REN clips its gradient norm at 0.1, not 1: its training loss jumped 2-3x between epochs
        # with 1 and it stopped at 1.25x the noise floor (experiments/sysid.md, section 3)
        "ren": ModelSpec(kind="ren", clip=0.1, **ren),
        "lipschitz_ren": ModelSpec(kind="lipschitz_ren", gamma=5.0, **ren),
        # extra Lipschitz RENs for a robustness-vs-accuracy sweep (not trained unless named in `models`)
        "lipschitz_ren_g1": ModelSpec(kind="lipschitz_ren", gamma=1.0, **ren),
        "lipschitz_ren_g2": ModelSpec(kind="lipschitz_ren", gamma=2.0, **ren),
        "lstm": ModelSpec(kind="lstm", n_h=16, lr=1e-2, lr_decay=0.97, epochs=80),
        "rnn": ModelSpec(kind="rnn", n_h=32, lr=1e-2, lr_decay=0.97, epochs=80),
        "linear": ModelSpec(kind="linear", n_x=4, lr=1e-2),
    }


@dataclass
class PendulumSettings:
    """``m l² φ̈ = m g l sin φ − μ φ̇ + u``, explicit Euler (lecture defaults)."""

    dt: float = 0.01   # Euler step δ [s]
    m: float = 1.0     # [kg]
    l: float = 1.0     # [m]  # noqa: E741  (the physics name)
    mu: float = 0.9    # damping [N·m·s/rad]
    g: float = 9.81    # [m/s²]

    def __post_init__(self) -> None:
        for key in ("dt", "m", "l", "g"):
            checks.number(f"pendulum.{key}", getattr(self, key), minimum=0.0, maximum=1e6, exclusive=True)
        checks.number("pendulum.mu", self.mu, minimum=0.0, maximum=1e6)
        # The simulator divides by the inertia m l² and by l: each must be a normal float64 (m = l = 1e-300
        # underflowed m l² to 0 and divided by it).
        inertia = float(self.m) * float(self.l) ** 2
        if not (inertia >= sys.float_info.min and math.isfinite(float(self.g) / float(self.l))):
            raise InputError(f"pendulum.m = {self.m:g}, pendulum.l = {self.l:g}: the simulator divides by m·l² = "
                             f"{inertia:.3g} and by l (g/l = {float(self.g) / float(self.l):.3g}), outside float64's "
                             "normal range; choose a physical pendulum")


@dataclass
class DataSettings:
    """The pendulum data set of ``deqlab sysid`` (or a user's ``.npz`` via ``path``): trajectories,
    sampling, noise and the input signals that excite them; units in the field comments."""

    path: Optional[str] = None  # a user's .npz with u (trajectories, steps, inputs), y (trajectories, steps, outputs)
    trajectories: int = 60
    steps: int = 400            # samples per trajectory
    hold: int = 5               # Euler steps per sample (zero-order hold): sample time = hold·dt
    noise_std: float = 0.05     # measurement noise σ on the angle [rad]
    angle_spread: float = 0.1   # φ₀ = π + U(−a, a) [rad] (near the hanging, stable position)
    rate_spread: float = 0.1    # φ̇₀ = U(−b, b) [rad/s]
    signal: str = "mixed"       # piecewise | multisine | mixed (each trajectory draws one)
    amplitude: float = 4.0      # torque peak [N·m] (< m g l keeps the pendulum from going over the top)
    min_dwell: int = 5          # piecewise levels held U{min_dwell..max_dwell} samples
    max_dwell: int = 40
    n_sines: int = 5            # multisine: sines with frequencies U(0, f_max) Hz
    f_max: float = 1.0
    fractions: List[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])  # train / validation / test, by trajectory
    seed: int = 0

    def __post_init__(self) -> None:
        if self.path is not None and not self.path:   # (read as '.', the working directory: "'.' is a folder")
            raise InputError("data.path must name a .npz file, or be null for the simulator; got an empty path")
        checks.number("data.noise_std", self.noise_std, minimum=0.0, maximum=1e6)
        fr = checks.numbers("data.fractions", self.fractions, minimum=0.0, maximum=1e6)
        # (validation and test get at least one trajectory each: a 0 there was silently made one, [1, 0, 0] split 4/1/1)
        if len(fr) != 3 or min(fr) <= 0:
            raise InputError(f"data.fractions must be three numbers > 0 (train, validation, test; each gets at least "
                             f"one trajectory), got {list(self.fractions)}")
        checks.seed("data.seed", self.seed)
        checks.count("data.trajectories", self.trajectories, minimum=3, maximum=1_000_000)
        checks.count("data.steps", self.steps, minimum=2, maximum=10_000_000)
        checks.count("data.hold", self.hold, maximum=100_000)
        checks.number("data.angle_spread", self.angle_spread, minimum=0.0, maximum=1e3)
        checks.number("data.rate_spread", self.rate_spread, minimum=0.0, maximum=1e3)
        checks.choice("data.signal", self.signal, SIGNALS)
        checks.number("data.amplitude", self.amplitude, minimum=0.0, maximum=1e6)
        checks.count("data.min_dwell", self.min_dwell, maximum=1_000_000)
        checks.count("data.max_dwell", self.max_dwell, maximum=1_000_000)
        if self.max_dwell < self.min_dwell:
            raise InputError("data.max_dwell must be >= data.min_dwell")
        checks.count("data.n_sines", self.n_sines, maximum=10_000)
        checks.number("data.f_max", self.f_max, minimum=0.0, maximum=1e6, exclusive=True)


@dataclass
class TrainSettings:
    epochs: int = 100
    batch_size: int = 12
    seq_len: int = 100       # truncated BPTT chunk length
    lr: float = 5e-3
    lr_decay: float = 0.96   # learning rate × lr_decay after every epoch
    clip: float = 1.0        # gradient-norm clipping
    patience: int = 25       # early stopping on validation NRMSE (it is noisy: 12 trajectories)
    time_limit: Optional[float] = None  # seconds per model (None: none)

    def __post_init__(self) -> None:
        checks.count("train.epochs", self.epochs, maximum=1_000_000)
        checks.count("train.batch_size", self.batch_size, maximum=1_000_000)
        checks.count("train.seq_len", self.seq_len, maximum=10_000_000)
        checks.number("train.lr", self.lr, minimum=0.0, maximum=1e3, exclusive=True)
        checks.number("train.lr_decay", self.lr_decay, minimum=0.0, maximum=1e3, exclusive=True)
        checks.number("train.clip", self.clip, minimum=0.0, maximum=1e6, exclusive=True)
        checks.count("train.patience", self.patience, maximum=1_000_000)
        if self.time_limit is not None:
            checks.number("train.time_limit", self.time_limit, minimum=0.0, exclusive=True)


@dataclass
class LipschitzSettings:
    """Lower bound of the incremental gain ‖Δy‖/‖Δu‖ (deqlab/sysid/gain.py) of the saved (first-seed) models:
    the larger of a multi-start Adam ascent over input pairs and the H∞ norm of the linearisation at
    constant-input equilibria."""

    steps: List[int] = field(default_factory=lambda: [60, 200])  # horizons of the ascent
    pairs: int = 8       # starts per horizon (half data windows, half random; δ of 1e-3, 0.1, 1 input std)
    iters: int = 30      # Adam steps per horizon
    lr: float = 0.05     # Adam step in units of the input's std
    levels: int = 5      # constant inputs (quantiles of the test input) whose equilibria are linearised
    settle: int = 3000   # steps allowed to reach each equilibrium

    def __post_init__(self) -> None:
        checks.counts("lipschitz.steps", self.steps, maximum=1_000_000, distinct=True)
        checks.count("lipschitz.pairs", self.pairs, maximum=100_000)
        checks.count("lipschitz.iters", self.iters, minimum=0, maximum=1_000_000)
        checks.number("lipschitz.lr", self.lr, minimum=0.0, maximum=1e3, exclusive=True)
        checks.count("lipschitz.levels", self.levels, minimum=0, maximum=10_000)
        checks.count("lipschitz.settle", self.settle, maximum=10_000_000)


def check_seeds(seed: Optional[int], seeds: List[int]) -> None:
    """``seed`` (one run) or the list ``seeds`` (several; none repeated)."""
    if seed is not None:
        checks.seed("seed", seed)
        return
    checks.counts("seeds", seeds, minimum=0, maximum=checks.INT64_MAX, distinct=True)


def check_run(settings) -> None:
    """The keys every system-identification run has (``sysid pendulum`` and ``sysid f16``): device,
    seeds, dtype, threads, washout, plot_trajectories."""
    checks.device("device", settings.device)
    check_seeds(settings.seed, settings.seeds)
    checks.choice("dtype", settings.dtype, ("float64",))
    checks.threads("threads", settings.threads)
    checks.count("washout", settings.washout, minimum=0, maximum=10_000_000)
    checks.count("plot_trajectories", settings.plot_trajectories, minimum=0, maximum=1000)


@dataclass
class Settings:
    """``deqlab sysid pendulum``. ``sysid_preset=tiny`` (``--tiny``) selects a seconds-long configuration.
    Every model is trained with every seed of ``seeds`` (weights and batch order); the table reports the test
    NRMSE over them and the claims are judged on the mean (single runs move between machines)."""

    device: str = "cpu"   # cpu | cuda | cuda:N | auto (CUDA when there is one)
    seed: Optional[int] = None  # one seed instead of the list `seeds` (--seed N)
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    dtype: str = "float64"
    threads: int = 1  # torch threads: the models are small, and on a busy machine thread hand-offs cost more than they save
    pendulum: PendulumSettings = field(default_factory=PendulumSettings)
    data: DataSettings = field(default_factory=DataSettings)
    washout: int = 100  # samples ignored in losses and metrics (models start from the zero state)
    models: List[str] = field(default_factory=lambda: ["ren", "lipschitz_ren", "lstm", "rnn", "linear"])
    model_settings: Dict[str, ModelSpec] = field(default_factory=default_models)
    train: TrainSettings = field(default_factory=TrainSettings)
    lipschitz: LipschitzSettings = field(default_factory=LipschitzSettings)
    plot_trajectories: int = 3

    def __post_init__(self) -> None:
        check_run(self)
        if self.data.path is None and self.data.steps <= self.washout + 1:
            raise InputError(f"data.steps={self.data.steps} is too few for washout={self.washout}")
        check_models(self.models, self.model_settings)

    def unread(self) -> dict[str, str]:
        """The keys this run does not read, and why (:func:`deqlab.cli.compose.refuse_unread`)."""
        return (unread_model_settings(self.models, self.model_settings) | unread_seeds(self.seed)
                | unread_simulator_settings(self.data.path))

    def memory_estimates(self) -> list[Estimate]:
        n = self.data.trajectories * self.data.steps if self.data.path is None else 0
        return [Estimate(8 * 8.0 * n, "data.trajectories / data.steps", "the simulated data set"),
                *(self.model_settings[name].memory_estimate(name) for name in self.models)]


@dataclass
class EvaluateSettings:
    """``deqlab sysid evaluate RUN_DIR --data FILE.npz``: saved models of a sysid run on a user's data."""

    device: str = "cpu"   # cpu | cuda | cuda:N | auto (CUDA when there is one)
    run_dir: str = "???"     # a finished `deqlab sysid pendulum` run folder (with models/*.pt)
    data_file: str = "???"   # .npz with u (trajectories, steps, inputs) and y (trajectories, steps, outputs)
    seed: int = 0
    dtype: str = "float64"
    threads: int = 1
    washout: Optional[int] = None  # None: the run's washout
    lipschitz: LipschitzSettings = field(default_factory=LipschitzSettings)
    plot_trajectories: int = 3

    def __post_init__(self) -> None:
        checks.device("device", self.device)
        for key in ("run_dir", "data_file"):
            if getattr(self, key) in ("???", "", None):
                raise InputError(f"{key} is required")
        checks.seed("seed", self.seed)
        checks.choice("dtype", self.dtype, ("float64",))
        checks.threads("threads", self.threads)
        if self.washout is not None:
            checks.count("washout", self.washout, minimum=0, maximum=10_000_000)
        checks.count("plot_trajectories", self.plot_trajectories, minimum=0, maximum=1000)
