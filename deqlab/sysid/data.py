"""Input/output data sets for system identification.

A data set is ``u`` of shape (trajectories, steps, n_u) and ``y`` of shape (trajectories, steps, n_y),
float64, finite; it is split into train/validation/test *by trajectory*. :func:`pendulum_dataset`
simulates the explicit-Euler pendulum (:mod:`deqlab.models.pendulum`); :func:`load_dataset` reads a
user's ``.npz`` with the keys ``u`` and ``y`` and checks it.

Sampling: each data sample holds the torque for ``hold`` Euler steps of length ``δ`` (zero-order
hold), so the sample time is ``hold·δ``; ``y_k`` is the angle φ [rad] at the start of sample ``k``
plus Gaussian measurement noise ``N(0, σ²)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deqlab.errors import ConfigError
from deqlab.npz_files import read_npz
from deqlab.models.pendulum import PendulumParams, simulate_direct

SIGNALS = ("piecewise", "multisine", "mixed")


@dataclass
class Dataset:
    """``u`` (T, steps, n_u), ``y`` (T, steps, n_y) measured; ``y_clean`` the noise-free output if known;
    ``split`` maps ``train``/``val``/``test`` to trajectory indices."""

    u: np.ndarray
    y: np.ndarray
    split: dict[str, np.ndarray]
    y_clean: np.ndarray | None = None
    sample_time: float | None = None
    meta: dict = field(default_factory=dict)

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        idx = self.split[name]
        return self.u[idx], self.y[idx]

    def arrays(self) -> dict[str, np.ndarray]:
        """What is saved as ``dataset.npz``."""
        out = {"u": self.u, "y": self.y}
        if self.y_clean is not None:
            out["y_clean"] = self.y_clean
        if "x0" in self.meta:
            out["x0"] = self.meta["x0"]
        for name, idx in self.split.items():
            out[f"{name}_index"] = idx
        return out


def torque_signals(rng: np.random.Generator, n: int, steps: int, *, signal: str, amplitude: float,
                   min_dwell: int, max_dwell: int, n_sines: int, f_max: float, sample_time: float) -> np.ndarray:
    """Torques (n, steps, 1) [N·m] at the data sample rate.

    - ``piecewise``: levels ``U(−amplitude, amplitude)`` held for ``U{min_dwell … max_dwell}`` samples;
    - ``multisine``: ``n_sines`` sines, frequencies ``U(0, f_max)`` Hz, random phases, scaled to peak ``amplitude``;
    - ``mixed``: each trajectory draws one of the two.
    """
    if signal not in SIGNALS:
        raise ConfigError(f"unknown data.signal {signal!r}; choose one of: {', '.join(SIGNALS)}")
    out = np.empty((n, steps, 1))
    t = np.arange(steps) * sample_time
    for i in range(n):
        kind = signal if signal != "mixed" else ("piecewise" if rng.random() < 0.5 else "multisine")
        if kind == "piecewise":
            k = 0
            while k < steps:
                dwell = int(rng.integers(min_dwell, max_dwell + 1))
                out[i, k:k + dwell, 0] = rng.uniform(-amplitude, amplitude)
                k += dwell
        else:
            f = rng.uniform(0.0, f_max, size=n_sines)
            phase = rng.uniform(0, 2 * np.pi, size=n_sines)
            s = np.sin(2 * np.pi * f[:, None] * t[None, :] + phase[:, None]).sum(0)
            out[i, :, 0] = amplitude * s / max(np.abs(s).max(), 1e-12)
    return out


def split_by_trajectory(n: int, fractions: tuple[float, float, float], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random split of ``n`` trajectories into train/val/test, each with at least one trajectory."""
    if n < 3:
        raise ConfigError(f"need at least 3 trajectories to split into train/validation/test, got {n}")
    order = rng.permutation(n)
    total = sum(fractions)
    n_val = max(1, int(round(n * fractions[1] / total)))
    n_test = max(1, int(round(n * fractions[2] / total)))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ConfigError(f"{n} trajectories leave none for training with fractions {fractions}")
    return {"train": np.sort(order[:n_train]), "val": np.sort(order[n_train:n_train + n_val]),
            "test": np.sort(order[n_train + n_val:])}


