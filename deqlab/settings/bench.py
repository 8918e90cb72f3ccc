"""Settings of the ``deqlab bench ...`` commands: problem sizes, repeats and pinned threads."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List

from deqlab.errors import InputError
from deqlab.settings import checks
from deqlab.settings.hessian import GROUPS, group_sizes
from deqlab.settings.models import MAX_WIDTH, MLPSettings, MonDEQSettings, TanhDEQSettings
from deqlab.settings.resources import Estimate, dense_bytes
from deqlab.settings.solver import SOLVER_NAMES
from deqlab.solver_options import SCIPY_SOLVERS

SOLVER_FAMILIES = ("gaussian", "symmetric")
NETHESSIAN_TASKS = ("laplacian", "diag_hessian", "hessian")


def _timing(repeats: int, warmup: int) -> None:
    checks.count("repeats", repeats, maximum=100_000)
    checks.count("warmup", warmup, minimum=0, maximum=100_000)


@dataclass
class SolversBench:
    """``deqlab bench solvers``: steps, f-evals and time of every solver on tanh DEQs."""

    device: str = "cpu"   # cpu | cuda | cuda:N | auto (CUDA when there is one)
    seed: int = 0
    dtype: str = "float64"
    sizes: List[int] = field(default_factory=lambda: [10, 50, 256, 1024])
    norms: List[float] = field(default_factory=lambda: [0.5, 0.9, 0.99])
    families: List[str] = field(default_factory=lambda: list(SOLVER_FAMILIES))
    batch: int = 64
    tol: float = 1e-10
    max_iter: int = 5000
    repeats: int = 3
    scipy_max_n: int = 50
    input_scale: float = 0.5
    solvers: List[str] = field(default_factory=lambda: ["fixed_point", "anderson", "broyden", "root"])
    threads: int = 1            # torch and BLAS threads (0: library defaults); 1 is steadier on a shared machine

    def __post_init__(self) -> None:
        checks.device("device", self.device)
        checks.seed("seed", self.seed)
        checks.choice("dtype", self.dtype, checks.DTYPES)
        checks.counts("sizes", self.sizes, maximum=MAX_WIDTH, distinct=True)
        norms = checks.numbers("norms", self.norms, minimum=0.0, maximum=1.0, exclusive=True, distinct=True)
        if any(s >= 1 for s in norms):
            raise InputError(f"norms must lie in (0, 1) for a contraction, got {list(self.norms)}")
        checks.choices("families", self.families, SOLVER_FAMILIES)
        checks.choices("solvers", self.solvers, SOLVER_NAMES)
        checks.count("batch", self.batch, maximum=1_000_000)
        checks.number("tol", self.tol, minimum=0.0, maximum=1.0, exclusive=True)
        # The residual of a tanh DEQ's z (entries in (-1, 1)) cannot be resolved below eps·‖z‖ ≤ eps·√n_z: with
        # dtype=float32 the default tol 1e-10 left every solve 'not converged' after max_iter evaluations (3 min
        # for sizes=[10], exit 0) instead of measuring anything.
        floor = checks.DTYPE_EPSILON[self.dtype] * math.sqrt(max(self.sizes))
        if self.tol < floor:
            raise InputError(f"tol {self.tol:g} is below what {self.dtype} resolves at n_z up to {max(self.sizes)} "
                             f"(eps·sqrt(n_z) = {floor:.1e}): no solve could reach it; use tol >= {floor:.1e}"
                             f"{' or dtype=float64' if self.dtype != 'float64' else ''}")
        checks.count("max_iter", self.max_iter, maximum=10_000_000)
        checks.count("repeats", self.repeats, maximum=100_000)
        checks.count("scipy_max_n", self.scipy_max_n, minimum=0, maximum=MAX_WIDTH)
        scipy = [name for name in self.solvers if name in SCIPY_SOLVERS]
        if len(scipy) == len(self.solvers) and min(self.sizes) > self.scipy_max_n:
            # (every row skipped: the table's frame had no columns, a KeyError traceback)
            raise InputError(f"nothing to measure: solvers {', '.join(scipy)} run only at n_z <= scipy_max_n="
                             f"{self.scipy_max_n}, and every size in {list(self.sizes)} is larger; raise scipy_max_n "
                             "or add a solver")
        checks.number("input_scale", self.input_scale, minimum=0.0, maximum=1e6)
        checks.threads("threads", self.threads, minimum=0)

    def unread(self) -> dict[str, str]:
        """The keys this run does not read, and why (:func:`deqlab.cli.compose.refuse_unread`)."""
        if any(name in SCIPY_SOLVERS for name in self.solvers):
            return {}
        return {"scipy_max_n": f"it limits the scipy solvers (fsolve, root), which solvers = [{','.join(self.solvers)}] "
                               "does not name (add one of them or drop it)"}

    def memory_estimates(self) -> list[Estimate]:
        n = max(self.sizes)
        return [Estimate(8 * dense_bytes(n, n) + 8 * 8.0 * self.batch * n * 60, "sizes", f"W of size {n} and solver memory")]


@dataclass
class HessianBench:
    """``deqlab bench hessian``: closed-form Hessian and HVP against autodiff through an unrolled solve."""

    device: str = "cpu"   # cpu | cuda | cuda:N | auto (CUDA when there is one)
    seed: int = 0
    threads: int = 1
    n_z: int = 32               # N = 32, d = 8, batch 64, theta = (W_z, b_z, U_z): P = 1312
    n_x: int = 8
    batch: int = 64
    groups: List[str] = field(default_factory=lambda: ["W_z", "b_z", "U_z"])
    unroll_steps: int = 60      # the reference: torch.func.hessian through a 60-step unrolled solve
    solver_atol: float = 1e-14  # Anderson, float64
    repeats: int = 5            # median of this many timed calls ...
    warmup: int = 1             # ... after this many warm-up calls
    ref_repeats: int = 1        # the unrolled Hessian takes seconds: timed this many times, no warm-up
    memory: bool = True         # peak RSS increase of each route in a fresh process (one process per route)
    memory_n_z: int = 96        # the dense Hessian's memory target is checked at this N (P = N^2 + N + N d = 10080 for 96)
    ladder: List[int] = field(default_factory=lambda: [32, 64, 128, 256, 316])  # N; P = N^2 + N + N d
    dense_max_p: int = 5000     # dense closed form in the ladder only up to this P
    top_k: int = 5
    eigsh_tol: float = 1e-8
    dtypes: List[str] = field(default_factory=lambda: ["float64"])  # the ladder's dtypes (float32: z* solved in float64, then cast)
    rate_size: int = 1024       # the device's matrix-product rate is timed on (n x n)@(n x n) with this n

    def __post_init__(self) -> None:
        checks.device("device", self.device)
        checks.seed("seed", self.seed)
        checks.threads("threads", self.threads, minimum=0)
        checks.choices("dtypes", self.dtypes, checks.DTYPES)
        checks.count("rate_size", self.rate_size, maximum=65_536)
        for key in ("n_z", "n_x", "batch"):
            checks.count(key, getattr(self, key), maximum=10_000)
        checks.choices("groups", self.groups, GROUPS)
        checks.count("unroll_steps", self.unroll_steps, maximum=100_000)
        checks.number("solver_atol", self.solver_atol, minimum=0.0, maximum=1.0, exclusive=True)
        _timing(self.repeats, self.warmup)
        checks.count("ref_repeats", self.ref_repeats, maximum=1000)
        checks.count("memory_n_z", self.memory_n_z, maximum=10_000)
        checks.counts("ladder", self.ladder, maximum=10_000, distinct=True)
        checks.count("dense_max_p", self.dense_max_p, maximum=10**6)
        checks.count("top_k", self.top_k, maximum=10_000)
        checks.number("eigsh_tol", self.eigsh_tol, minimum=0.0, maximum=1.0)
        n = min(self.ladder)
        P = self.parameter_count(n)
        if self.top_k >= P:   # ARPACK finds at most P - 1 eigenvalues of a P x P operator
            raise InputError(f"top_k = {self.top_k} eigenvalues need more than {self.top_k} parameters; groups "
                             f"[{','.join(self.groups)}] at ladder size {n} have P = {P}")

    def unread(self) -> dict[str, str]:
        """The keys this run does not read, and why (:func:`deqlab.cli.compose.refuse_unread`)."""
        return {} if self.memory else {"memory_n_z": "it sizes the memory probe, which memory=false skips (drop one of them)"}

    def parameter_count(self, n_z: int) -> int:
        """``P`` of the bench's tanh DEQ (one output) with ``n_z`` states, over ``groups``."""
        sizes = group_sizes(TanhDEQSettings(n_z=n_z, n_x=self.n_x, n_y=1))
        return sum(sizes[g] for g in self.groups)

    def memory_estimates(self) -> list[Estimate]:
        N, d, B = self.n_z, self.n_x, self.batch
        P = N * N + N + N * d
        Pl = [n * n + n + n * d for n in self.ladder if n * n + n + n * d <= self.dense_max_p]
        Pm = self.memory_n_z ** 2 + self.memory_n_z * (1 + d)
        return [Estimate(6 * dense_bytes(P, P) + 8.0 * self.unroll_steps * B * N * P, "n_z / unroll_steps",
                         "the unrolled reference Hessian"),
                Estimate(4 * dense_bytes(max(Pl, default=0), max(Pl, default=0)), "ladder / dense_max_p", "the ladder's dense Hessians"),
                Estimate(6 * dense_bytes(B * max(self.ladder), max(self.ladder)), "ladder", "the ladder's factorisations"),
                Estimate(1.5 * dense_bytes(Pm, Pm) if self.memory else 0.0, "memory_n_z", "the dense Hessian of the memory probe"),
                Estimate(3 * dense_bytes(self.rate_size, self.rate_size), "rate_size", "the matrix product whose rate is measured")]


