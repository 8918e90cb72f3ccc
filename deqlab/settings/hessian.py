"""Settings of ``deqlab hessian``: the exact DEQ gradient and Hessian checked against independent routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from deqlab.errors import InputError
from deqlab.settings import checks
from deqlab.settings.models import TanhDEQSettings
from deqlab.settings.resources import Estimate, dense_bytes
from deqlab.settings.solver import SolverSettings

#: the parameter groups of the tanh DEQ, in the canonical order of ``deqlab.implicit.params``
GROUPS = ("W_z", "b_z", "U_z", "W_y", "b_y")
#: the dense generic closed form (route (d) and the pitfall) runs when ``batch · n_z`` is at most this: its
#: state is the whole batch flattened
MAX_GENERIC_STATE = 400
#: vectors of ``P`` the matrix-free mode holds at its peak (SLQ's Lanczos basis and its stacked copy, ARPACK's
#: Lanczos vectors and workspace): peak RSS over the loaded interpreter measured 114, 140 and 103 of them at
#: P = 0.70e6, 2.50e6 and 6.10e6 (n_y = 100000, n_z = 6, 24, 60: 0.99, 3.14 and 5.39 GB)
HVP_VECTORS = 160


def group_sizes(model: TanhDEQSettings) -> dict[str, int]:
    n, d, k = model.n_z, model.n_x, model.n_y
    return {"W_z": n * n, "b_z": n, "U_z": n * d, "W_y": k * n, "b_y": k}


@dataclass
class Settings:
    """The errata's case by default: ``N = 6``, ``P = 54`` for ``(W_z, b_z, U_z)``, plus a readout."""

    device: str = "cpu"   # cpu | cuda | cuda:N | auto (CUDA when there is one)
    seed: int = 0                       # torch seed of the weights
    dtype: str = "float64"
    model: TanhDEQSettings = field(default_factory=lambda: TanhDEQSettings(n_z=6, n_x=2, n_y=1))
    # forward solve of z*; its tolerances also drive the implicit layer's solves (the Hessian's error follows z*'s)
    solver: SolverSettings = field(default_factory=lambda: SolverSettings.preset("anderson", atol=1e-14, max_iter=2000))
    batch: int = 1                      # samples (x_s, y_s); curvature is summed over them
    input_seed: int = 1                 # torch seed of x ~ N(0, 1) and y ~ N(0, 1)
    groups: List[str] = field(default_factory=lambda: list(GROUPS))  # parameter groups forming theta
    check_fd: bool = False              # (a) central finite differences of the implicit gradient (2P solves)
    fd_step: float = 1e-5
    unroll_steps: int = 100             # (b) torch.func.hessian through this many unrolled layers from z = 0
    check_layer: bool = True            # (c) torch.func.hessian through the implicit layer
    pitfall: bool = True                # the seed's "2 M^T Z" variant (dense generic pieces; small problems)
    max_dense_p: int = 3000             # refuse a dense Hessian above this P (use --hvp-only)
    max_reference_p: int = 400          # skip the O(P)-pass autodiff routes (b), (c) and the pitfall above this P
    max_cond: float = 1e8               # cond(I - J) above this at z* (any sample): refuse, exit 1
    require_contractive: bool = True    # spectral radius of J >= 1 at z* (any sample): refuse, exit 1
    go_on: bool = False                 # report derivatives even if the forward solve did not converge (marked)
    hvp_only: bool = False              # matrix-free mode: eigsh + Hutchinson + HVP vs FD, no dense H
    top_k: int = 5                      # eigenvalues at each end (hvp_only)
    probes: int = 64                    # Hutchinson probes (hvp_only)
    eigsh_tol: float = 1e-8

    def __post_init__(self) -> None:
        checks.device("device", self.device)
        checks.seed("seed", self.seed)
        checks.seed("input_seed", self.input_seed)
        checks.choice("dtype", self.dtype, checks.DTYPES)
        checks.count("batch", self.batch, maximum=1_000_000)
        checks.choices("groups", self.groups, GROUPS)   # (none twice, at least one)
        self.groups = [g for g in GROUPS if g in self.groups]  # the canonical order
        checks.step("fd_step", self.fd_step)
        checks.count("unroll_steps", self.unroll_steps, maximum=100_000)
        checks.count("max_dense_p", self.max_dense_p, maximum=10**6)
        checks.count("max_reference_p", self.max_reference_p, maximum=10**5)
        checks.number("max_cond", self.max_cond, minimum=1.0)
        checks.count("top_k", self.top_k, maximum=10_000)
        # (Hutchinson's standard error needs two probes: probes=1 was refused only as the run reached it, so a
        # sweep over it started its jobs)
        checks.count("probes", self.probes, minimum=2, maximum=1_000_000)
        checks.number("eigsh_tol", self.eigsh_tol, minimum=0.0, maximum=1.0)
        P = self.parameter_count()
        if not self.hvp_only and P > self.max_dense_p:
            raise InputError(f"P = {P} parameters is above max_dense_p = {self.max_dense_p} for a dense Hessian; use --hvp-only")
        if self.hvp_only and P < 2 * self.top_k + 1:
            raise InputError(f"P = {P} is too small for top_k = {self.top_k} eigenvalues at each end")

    def unread(self) -> dict[str, str]:
        """The keys this run does not read, and why (:func:`deqlab.cli.compose.refuse_unread`)."""
        if self.hvp_only:
            why = "it sizes or checks the dense Hessian, which --hvp-only does not form (drop one of them)"
            return {**dict.fromkeys(("max_dense_p", "max_reference_p", "unroll_steps", "check_layer", "pitfall"), why),
                    # (the flag did nothing: no dense H for the finite differences to be compared with)
                    "check_fd": "it (--check-fd) compares the dense Hessian with finite differences and --hvp-only forms "
                                "none (it checks its HVPs against finite differences of the gradient itself): drop one "
                                "of them"}
        why = "it is read only by the matrix-free mode (add --hvp-only, or drop the key)"
        out = dict.fromkeys(("top_k", "probes", "eigsh_tol"), why)
        if not self.check_fd:   # (the matrix-free mode reads it for its HVP check; the dense one only with --check-fd)
            out["fd_step"] = "it is the step of the finite-difference check, which runs only with --check-fd (or --hvp-only)"
        return out

    def parameter_count(self) -> int:
        sizes = group_sizes(self.model)
        return sum(sizes[g] for g in self.groups)

    def memory_estimates(self) -> list[Estimate]:
        """Bytes at the run's peak, by what holds them. The readout's width ``n_y`` costs even when ``θ`` leaves
        ``W_y, b_y`` out (``P`` then does not grow with it): the targets and residuals ``(batch, n_y)``, the closed
        form's ``W_y Z`` products ``(batch, n_z, n_y)``, and in the autodiff and generic routes one ``(batch, n_y)``
        output per column of the Jacobian they differentiate (``P`` columns; ``batch · n_z`` for the generic loss
        Hessian). Factors from peak RSS (``/usr/bin/time -v``) over the loaded interpreter, n_y = 100000 unless
        said: closed form 3.2 x batch·n_z·n_y·8 (batch 64, n_z 6; n_z 24, n_y 25000: 3.1), matrix-free operator
        2 x batch·n_y·8 (batch 256), routes (b) and (c) 4.2-4.7 x P·batch·n_y·8 (P 54, batch 4 and 16; P 180, n_y
        25000), route (d) 4.2-5.4 x (batch·n_z)·batch·n_y·8 (batch 4 and 16; n_z 12, batch 8, n_y 25000)."""
        P, N, B, K = self.parameter_count(), self.model.n_z, self.batch, self.model.n_y
        out = [Estimate(6 * dense_bytes(B, N * N), "model.n_z / batch", f"{B} factorisations of {N}x{N}"),
               Estimate(4 * dense_bytes(B, K), "model.n_y / batch", f"the targets and residuals, {B}x{K}")]
        if self.hvp_only:
            out.append(Estimate(HVP_VECTORS * dense_bytes(P, 1), "model.n_z / model.n_y (or groups)",
                                f"the Lanczos vectors of P = {P:,}"))
        else:
            out.append(Estimate(4 * dense_bytes(B * N, K), "model.n_y / batch",
                                f"the closed form's readout products, {B}x{N}x{K}"))
            out.append(Estimate(4 * dense_bytes(P, P), "model.n_z (or use --hvp-only)", f"the dense {P}x{P} Hessian"))
        if not self.hvp_only and P <= self.max_reference_p:   # (the demo runs routes (b)-(d) only then)
            # route (b), the unroll, runs whatever check_fd, check_layer and pitfall say (the estimate once
            # counted it only with one of them on: unroll_steps=100000 check_layer=false pitfall=false passed)
            out.append(Estimate(4 * dense_bytes(P, P) + 8.0 * self.unroll_steps * B * N * P, "unroll_steps",
                                "the unrolled reference routes"))
            out.append(Estimate(5 * dense_bytes(P * B, K), "model.n_y / batch (or max_reference_p)",
                                f"the autodiff routes' {P} Jacobian columns of {B}x{K} outputs"))
            if B * N <= MAX_GENERIC_STATE:
                out.append(Estimate(5 * dense_bytes(B * N * B, K), "model.n_y / batch",
                                    f"the generic route's loss Hessian, {B * N} columns of {B}x{K} outputs"))
        return out
