"""Settings of ``deqlab lowrank``: symmetric Hessians from a few (point, gradient) pairs (seed 004)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from deqlab.errors import InputError
from deqlab.settings import checks
from deqlab.settings.resources import Estimate, dense_bytes, npz_shapes

PARTS = ("example", "pairs", "study", "deq")
#: part=pairs holds about this many float64 copies of one (n, k) array of pairs at its peak (the pairs, the
#: four methods' bases of [X Y] and their factors): peak RSS over the loaded interpreter measured 17.3 and 17.0
#: at n = 60000, k = 250 and 1000 (2.38 and 8.45 GB)
PAIRS_COPIES = 20
#: ... and this many of a given (n, n) H (its symmetry check, the eigendecomposition of (H + Hᵀ)/2 that the
#: recovery errors are measured against): measured 4.1 at n = 4000, 6.0 at n = 8000 (0.82 and 3.35 GB, k = 5)
PAIRS_H_COPIES = 8
DIFFERENCES = ("forward", "central")
DIRECTIONS = ("random", "krylov")


@dataclass
class StudySettings:
    """part=study: random symmetric H of rank ``rank``, k Gaussian steps."""

    n: int = 60
    rank: int = 6
    definite: bool = False   # true: positive definite on its range (BFGS's home ground)
    k: List[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 8, 10, 14, 20, 30])
    noise: List[float] = field(default_factory=lambda: [0.0, 1e-3])  # y_i = H s_i + noise*||H s_i||*e_i/sqrt(n)
    trials: int = 5

    def __post_init__(self) -> None:
        checks.count("study.n", self.n, minimum=2, maximum=100_000)
        checks.count("study.rank", self.rank, maximum=100_000)
        checks.count("study.trials", self.trials, maximum=100_000)
        checks.counts("study.k", self.k, maximum=100_000, distinct=True)
        checks.numbers("study.noise", self.noise, minimum=0.0, maximum=1e6, distinct=True)

    def check_fits(self) -> None:
        """The sizes against each other, checked only when part=study runs: a run of another part refuses
        ``study.*`` as unread, which is what the user must hear (not that study.k does not fit study.n)."""
        if max(self.k) > self.n:
            raise InputError(f"study.k contains {max(self.k)} > study.n = {self.n}: at most n independent pairs")
        if self.rank > self.n:
            raise InputError(f"study.rank = {self.rank} exceeds study.n = {self.n}")


@dataclass
class DEQPairsSettings:
    """part=deq: tanh DEQ loss Hessian from (dtheta, dgrad) pairs."""

    n_z: int = 5
    n_x: int = 3
    n_y: int = 2
    batch: int = 8
    layers: int = 200          # unrolled solve of the reference Hessian (must converge to 1e-13)
    eps: float = 1e-4          # step length of the parameter perturbations
    difference: str = "forward"  # forward: grad(t0+s)-grad(t0) (secant pairs) | central
    directions: List[str] = field(default_factory=lambda: list(DIRECTIONS))  # random | krylov (Lanczos-like)
    k: List[int] = field(default_factory=lambda: [1, 2, 4, 8, 12, 16, 24, 32, 48, 57])

    def __post_init__(self) -> None:
        for key in ("n_z", "n_x", "n_y", "batch"):
            checks.count(f"deq.{key}", getattr(self, key), maximum=10_000)
        checks.count("deq.layers", self.layers, maximum=100_000)
        checks.step("deq.eps", self.eps)
        checks.choice("deq.difference", self.difference, DIFFERENCES)
        checks.choices("deq.directions", self.directions, DIRECTIONS)
        checks.counts("deq.k", self.k, maximum=10**6, distinct=True)

    def check_fits(self) -> None:
        """``deq.k`` against the DEQ's ``P``, checked only when part=deq runs (as :meth:`StudySettings.check_fits`)."""
        if max(self.k) > self.parameter_count():
            raise InputError(f"deq.k contains {max(self.k)} > P = {self.parameter_count()} parameters of the DEQ: "
                             "at most P independent steps")

    def parameter_count(self) -> int:
        n, d, k = self.n_z, self.n_x, self.n_y
        return n * n + n + n * d + k * n + k


