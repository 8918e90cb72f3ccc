"""The result object every solver returns, and the one stopping rule they all share.

Stopping rule (per sample ``b`` of a batch ``z`` of shape ``(batch, n)``)::

    r_b = ‖f(z_b) − z_b‖₂ ≤ atol + rtol · ‖f(z_b)‖₂

A solver stops when every sample satisfies it or after ``max_iter`` iterations. The point it returns
for each sample is the iterate with the smallest residual ``r_b`` it evaluated, and ``converged[b]``
says whether that point satisfies the rule. A solver never reports a point it did not evaluate,
so ``residual`` is exactly ``‖f(z) − z‖`` at the returned ``z``.
"""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from deqlab.errors import InputError
from deqlab.solver_options import check_stopping_rule


def rule_bound(fnorm, atol: float, rtol: float):
    """The stopping rule's bound ``atol + rtol·‖f(z_b)‖`` per sample, from the norms ``‖f(z_b)‖`` (a NumPy
    array or a tensor); with ``atol = 0`` just ``rtol·‖f(z_b)‖`` (one operation fewer in every step)."""
    return rtol * fnorm if atol == 0 else atol + rtol * fnorm


def row_norms(t: torch.Tensor) -> torch.Tensor:
    """``‖t_b‖₂`` per row of ``t (batch, n)``, ``(batch,)``, without under- or overflow: each row is divided by
    its largest magnitude first (three more operations than ``torch.linalg.vector_norm``, which sums the
    squares as they are: a row of float64 entries below ``1e-162`` has norm 0 there, one above ``1e154``
    norm inf). A row of zeros has norm 0; a row with NaN or inf keeps a NaN or inf norm."""
    if t.shape[-1] == 0:
        return torch.zeros(t.shape[:-1], dtype=t.dtype, device=t.device)
    top = t.abs().amax(dim=-1, keepdim=True)
    safe = torch.where((top > 0) & torch.isfinite(top), top, torch.ones_like(top))
    return torch.linalg.vector_norm(t / safe, dim=-1) * safe[..., 0]


def tensor_norm(t: torch.Tensor) -> float:
    """``‖t‖₂`` of all of ``t`` as one vector (a Frobenius norm for a matrix), without under- or overflow
    (:func:`row_norms` of ``t`` as one row)."""
    return float(row_norms(t.detach().reshape(1, -1))[0])


def _norm_floor(dtype: torch.dtype) -> float:
    """The smallest norm ``torch.linalg.vector_norm`` gives with full relative accuracy in ``dtype`` (with a wide
    margin: squares below ``finfo.tiny`` are lost, which costs nothing relative above ``sqrt(tiny/eps)``)."""
    info = torch.finfo(dtype)
    return math.sqrt(info.tiny) / info.eps


#: Added to norms in relative residuals so that a zero fixed point does not divide by zero.
NORM_EPS = 1e-30
#: An unconverged solve whose last residual is this many times its best one has moved away: "diverged".
DIVERGED_FACTOR = 100.0
#: The NumPy dtype in which :class:`Monitor` keeps a tensor dtype's per-sample norms on the host.
_HOST_DTYPES = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}


#: ``ndarray.min``/``max`` without the method's Python-level wrapper (0.9 µs against 2 µs at batch 64)
_MIN, _MAX = np.minimum.reduce, np.maximum.reduce


def _any(mask: np.ndarray) -> bool:
    """``mask.any()`` for a ``(batch,)`` bool array, without ``ndarray.any``'s Python-level wrapper
    (0.2 µs against 0.9 µs at batch 64: :meth:`Monitor.observe` asks up to four times per step)."""
    return np.count_nonzero(mask) > 0


class SolverStatus(str, enum.Enum):
    """How a solve ended (cf. optimistix's ``RESULTS``); :attr:`SolverResult.message` says it in words.

    - ``converged``: every sample meets the stopping rule.
    - ``max_steps``: the iteration budget ran out; the residual was not growing.
    - ``diverged``: not converged and the last residual is ≥ :data:`DIVERGED_FACTOR` × the best one
      (the iterates moved away; the best finite iterate is what is returned).
    - ``nonfinite``: the iteration produced NaN/inf for every unconverged sample and stopped; the best
      *finite* iterate is returned, so its residual is finite.
    """

    CONVERGED = "converged"
    MAX_STEPS = "max_steps"
    DIVERGED = "diverged"
    NONFINITE = "nonfinite"


