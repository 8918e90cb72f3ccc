"""The exact Hessian of a DEQ loss w.r.t. its parameters (seeds 000/001, GUIDE §5).

General form (seed 000 §5, with the symmetrised mixed term of the errata). For ``h* = f(θ, h*)``,
``J = ∂f/∂h``, ``Z = dh*/dθ = (I − J)⁻¹ ∂f/∂θ`` and ``λ = (I − J)⁻ᵀ ∇ₕℓ``::

    H = Zᵀ(∇²ₕℓ)Z  +  [I; Z]ᵀ ∇²₍θ,h₎(λᵀf) [I; Z]          (λ held fixed in the second term)
        └ Term A ┘     └──────── Term B ─────────┘

When the loss also depends on θ directly (the readout ``W_y, b_y``), the Hessian is that of the
Lagrangian ``𝓛 = ℓ(θ, h) + λᵀ(f(θ, h) − h)`` projected by ``[I; Z]``; with ``∂f/∂θ_readout = 0`` the
extra blocks are ``∇²_{θr θr}ℓ`` and ``∇²_{θr h}ℓ · Z`` (and its transpose): "Term R" below.

Two implementations:

* :func:`deq_hessian` / :func:`deq_hessian_parts`: the *structured* closed form for the tanh DEQ
  (never an ``N×P×P`` tensor, never a ``P×P`` Kronecker product built entry by entry). With
  ``a = W h + U x + b``, ``D = diag σ'(a)``, ``M = (I − W D)⁻¹``: ``da/dθ = M A_θ`` with
  ``A_θ = [I ⊗ hᵀ, I, I ⊗ xᵀ]`` and ``Z = D M A_θ``. Then, per sample ``s``::

      Term A = A_θᵀ Mᵀ (D W_yᵀW_y D) M A_θ
      Term B = A_θᵀ Mᵀ diag(λ ⊙ σ''(a)) M A_θ + K + Kᵀ,   K[(i,k), :] = μ_i Z[k, :],  μ = D λ

  (``K`` is the bilinear ``W·h`` cross term: ``∂²aᵢ/∂W_ik ∂h_k = 1``). Each block of ``A_θᵀ Q̃ A_θ`` is a
  batch sum of Kronecker products ``Q̃_s ⊗ u_s v_sᵀ`` with ``u, v ∈ {h, 1, x}``. The whole ``H`` is
  assembled in its final layout by one ``(K × B) @ (B × P)`` product per row index (``≈ P²·batch``
  multiply-adds in all, the count of one ``(P×B)@(B×P)`` product) and one in-place pass
  ``H = Y + Yᵀ`` (:func:`_assemble`).
  Readout blocks, with ``r = ŷ − y`` and ``C = [I ⊗ hᵀ, I]`` (``dŷ = C dθ_r``)::

      H_rr = Σ_s Cᵀ C,      H_rd = Σ_s (Cᵀ W_y Z + K_r),   K_r[(o,k), :] = r_o Z[k, :]

* :func:`implicit_hessian_generic`: any smooth ``f`` and ``ℓ`` given as pure functions of flat
  vectors, by dense ``torch.func`` Jacobians/Hessians (small problems; the test oracle's twin and
  the source of the pieces the "2 MᵀZ" pitfall recombines).

``θ``'s flattening order is documented in :mod:`deqlab.implicit.params`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from deqlab.errors import InputError
from deqlab.implicit.conditioning import inverse_condition, pivot_condition, require_invertible, require_well_conditioned
from deqlab.implicit.layer import SolveOptions, options_or, tanh_map
from deqlab.implicit.params import DYNAMIC, READOUT, check_groups, check_problem, group_slices
from deqlab.implicit.polish import polish_tanh_equilibrium
from deqlab.solvers.result import rule_bound


@dataclass
class HessianParts:
    """The closed form's pieces, all in the flattening order of :mod:`deqlab.implicit.params`.

    Attributes:
        H: ``(P, P)`` the exact Hessian ``A + B + R``.
        term_a: ``(P, P)`` Gauss–Newton term ``Zᵀ ∇²ₕℓ Z`` (zero on readout rows/columns).
        term_b: ``(P, P)`` adjoint-weighted dynamics curvature ``[I;Z]ᵀ∇²(λᵀf)[I;Z]``.
        term_r: ``(P, P)`` the readout's direct blocks (``∇²_{θr θr}ℓ``, ``∇²_{θr h}ℓ Z`` + transpose).
        grad: ``(P,)`` the implicit gradient ``∇_θ ℓ + (∂f/∂θ)ᵀ λ``.
        z_star: ``(batch, n_z)`` the fixed point used.
        lam: ``(batch, n_z)`` the adjoint ``λ``.
        cond: ``(batch,)`` 2-norm condition number of ``I − J`` per sample (``None`` without diagnostics).
        spectral_radius: ``(batch,)`` spectral radius of ``J = D W`` per sample (``None`` likewise).
        slices: group → slice of ``θ``.
    """

    H: torch.Tensor
    term_a: torch.Tensor
    term_b: torch.Tensor
    term_r: torch.Tensor
    grad: torch.Tensor
    z_star: torch.Tensor
    lam: torch.Tensor
    cond: torch.Tensor
    spectral_radius: torch.Tensor
    slices: dict


#: Default forward solve for the closed form: Anderson to ``‖f(z) − z‖ ≤ 1e-14`` (float64). The
#: Hessian's relative error follows the fixed point's (measured: 1e-12 at atol 1e-12, 7e-15 at 1e-14).
TIGHT = SolveOptions(atol=1e-14, max_iter=2000)

#: Tile side of the in-place symmetrisation ``H ← Y + Yᵀ`` on a CPU: a pair of 96×96 float64 tiles (144 KiB)
#: stays in L2 while one is transposed onto the other. Measured (one thread, ms, through NumPy): at P = 4672
#: tiles of 64, 96, 128 took 63, 58, 59 (torch's own transposed add_/copy_ of the same tiles: 111, 96, 85);
#: at P = 2000 6.9, 6.0, 6.3 (torch 16.3, 10.1, 7.7); at P = 1312 3.6, 3.3, 3.3 (torch 4.9, 3.7, 3.3).
SYMMETRISE_TILE = 96
#: On a GPU the symmetrisation goes by this many block-row strips (:func:`_symmetrise_strips`): its
#: extra buffer is ``8P²/strips`` bytes, within the dense Hessian's memory target of ``1.5 × 8P²``.
SYMMETRISE_STRIPS = 8
#: Bytes of :func:`_assemble`'s operand buffer (the ``C_i`` of a chunk of row indices ``i``) on a CPU:
#: the chunk's operands stay in L2 between being built and being multiplied. Measured (floor / dense,
#: batch 64, one thread, one plain ``mm`` per index and group): at ``P = 1312`` (one ``C_i`` is 0.67 MB)
#: 1 MiB 0.264, 4 MiB (6 indices) 0.216; at ``P = 400`` 1 MiB (5 indices) 0.134, one index 0.122, 4 MiB
#: (all 16) 0.113; at ``P = 648`` 0.235, 0.225, 0.195.
ASSEMBLY_CHUNK_BYTES = 2**20
#: On a GPU the buffer may take this fraction of ``H``'s bytes: there the cost is the kernel launches
#: per chunk, not the cache, and ``H + H/8`` stays within the dense Hessian's memory target of
#: ``1.5 × 8P²`` (the strip symmetrisation's buffer is freed before this one is made).
ASSEMBLY_CHUNK_GPU_FRACTION = 1 / 8


def assembly_chunk(N: int, B: int, P: int, itemsize: int, device: torch.device | str = "cpu") -> int:
    """How many row indices ``i`` :func:`_assemble` takes at a time: as many ``(B, P)`` operands as fit
    in :data:`ASSEMBLY_CHUNK_BYTES` (CPU) or :data:`ASSEMBLY_CHUNK_GPU_FRACTION` of ``H`` (CUDA), at
    least one, at most ``N``."""
    budget = (ASSEMBLY_CHUNK_GPU_FRACTION * P * P * itemsize if torch.device(device).type == "cuda"
              else ASSEMBLY_CHUNK_BYTES)
    return max(1, min(N, int(budget // max(1, B * P * itemsize))))


def products_batched(device: torch.device | str) -> bool:
    """Whether :func:`_assemble` multiplies a chunk's operands by one batched product per group (on a
    GPU, where the cost is the launches) or by one ``mm`` per row index and group (on a CPU: at
    ``P = 1312``, batch 64, one thread, floor / dense 0.268 against 0.257 for a ``bmm`` per chunk that
    summed the ``b_z`` rows instead of multiplying by a row of ones)."""
    return torch.device(device).type == "cuda"


#: The phases of the dense closed form that ``deq_hessian_parts(..., phases=...)`` times (seconds each):
#: everything before and after the assembly, building the per-row-index operands ``C_i``, the
#: ``(K × B) @ (B × P)`` products that write ``H``'s rows, and the in-place ``H ← Y + Yᵀ``.
PHASES = ("set-up", "operands", "products", "symmetrise")


class _PhaseClock:
    """Adds the wall seconds between successive :meth:`lap` calls to ``phases[name]`` (no-op for ``None``).

    On a CUDA ``device`` each lap first waits for the queued kernels (``torch.cuda.synchronize``), so a
    phase is charged for its own GPU work rather than for queuing it; only when timing, since the wait
    stalls the pipeline."""

    def __init__(self, phases: dict | None, device: torch.device):
        self.phases = phases
        self.sync = phases is not None and device.type == "cuda"
        self.device = device
        if self.sync:
            torch.cuda.synchronize(device)
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.phases is not None:
            if self.sync:
                torch.cuda.synchronize(self.device)
            now = time.perf_counter()
            self.phases[name] = self.phases.get(name, 0.0) + now - self.last
            self.last = now


def solve_equilibrium(W_z, b_z, U_z, x, *, opts: SolveOptions | None = None, polish: bool = True) -> torch.Tensor:
    """``z*`` of the tanh DEQ from ``z = 0`` (no graph); raises ``NotConvergedError`` per ``opts.on_fail``.

    With ``polish`` (default) the solver's point is then refined by chord steps with a residual in
    extended precision (:func:`deqlab.implicit.polish.polish_tanh_equilibrium`), so that derivatives
    at it are accurate to ≈ ``cond₂(I − J)·ε`` even near a fold, not ``cond₂(I − J)²·atol``. The polish
    is a host route (NumPy ``longdouble``): ``z`` goes to the host and comes back to ``W_z``'s device."""
    opts = options_or(opts, TIGHT)
    z0 = torch.zeros(x.shape[0], W_z.shape[0], dtype=W_z.dtype, device=W_z.device)
    with torch.no_grad():
        z = opts.solve(lambda z: tanh_map(z, W_z, b_z, U_z, x), z0, linear=False).z
    if polish:
        z = polish_tanh_equilibrium(W_z, b_z, U_z, x, z).z
    return z


