"""Settings of ``deqlab train digits``: three models trained alike on scikit-learn's digits (issue 14)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from deqlab.errors import InputError
from deqlab.settings import checks
from deqlab.settings.resources import Estimate, dense_bytes
from deqlab.settings.solver import SOLVER_NAMES

#: The models, by the names ``models`` takes.
MODEL_NAMES = ("tanh_deq", "monotone_deq", "mlp")
#: ``--tiny``: a run of seconds (tests, smoke checks); overrides of the defaults below.
TINY = {"epochs": 2, "batch": 128, "n_z": 12, "checkpoints": 2, "hessian_batch": 32, "lanczos_steps": 6,
        "slq_probes": 2, "eig_tol": 1e-2, "max_iter": 60}


def _cpu_only(device) -> None:
    checks.device("device", device)
    if device != "cpu":
        raise InputError(f"deqlab train digits runs on the CPU only (not checked on CUDA), got device={device!r}")


@dataclass
class Settings:
    """``deqlab train digits``.

    Attributes:
        epochs: training epochs (0: only the initial checkpoint).
        batch: training batch size.
        lr: Adam's initial learning rate, cosine-annealed to 0 over all steps (the same for every model).
        n_z: width of the tanh DEQ; the monotone DEQ's and the MLP's widths match its parameter count.
        m: monotonicity margin of the monotone DEQ, ``W = (1 − m)I − AᵀA + B − Bᵀ``.
        alpha: Peaceman–Rachford step of the monotone DEQ.
        deq_solver: forward (and adjoint) solver of the tanh DEQ, a registry name (not ``solver``: that key is the
            group of the other commands' solver presets, ``solver=<preset>``, so it could not be set here).
        rtol: the training solves' stopping rule ``‖f(z) − z‖ ≤ rtol·‖f(z)‖`` (both DEQs).
        max_iter: forward iterations allowed per batch (both DEQs).
        test_fraction: share of the 1,797 images held out for the test accuracy.
        checkpoints: curvature checkpoints, evenly spaced from epoch 0 (initialisation) to the last (0: none).
        hessian_batch: training images of the checkpoints' loss.
        lanczos_steps, slq_probes: stochastic Lanczos quadrature (``slq_probes·lanczos_steps`` HVPs).
        eig_tol: ARPACK's relative tolerance for the top eigenvalue.
        seed: torch seed of the weights and of the batch order; data_seed: the train/test split.
        threads: torch threads (0: torch's default).
        models: which of ``tanh_deq``, ``monotone_deq``, ``mlp`` to train.
    """

    epochs: int = 30
    batch: int = 64
    lr: float = 3e-3
    n_z: int = 64
    m: float = 0.05
    alpha: float = 1.0
    deq_solver: str = "anderson"
    rtol: float = 1e-4
    max_iter: int = 100
    test_fraction: float = 0.25
    checkpoints: int = 4
    hessian_batch: int = 256
    lanczos_steps: int = 24
    slq_probes: int = 4
    eig_tol: float = 1e-3
    seed: int = 0
    data_seed: int = 0
    threads: int = 1
    models: List[str] = field(default_factory=lambda: list(MODEL_NAMES))
    device: str = "cpu"   # the CPU only: this command has not been checked on CUDA

    def __post_init__(self) -> None:
        checks.count("epochs", self.epochs, minimum=0, maximum=100_000)
        checks.count("batch", self.batch, maximum=100_000)
        checks.number("lr", self.lr, minimum=0.0, maximum=10.0, exclusive=True)
        checks.count("n_z", self.n_z, maximum=10_000)
        checks.margin("m", self.m, maximum=1.0)
        checks.number("alpha", self.alpha, minimum=0.0, maximum=1e6, exclusive=True)
        checks.choice("deq_solver", self.deq_solver, SOLVER_NAMES)
        checks.relative_tolerance("rtol", self.rtol)
        checks.count("max_iter", self.max_iter, maximum=1_000_000)
        checks.number("test_fraction", self.test_fraction, minimum=0.0, maximum=0.9, exclusive=True)
        checks.count("checkpoints", self.checkpoints, minimum=0, maximum=1_000)
        checks.count("hessian_batch", self.hessian_batch, maximum=100_000)
        checks.count("lanczos_steps", self.lanczos_steps, maximum=10_000)
        checks.count("slq_probes", self.slq_probes, maximum=10_000)
        checks.number("eig_tol", self.eig_tol, minimum=0.0, maximum=1.0)
        checks.seed("seed", self.seed)
        checks.seed("data_seed", self.data_seed, numpy=True)
        checks.threads("threads", self.threads, minimum=0)
        _cpu_only(self.device)
        checks.choices("models", self.models, MODEL_NAMES)

    def unread(self) -> dict[str, str]:
        """The keys this run does not read, and why (:func:`deqlab.cli.compose.refuse_unread`): the checkpoints'
        keys without checkpoints, and a model's own keys when ``models`` leaves it out (``n_z`` is always read:
        every model's width is matched to the tanh DEQ's parameter count)."""
        out = {}
        if not self.checkpoints:
            why = "it is read only by the loss-Hessian checkpoints, and checkpoints = 0 takes none"
            out |= dict.fromkeys(("hessian_batch", "lanczos_steps", "slq_probes", "eig_tol"), why)
        models = f"models = [{','.join(self.models)}]"
        if "tanh_deq" not in self.models:
            out["deq_solver"] = f"it is the tanh DEQ's solver, and {models} does not train that model"
        if "monotone_deq" not in self.models:
            out |= dict.fromkeys(("m", "alpha"), f"it is read only by the monotone DEQ, and {models} does not train it")
        if not {"tanh_deq", "monotone_deq"} & set(self.models):
            out |= dict.fromkeys(("rtol", "max_iter"), f"it governs the DEQs' forward solves, and {models} trains no DEQ")
        return out

    def tanh_parameter_count(self, n_x: int = 64, n_y: int = 10) -> int:
        """``P = n_z² + (n_x + 1 + n_y) n_z + n_y`` of the tanh DEQ classifier (8 × 8 = 64 pixels in, 10 classes out);
        the other models' widths are chosen to match it."""
        return self.n_z * self.n_z + (n_x + 1 + n_y) * self.n_z + n_y

    def memory_estimates(self) -> list[Estimate]:
        """Each model has about the tanh DEQ's ``P`` parameters (:meth:`tanh_parameter_count`): weights, gradient and
        Adam's two moments; a checkpoint's Lanczos basis holds ``lanczos_steps`` more vectors of ``P``, and its
        per-sample factorisations ``linear="auto"`` caps at 256 MiB."""
        P = self.tanh_parameter_count()
        out = [Estimate(dense_bytes(4 * len(self.models), P), "n_z", f"{len(self.models)} models of P = {P:,} "
                        "parameters (weights, gradient, Adam's moments)")]
        if self.checkpoints:
            out.append(Estimate(dense_bytes(self.lanczos_steps + 4, P) + 4 * 2.0**28, "n_z / lanczos_steps",
                                "a checkpoint's Lanczos vectors and factorisations"))
            # The checkpoint's loss-Hessian products hold per-sample n_z × n_z work (the Jacobians of the DEQ's
            # map): peak RSS over a run without checkpoints, tanh DEQ alone, measured 0.88 GB at n_z = 1500 with
            # hessian_batch = 8 and 2.0 GB with 32, 9.6 GB at n_z = 3000 with 32: at most 4 such matrices per
            # sample. (Left out, n_z = 10000 passed the guard and was killed by the kernel at 22.7 GB.)
            out.append(Estimate(4 * dense_bytes(self.hessian_batch * self.n_z, self.n_z), "n_z / hessian_batch",
                                "a checkpoint's per-sample n_z x n_z Jacobians"))
        return out

    @classmethod
    def tiny(cls, **overrides) -> Settings:
        """:data:`TINY` (a run of seconds) with ``overrides`` on top."""
        return cls(**{**TINY, **overrides})