@dataclass
class LowrankBench:
    """``deqlab bench lowrank``: rank-k recovery against scipy SR1 fed pair by pair."""

    device: str = "cpu"   # cpu | cuda | cuda:N | auto (CUDA when there is one)
    seed: int = 0
    threads: int = 1
    n: int = 500                  # dense comparison size (scipy SR1 stores n x n)
    rank: int = 8                 # rank of the random symmetric H
    k: int = 16                   # exact pairs
    repeats: int = 7              # timed calls per row (median reported), after `warmup` calls
    warmup: int = 1
    large_n: List[int] = field(default_factory=lambda: [10000, 100000])  # factored-only sizes (no n x n matrix)
    target_error: float = 1e-12   # targets: relative error and speed-up over scipy SR1
    target_speedup: float = 10.0
    rtol: float = 1e-10

    def __post_init__(self) -> None:
        checks.device("device", self.device)
        checks.seed("seed", self.seed)
        checks.threads("threads", self.threads, minimum=0)
        checks.count("n", self.n, minimum=2, maximum=100_000)
        checks.count("rank", self.rank, maximum=100_000)
        checks.count("k", self.k, maximum=100_000)
        _timing(self.repeats, self.warmup)
        large = checks.without_repeats("large_n", [checks.count(f"large_n[{i}]", v, maximum=10**8) for i, v in enumerate(self.large_n)])
        checks.number("target_error", self.target_error, minimum=0.0, exclusive=True)
        checks.number("target_speedup", self.target_speedup, minimum=0.0, exclusive=True)
        # a cut-off of singular values (rtol x the largest), as in `deqlab lowrank`: not a stopping rule's rtol
        checks.number("rtol", self.rtol, minimum=0.0, exclusive=True)
        if self.rtol >= 1:
            raise InputError(f"rtol must be < 1 (a cut-off of rtol times the largest singular value at 1 drops them all), got {self.rtol:g}")
        for size in [self.n, *large]:
            if self.k > size or self.rank > size:
                raise InputError(f"k = {self.k} and rank = {self.rank} must not exceed n = {size}")

    def memory_estimates(self) -> list[Estimate]:
        big = max([self.n, *self.large_n])
        return [Estimate(8 * dense_bytes(self.n, self.n), "n", f"dense {self.n}x{self.n} matrices"),
                Estimate(8 * dense_bytes(big, 2 * self.k + self.rank), "large_n", f"factored n = {big}")]


