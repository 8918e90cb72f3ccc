"""The inverted pendulum of seed 003 (lecture part 3), directly and as an LTI system with a
nonlinear disturbance ("LTI-plus-Δ").

Continuous dynamics (angle ``φ`` measured from the upright position, torque input ``u``)::

    m l² φ̈ = m g l sin φ − μ φ̇ + u

Explicit Euler with step ``δ`` on the state ``x = (φ, φ̇)``::

    φ⁺  = φ + δ φ̇
    φ̇⁺ = φ̇ + δ ( (g/l) sin φ − μ/(m l²) φ̇ + u/(m l²) )

Write ``sin φ = φ − Δ(φ)`` with ``w = Δ(z) = z − sin z``, ``z = C_z x = φ``. Then

    φ̇⁺ = (gδ/l) φ + (1 − μδ/(m l²)) φ̇ + δ/(m l²) u − (gδ/l) w,

i.e. ``x⁺ = A x + B_u u + B_w w``, ``y = C x``, ``z = C_z x``, ``w = Δ(z)`` with::

    A   = [[1,      δ            ],
           [gδ/l,   1 − μδ/(m l²)]]
    B_u = [[0], [δ/(m l²)]]       (the torque enters the velocity)
    B_w = [[0], [−gδ/l]]          (the disturbance)
    C   = C_z = [[1, 0]]          (angle measured; ``D_uy = D_zw = 0``)

Errata of the slide (``shared/seeds/README.md``): the slide prints ``A₁₁ = 1/(gδ)`` (a PDF
extraction garble; it is 1) and labels the column ``(0, −gδ/l)`` as the input matrix ``B₁`` and
``(0, δ/(ml²))`` as the disturbance matrix ``B₂``: the labels are swapped. The lecture's code sets
``D₂₂ = 0.5`` (a feed-through from ``w`` into ``z``), which makes every step an implicit equation
``w = Δ(C_z x + 0.5 w)`` and is no longer the physical pendulum: the physical model has no
feed-through. Lecture defaults: ``δ = 0.01, m = l = 1, μ = 0.9, g = 9.81``.

Arrays: states ``(batch, 2)``, inputs ``u`` of shape ``(batch, steps, 1)``, outputs
``(batch, steps, 1)``, NumPy float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deqlab.errors import ConfigError


@dataclass(frozen=True)
class PendulumParams:
    """Physical parameters (SI units): step ``dt`` [s], mass ``m`` [kg], length ``l`` [m],
    damping ``mu`` [N·m·s/rad], gravity ``g`` [m/s²]."""

    dt: float = 0.01
    m: float = 1.0
    l: float = 1.0
    mu: float = 0.9
    g: float = 9.81

    def __post_init__(self):
        for name in ("dt", "m", "l", "g"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ConfigError(f"pendulum.{name} must be a finite number > 0, got {value}")
        if not np.isfinite(self.mu) or self.mu < 0:
            raise ConfigError(f"pendulum.mu must be a finite number >= 0, got {self.mu}")


@dataclass(frozen=True)
class LTIPlusDelta:
    """``x⁺ = A x + B_u u + B_w w``, ``y = C x``, ``z = C_z x``, ``w = z − sin z``."""

    A: np.ndarray
    B_u: np.ndarray
    B_w: np.ndarray
    C: np.ndarray
    C_z: np.ndarray


def delta(z: np.ndarray) -> np.ndarray:
    """The pendulum's nonlinear disturbance ``Δ(z) = z − sin z`` (slope in ``[0, 2]``)."""
    return z - np.sin(z)


def lti_plus_delta(p: PendulumParams) -> LTIPlusDelta:
    """The explicit-Euler pendulum as LTI-plus-Δ matrices (derivation in the module docstring)."""
    inertia = p.m * p.l**2
    A = np.array([[1.0, p.dt], [p.g * p.dt / p.l, 1.0 - p.mu * p.dt / inertia]])
    B_u = np.array([[0.0], [p.dt / inertia]])
    B_w = np.array([[0.0], [-p.g * p.dt / p.l]])
    C = np.array([[1.0, 0.0]])
    return LTIPlusDelta(A=A, B_u=B_u, B_w=B_w, C=C, C_z=C.copy())


def slide_matrices(p: PendulumParams) -> LTIPlusDelta:
    """PITFALL, for tests only: the slide's matrices as printed (``A₁₁ = 1/(gδ)``, ``B₁``/``B₂``
    read as input/disturbance columns). Tested to be wrong."""
    inertia = p.m * p.l**2
    A = np.array([[1.0 / (p.g * p.dt), p.dt], [p.g * p.dt / p.l, 1.0 - p.mu * p.dt / inertia]])
    return LTIPlusDelta(
        A=A,
        B_u=np.array([[0.0], [-p.g * p.dt / p.l]]),
        B_w=np.array([[0.0], [p.dt / inertia]]),
        C=np.array([[1.0, 0.0]]),
        C_z=np.array([[1.0, 0.0]]),
    )


def _check(x0: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x0 = np.asarray(x0, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    if x0.ndim != 2 or x0.shape[1] != 2:
        raise ConfigError(f"initial states must have shape (batch, 2), got {x0.shape}")
    if u.ndim != 3 or u.shape[0] != x0.shape[0] or u.shape[2] != 1:
        raise ConfigError(f"torques must have shape (batch={x0.shape[0]}, steps, 1), got {u.shape}")
    return x0, u


def simulate_direct(p: PendulumParams, x0: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Explicit Euler of ``m l² φ̈ = m g l sin φ − μ φ̇ + u``.

    Args: ``x0`` (batch, 2) = (φ, φ̇); ``u`` (batch, steps, 1).
    Returns ``(y, x)``: angles ``y`` (batch, steps, 1) measured *before* each step's update
    (``y_k = φ_k``) and states ``x`` (batch, steps + 1, 2).
    """
    x0, u = _check(x0, u)
    batch, steps, _ = u.shape
    inertia = p.m * p.l**2
    x = np.empty((batch, steps + 1, 2))
    x[:, 0] = x0
    for k in range(steps):
        phi, omega = x[:, k, 0], x[:, k, 1]
        acc = (p.g / p.l) * np.sin(phi) - (p.mu / inertia) * omega + u[:, k, 0] / inertia
        x[:, k + 1, 0] = phi + p.dt * omega
        x[:, k + 1, 1] = omega + p.dt * acc
    return x[:, :-1, :1].copy(), x


def simulate_lti(model: LTIPlusDelta, x0: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Simulate ``x⁺ = A x + B_u u + B_w Δ(C_z x)``, ``y = C x``; same shapes as :func:`simulate_direct`."""
    x0, u = _check(x0, u)
    batch, steps, _ = u.shape
    x = np.empty((batch, steps + 1, 2))
    x[:, 0] = x0
    for k in range(steps):
        w = delta(x[:, k] @ model.C_z.T)
        x[:, k + 1] = x[:, k] @ model.A.T + u[:, k] @ model.B_u.T + w @ model.B_w.T
    return x[:, :-1] @ model.C.T, x