class ConvergenceVerdicts:
    """``all_converged`` and ``max_residual`` of anything with per-sample ``converged`` and ``residual``
    tensors (:class:`SolverResult`, :class:`deqlab.implicit.deq.SolveStats`)."""

    converged: torch.Tensor
    residual: torch.Tensor

    @property
    def all_converged(self) -> bool:
        return bool(self.converged.all())

    @property
    def max_residual(self) -> float:
        """The largest per-sample residual (0 for an empty batch: torch's max() of nothing raised)."""
        return float(self.residual.max()) if self.residual.numel() else 0.0


@dataclass
class SolverResult(ConvergenceVerdicts):
    """Outcome of a fixed-point solve ``z = f(z)``.

    Attributes:
        z: best iterate per sample, shape ``(batch, n)``.
        converged: bool tensor ``(batch,)``: the stopping rule holds at ``z``.
        residual: ``‖f(z) − z‖₂`` at the returned ``z``, shape ``(batch,)``.
        n_steps: iterations taken (for scipy routines: their iteration count, see there).
        n_fevals: evaluations of ``f`` on the whole batch (scipy: summed per-sample calls / batch).
        abs_trace: ``(n_steps, batch)`` absolute residual of each evaluated iterate.
        rel_trace: ``(n_steps, batch)`` the same divided by ``‖f(z)‖₂``.
        wall_time: seconds spent in the solver.
        solver: registry name of the solver.
        atol, rtol: the tolerances the rule used.
        message: a short human-readable account of ``status``, with the figures behind it.
        extras: solver-specific diagnostics.
        status: :class:`SolverStatus`, the machine-readable verdict.
        host_roundtrip: the solve left the device of ``z0``: the iterates went through the host (NumPy/scipy)
            and the result was moved back (``False`` for every pure-torch solver, which stays on ``z0.device``).

    Every tensor field lives on ``z0.device`` (and ``z``, ``residual`` and the traces have ``z0.dtype``).
    """

    z: torch.Tensor
    converged: torch.Tensor
    residual: torch.Tensor
    n_steps: int
    n_fevals: int
    abs_trace: torch.Tensor
    rel_trace: torch.Tensor
    wall_time: float
    solver: str
    atol: float
    rtol: float
    message: str = ""
    extras: dict = field(default_factory=dict)
    status: SolverStatus = SolverStatus.MAX_STEPS
    host_roundtrip: bool = False


def describe(t) -> str:
    """A tensor's shape, dtype and device for a message (``(5, 4) float64 on cpu``); else its type's name."""
    if not isinstance(t, torch.Tensor):
        return type(t).__name__
    return f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')} on {t.device}"


def check_image(z: torch.Tensor, fz, what: str) -> None:
    """``f(z)`` must be a tensor shaped, typed and placed like ``z``: the solvers' arithmetic would
    otherwise broadcast a ``(batch, 1)`` image or cast a float32 one, and solve a different map.
    Raises :class:`~deqlab.errors.InputError` (a ``ValueError``) naming ``what`` (e.g. ``"anderson: f(z)"``)."""
    if not isinstance(fz, torch.Tensor) or fz.shape != z.shape or fz.dtype != z.dtype or fz.device != z.device:
        raise InputError(f"{what} must return a tensor like z, {describe(z)}; got {describe(fz)}")