#: A given ``z_star`` passes as the fixed point when its residual is within the options' stopping rule
#: or within ``Z_STAR_RESOLUTION · eps · max(‖z_b‖, 1) · (1 + ‖W_z‖_F)``: the residual of ``z*`` rounded to
#: its dtype (``‖(I − J)δz‖ ≤ (1 + ‖J‖₂)·eps/2·‖z‖`` with ``‖J‖₂ ≤ ‖W_z‖_F``), with room for the rounding of
#: its evaluation. A float32 copy of a float64 fixed point passes; a point 1e-10 off in float64 does not.
Z_STAR_RESOLUTION = 16.0


def fixed_point_residual(W_z, b_z, U_z, x, z: torch.Tensor, opts: SolveOptions = TIGHT) -> tuple[torch.Tensor, torch.Tensor]:
    """``(residual, bound)``, both ``(B,)``: ``‖tanh(W_z z + U_z x + b_z) − z‖`` per sample, and the residual
    below which :func:`equilibrium` takes ``z`` as the fixed point: the options' stopping rule
    ``atol + rtol·‖f(z)‖`` or what ``z``'s dtype resolves there (:data:`Z_STAR_RESOLUTION`), whichever is larger."""
    with torch.no_grad():
        fz = tanh_map(z, W_z, b_z, U_z, x)
        residual = torch.linalg.vector_norm(fz - z, dim=-1)
        resolution = (Z_STAR_RESOLUTION * torch.finfo(z.dtype).eps * (1 + float(torch.linalg.matrix_norm(W_z)))
                      * torch.linalg.vector_norm(z, dim=-1).clamp_min(1.0))
        return residual, torch.maximum(rule_bound(torch.linalg.vector_norm(fz, dim=-1), opts.atol, opts.rtol), resolution)