@dataclass
class MonDEQBench:
    """``deqlab bench mondeq``: splitting solvers vs Anderson, fixed-point iteration and a direct solve."""

    device: str = "cpu"   # cpu | cuda | cuda:N | auto (CUDA when there is one)
    seed: int = 0
    dtype: str = "float64"
    threads: int = 1
    model: MonDEQSettings = field(default_factory=lambda: MonDEQSettings(m=1.0))  # monotone_op_net's default margin
    sizes: List[int] = field(default_factory=lambda: [50, 256, 1024])  # n_z
    batch: int = 64
    n_x: int = 64                 # input size of U x + b
    rtol: float = 1e-4            # stop at ||f(z) - z|| <= rtol ||f(z)|| (atol = 0)
    max_iter: int = 300
    repeats: int = 3              # timed runs per row (median reported) after one warm-up
    alphas: List[float] = field(default_factory=lambda: [0.125, 0.25, 0.5, 1.0, 2.0, 4.0])  # PR/DR step grid
    fb_fraction: float = 0.9      # forward-backward at this fraction of its bound 2m/||I-W||^2

    def __post_init__(self) -> None:
        checks.device("device", self.device)
        checks.seed("seed", self.seed)
        checks.choice("dtype", self.dtype, checks.DTYPES)
        checks.threads("threads", self.threads, minimum=0)
        checks.counts("sizes", self.sizes, maximum=MAX_WIDTH, distinct=True)
        checks.count("batch", self.batch, maximum=1_000_000)
        checks.count("n_x", self.n_x, maximum=MAX_WIDTH)
        checks.relative_tolerance("rtol", self.rtol)
        checks.count("max_iter", self.max_iter, maximum=10_000_000)
        checks.count("repeats", self.repeats, maximum=100_000)
        checks.numbers("alphas", self.alphas, minimum=0.0, maximum=1e6, exclusive=True, distinct=True)
        checks.number("fb_fraction", self.fb_fraction, minimum=0.0, maximum=1e3, exclusive=True)

    def unread(self) -> dict[str, str]:
        """The keys this run does not read, and why (:func:`deqlab.cli.compose.refuse_unread`)."""
        return {"model.n_z": "the bench runs one model at each size in sizes (give sizes=[N] instead)"}

    def memory_estimates(self) -> list[Estimate]:
        n = max(self.sizes)
        return [Estimate(10 * dense_bytes(n, n), "sizes", f"{n}x{n} operators, inverses and factorisations")]


