"""Settings of ``deqlab converge``: finite-depth weight-tied network vs the root-found equilibrium."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from deqlab.settings import checks
from deqlab.settings.models import TanhDEQSettings
from deqlab.settings.resources import Estimate, dense_bytes
from deqlab.settings.solver import SOLVER_NAMES, SolverSettings


@dataclass
class Settings:
    """The lecture's setup (seed 003): ``n_z = 10``, input ``x ~ N(0, input_std)`` of length 3."""

    device: str = "cpu"   # cpu | cuda | cuda:N | auto (CUDA when there is one)
    seed: int = 0                   # torch seed for the weights
    dtype: str = "float32"          # finite-depth pass (the slides run it in float32)
    model: TanhDEQSettings = field(default_factory=TanhDEQSettings)
    solver: SolverSettings = field(default_factory=lambda: SolverSettings.preset("fsolve"))  # finds z*
    input_seed: int = 2023          # NumPy seed of the input, as in the slides' code
    input_std: float = 0.1          # x ~ N(0, input_std), shape (1, n_x)
    layers: List[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 10, 20, 30])
    restarts: int = 10              # models in the eigenvalue table
    eig_layers: int = 40            # finite depth L in the eigenvalue table
    converged_gap: float = 1e-4     # ||z^L - z*|| below this counts as "finite depth reached z*"
    curve_layers: int = 60          # depth range of the convergence plot
    solver_table: List[str] = field(default_factory=lambda: ["fixed_point", "anderson", "broyden", "newton", "fsolve", "root"])
    solver_table_dtype: str = "float64"

    def __post_init__(self) -> None:
        checks.device("device", self.device)
        checks.seed("seed", self.seed)
        checks.seed("input_seed", self.input_seed, numpy=True)
        checks.choice("dtype", self.dtype, checks.DTYPES)
        checks.choice("solver_table_dtype", self.solver_table_dtype, checks.DTYPES)
        checks.number("input_std", self.input_std, minimum=0.0, maximum=1e6)
        checks.counts("layers", self.layers, minimum=0, maximum=100_000, distinct=True)
        checks.count("restarts", self.restarts, maximum=10_000)
        checks.count("eig_layers", self.eig_layers, minimum=0, maximum=100_000)
        checks.count("curve_layers", self.curve_layers, maximum=100_000)
        checks.number("converged_gap", self.converged_gap, minimum=0.0, exclusive=True)
        checks.choices("solver_table", self.solver_table, SOLVER_NAMES)

    def memory_estimates(self) -> list[Estimate]:
        n = self.model.n_z
        depth = max(max(self.layers), self.curve_layers, self.eig_layers) + 1
        return [
            # newton / fsolve hold dense n x n Jacobians (float64, a few copies)
            Estimate(4 * dense_bytes(n, n), "model.n_z", f"dense {n}x{n} Jacobians"),
            Estimate(4 * 8 * depth * n, "layers / curve_layers", f"the finite-depth path of {depth} layers"),
        ]