def equilibrium(W_z, b_z, U_z, x, z_star: torch.Tensor | None = None, *, opts: SolveOptions | None = None) -> torch.Tensor:
    """The fixed point the closed forms differentiate at, ``(B, N)``: solved by :func:`solve_equilibrium`
    when ``z_star`` is ``None``, else the caller's ``z_star``, checked.

    Every derivative here is exact only *at* ``z*``: at a point with residual ``r`` it is off by about
    ``cond₂(I − J)·r``, with nothing to show it. So a given ``z_star`` whose residual
    ``‖tanh(W_z z + U_z x + b_z) − z‖`` exceeds both the options' stopping rule (``atol + rtol‖f(z)‖``,
    :data:`TIGHT` by default) and what its dtype resolves (:data:`Z_STAR_RESOLUTION`) is polished
    (:func:`deqlab.implicit.polish.polish_tanh_equilibrium`, chord steps from it: a point stopped at 1e-10
    becomes the rounded ``z*``), and if it still does not pass, refused with :class:`InputError`. With
    ``opts.on_fail == "ignore"`` the caller vouches for ``z_star`` and it is taken as it is (``deqlab
    hessian --go-on`` reports derivatives at an unconverged solver's point, marked as such).
    """
    opts = options_or(opts, TIGHT)
    if z_star is None:
        return solve_equilibrium(W_z, b_z, U_z, x, opts=opts)
    z = z_star.detach()
    if opts.on_fail == "ignore":
        return z
    # (both build no graph: the residual runs under no_grad, the polish on the host)
    residual, bound = fixed_point_residual(W_z, b_z, U_z, x, z, opts)
    if bool((residual <= bound).all()):
        return z
    polished = polish_tanh_equilibrium(W_z, b_z, U_z, x, z)
    after = polished.residual.to(bound.dtype)
    if bool((after <= bound).all()):
        return polished.z
    worst = int(torch.argmax(after / bound))
    raise InputError(f"z_star is not the fixed point of z = tanh(W_z z + U_z x + b_z): its residual is "
                     f"{float(residual[worst]):.2e} at sample {worst} ({float(after[worst]):.2e} after polishing), "
                     f"above the tolerance {float(bound[worst]):.1e} (the options' atol + rtol·‖f(z)‖, or what "
                     f"{str(z.dtype).removeprefix('torch.')} resolves at z); omit z_star to have it solved")


