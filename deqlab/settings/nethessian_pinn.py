"""Settings of ``deqlab nethessian pinn``: ``-Δu = f`` on the unit square, Laplacian two ways."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from deqlab.settings import checks
from deqlab.settings.models import MAX_WIDTH, MLP_ACTIVATIONS
from deqlab.settings.resources import Estimate

ROUTES = ("forward", "double_backward")


@dataclass
class PINNSettings:
    """The Poisson PINN of ``deqlab nethessian pinn``: network, Adam schedule, collocation points and
    the evaluation grid (one training per Laplacian route)."""

    hidden: List[int] = field(default_factory=lambda: [32, 32])
    activation: str = "tanh"
    steps: int = 2000            # Adam steps per route
    lr: float = 5e-3
    lr_final: float = 5e-4       # cosine decay of the learning rate from lr to lr_final
    n_interior: int = 256        # collocation points, uniform in (0,1)^2, drawn once
    n_boundary: int = 128        # points on the boundary (a quarter per edge), drawn once
    boundary_weight: float = 100.0  # loss = mean((Δu + f)^2) + boundary_weight * mean(u_boundary^2)
    grid: int = 65               # evaluation grid grid x grid on [0,1]^2 (boundary included)

    def __post_init__(self) -> None:
        checks.counts("pinn.hidden", self.hidden, maximum=MAX_WIDTH)
        checks.choice("pinn.activation", self.activation, MLP_ACTIVATIONS)
        checks.count("pinn.steps", self.steps, maximum=10_000_000)
        checks.number("pinn.lr", self.lr, minimum=0.0, maximum=10.0, exclusive=True)
        checks.number("pinn.lr_final", self.lr_final, minimum=0.0, maximum=10.0)
        checks.count("pinn.n_interior", self.n_interior, maximum=10_000_000)
        checks.count("pinn.n_boundary", self.n_boundary, minimum=4, maximum=10_000_000)
        checks.number("pinn.boundary_weight", self.boundary_weight, minimum=0.0, maximum=1e12)
        checks.count("pinn.grid", self.grid, minimum=2, maximum=100_000)


@dataclass
class Settings:
    device: str = "cpu"   # cpu | cuda | cuda:N | auto (CUDA when there is one)
    seed: int = 0
    dtype: str = "float32"
    threads: int = 1             # torch intra-op threads (0: torch's default)
    pinn: PINNSettings = field(default_factory=PINNSettings)
    routes: List[str] = field(default_factory=lambda: list(ROUTES))

    def __post_init__(self) -> None:
        checks.device("device", self.device)
        checks.seed("seed", self.seed)
        checks.choice("dtype", self.dtype, checks.DTYPES)
        checks.threads("threads", self.threads, minimum=0)
        checks.choices("routes", self.routes, ROUTES)

    def memory_estimates(self) -> list[Estimate]:
        width = max(self.pinn.hidden)
        points = max(self.pinn.n_interior, self.pinn.grid ** 2)
        return [Estimate(8 * 8.0 * points * width * 6, "pinn.grid / pinn.n_interior / pinn.hidden",
                         f"activations and their derivatives at {points} points"),
                Estimate(8 * 4.0 * width * width * len(self.pinn.hidden), "pinn.hidden", "the network and Adam's state")]