def pendulum_dataset(params: PendulumParams, *, trajectories: int, steps: int, hold: int, noise_std: float,
                     angle_spread: float, rate_spread: float, signal: str, amplitude: float, min_dwell: int,
                     max_dwell: int, n_sines: int, f_max: float, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> Dataset:
    """Simulate ``trajectories`` pendulum runs from random initial states near the hanging position
    ``φ₀ = π + U(−angle_spread, angle_spread)``, ``φ̇₀ = U(−rate_spread, rate_spread)``."""
    if noise_std < 0 or not np.isfinite(noise_std):
        raise ConfigError(f"data.noise_std must be a finite number >= 0, got {noise_std}")
    if hold < 1:
        raise ConfigError(f"data.hold must be >= 1, got {hold}")
    rng = np.random.default_rng(seed)
    sample_time = hold * params.dt
    u = torque_signals(rng, trajectories, steps, signal=signal, amplitude=amplitude, min_dwell=min_dwell,
                       max_dwell=max_dwell, n_sines=n_sines, f_max=f_max, sample_time=sample_time)
    x0 = np.stack([np.pi + rng.uniform(-angle_spread, angle_spread, trajectories),
                   rng.uniform(-rate_spread, rate_spread, trajectories)], axis=1)
    y_fine, _ = simulate_direct(params, x0, np.repeat(u, hold, axis=1))
    y_clean = y_fine[:, ::hold]
    y = y_clean + noise_std * rng.standard_normal(y_clean.shape)
    split = split_by_trajectory(trajectories, tuple(fractions), rng)
    return Dataset(u=u, y=y, y_clean=y_clean, split=split, sample_time=sample_time,
                   meta={"x0": x0, "flipped": int((np.abs(y_clean - np.pi) > np.pi).any(axis=(1, 2)).sum())})


#: an output channel whose std after the washout is below this (relative to its magnitude, floor 1) is
#: constant: the NRMSE divides by that std, so it would be noise over rounding
CONSTANT_RTOL = 1e-12


def _constant_channels(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(channels, std)`` of ``a (trajectories, steps, channels)``: the channels whose std over all samples is at
    most :data:`CONSTANT_RTOL` of their magnitude (floor 1), and every channel's std."""
    flat = a.reshape(-1, a.shape[-1])
    std = flat.std(0)
    return np.flatnonzero(std <= CONSTANT_RTOL * np.maximum(np.abs(flat).max(0), 1.0)), std


def check_arrays(u, y, *, washout: int, source: str, min_trajectories: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Validate a user's ``u``/``y`` and return float64 copies; :class:`ConfigError` on anything wrong:
    wrong shapes or dtypes, NaN/inf, fewer than ``min_trajectories`` trajectories, too few steps for the
    washout, values so large that their statistics overflow float64, an output constant after the washout, a
    constant input."""
    if isinstance(washout, bool) or not isinstance(washout, (int, np.integer)) or washout < 0:
        raise ConfigError(f"{source}: washout must be an integer >= 0, got {washout!r}")
    u = np.asarray(u)
    y = np.asarray(y)
    for name, a in (("u", u), ("y", y)):
        if a.ndim != 3:
            raise ConfigError(f"{source}: {name} must have shape (trajectories, steps, {'inputs' if name == 'u' else 'outputs'}), got {a.shape}")
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise ConfigError(f"{source}: {name} must be real numbers, got dtype {a.dtype}")
        if 0 in a.shape:
            raise ConfigError(f"{source}: {name} is empty (shape {a.shape})")
        if not np.isfinite(a).all():
            raise ConfigError(f"{source}: {name} contains NaN or infinite values")
    if u.shape[:2] != y.shape[:2]:
        raise ConfigError(f"{source}: u {u.shape} and y {y.shape} must agree in trajectories and steps")
    if u.shape[0] < min_trajectories:
        raise ConfigError(f"{source}: need at least {min_trajectories} trajectories, got {u.shape[0]}")
    if u.shape[1] <= washout + 1:
        raise ConfigError(f"{source}: {u.shape[1]} steps are too few for a washout of {washout} steps")
    u, y = u.astype(np.float64), y.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        for name, a in (("u", u), ("y", y)):
            flat = a.reshape(-1, a.shape[-1])
            if not (np.isfinite(flat.mean(0)).all() and np.isfinite(flat.std(0)).all()):
                raise ConfigError(f"{source}: {name} is too large (max |{name}| = {np.abs(a).max():.3g}): its mean or std "
                                  "overflows float64; rescale the data")
    constant, std = _constant_channels(y[:, washout:])
    if constant.size:
        raise ConfigError(f"{source}: y is constant after the washout in output channel(s) {constant.tolist()} "
                          f"(std {std[constant[0]]:.3g}); the NRMSE divides by std(y), so there is nothing to identify")
    still, u_std = _constant_channels(u)
    if still.size:
        # (a file whose u was all zero trained, and the Lipschitz lower bounds, ratios over input steps scaled by
        # std(u), came out at 1e11-2e12, exit 0)
        raise ConfigError(f"{source}: u is constant in input channel(s) {still.tolist()} (std {u_std[still[0]]:.3g}): "
                          "an input that never moves excites nothing, so its effect cannot be identified")
    return u, y


def load_arrays(path: str | Path, *, washout: int, min_trajectories: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Read ``u``, ``y`` from a ``.npz`` file and check them (:func:`check_arrays`)."""
    path, arrays, _ = read_npz(path, "data file", ("u", "y"))
    missing = [k for k in ("u", "y") if k not in arrays]
    if missing:
        raise ConfigError(f"{path}: missing array(s) {', '.join(missing)}; expected keys u and y")
    u, y = arrays["u"], arrays["y"]
    return check_arrays(u, y, washout=washout, source=str(path), min_trajectories=min_trajectories)


def load_dataset(path: str | Path, *, washout: int, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> Dataset:
    """A user's ``.npz`` (arrays ``u`` ``(trajectories, T, n_u)`` and ``y`` ``(trajectories, T, n_y)``,
    checked by :func:`load_arrays`) split by whole trajectories into train/validation/test ``fractions``
    with a NumPy generator seeded by ``seed``."""
    u, y = load_arrays(path, washout=washout)
    split = split_by_trajectory(u.shape[0], tuple(fractions), np.random.default_rng(seed))
    return Dataset(u=u, y=y, split=split, meta={"path": str(path)})