def _symmetrise(H: torch.Tensor, tile: int = SYMMETRISE_TILE) -> torch.Tensor:
    """``H ← H + Hᵀ`` in place, by pairs of ``tile × tile`` blocks (on a GPU: :func:`_symmetrise_strips`).

    Each off-diagonal pair ``(U, L) = (H[a, b], H[b, a])`` becomes ``U += Lᵀ; L = Uᵀ`` and each
    diagonal block ``D + Dᵀ``: every entry is read and written once, a pair of tiles stays in cache
    while it is transposed, and the result is exactly symmetric (``fl(a + b)`` commutes).

    On a CPU the tiles are NumPy views of ``H``'s memory: NumPy's transposed add and copy of a tile pair
    take two thirds of the time of torch's at P = 4672 (:data:`SYMMETRISE_TILE`), where this pass was
    the dense Hessian's largest phase after the products (``deqlab bench hessian``'s phase table).
    A tensor NumPy cannot view (bfloat16) goes through the same tiles in torch.
    """
    if H.device.type == "cuda":
        return _symmetrise_strips(H)
    A = H
    if H.device.type == "cpu":
        try:
            A = H.cpu().numpy()   # a view of H's memory (on the CPU, .cpu() is H itself)
        except (RuntimeError, TypeError):
            pass
    P = H.shape[0]
    for a0 in range(0, P, tile):
        a1 = min(a0 + tile, P)
        D = A[a0:a1, a0:a1]
        D[...] = D + D.T
        for b0 in range(a1, P, tile):
            b1 = min(b0 + tile, P)
            upper, lower = A[a0:a1, b0:b1], A[b0:b1, a0:a1]
            upper += lower.T
            lower[...] = upper.T
    return H