def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry of ``t`` is finite, in one reduction where it can be: a finite sum means
    finite entries (NaN and ±inf propagate through a sum), and only a sum that is not finite (a
    NaN/inf entry, or finite entries whose sum overflows) is checked entry by entry.
    ``torch.isfinite(t).all()`` is several passes: 37 µs against 3.4 µs for the sum of a
    ``(64, 256)`` float64 tensor on one CPU thread, paid by every solve and every HVP checked."""
    if t.numel() == 0 or not (t.is_floating_point() or t.is_complex()):
        return True
    t = t.detach()   # (float() of a tensor that requires grad warned "Consider using tensor.detach() first")
    if not t.is_complex() and math.isfinite(float(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


def resolution_hint(z: torch.Tensor, atol: float, rtol: float) -> str:
    """Why a solve may stall, or ``""``: a tolerance below what the dtype resolves at ``z`` (a float32
    layer with ``atol = 1e-12``, an ``atol = 1e-300`` in float64), which no number of iterations
    reaches. The resolution is ``eps·max(‖z_b‖, 1)`` over the samples; ``rtol ≥ eps`` resolves."""
    if not z.is_floating_point() or rtol >= torch.finfo(z.dtype).eps:
        return ""
    scale = float(torch.linalg.vector_norm(z, dim=-1).max()) if z.numel() else 0.0
    floor = torch.finfo(z.dtype).eps * max(scale, 1.0)
    if not floor < float("inf") or atol >= floor:   # (a NaN iterate: no hint)
        return ""
    return (f"atol = {atol:g} is below what {str(z.dtype).removeprefix('torch.')} resolves at this z, "
            f"eps·max(‖z‖, 1) = {floor:.1e}: loosen atol{'' if z.dtype == torch.float64 else ' or use float64'}")


def check_start(z0: torch.Tensor) -> None:
    """``z0`` must be a real floating ``(batch, n)`` tensor of finite values (an integer start would make
    every iterate an integer; the stopping rule's comparisons are not defined for complex numbers)."""
    if not isinstance(z0, torch.Tensor):
        raise InputError(f"z0 must be a torch tensor, got {type(z0).__name__}")
    if not z0.is_floating_point():
        raise InputError(f"z0 must be a real floating-point tensor (float32 or float64), got {describe(z0)}")
    if z0.ndim != 2:
        raise InputError(f"z0 must have shape (batch, n), got {tuple(z0.shape)}")
    if not all_finite(z0):
        raise InputError("z0 contains NaN or infinite values")


class Monitor:
    """Applies the stopping rule, keeps the best iterate per sample and records the traces.

    Every solver calls :meth:`observe` once for each evaluated pair ``(z, f(z))``. Samples whose
    residual is NaN never replace a finite best iterate.

    Cost per :meth:`observe`: the two norms on ``z``'s device, one copy of the two ``(batch,)`` norms to
    the host (on a GPU the one synchronisation per step, which the verdict needs anyway), and the
    per-sample bookkeeping in NumPy: a dozen operations on ``(batch,)`` arrays, each well under a
    microsecond, where the same operations as torch tensors cost 1–3 µs each (measured on one CPU
    thread, batch 64, n 50: 23 µs of bookkeeping per step as torch tensors, 12 µs in NumPy, beside
    7.5 µs for the two norms; a tanh layer's evaluation there is ~15 µs).
    The best iterate is kept by reference: the samples that improved at the latest observation have
    their best point in that ``z``, which the monitor holds without copying; their rows are copied
    into its own ``(batch, n)`` buffer only when a later observation does not improve them (a sample
    converged, or its residual went up). So a solver must not modify an observed ``z`` in place
    afterwards (none does; :meth:`observe` raises ``RuntimeError`` if the held ``z`` was modified).
    ``rel_trace`` is formed once, in :meth:`result`, from the recorded ``‖f(z)‖``.
    """

    def __init__(self, z0: torch.Tensor, *, atol: float, rtol: float, max_iter: int, solver: str):
        check_start(z0)
        check_stopping_rule(atol, rtol, max_iter)
        self.atol, self.rtol, self.max_iter, self.solver = float(atol), float(rtol), int(max_iter), solver
        batch = z0.shape[0]
        self._best_z = z0.detach().clone()
        # The bookkeeping runs on the host in z's precision (NumPy has float16/32/64; bfloat16 goes by
        # float64, which holds its values exactly).
        self._host_dtype = _HOST_DTYPES.get(z0.dtype, np.float64)
        self._norm_floor = _norm_floor(z0.dtype)
        self._check_norms = self.rtol > 0 or self.atol < self._norm_floor   # (see observe)
        self._host_view = z0.device.type == "cpu" and z0.dtype in _HOST_DTYPES   # norms shared, not copied
        self._best_res = np.full(batch, np.inf, dtype=self._host_dtype)
        self._open = np.ones(batch, dtype=bool)   # ~best_ok
        self._improved_at = np.zeros(batch, dtype=np.int64)    # how many observations there were when the best residual last fell
        self._best_ok: torch.Tensor | None = None  # best_ok on z's device, made when asked
        # With rtol = 0 ``ok`` is ``r ≤ atol`` (atol is finite: check_stopping_rule), and an open sample has
        # ``best_res > atol``, so ``ok`` implies ``r < best_res``: ``better`` is then ``r < best_res``
        # on open samples, and NaN/inf residuals fail both comparisons (see observe).
        self._absolute = self.rtol == 0
        self._held: torch.Tensor | None = None        # the latest observed z ...
        self._held_rows: np.ndarray | None = None     # ... is the best iterate of these samples
        self._held_version = 0
        self._done = batch == 0
        self._hopeless = False
        self._abs_trace: list[np.ndarray] = []
        self._fnorm_trace: list[np.ndarray] = []
        self.n_fevals = 0
        self.started = time.perf_counter()

    @property
    def best_ok(self) -> torch.Tensor:
        """``(batch,)`` bool on ``z``'s device: the sample's kept iterate meets the stopping rule (it is
        then frozen). Made again only after a sample converged."""
        if self._best_ok is None:
            self._best_ok = torch.from_numpy(~self._open).to(self._best_z.device)
        return self._best_ok

    @property
    def best_z(self) -> torch.Tensor:
        """``(batch, n)``: the kept iterate of every sample (the monitor's own tensor)."""
        self._settle(None)
        return self._best_z

    def _settle(self, better: np.ndarray | None) -> None:
        """Copy the held rows that ``better`` does not renew (all of them for ``None``) into the buffer."""
        held = self._held
        if held is None:
            return
        stale = self._held_rows if better is None else self._held_rows & ~better
        if better is not None and not _any(stale):
            return
        if not held.is_inference() and held._version != self._held_version:
            raise RuntimeError(f"{self.solver}: an iterate given to Monitor.observe was modified in place afterwards")
        rows = torch.from_numpy(stale).to(held.device)
        torch.where(rows[:, None], held, self._best_z, out=self._best_z)
        if better is None:
            self._held = self._held_rows = None

    def _norms_on_host(self, res: torch.Tensor, fnorm: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The ``(batch,)`` norms as NumPy arrays: views of CPU tensors where they have storage, else
        one copy of both (from a GPU; a bfloat16 pair; a solve inside a ``torch.func`` transform,
        whose tensors have no storage of their own)."""
        if self._host_view:
            try:
                return res.cpu().numpy(), fnorm.cpu().numpy()   # (.cpu(): no copy, they are on the host)
            except RuntimeError:
                self._host_view = False
        both = np.array(torch.stack((res, fnorm)).tolist(), dtype=self._host_dtype)
        return both[0], both[1]

    def observe(self, z: torch.Tensor, fz: torch.Tensor, difference: torch.Tensor | None = None) -> torch.Tensor:
        """Record one evaluated iterate; returns the per-sample ``converged`` mask of ``z`` (on the host).

        ``difference``: ``f(z) − z`` when the solver has it already (Anderson keeps it), so that it
        is not computed twice. ``z`` must not be modified in place afterwards (class docstring).
        """
        check_image(z, fz, f"{self.solver}: f(z)")
        if z.requires_grad or fz.requires_grad:     # (the solvers run under no_grad: no detach to pay for)
            z, fz = z.detach(), fz.detach()
        if difference is None:
            difference = fz - z
        res, fnorm = self._norms_on_host(torch.linalg.vector_norm(difference, dim=-1), torch.linalg.vector_norm(fz, dim=-1))
        # Norms that may have under- or overflowed are formed again by rows scaled to 1 (rare: a fixed point
        # near 1e-170 had ‖f(z)‖ = ‖f(z) − z‖ = 0, so z = 0 'converged' under a relative rule; 100% wrong).
        # Checked only where the verdict can depend on it (two reductions, ~2 µs a step): ‖f(z)‖ under a relative
        # rule, the residual where atol itself is below the floor (above it, a residual that underflowed, a true
        # value below ~1e-150 in float64, meets the rule anyway). The default absolute rule pays nothing.
        floor = self._norm_floor
        if self._check_norms and res.size and not (
                floor <= _MIN(fnorm) and _MAX(fnorm) < np.inf and (self.atol >= floor or floor <= _MIN(res))):
            # only the rows in question: the others keep their norms bit for bit (a NaN or inf row is the same either way)
            redo = ~((floor <= fnorm) & (fnorm < np.inf))
            if self.atol < floor:
                redo |= ~(floor <= res)
            if _any(redo):
                scaled_res, scaled_fnorm = self._norms_on_host(row_norms(difference), row_norms(fz))
                res, fnorm = np.where(redo, scaled_res, res), np.where(redo, scaled_fnorm, fnorm)
        self._abs_trace.append(res)
        self._fnorm_trace.append(fnorm)
        open_ = self._open
        # A converged sample keeps the first point that met the rule; otherwise keep the smallest
        # residual seen (a point that meets the rule always wins, which matters when rtol > 0).
        finite = np.isfinite(res)
        if self._absolute:
            ok = res <= self.atol
            better = (res < self._best_res) & open_
        else:
            bound = rule_bound(fnorm, self.atol, self.rtol)
            # ‖f(z)‖ overflowing to inf is no scale to be relative to: such a sample (a diverging
            # forward-backward solve, ‖f(z) − z‖ = 1e154) was declared converged
            ok = (res <= bound) & np.isfinite(fnorm)
            better = ((res < self._best_res) | ok) & open_ & finite
        self._settle(better)
        self._held, self._held_rows = z, better
        self._held_version = 0 if z.is_inference() else z._version
        np.copyto(self._best_res, res, where=better)
        np.copyto(self._improved_at, len(self._abs_trace), where=better)
        closed = ok & open_ if self._absolute else better & ok
        if _any(closed):
            open_[closed] = False
            self._best_ok = None
        # Is any open sample's residual still finite? If not, the solve is over: converged (no open
        # sample) or hopeless.
        if not _any(finite & open_):
            self._done = not _any(open_)
            self._hopeless = not self._done
        return torch.from_numpy(ok)

    def stalled(self, patience: int) -> np.ndarray:
        """``(batch,)`` host mask of the open samples whose best residual has not fallen in the last
        ``patience`` observations; their count starts again from zero (so each is reported once per
        ``patience`` observations without progress)."""
        observed = len(self._abs_trace)
        mask = (observed - self._improved_at >= patience) & self._open
        if _any(mask):
            self._improved_at[mask] = observed
        return mask

    @property
    def done(self) -> bool:
        return self._done

    @property
    def hopeless(self) -> bool:
        """Every unconverged sample's latest residual is non-finite: iterating further cannot help."""
        return self._hopeless

    def _on_device(self, host: np.ndarray) -> torch.Tensor:
        """A host array of the bookkeeping as a tensor in ``z``'s dtype and on its device."""
        return torch.from_numpy(host).to(self._best_z.device, self._best_z.dtype)

    def result(self, n_steps: int, *, host_roundtrip: bool = False, **extras) -> SolverResult:
        status = self.status()
        open_ = self._open
        best = float(self._best_res[open_].max()) if not self.done else 0.0
        kept = f"the best finite iterate (residual {best:.3g}) is returned" if best < float("inf") else "no finite iterate"
        if status is SolverStatus.CONVERGED:
            message = "converged"
        elif status is SolverStatus.NONFINITE:
            message = f"non-finite iterate (NaN/inf) after {n_steps} steps; {kept}"
        elif status is SolverStatus.DIVERGED:
            last = float(self._abs_trace[-1][open_].max())
            message = f"diverged: residual grew to {last:.3g} after {n_steps} steps; {kept}"
        else:
            message = f"not converged after {n_steps} steps"
        best_z = self.best_z
        if status is not SolverStatus.CONVERGED and (hint := resolution_hint(best_z, self.atol, self.rtol)):
            message += f" ({hint})"
        if self._abs_trace:
            abs_trace = self._on_device(np.stack(self._abs_trace))
            rel_trace = abs_trace / (self._on_device(np.stack(self._fnorm_trace)) + NORM_EPS)
        else:
            abs_trace = rel_trace = torch.zeros((0, best_z.shape[0]), dtype=best_z.dtype, device=best_z.device)
        return SolverResult(
            z=best_z,
            converged=self.best_ok,
            residual=self._on_device(self._best_res.copy()),
            n_steps=n_steps,
            n_fevals=self.n_fevals,
            abs_trace=abs_trace,
            rel_trace=rel_trace,
            wall_time=time.perf_counter() - self.started,
            solver=self.solver,
            atol=self.atol,
            rtol=self.rtol,
            message=message,
            extras=extras,
            status=status,
            host_roundtrip=host_roundtrip,
        )

    def status(self) -> SolverStatus:
        """The verdict on the iterates observed so far (see :class:`SolverStatus`)."""
        if self.done:
            return SolverStatus.CONVERGED
        if self._abs_trace and self.hopeless:
            return SolverStatus.NONFINITE
        if self._abs_trace:
            open_ = self._open
            if _any(self._abs_trace[-1][open_] >= DIVERGED_FACTOR * self._best_res[open_]):
                return SolverStatus.DIVERGED
        return SolverStatus.MAX_STEPS