@dataclass
class Settings:
    """``deqlab lowrank``: which part runs (the seed's example, a user's pairs file, the rank/noise study,
    secant pairs of a DEQ) and its parameters; ``deqlab config lowrank`` prints them composed."""

    device: str = "cpu"   # cpu | cuda | cuda:N | auto (CUDA when there is one)
    seed: int = 0
    part: str = "example"          # example | pairs | study | deq
    pairs_file: Optional[str] = None  # part=pairs: .npz with X, Y (n, k) (one pair per column), optional H (n, n)
    rtol: float = 1e-10            # relative cut-off of singular values/eigenvalues treated as zero
    dense_max: int = 4000          # part=pairs: save dense H_<method>.npy only for n <= dense_max
    study: StudySettings = field(default_factory=StudySettings)
    deq: DEQPairsSettings = field(default_factory=DEQPairsSettings)

    def __post_init__(self) -> None:
        checks.device("device", self.device)
        checks.seed("seed", self.seed)
        checks.choice("part", self.part, PARTS)
        checks.number("rtol", self.rtol, minimum=0.0, maximum=1.0, exclusive=True)
        if self.rtol >= 1:   # (the methods refuse it too, but only once the run has started: the domain is (0, 1))
            raise InputError(f"rtol must be < 1 (a cut-off of rtol times the largest singular value at 1 drops them all), got {self.rtol:g}")
        checks.count("dense_max", self.dense_max, maximum=100_000)
        if self.pairs_file is not None and not self.pairs_file:
            # (read as "no pairs file": `lowrank pairs_file=''` ran part=example, exit 0; `--pairs ''` is refused)
            raise InputError("pairs_file must name a .npz file, or be null; got an empty path")
        if self.part == "pairs" and not self.pairs_file:
            raise InputError("part=pairs reads a pairs file: give --pairs FILE.npz (pairs_file=...)")
        if self.part == "study":
            self.study.check_fits()
        if self.part == "deq":
            self.deq.check_fits()

    def unread(self) -> dict[str, str]:
        """The keys this run does not read, and why (:func:`deqlab.cli.compose.refuse_unread`)."""
        sections = {"study": "study", "deq": "deq", "dense_max": "pairs", "pairs_file": "pairs"}
        out = {key: f"it is read only by part={part}, and this run is part={self.part} (--part {part})"
               for key, part in sections.items() if part != self.part}
        if self.part not in ("study", "deq"):   # (a sweep over it ran identical jobs)
            out["seed"] = f"it draws the random problems of part=study and part=deq, and part={self.part} draws none"
        return out

    def memory_estimates(self) -> list[Estimate]:
        if self.part == "pairs":
            return self.pairs_estimates()
        if self.part == "study":
            return [Estimate(8 * dense_bytes(self.study.n, self.study.n), "study.n", f"dense {self.study.n}x{self.study.n} matrices")]
        if self.part == "deq":
            P = self.deq.parameter_count()
            return [Estimate(8 * dense_bytes(P, P), "deq.n_z", f"the dense {P}x{P} reference Hessian")]
        return []

    def pairs_estimates(self) -> list[Estimate]:
        """part=pairs, from the shapes the pairs file's ``.npy`` headers declare (nothing is read but them; a file
        that cannot be read so is left to the reader's own checks). ``X``, ``Y`` ``(n, k)`` are read as float64
        whatever their stored dtype, so a file of float16 or int8 pairs costs what float64 ones do; without this
        the archive's own bytes were the only guard, and a 60000-row file of 3000 pairs (2.9 GB) passed it."""
        shapes = npz_shapes(self.pairs_file)
        out = []
        pairs = [shapes[name] for name in ("X", "Y") if len(shapes.get(name, ())) == 2]
        if pairs:
            n, k = max(pairs, key=lambda shape: shape[0] * shape[1])
            out.append(Estimate(PAIRS_COPIES * dense_bytes(n, k), "the pairs file's n (rows) or k (pairs)",
                                f"the {n}x{k} pairs of the pairs file and the four methods' factors"))
        if len(shapes.get("H", ())) == 2:
            n = max(shapes["H"])
            out.append(Estimate(PAIRS_H_COPIES * dense_bytes(n, n), "the pairs file's n (or leave its H out)",
                                f"the {n}x{n} H of the pairs file and its eigendecomposition"))
        return out
