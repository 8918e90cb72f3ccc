"""Settings of ``deqlab nethessian --check``: forward recursions (seed 002, corrected) vs torch.func."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from deqlab.errors import InputError
from deqlab.settings import checks
from deqlab.settings.models import MLPSettings
from deqlab.settings.resources import Estimate


@dataclass
class Settings:
    """``deqlab nethessian`` (input derivatives of an MLP by forward recursion): the network, the batch,
    the timing protocol and the accuracy bound against ``torch.func``."""

    device: str = "cpu"   # cpu | cuda | cuda:N | auto (CUDA when there is one)
    seed: int = 0
    dtype: str = "float64"          # the accuracy check is meant for float64 (float32 works, with looser errors)
    mlp: MLPSettings = field(default_factory=MLPSettings)
    batch: int = 8
    repeats: int = 20               # timing: median of this many calls after one warm-up
    threads: int = 1                # torch intra-op threads while timing (0: torch's default)
    tolerance: Optional[float] = None  # max-norm relative error allowed against torch.func; None: 1e-12 / 1e-5
    wrong_threshold: float = 0.05   # a seed formula counts as wrong when its error exceeds this

    def __post_init__(self) -> None:
        checks.device("device", self.device)
        checks.seed("seed", self.seed)
        checks.choice("dtype", self.dtype, checks.DTYPES)
        checks.count("batch", self.batch, maximum=10_000_000)
        checks.count("repeats", self.repeats, maximum=100_000)
        checks.threads("threads", self.threads, minimum=0)
        if self.tolerance is not None:
            checks.number("tolerance", self.tolerance, minimum=0.0, exclusive=True)
            if self.tolerance >= 1:   # a relative error of 1 is a route that returns zeros: the check could not fail
                raise InputError(f"tolerance must be < 1 (a relative error of 1 is a route returning zeros), got {self.tolerance:g}")
        checks.number("wrong_threshold", self.wrong_threshold, minimum=0.0, exclusive=True)

    def memory_estimates(self) -> list[Estimate]:
        d, width = self.mlp.d, max(self.mlp.hidden)
        # third derivatives and torch.func's references hold batch * n_out * d^3 and batch * width * d^2 numbers
        return [Estimate(8 * 8.0 * self.batch * (width * d * d + self.mlp.n_out * d ** 3), "mlp.hidden / mlp.d / batch",
                         "the Hessian and third-derivative recursions"),
                Estimate(8 * 8.0 * self.mlp.parameter_count(), "mlp.hidden", "the network's weights")]
