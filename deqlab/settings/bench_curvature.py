"""Settings of ``deqlab bench curvature``: exact curvature through a DEQ wrapping a user module (issue 14)."""

from __future__ import annotations

from dataclasses import dataclass

from deqlab.errors import InputError
from deqlab.settings import checks
from deqlab.settings.resources import Estimate, dense_bytes

#: ``--tiny``: seconds (tests, smoke checks).
TINY = {"batch": 16, "hvp_n_z": 8, "eig_n_z": 12, "n_x": 6, "classes": 3, "top_k": 2, "repeats": 2, "warmup": 1}


def _cpu_only(device) -> None:
    checks.device("device", device)
    if device != "cpu":
        raise InputError(f"deqlab bench curvature runs on the CPU only (not checked on CUDA), got device={device!r}")


@dataclass
class CurvatureBench:
    """``deqlab bench curvature``.

    Attributes:
        threads: torch and BLAS threads (pinned inside the bench).
        n_x, classes, batch: the random classification problem (inputs ``N(0, I)``, uniform labels).
        hvp_n_z: DEQ width of the HVP-vs-gradient table.
        eig_n_z: DEQ width of the eigenvalue table (300: P = 112,510 with the defaults).
        top_k, eigsh_tol: eigenvalues wanted and ARPACK's relative tolerance.
        atol: the DEQ's solves (forward, adjoint, tangent).
        repeats, warmup: timing protocol (median of ``repeats`` after ``warmup``, routes interleaved).
        seed: weights and data.
        eig_iterative: also time the eigenvalues with matrix-free (Anderson) linear solves.
    """

    threads: int = 1
    n_x: int = 64
    classes: int = 10
    batch: int = 128
    hvp_n_z: int = 64
    eig_n_z: int = 300
    top_k: int = 5
    eigsh_tol: float = 1e-6
    atol: float = 1e-10
    repeats: int = 7
    warmup: int = 2
    seed: int = 0
    eig_iterative: bool = True
    device: str = "cpu"   # the CPU only: this bench has not been checked on CUDA

    def __post_init__(self) -> None:
        checks.threads("threads", self.threads)
        checks.count("n_x", self.n_x, maximum=100_000)
        checks.count("classes", self.classes, minimum=2, maximum=100_000)
        checks.count("batch", self.batch, maximum=1_000_000)
        checks.count("hvp_n_z", self.hvp_n_z, maximum=100_000)
        checks.count("eig_n_z", self.eig_n_z, maximum=100_000)
        checks.count("top_k", self.top_k, maximum=1_000)
        checks.number("eigsh_tol", self.eigsh_tol, minimum=0.0, maximum=1.0, exclusive=True)
        checks.number("atol", self.atol, minimum=0.0, maximum=1.0, exclusive=True)
        checks.count("repeats", self.repeats, maximum=100_000)
        checks.count("warmup", self.warmup, minimum=0, maximum=100_000)
        checks.seed("seed", self.seed)
        _cpu_only(self.device)
        if not isinstance(self.eig_iterative, bool):
            raise InputError(f"eig_iterative must be true or false, got {self.eig_iterative!r}")

    def parameter_count(self, n_z: int) -> int:
        """``P`` of the bench's DEQ classifier of width ``n_z``: ``W (n_z²)``, ``U (n_z n_x)``, ``b``, the readout."""
        return n_z * n_z + n_z * self.n_x + n_z + self.classes * n_z + self.classes

    def memory_estimates(self) -> list[Estimate]:
        # (none before: `bench curvature eig_n_z=100000 batch=1000000` started a forward solve of 1e11 states)
        B, anderson_history = self.batch, 2 * 10   # Anderson's two ring buffers of its memory 10
        return [Estimate(4 * dense_bytes(B, self.hvp_n_z ** 2) + 8.0 * anderson_history * B * self.hvp_n_z,
                         "hvp_n_z / batch", f"{B} factorisations of {self.hvp_n_z}x{self.hvp_n_z}"),
                Estimate(4 * dense_bytes(B, self.eig_n_z ** 2) + 8.0 * anderson_history * B * self.eig_n_z,
                         "eig_n_z / batch", f"{B} factorisations of {self.eig_n_z}x{self.eig_n_z}"),
                Estimate(dense_bytes(2 * self.top_k + 30, self.parameter_count(self.eig_n_z)), "eig_n_z / top_k",
                         "eigsh's Lanczos vectors")]

    @classmethod
    def tiny(cls, **overrides) -> CurvatureBench:
        """:data:`TINY` with ``overrides`` on top."""
        return cls(**{**TINY, **overrides})
