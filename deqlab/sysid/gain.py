"""Lower bounds of a sequence model's incremental ℓ₂ gain (its Lipschitz constant as an input/output map).

The quantity bounded is, for a model started from its zero state,

    γ* = sup_{T, u_a ≠ u_b}  ‖y(u_a) − y(u_b)‖₂ / ‖u_a − u_b‖₂      (ℓ₂ norms over all T steps and channels)

in the units of the model's signals (physical units for a :class:`~deqlab.sysid.models.Normalised` model).
A Lipschitz REN with bound γ guarantees ``γ* ≤ γ``; every number computed here is ``≤ γ*``. Two routes:

1. **Ascent on input pairs** (:func:`ascent_gain`): multi-start Adam on ``log‖Δy‖ − log‖Δu‖`` over pairs
   ``(u_a, u_b = u_a + δ)`` of ``T`` steps, for several horizons ``T``, starting from windows of data,
   from random inputs, at several perturbation sizes ``‖δ‖``, and from the worst-case sinusoid of the
   linearisation (route 2). Every ratio it reports is *realised* by a pair it simulated.
2. **H∞ norm of the linearisation at constant-input equilibria** (:func:`linearised_gains`): for a constant
   input ``u₀`` the model's state settles (for a contracting model, always) at ``x₀ = f(x₀, u₀)``. Small
   perturbations ``u = u₀ + εp`` after the state has settled give ``Δy ≈ ε G ∗ p`` with the linearisation
   ``x⁺ = A x + B u, y = C x + D u`` (``A = ∂f/∂x`` etc. at ``(x₀, u₀)``); with a long settling prefix, ε → 0
   and T → ∞ the ratio tends to ``‖G‖∞ = max_ω σ_max(C(e^{iω}I − A)⁻¹B + D)``, so ``‖G‖∞ ≤ γ*``
   (a limit of realisable ratios, not itself one pair). :func:`hinf_norm` computes it by a frequency sweep
   (a dense grid on ``[0, π]`` refined around the peak by bounded scalar minimisation).

:func:`incremental_gain_lower_bound` runs both and says which gave the maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from deqlab.errors import InputError, require_count, require_number
from deqlab.sysid.metrics import model_device, real_array

#: a constant-input state counts as settled when one more step moves it by less than this (relative)
SETTLE_RTOL = 1e-10
#: frequencies of the H∞ sweep grid before the refinement
HINF_GRID = 2048
#: the most bytes of complex matrices ``e^{iω}I − A`` that :func:`frequency_response` holds at once: the grid
#: grows by 101 frequencies per pole, and the whole sweep at once needed about ``101 n³·16`` bytes (171 GiB
#: for a model with a 600-state linearisation, where training had taken 0.8 GiB)
FREQUENCY_BLOCK_BYTES = 2**23


# --- state handling shared by every model kind ------------------------------------------------------

def _flatten_state(state) -> torch.Tensor:
    """A model state (a tensor, or a tuple of tensors such as the LSTM's ``(h, c)``) → (batch, n_state).
    The batch axis is the first axis of a REN/linear state and the second of a torch RNN/LSTM state."""
    parts = state if isinstance(state, tuple) else (state,)
    flat = []
    for s in parts:
        flat.append(s.reshape(s.shape[0], -1) if s.dim() == 2 else s.transpose(0, 1).reshape(s.shape[1], -1))
    return torch.cat(flat, dim=1)


def _state_unflattener(template):
    """The inverse of :func:`_flatten_state` for states shaped like ``template`` (any batch size)."""
    parts = template if isinstance(template, tuple) else (template,)
    sizes = [s[0].numel() if s.dim() == 2 else s[:, 0].numel() for s in parts]
    shapes = [s.shape for s in parts]

    def unflatten(flat: torch.Tensor):
        out, k = [], 0
        for size, shape in zip(sizes, shapes):
            chunk = flat[:, k:k + size]
            k += size
            if len(shape) == 2:
                out.append(chunk.reshape(flat.shape[0], shape[1]))
            else:
                out.append(chunk.reshape(flat.shape[0], shape[0], shape[2]).transpose(0, 1).contiguous())
        return tuple(out) if isinstance(template, tuple) else out[0]
    return unflatten


def _core_and_scaling(model):
    """``(core, u_mean, u_std, y_mean, y_std)``: a Normalised model's core and its standardisation, or the
    model itself with unit scaling."""
    if hasattr(model, "core") and hasattr(model, "u_std"):
        return model.core, model.u_mean, model.u_std, model.y_mean, model.y_std
    n_u = model.n_u
    n_y = model.n_y
    device = model_device(model)
    z = lambda n: torch.zeros(n, dtype=torch.float64, device=device)
    o = lambda n: torch.ones(n, dtype=torch.float64, device=device)
    return model, z(n_u), o(n_u), z(n_y), o(n_y)


# --- route 2: the linearisation at constant-input equilibria ----------------------------------------

@dataclass
class Linearisation:
    """``x⁺ = A x + B u``, ``y = C x + D u`` (deviations from the equilibrium), physical units.
    ``A`` (n, n), ``B`` (n, n_u), ``C`` (n_y, n), ``D`` (n_y, n_u); ``u0`` (n_u,) the constant input;
    ``settled``: whether the state from zero reached the equilibrium to :data:`SETTLE_RTOL`."""

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    D: np.ndarray
    u0: np.ndarray
    settled: bool
    spectral_radius: float


def linearise(model, u0: np.ndarray, *, settle_steps: int = 3000) -> list[Linearisation]:
    """Linearisations of ``model`` at the equilibria reached from the zero state under constant inputs.

    ``u0`` (levels, n_u) in the model's (physical) input units. All levels are simulated together for up
    to ``settle_steps`` steps; a level whose last step still moves the state by more than
    :data:`SETTLE_RTOL` (relative) is returned with ``settled=False`` (a limit cycle or a slow model:
    its linearisation proves nothing; so is one whose Jacobians are not finite, with ``spectral_radius``
    NaN). Jacobians by reverse mode through one step of the model.
    """
    core, u_mean, u_std, _, y_std = _core_and_scaling(model)
    u0 = real_array("u0", u0, 2)
    if u0.shape[1] != u_mean.numel():   # (torch's "mat1 and mat2 shapes cannot be multiplied")
        raise InputError(f"u0 must be (levels, n_u) with n_u = {u_mean.numel()} (the model's inputs), got {u0.shape}")
    settle_steps = require_count("settle_steps", settle_steps)
    if u0.shape[0] == 0:
        return []
    u0 = torch.as_tensor(u0, device=u_mean.device)
    levels = u0.shape[0]
    un = (u0 - u_mean) / u_std
    template = core.initial_state(levels)
    unflatten = _state_unflattener(template)
    with torch.no_grad():
        state = template
        chunk = 500
        done = 0
        settled = torch.zeros(levels, dtype=torch.bool, device=u0.device)
        while done < settle_steps:
            n = min(chunk, settle_steps - done)
            _, state = core(un[:, None, :].expand(levels, n, un.shape[1]).contiguous(), state)
            done += n
            before = _flatten_state(state)
            _, after_state = core(un[:, None, :], state)
            after = _flatten_state(after_state)
            settled = (after - before).norm(dim=1) <= SETTLE_RTOL * after.norm(dim=1).clamp_min(1e-300) + 1e-300
            state = after_state
            if bool(settled.all()):
                break
        x_eq = _flatten_state(state)
    out = []
    for i in range(levels):
        def step(x, u, _i=i):
            y, nxt = core(((u - u_mean) / u_std)[None, None, :], unflatten(x[None, :]))
            return torch.cat([(y[0, 0] * y_std), _flatten_state(nxt)[0]])

        jx, ju = torch.autograd.functional.jacobian(step, (x_eq[i].clone(), u0[i].clone()))
        n_y = y_std.numel()
        C, A = jx[:n_y].cpu().numpy(), jx[n_y:].cpu().numpy()  # the frequency responses are numpy's, on the host
        D, B = ju[:n_y].cpu().numpy(), ju[n_y:].cpu().numpy()
        finite = all(np.isfinite(m).all() for m in (A, B, C, D))
        # (a state that overflowed, or NaN in the model: eigvals raised numpy's LinAlgError; such a point proves nothing)
        rho = (float(np.max(np.abs(np.linalg.eigvals(A)))) if A.size else 0.0) if finite else math.nan
        out.append(Linearisation(A=A, B=B, C=C, D=D, u0=u0[i].cpu().numpy(), settled=bool(settled[i]) and finite,
                                 spectral_radius=rho))
    return out


def frequency_response(A, B, C, D, omega: np.ndarray) -> np.ndarray:
    """``G(e^{iω}) = C(e^{iω}I − A)⁻¹B + D`` for each ``ω`` (rad/sample): (len(ω), n_y, n_u), complex.
    Solved in blocks of frequencies, at most :data:`FREQUENCY_BLOCK_BYTES` of ``n × n`` matrices at a time."""
    n = A.shape[0]
    z = np.exp(1j * np.asarray(omega, dtype=np.float64))
    if n == 0:
        return np.broadcast_to(D.astype(complex), (len(z), *D.shape)).copy()
    out = np.empty((len(z), C.shape[0], B.shape[1]), dtype=complex)
    step = max(1, FREQUENCY_BLOCK_BYTES // (16 * n * n))
    A, B, diagonal = A.astype(complex), B.astype(complex), np.arange(n)
    for start in range(0, len(z), step):
        block = z[start:start + step]
        M = np.repeat(-A[None], len(block), axis=0)
        M[:, diagonal, diagonal] += block[:, None]
        out[start:start + step] = C[None] @ np.linalg.solve(M, np.broadcast_to(B, (len(block), *B.shape))) + D[None]
    return out


def _state_space(A, B, C, D) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(A, B, C, D)`` as real finite float64 matrices of consistent shapes (``A`` (n, n), ``B`` (n, n_u),
    ``C`` (n_y, n), ``D`` (n_y, n_u)); else :class:`InputError`. NaN in ``A`` was numpy's "Array must not
    contain infs or NaNs", NaN in ``B`` "SVD did not converge", inf in ``C`` a norm of NaN returned as the
    answer, a complex ``A`` lost its imaginary part with only a warning, and mismatched shapes were
    gufunc messages."""
    A, B, C, D = (real_array(f"hinf_norm: {name}", m, 2) for name, m in zip("ABCD", (A, B, C, D)))
    n = A.shape[0]
    if A.shape != (n, n) or B.shape[0] != n or C.shape[1] != n or D.shape != (C.shape[0], B.shape[1]):
        raise InputError(f"hinf_norm: shapes must be A (n, n), B (n, n_u), C (n_y, n), D (n_y, n_u); got A {A.shape}, "
                         f"B {B.shape}, C {C.shape}, D {D.shape}")
    return A, B, C, D


def hinf_norm(A, B, C, D, *, grid: int = HINF_GRID) -> tuple[float, float]:
    """``(‖G‖∞, ω_peak)`` of the discrete-time system ``(A, B, C, D)`` by a frequency sweep: the largest
    singular value of ``G(e^{iω})`` on ``grid`` frequencies in ``[0, π]`` (uniform, plus a geometric grid
    near 0 and around every pole angle), then refined by bounded Brent minimisation between the best
    point's neighbours. ``inf`` if ``A`` has an eigenvalue on or outside the unit circle; ``(0, 0)`` for a system
    without inputs or outputs (``G`` is empty). :class:`InputError`
    for matrices that are not real, finite and of consistent shapes, or a ``grid`` below 2."""
    from scipy.optimize import minimize_scalar

    A, B, C, D = _state_space(A, B, C, D)
    grid = require_count("grid", grid, minimum=2)
    if D.size == 0:   # (no input or no output: G is an empty matrix, of norm 0; the sweep raised numpy's IndexError)
        return 0.0, 0.0
    if A.size and np.max(np.abs(np.linalg.eigvals(A))) >= 1.0:
        return math.inf, float("nan")
    poles = np.abs(np.angle(np.linalg.eigvals(A))) if A.size else np.zeros(0)
    omega = np.unique(np.concatenate([
        np.linspace(0.0, np.pi, grid), np.geomspace(1e-6, 1e-1, 64),
        *(np.clip(p + np.linspace(-0.05, 0.05, 101), 0.0, np.pi) for p in poles)]))

    def sigma(w):
        return np.linalg.svd(frequency_response(A, B, C, D, np.atleast_1d(w)), compute_uv=False)[:, 0]

    with np.errstate(over="ignore", invalid="ignore"):
        values = sigma(omega)
    if not np.isfinite(values).all():   # (an overflow in G(e^{iω}): np.argmax took the NaN as the norm)
        raise InputError("hinf_norm: the frequency response overflows float64 (entries too large); rescale B, C or D")
    k = int(np.argmax(values))
    best, w_best = float(values[k]), float(omega[k])
    lo, hi = omega[max(k - 1, 0)], omega[min(k + 1, len(omega) - 1)]
    if hi > lo:
        res = minimize_scalar(lambda w: -float(sigma(w)[0]), bounds=(lo, hi), method="bounded",
                              options={"xatol": 1e-12})
        if -res.fun > best:
            best, w_best = float(-res.fun), float(res.x)
    return best, w_best


# --- route 1: ascent on input pairs -------------------------------------------------------------------

def _ratio(model, ua: torch.Tensor, ub: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ya, _ = model(ua)
    yb, _ = model(ub)
    num = (ya - yb).flatten(1).norm(dim=1)
    den = (ua - ub).flatten(1).norm(dim=1)
    return num / den.clamp_min(1e-300), num, den


def ascent_gain(model, starts_a: torch.Tensor, starts_delta: torch.Tensor, *, iters: int, lr: float,
                scale: torch.Tensor) -> tuple[float, int]:
    """Adam ascent on ``log‖Δy‖ − log‖Δu‖`` from pairs ``u_a = starts_a``, ``u_b = u_a + starts_delta``
    (pairs, T, n_u), physical units; steps are taken in units of ``scale`` (n_u,) (the input's std).
    Returns the largest realised ratio over all pairs and iterates (every one evaluated exactly, iterate 0
    included) and the index of the pair that gave it (``-1`` if none beat 0); NaN if no ratio was finite. Runs on the model's device (the starts are moved there)."""
    device = model_device(model)
    starts_a, starts_delta, scale = starts_a.to(device), starts_delta.to(device), scale.to(device)
    base = (starts_a / scale).clone().requires_grad_(True)
    delta = (starts_delta / scale).clone().requires_grad_(True)
    opt = torch.optim.Adam([base, delta], lr=lr)
    grads = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    best, best_pair, seen = 0.0, -1, False
    try:
        for it in range(iters + 1):
            ratio, num, den = _ratio(model, base * scale, (base + delta) * scale)
            finite = torch.isfinite(ratio) & (den > 0)
            if finite.any():
                seen = True
                r = torch.where(finite, ratio.detach(), torch.zeros_like(ratio))
                k = int(torch.argmax(r))
                if float(r[k]) > best:
                    best, best_pair = float(r[k]), k
            if it == iters or not finite.any():
                break
            loss = -(torch.log(num[finite] + 1e-300) - torch.log(den[finite])).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
    return (best if seen else math.nan), best_pair


def sinusoid_pair(lin: Linearisation, omega: float, *, steps: int, settle: int, amplitude: float) -> tuple[np.ndarray, np.ndarray]:
    """The pair ``(u_a, δ)`` of length ``settle + steps`` that excites the linearisation's peak: ``u_a = u₀``
    throughout; ``δ = 0`` for the first ``settle`` steps, then ``amplitude·Re(v e^{iωk})`` under a Hann
    window, with ``v`` the top right singular vector of ``G(e^{iω})``."""
    G = frequency_response(lin.A, lin.B, lin.C, lin.D, np.array([omega]))[0]
    _, _, vh = np.linalg.svd(G)
    v = vh[0].conj()
    k = np.arange(steps)
    p = np.real(v[None, :] * np.exp(1j * omega * k)[:, None]) * np.hanning(steps)[:, None]
    delta = np.zeros((settle + steps, len(lin.u0)))
    delta[settle:] = amplitude * p / max(np.abs(p).max(), 1e-300)
    return np.broadcast_to(lin.u0, delta.shape).copy(), delta


# --- both routes ----------------------------------------------------------------------------------------

@dataclass
class GainSettings:
    """Horizons ``steps`` (each a list entry), ``pairs`` starts per horizon, ``iters`` Adam steps of size
    ``lr`` (input std units), constant-input ``levels`` spread over the data's input range, ``settle`` steps
    to reach each equilibrium."""

    steps: list[int] = field(default_factory=lambda: [60, 300])
    pairs: int = 8
    iters: int = 60
    lr: float = 0.05
    levels: int = 5
    settle: int = 3000

    def __post_init__(self):
        # (a horizon of 0 was torch's "stack expects a non-empty TensorList", a negative count ran nothing)
        if isinstance(self.steps, (str, bytes)) or not hasattr(self.steps, "__iter__") or not list(self.steps):
            raise InputError(f"steps must be a non-empty list of horizons, got {self.steps!r}")
        self.steps = [require_count(f"steps[{i}]", h) for i, h in enumerate(self.steps)]
        self.pairs = require_count("pairs", self.pairs)
        self.iters = require_count("iters", self.iters, minimum=0)
        self.levels = require_count("levels", self.levels, minimum=0)
        self.settle = require_count("settle", self.settle)
        self.lr = require_number("lr", self.lr)


@dataclass
class GainReport:
    """The lower bound and how it was found: ``method`` is ``ascent`` or ``linearisation``; ``detail``
    names the horizon or the input level and frequency. ``ascent``: best realised ratio;
    ``linearisation``: best ``‖G‖∞`` over settled, stable equilibria (nan when there is none)."""

    value: float
    method: str
    detail: str
    ascent: float
    linearisation: float
    unsettled: int = 0
    horizon: int | None = None  # the ascent's horizon that gave its best ratio


def incremental_gain_lower_bound(model, u_ref: np.ndarray, settings: GainSettings | None = None, *,
                                 seed: int = 0, sample_time: float | None = None) -> GainReport:
    """The larger of the two routes of the module docstring, for ``model`` on inputs like ``u_ref``
    (T, steps, n_u; physical units): windows of ``u_ref`` start half of the ascent pairs, the other half
    are Gaussian inputs with the data's mean and std; perturbations of 1e-3, 1e-1 and 1 input std;
    equilibria at ``levels`` quantiles of ``u_ref`` (per channel). ``sample_time`` only labels the peak
    frequency in Hz. The starts are drawn on the CPU by a CPU generator (the same on every device) and
    the model runs on its own device."""
    s = settings or GainSettings()
    g = torch.Generator(device="cpu").manual_seed(seed)
    # (NaN inputs gave no finite ratio: a "lower bound" of 0.0; a 2-D u_ref was read as one-step trajectories)
    u_ref = torch.as_tensor(real_array("u_ref", u_ref, 3), device="cpu")
    if u_ref.shape[0] == 0 or u_ref.shape[1] == 0:
        raise InputError(f"u_ref must hold at least one trajectory of one step, got shape {tuple(u_ref.shape)}")
    flat = u_ref.reshape(-1, u_ref.shape[-1])
    mean, scale = flat.mean(0), flat.std(0).clamp_min(1e-12)
    n_u = u_ref.shape[-1]

    # route 2 first: its peak sinusoids also start the ascent (levels = 0: the ascent alone)
    lin_best, lin_detail, unsettled, peaks = float("nan"), "", 0, []
    if s.levels > 0:
        q = (torch.linspace(0.05, 0.95, s.levels, dtype=torch.float64, device="cpu") if s.levels > 1
             else torch.tensor([0.5], dtype=torch.float64, device="cpu"))
        levels = torch.quantile(flat, q, dim=0).reshape(s.levels, n_u)
        for lin in linearise(model, levels.cpu().numpy(), settle_steps=s.settle):
            if not lin.settled or lin.spectral_radius >= 1.0:
                unsettled += 1
                continue
            value, omega = hinf_norm(lin.A, lin.B, lin.C, lin.D)
            peaks.append((value, omega, lin))
            if not value <= lin_best:  # nan-safe max
                freq = f"{omega / (2 * math.pi * sample_time):.3g} Hz" if sample_time else f"{omega:.3g} rad/sample"
                lin_best, lin_detail = value, f"H∞ of the linearisation at u₀ = {np.array2string(lin.u0, precision=3)}, peak at {freq}"

    asc_best, asc_detail, asc_steps, asc_finite = 0.0, "", None, False
    for steps in s.steps:
        steps = int(steps)
        n_data = s.pairs // 2
        idx = torch.randint(0, u_ref.shape[0], (n_data,), generator=g, device="cpu")
        hi = max(u_ref.shape[1] - steps, 0)
        start = torch.randint(0, hi + 1, (n_data,), generator=g, device="cpu")
        windows = []
        for i, st in zip(idx.tolist(), start.tolist()):
            w = u_ref[i, st:st + steps]
            if w.shape[0] < steps:  # data shorter than the horizon: repeat it
                w = w.repeat(math.ceil(steps / w.shape[0]), 1)[:steps]
            windows.append(w)
        randoms = mean + scale * torch.randn(s.pairs - n_data, steps, n_u, generator=g, dtype=torch.float64, device="cpu")
        base = torch.cat([torch.stack(windows) if windows else randoms[:0], randoms])
        sizes = torch.tensor([1e-3, 1e-1, 1.0], dtype=torch.float64, device="cpu")[torch.arange(base.shape[0], device="cpu") % 3]
        delta = sizes[:, None, None] * scale * torch.randn(base.shape, generator=g, dtype=torch.float64, device="cpu")
        settle = min(steps, max(steps // 3, 1))
        # the two best peaks, where the horizon leaves a few steps of sinusoid after the settling
        # (a Hann window over fewer than 3 samples is zero: no perturbation to start from)
        for value, omega, lin in (sorted(peaks, key=lambda p: -p[0])[:2] if steps - settle >= 3 else []):
            ua, d = sinusoid_pair(lin, omega, steps=steps - settle, settle=settle, amplitude=1e-3 * float(scale.max()))
            base = torch.cat([base, torch.as_tensor(ua, device="cpu")[None]])
            delta = torch.cat([delta, torch.as_tensor(d, device="cpu")[None]])
        value, pair = ascent_gain(model, base, delta, iters=s.iters, lr=s.lr, scale=scale)
        asc_finite = asc_finite or not math.isnan(value)
        if value > asc_best:
            kind = "data window" if pair < n_data else ("random input" if pair < s.pairs else "linearisation's peak sinusoid")
            asc_best, asc_steps, asc_detail = value, steps, f"Adam ascent over input pairs, horizon {steps} steps, best from a {kind} start"
    if not asc_finite and not lin_best >= 0:
        # (a model with NaN weights, or outputs that overflow: no pair gave a finite ratio, and 0.0 was returned as the bound)
        raise InputError("no input pair gave a finite output difference and no equilibrium settled: the model's outputs "
                         "are not finite on these inputs")
    if lin_best > asc_best:
        return GainReport(value=lin_best, method="linearisation", detail=lin_detail, ascent=asc_best,
                          linearisation=lin_best, unsettled=unsettled, horizon=asc_steps)
    return GainReport(value=asc_best, method="ascent", detail=asc_detail, ascent=asc_best,
                      linearisation=lin_best, unsettled=unsettled, horizon=asc_steps)