@dataclass
class NethessianBench:
    """``deqlab bench nethessian``: Laplacian / diagonal / full Hessian of a tanh MLP, routes side by side."""

    device: str = "cpu"   # cpu | cuda | cuda:N | auto (CUDA when there is one)
    seed: int = 0
    mlp: MLPSettings = field(default_factory=lambda: MLPSettings(d=50, hidden=[64, 64, 64], n_out=1))
    batch: int = 256              # Laplacian and diagonal Hessian
    hessian_batch: int = 16       # full Hessian rows (the forward recursion holds batch*d*d*width numbers)
    dtypes: List[str] = field(default_factory=lambda: list(checks.DTYPES))
    tasks: List[str] = field(default_factory=lambda: list(NETHESSIAN_TASKS))
    repeats: int = 20             # median of this many calls after `warmup` calls
    warmup: int = 3
    threads: int = 1              # torch and BLAS threads (0: library defaults)

    def __post_init__(self) -> None:
        checks.device("device", self.device)
        checks.seed("seed", self.seed)
        checks.count("batch", self.batch, maximum=10_000_000)
        checks.count("hessian_batch", self.hessian_batch, maximum=10_000_000)
        checks.choices("dtypes", self.dtypes, checks.DTYPES)
        checks.choices("tasks", self.tasks, NETHESSIAN_TASKS)
        _timing(self.repeats, self.warmup)
        checks.threads("threads", self.threads, minimum=0)

    def unread(self) -> dict[str, str]:
        """The keys this run does not read, and why (:func:`deqlab.cli.compose.refuse_unread`): each batch
        size belongs to some of the tasks."""
        tasks = f"tasks = [{','.join(self.tasks)}]"
        out = {}
        if "hessian" not in self.tasks:
            out["hessian_batch"] = f"it is the batch of the full-Hessian task, which {tasks} does not run"
        if not {"laplacian", "diag_hessian"} & set(self.tasks):
            out["batch"] = f"it is the batch of the laplacian and diag_hessian tasks, which {tasks} does not run"
        return out

    def memory_estimates(self) -> list[Estimate]:
        d, w = self.mlp.d, max(self.mlp.hidden)
        return [Estimate(8 * 8.0 * max(self.batch * d * w, self.hessian_batch * d * d * w), "mlp.d / mlp.hidden / batch",
                         "the derivative recursions")]


@dataclass
class SysidBench:
    """``deqlab bench sysid``: one REN training step, implicit vs autograd backward; LSTM for scale."""

    device: str = "cpu"   # cpu | cuda | cuda:N | auto (CUDA when there is one)
    seed: int = 0
    batch: int = 12
    steps: int = 100
    n_x: int = 8
    n_v: int = 16
    lstm_hidden: int = 16
    threads: List[int] = field(default_factory=lambda: [1, 2])
    warmup: int = 2
    repeats: int = 7

    def __post_init__(self) -> None:
        checks.device("device", self.device)
        checks.seed("seed", self.seed)
        for key in ("batch", "steps", "n_x", "n_v", "lstm_hidden"):
            checks.count(key, getattr(self, key), maximum=100_000)
        for i, n in enumerate(checks.counts("threads", self.threads, distinct=True)):
            checks.threads(f"threads[{i}]", n)
        _timing(self.repeats, self.warmup)

    def memory_estimates(self) -> list[Estimate]:
        return [Estimate(8 * 8.0 * self.batch * self.steps * (self.n_x + self.n_v) * 20, "steps / batch", "the training graphs")]