def _symmetrise_strips(H: torch.Tensor, strips: int = SYMMETRISE_STRIPS) -> torch.Tensor:
    """``H ← H + Hᵀ`` in place, one block row at a time: for rows ``a`` (``⌈P / strips⌉`` of them) the
    strip ``S = H[a, a:] + H[a:, a]ᵀ`` is formed, then written to ``H[a, a:]`` and, transposed, to
    ``H[a:, a]``. Earlier strips wrote only columns and rows before ``a``, so each strip reads the
    original entries; the result is exactly symmetric. Three kernels per strip instead of three per
    tile pair (a GPU's cost is the launches, not the cache), for one extra ``P²/strips`` buffer."""
    P = H.shape[0]
    rows = -(-P // max(1, strips))
    for a0 in range(0, P, rows):
        a1 = min(a0 + rows, P)
        S = H[a0:a1, a0:] + H[a0:, a0:a1].T
        H[a0:a1, a0:].copy_(S)
        H[a0:, a0:a1].copy_(S.T)
    return H


def _write_dynamic_rows(H: torch.Tensor, slices: dict, h: torch.Tensor, x: torch.Tensor, *, Q, mu, DM, readout,
                        clock: _PhaseClock) -> None:
    """Write the dynamic rows ``(g, i, ·)`` of ``Y`` into ``H`` (the scheme of :func:`_assemble`), a chunk
    of row indices ``i`` at a time (:func:`assembly_chunk`); the operand buffer is freed on return."""
    B, N = h.shape
    dt = h.dtype
    P = H.shape[0]
    dyn = [g for g in DYNAMIC if g in slices]
    # c row indices at a time: C[t] is C_{i0+t}, (B, P) each. The chunk's operands are built by one
    # operation per piece and its rows of H written by products (products_batched).
    c = assembly_chunk(N, B, P, h.element_size(), h.device)
    batched = products_batched(h.device)
    C = torch.empty(c, B, P, dtype=dt, device=h.device)
    view = {g: C[:, :, slices[g]].view(c, B, N, -1) for g in dyn}   # [t, s, j, l]
    rows = {g: H[slices[g]].view(N, -1, P) for g in dyn}            # [i, k, :]: the rows (g, i, k)
    # (u^g)ᵀ, (K_g, B), contiguous: u^{b_z} = 1, so b_z's rows are a product with a row of ones too
    left = {"W_z": h.T.contiguous(), "b_z": torch.ones(1, B, dtype=dt, device=h.device), "U_z": x.T.contiguous()}
    right = {"W_z": h[None, :, None, :], "U_z": x[None, :, None, :]}  # u^g_s[l] as [·, s, ·, l]
    if Q is not None:
        w = torch.ones(N, N, dtype=dt, device=h.device).triu_(1) + 0.5 * torch.eye(N, dtype=dt, device=h.device)  # w(i, j)
        Qw = Q.transpose(0, 1) * w[:, None, :]  # [i, s, j] = w(i, j) Q_s[i, j]
    with_k = mu is not None and "W_z" in slices
    DMt = DM.permute(2, 0, 1).contiguous()[:, :, None, :] if DM is not None else None  # [i, s, ·, l] = DM_s[l, i]
    if readout is not None:
        WDMt = readout[0].permute(2, 0, 1).contiguous()  # [i, s, o] = WDM_s[o, i]
        r = readout[1]
        CWy = C[:, :, slices["W_y"]].view(c, B, -1, N) if "W_y" in slices else None
    written = {g for g in dyn if Q is not None} | ({"W_z"} if with_k else set())
    written |= {g for g in READOUT if g in slices} if readout is not None else set()
    for g, sl in slices.items():
        if g not in written:   # a piece this term does not have: zero in every C_i
            C[:, :, sl].zero_()
    clock.lap("set-up")
    for i0 in range(0, N, c):
        i1 = min(i0 + c, N)
        k = i1 - i0
        for g in dyn:
            part = view[g][:k]
            if Q is not None and g == "b_z":
                part[..., 0] = Qw[i0:i1]
            elif Q is not None:
                torch.mul(Qw[i0:i1, :, :, None], right[g], out=part)
            if g == "W_z" and with_k:
                if Q is None:
                    torch.mul(mu[None, :, :, None], DMt[i0:i1], out=part)
                else:
                    part.addcmul_(mu[None, :, :, None], DMt[i0:i1])
        if readout is not None:
            if CWy is not None:
                torch.mul(WDMt[i0:i1, :, :, None], right["W_z"], out=CWy[:k])
                CWy[:k].addcmul_(r[None, :, :, None], DMt[i0:i1])
            if "b_y" in slices:
                C[:k, :, slices["b_y"]] = WDMt[i0:i1]
        clock.lap("operands")
        for g in dyn:
            if batched:
                torch.bmm(left[g].expand(k, -1, -1), C[:k], out=rows[g][i0:i1])
            else:
                for t in range(k):
                    torch.mm(left[g], C[t], out=rows[g][i0 + t])
        clock.lap("products")


def _assemble(slices: dict, h: torch.Tensor, x: torch.Tensor, *, Q: torch.Tensor | None = None,
              mu: torch.Tensor | None = None, DM: torch.Tensor | None = None,
              readout: tuple[torch.Tensor, torch.Tensor] | None = None, clock: _PhaseClock | None = None) -> torch.Tensor:
    """One ``(P, P)`` Hessian term of the tanh DEQ, written straight into its final layout.

    Pieces (any may be omitted; ``u^g`` is the Kronecker factor of group ``g``: ``h`` for ``W_z``,
    ``1`` for ``b_z``, ``x`` for ``U_z``; ``(g, i, k)`` is the ``θ`` index of ``g[i, k]``):

    * ``Q`` ``(B, N, N)``: ``S[(g,i,k), (g',j,l)] = Σ_s Q_s[i,j] u^g_s[k] u^{g'}_s[l]`` on the dynamic
      groups (blockwise ``Σ_s Q_s ⊗ u_s v_sᵀ``; ``Q_s`` symmetric);
    * ``mu`` ``(B, N)``, ``DM`` ``(B, N, N)``: the bilinear cross term ``K + Kᵀ``,
      ``K[(W_z,i,k), (g',j,l)] = Σ_s μ_s[i] DM_s[k,j] u^{g'}_s[l]``;
    * ``readout = (WDM (B, n_y, N), r (B, n_y))``: the readout blocks ``R`` (module docstring).

    Scheme (``≈ P²·B`` multiply-adds, as many as one ``(P×B)@(B×P)`` product, plus one in-place
    pass over ``H``). ``H = Y + Yᵀ`` for ``Y = w·S + Kᵀ + R̂``, with the weights ``w(i, j) = 1, ½, 0``
    for ``j > i, j = i, j < i`` (so ``w(i,j) + w(j,i) = 1``) and ``R̂`` the readout blocks in the
    dynamic rows only. For a fixed row index ``i`` every piece of ``Y``'s rows ``(g, i, ·)`` is a
    product over the batch, ``(u^g)ᵀ C_i``: one ``(K_g × B) @ (B × P)`` matrix product per group,
    written by the product into its rows of ``H`` (no permute, no scatter), with ``C_i`` ``(B, P)``::

        C_i[s, (g',j,l)] = w(i,j) Q_s[i,j] u^{g'}_s[l]  (+ μ_s[j] DM_s[l,i] when g' = W_z:  Kᵀ)
        C_i[s, (W_y,o,m)] = WDM_s[o,i] h_s[m] + r_s[o] DM_s[m,i],     C_i[s, (b_y,o)] = WDM_s[o,i]

    The ``C_i`` of a chunk of consecutive ``i`` are built together and multiplied index by index (CPU)
    or by one batched product per group (GPU; :func:`products_batched`); the chunk's size:
    :func:`assembly_chunk`. ``b_z``'s rows are products too, with ``u = 1`` (a row of ones).
    The readout rows of ``Y`` are zero but for the readout–readout block; :func:`_symmetrise` then
    forms ``Y + Yᵀ`` in place. Peak memory: ``H`` plus the chunk's ``C_i`` and a few ``B·N²`` tensors.
    ``clock``: times the phases (:data:`PHASES`).
    """
    clock = clock or _PhaseClock(None, h.device)
    B, N = h.shape
    dt = h.dtype
    P = max(sl.stop for sl in slices.values())
    dyn = [g for g in DYNAMIC if g in slices]
    P_d = slices[dyn[-1]].stop if dyn else 0
    H = torch.empty(P, P, dtype=dt, device=h.device)
    if dyn:
        _write_dynamic_rows(H, slices, h, x, Q=Q, mu=mu, DM=DM, readout=readout, clock=clock)
    H[P_d:, :P_d] = 0
    H[P_d:, P_d:] = 0
    if readout is not None and any(g in slices for g in READOUT):
        # (only with a readout group in θ: the n_y × n_y identity is then no larger than H's readout block;
        # without one it was n_y² of nothing, 80 GB at n_y = 100000 for P = 54, the run dead of memory)
        n_y = readout[1].shape[1]
        eye_y = torch.eye(n_y, dtype=dt, device=h.device)
        if "W_y" in slices:
            sl = slices["W_y"]
            H[sl, sl] = torch.kron(eye_y, 0.5 * (h.T @ h))
        if "b_y" in slices:
            sl = slices["b_y"]
            H[sl, sl] = 0.5 * B * eye_y
        if "W_y" in slices and "b_y" in slices:
            H[slices["W_y"], slices["b_y"]] = torch.kron(eye_y, h.sum(0)[:, None])  # upper block of Y only
    clock.lap("set-up")
    _symmetrise(H)
    clock.lap("symmetrise")
    return H


def deq_hessian_parts(
    W_z: torch.Tensor,
    b_z: torch.Tensor,
    U_z: torch.Tensor,
    W_y: torch.Tensor,
    b_y: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    groups=("W_z", "b_z", "U_z", "W_y", "b_y"),
    z_star: torch.Tensor | None = None,
    opts: SolveOptions | None = None,
    split_terms: bool = True,
    diagnostics: bool = True,
    phases: dict | None = None,
) -> HessianParts:
    """Structured closed-form Hessian of ``L = ½ Σ_s ‖W_y h*_s + b_y − y_s‖²`` (see module docstring).

    Args:
        W_z ``(N,N)``, b_z ``(N,)``, U_z ``(N,d)``, W_y ``(n_y,N)``, b_y ``(n_y,)``: parameters.
        x ``(B,d)``, y ``(B,n_y)``: inputs and targets; curvature is summed over the batch.
        groups: which parameter groups make up ``θ`` (canonical order kept, see ``params.GROUPS``).
        z_star: the fixed point ``(B,N)``; solved from zero with ``opts`` when omitted.
        split_terms: keep Terms A, B, R apart (``False``: only ``H``, one assembly instead of three
            and no sum; the term fields are then ``None``).
        diagnostics: compute ``cond₂(I − J)`` and ``ρ(J)`` per sample (else ``None``).
        phases: when a dict, the wall seconds of each phase of :data:`PHASES` are added to it (the
            fixed-point solve, when ``z_star`` is omitted, is not timed). ``deqlab bench hessian``
            reports them as multiples of the floor.
    """
    groups = check_groups(groups)
    params = {"W_z": W_z, "b_z": b_z, "U_z": U_z, "W_y": W_y, "b_y": b_y}
    params = {k: v.detach() for k, v in params.items()}
    W, Wy = params["W_z"], params["W_y"]
    x, y = x.detach(), y.detach()
    check_problem(params, x, y, z_star)
    z_star = equilibrium(W, params["b_z"], params["U_z"], x, z_star, opts=opts)
    clock = _PhaseClock(phases, z_star.device)
    h = z_star.detach()
    N = h.shape[1]
    eye = torch.eye(N, dtype=h.dtype, device=h.device)

    s1 = 1 - h * h  # σ'(a) = 1 − tanh², at the fixed point tanh(a) = h
    s2 = -2 * h * s1  # σ''(a)
    r = h @ Wy.T + params["b_y"] - y  # (B, n_y)
    g_h = r @ Wy  # ∇ₕℓ, (B, N)
    IWD = eye - W * s1[:, None, :]
    M, info = torch.linalg.inv_ex(IWD)  # (I − W D)⁻¹, (B, N, N)
    require_invertible(info, "I − W_z D")
    require_well_conditioned(inverse_condition(IWD, M), h.dtype, "I − W_z D")
    del IWD
    Mt = M.transpose(1, 2)
    DM = s1[:, :, None] * M  # Z = D M A_θ
    # (I − J)ᵀλ = ∇ₕℓ with J = D W, without a second factorisation: μ = Dλ = (I − D Wᵀ)⁻¹ D ∇ₕℓ = Mᵀ D ∇ₕℓ
    # and λ = ∇ₕℓ + Wᵀ μ.
    mu = (Mt @ (s1 * g_h)[:, :, None])[..., 0]
    lam = g_h + mu @ W
    V = Mt @ (s1[:, :, None] * Wy.T)  # Mᵀ D W_yᵀ, (B, N, n_y): Term A's Q̃ = V Vᵀ has rank n_y
    Qt_a = V @ V.transpose(1, 2)
    Qt_b = Mt @ ((lam * s2)[:, :, None] * M)
    slices = group_slices(params, groups)
    WDM = Wy @ DM  # (B, n_y, N): W_y Z = WDM A_θ
    if split_terms:
        A = _assemble(slices, h, x, Q=Qt_a, clock=clock)
        Bt = _assemble(slices, h, x, Q=Qt_b, mu=mu, DM=DM, clock=clock)
        R = _assemble(slices, h, x, DM=DM, readout=(WDM, r), clock=clock)
    else:
        A = _assemble(slices, h, x, Q=Qt_a + Qt_b, mu=mu, DM=DM, readout=(WDM, r), clock=clock)

    grads = {"W_z": mu.T @ h, "b_z": mu.sum(0), "U_z": mu.T @ x, "W_y": r.T @ h, "b_y": r.sum(0)}
    grad = torch.cat([grads[g].reshape(-1) for g in groups])
    cond = rho = None
    if diagnostics:
        J = s1[:, :, None] * W  # J_s = D_s W
        sv = torch.linalg.svdvals(eye - J)
        cond = sv[:, 0] / sv[:, -1]
        rho = torch.linalg.eigvals(J).abs().amax(dim=1)
    if not split_terms:
        clock.lap("set-up")
        return HessianParts(A, None, None, None, grad, h, lam, cond, rho, slices)
    H = A + Bt + R
    clock.lap("set-up")
    return HessianParts(H, A, Bt, R, grad, h, lam, cond, rho, slices)


def deq_hessian(W_z, b_z, U_z, W_y, b_y, x, y, *, groups=("W_z", "b_z", "U_z", "W_y", "b_y"), z_star=None, opts=None) -> torch.Tensor:
    """The exact ``(P, P)`` Hessian of ``L(θ) = ½ Σ_s ‖W_y h*_s(θ) + b_y − y_s‖²`` for the tanh DEQ
    ``h* = tanh(W_z h* + U_z x + b_z)``; ``θ`` = the ``groups`` in the order ``W_z, b_z, U_z, W_y, b_y``,
    each row-major. Shapes: ``W_z (N,N)``, ``b_z (N,)``, ``U_z (N,d)``, ``W_y (n_y,N)``, ``b_y (n_y,)``,
    ``x (B,d)``, ``y (B,n_y)``. See :func:`deq_hessian_parts` for the terms and diagnostics."""
    return deq_hessian_parts(W_z, b_z, U_z, W_y, b_y, x, y, groups=groups, z_star=z_star, opts=opts, split_terms=False, diagnostics=False).H


def model_hessian(model, x: torch.Tensor, y: torch.Tensor, *, groups=("W_z", "b_z", "U_z", "W_y", "b_y"), opts=None) -> torch.Tensor:
    """:func:`deq_hessian` of a :class:`~deqlab.models.tanh_deq.TanhDEQ` in float64 (its weights are copied)."""
    from deqlab.implicit.params import model_params

    p = model_params(model, torch.float64)
    return deq_hessian(**p, x=x.to(torch.float64), y=y.to(torch.float64), groups=groups, opts=opts)


# --- generic dense closed form ------------------------------------------------------------------

@dataclass
class GenericPieces:
    """Dense pieces of the general formula for flat ``θ_d`` (``P_d``), ``θ_r`` (``P_r``), state ``h`` (``n``)."""

    Z: torch.Tensor  # (n, P_d)
    lam: torch.Tensor  # (n,)
    S_tt: torch.Tensor  # (P_d, P_d)  ∇²_θθ (λᵀf)
    S_ht: torch.Tensor  # (n, P_d)    ∇²_hθ (λᵀf)   ("M" of seed 001)
    S_hh: torch.Tensor  # (n, n)
    l_hh: torch.Tensor  # (n, n)      ∇²ₕℓ
    l_rh: torch.Tensor  # (P_r, n)
    l_rr: torch.Tensor  # (P_r, P_r)

    def hessian(self) -> torch.Tensor:
        """``[[A + B, (l_rh Z)ᵀ], [l_rh Z, l_rr]]`` with the symmetrised mixed term ``ZᵀM + MᵀZ``."""
        Z, M = self.Z, self.S_ht
        dd = Z.T @ self.l_hh @ Z + self.S_tt + Z.T @ M + M.T @ Z + Z.T @ self.S_hh @ Z
        rd = self.l_rh @ Z
        return torch.cat([torch.cat([dd, rd.T], 1), torch.cat([rd, self.l_rr], 1)], 0)


def implicit_hessian_generic(f, loss, theta_d: torch.Tensor, theta_r: torch.Tensor, h: torch.Tensor) -> GenericPieces:
    """Dense closed form for any ``f(θ_d, h) -> (n,)`` and ``ℓ(θ_r, h) -> ()`` on flat vectors.

    ``h`` ``(n,)`` must be the fixed point ``h = f(θ_d, h)``. Costs ``O((n + P)²)`` memory: small problems.
    """
    n = h.numel()
    eye = torch.eye(n, dtype=h.dtype, device=h.device)
    J = torch.func.jacrev(f, argnums=1)(theta_d, h)
    Ft = torch.func.jacrev(f, argnums=0)(theta_d, h)
    lu, pivots, info = torch.linalg.lu_factor_ex(eye - J)
    require_invertible(info, "I − J")
    require_well_conditioned(pivot_condition(lu), h.dtype, "I − J")
    Z = torch.linalg.lu_solve(lu, pivots, Ft)
    g_h = torch.func.grad(loss, argnums=1)(theta_r, h)
    lam = torch.linalg.lu_solve(lu, pivots, g_h[:, None], adjoint=True)[:, 0]   # (I − J)ᵀλ = ∇ₕℓ, the same factors
    S = lambda t, hh: lam @ f(t, hh)  # λ fixed
    (S_tt, S_th), (_, S_hh) = torch.func.hessian(S, argnums=(0, 1))(theta_d, h)
    (l_rr, l_rh), (_, l_hh) = torch.func.hessian(loss, argnums=(0, 1))(theta_r, h)
    return GenericPieces(Z, lam, S_tt, S_th.T, S_hh, l_hh, l_rh, l_rr)


def deq_gradient(W_z, b_z, U_z, W_y, b_y, x, y, *, groups=("W_z", "b_z", "U_z", "W_y", "b_y"), z_star=None, opts=None) -> torch.Tensor:
    """The implicit gradient ``∇_θL = ∇_θℓ + (∂f/∂θ)ᵀλ``, ``(I − J)ᵀλ = ∇ₕℓ`` (one adjoint solve per
    sample, here a dense ``N×N`` solve); same arguments and ``θ`` order as :func:`deq_hessian`."""
    groups = check_groups(groups)
    check_problem({"W_z": W_z, "b_z": b_z, "U_z": U_z, "W_y": W_y, "b_y": b_y}, x, y, z_star)
    W = W_z.detach()
    h = equilibrium(W, b_z.detach(), U_z.detach(), x, z_star, opts=opts)
    s1 = 1 - h * h
    r = h @ W_y.detach().T + b_y.detach() - y
    g_h = r @ W_y.detach()
    IJ = torch.eye(h.shape[1], dtype=h.dtype, device=h.device) - s1[:, :, None] * W
    lu, pivots, info = torch.linalg.lu_factor_ex(IJ)
    require_invertible(info, "I − J")
    require_well_conditioned(pivot_condition(lu), h.dtype, "I − J")
    lam = torch.linalg.lu_solve(lu, pivots, g_h[:, :, None], adjoint=True)[..., 0]
    mu = s1 * lam
    grads = {"W_z": mu.T @ h, "b_z": mu.sum(0), "U_z": mu.T @ x, "W_y": r.T @ h, "b_y": r.sum(0)}
    return torch.cat([grads[g].reshape(-1) for g in groups])


def tanh_generic_pieces(params: dict, groups, x: torch.Tensor, y: torch.Tensor, z_star: torch.Tensor) -> GenericPieces:
    """:func:`implicit_hessian_generic` for the tanh DEQ: the state is the whole batch flattened
    (``n = B·N``, ``J`` block diagonal), ``θ_d`` the selected dynamic groups, ``θ_r`` the readout ones;
    ``pieces.hessian()`` is then in the same ``θ`` order as :func:`deq_hessian`."""
    from deqlab.implicit.params import flatten, loss_at, unflatten

    groups = check_groups(groups)
    dyn = tuple(g for g in groups if g in DYNAMIC) or ("b_z",)
    rd = tuple(g for g in groups if g in READOUT)
    params = {k: v.detach() for k, v in params.items()}
    shape = z_star.shape

    def f(td, hf):
        p = unflatten(td, params, dyn)
        return tanh_map(hf.reshape(shape), p["W_z"], p["b_z"], p["U_z"], x).reshape(-1)

    def loss(tr, hf):
        p = unflatten(tr, params, rd) if rd else params
        return loss_at(p, hf.reshape(shape), y)

    td = flatten(params, dyn)
    tr = flatten(params, rd) if rd else torch.zeros(0, dtype=td.dtype, device=td.device)
    pieces = implicit_hessian_generic(f, loss, td, tr, z_star.detach().reshape(-1))
    if not any(g in DYNAMIC for g in groups):  # no dynamic group selected: drop the b_z placeholder
        z = torch.zeros(pieces.Z.shape[0], 0, dtype=td.dtype, device=td.device)
        e = torch.zeros(0, 0, dtype=td.dtype, device=td.device)
        pieces = GenericPieces(z, pieces.lam, e, z, pieces.S_hh, pieces.l_hh, pieces.l_rh, pieces.l_rr)
    return pieces
