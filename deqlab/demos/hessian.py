"""``deqlab hessian``: the exact Hessian of a tanh DEQ's loss (seeds 000/001), checked three ways.

Model ``h = tanh(W_z h + U_z x + b_z)``, ``ŷ = W_y h + b_y``, loss ``L = ½ Σ_s ‖ŷ_s − y_s‖²`` over a batch
``x_s, y_s ~ N(0, 1)``; ``θ`` = the configured parameter groups (order in
:mod:`deqlab.implicit.params`). Dense mode compares the structured closed form with

(a) central finite differences of the implicit gradient (``check_fd``; step ``fd_step``),
(b) ``torch.func.hessian`` through ``unroll_steps`` unrolled layers,
(c) ``torch.func.hessian`` through the implicit layer,
(d) the dense generic closed form (same formula, other code),

and reports the terms, the "2 MᵀZ" pitfall, the spectrum, the conditioning of ``I − J`` and timings.
``hvp_only`` mode never forms ``H``: eigsh/Hutchinson on the matrix-free HVP, HVP vs FD of the gradient.

Refuses (exit 1, message with the figures) when the forward solve did not converge, or stopped (a loose
``solver.atol``) too far from ``z*`` for the polish to reach it (unless ``go_on``, then every table/figure
title is marked), or when ``I − J`` at ``z*`` is ill-conditioned
(``cond > max_cond``) or not contractive (``ρ(J) ≥ 1`` with ``require_contractive``).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import torch

from deqlab.errors import DeqlabError, NotConvergedError, IllConditionedError
from deqlab.benchmarks import median_time
from deqlab.report.progress import activity
from deqlab.report.result import Result, Table
from deqlab.implicit.checks import fd_hessian, layer_hessian, relative_error, symmetry_error, unrolled_hessian
from deqlab.implicit.hessian import deq_hessian_parts, fixed_point_residual, tanh_generic_pieces
from deqlab.implicit.hvp import DEQHessianOperator, fd_hvp
from deqlab.implicit.layer import SolveOptions, tanh_map
from deqlab.implicit.params import READOUT, check_groups, flatten, group_slices, model_params
from deqlab.implicit.pitfalls import two_mtz_hessian
from deqlab.implicit.polish import polish_tanh_equilibrium
from deqlab.implicit.spectrum import extreme_eigenvalues, hutchinson_trace, spectral_density
from deqlab.models.tanh_deq import TanhDEQ
from deqlab.report.hessian_figures import hessian_heatmaps, hvp_spectrum_plot, spectrum_plot
from deqlab.report.style import run_label
from deqlab.report.fixed_points import fixed_point_table
from deqlab.settings.hessian import MAX_GENERIC_STATE
from deqlab.solvers.registry import SOLVERS
from deqlab.solvers.survey import describe_alternatives, survey_fixed_points

#: The smallest forward-solve atol float32 reaches reliably (‖f(z) − z‖ carries ~√N·ε₃₂·‖z‖ of round-off).
FLOAT32_MIN_ATOL = 1e-6
#: cond₂(I − J) above this at z*: a near-critical fixed point, noted and reported as a failure (--strict).
NEAR_CRITICAL_COND = 1e3


def solve_options(cfg, dtype) -> SolveOptions:
    """The solve options; in float32 an atol below :data:`FLOAT32_MIN_ATOL` is raised to it (the
    caller reports the change: :func:`atol_change`)."""
    extra = cfg.solver.options()
    atol = float(cfg.solver.atol)
    if dtype == torch.float32:
        atol = max(atol, FLOAT32_MIN_ATOL)  # float32 cannot reach float64 tolerances
    return SolveOptions(solver=cfg.solver.name, linear_solver=cfg.solver.name, atol=atol, rtol=float(cfg.solver.rtol),
                        max_iter=int(cfg.solver.max_iter), options=tuple(sorted(extra.items())), on_fail="ignore")


def atol_change(cfg, opts: SolveOptions) -> str | None:
    """A sentence when the solve runs at another atol than the one asked for, else ``None``."""
    asked = float(cfg.solver.atol)
    if opts.atol == asked:
        return None
    return (f"solver.atol {asked:g} is below what {cfg.dtype} can reach; every solve ran at atol {opts.atol:g} "
            f"(the smallest {cfg.dtype} reaches reliably); use --dtype float64 for tighter tolerances")


def make_problem(cfg, dtype):
    """Parameters, inputs and targets in ``dtype``, drawn on the CPU (a seed gives the same problem on every
    device) and moved to the run's device (torch's default device inside the run)."""
    with torch.device("cpu"):
        torch.manual_seed(cfg.seed)
        model = TanhDEQ(cfg.model.n_z, cfg.model.n_x, cfg.model.n_y, init=cfg.model.init)
        params = model_params(model, dtype)
        gen = torch.Generator().manual_seed(cfg.input_seed)
        x = torch.randn(cfg.batch, cfg.model.n_x, generator=gen, dtype=torch.float64).to(dtype)
        y = torch.randn(cfg.batch, cfg.model.n_y, generator=gen, dtype=torch.float64).to(dtype)
    device = torch.get_default_device()
    return {k: v.to(device) for k, v in params.items()}, x.to(device), y.to(device)


#: eigenvalues with |λ| ≤ RANK_TOL·max|λ| are counted as zero (round-off of a rank-deficient H).
RANK_TOL = 1e-10


#: How a :func:`key_value` table prints its numbers (its CSV keeps every digit).
KEY_VALUE_FORMATS = {"value": "{:.6g}"}
#: A fixed-points survey longer than this (seconds) is named in the notes with its slowest solvers.
SURVEY_NOTE_SECONDS = 10.0


def key_value(row: dict) -> pd.DataFrame:
    """One row of figures as a two-column (quantity, value) frame, printed with :data:`KEY_VALUE_FORMATS`.

    The value column mixes numbers and words, so it is an object column: floats stay floats (the CSV
    writes them in full, as every other CSV does; they used to be cut to 6 digits as text), counts stay
    ints, and a bool is the word ``yes``/``NO`` in the CSV as on screen."""
    def cell(v):
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "NO"
        return v
    return pd.DataFrame({"quantity": list(row), "value": pd.Series([cell(v) for v in row.values()], dtype=object)})


def theta_names(params, groups) -> np.ndarray:
    names = []
    for g in groups:
        shape = tuple(params[g].shape)
        names += [f"{g}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]
    return np.asarray(names)


def conditioning(params, z):
    """Per-sample ``cond₂(I − J)`` and ``ρ(J)`` with ``J = diag(1 − z²) W_z``."""
    J = (1 - z * z)[:, :, None] * params["W_z"]
    IJ = torch.eye(z.shape[1], dtype=z.dtype) - J
    sv = torch.linalg.svdvals(IJ.to(torch.float64))
    return (sv[:, 0] / sv[:, -1]), torch.linalg.eigvals(J.to(torch.float64)).abs().amax(dim=1)


def timed(fn, repeats: int = 1):
    """(result of the last call, median seconds over ``repeats`` calls); no warm-up: a route's first
    call is what a user waits for."""
    seconds, out = median_time(fn, repeats, warmup=0)
    return out, seconds


#: stochastic Lanczos quadrature of the matrix-free spectrum: probes × steps HVPs (≈ 25 s at P ≈ 1e5)
SLQ_PROBES = 4
SLQ_STEPS = 30


def _what_ran(cfg, opts) -> str:
    """Figure subtitle: the forward solver, dtype, init and seed of this run."""
    return run_label(solver=opts.solver, dtype=cfg.dtype, init=cfg.model.init, seed=cfg.seed)


def _refuse_or_mark(cfg, result: Result, msg: str, why: str) -> str:
    """A forward solve whose point is not ``z*``: :class:`NotConvergedError` (``msg``, then ``why``, which opens
    the parenthesis naming ``go_on``), or with ``go_on`` a failure report and the mark every table/figure
    title then carries."""
    if not cfg.go_on:
        raise NotConvergedError(f"{msg}{why}go_on=true to report them anyway, marked)")
    result.failures.append(msg + "; every figure below is marked UNCONVERGED")
    return " [UNCONVERGED forward solve]"


def run(cfg) -> Result:
    dtype = getattr(torch, cfg.dtype)
    groups = check_groups(list(cfg.groups))
    params, x, y = make_problem(cfg, dtype)
    opts = solve_options(cfg, dtype)
    z0 = torch.zeros(cfg.batch, cfg.model.n_z, dtype=dtype)
    res, t_fwd = timed(lambda: opts.solve(lambda z: tanh_map(z, params["W_z"], params["b_z"], params["U_z"], x), z0, linear=False))
    result = Result(command="hessian")
    mark = ""
    if not res.all_converged:
        msg = (f"forward solve ({opts.solver}) did not converge: {res.message}, max residual ‖f(z)−z‖ = "
               f"{res.max_residual:.3e} > atol {opts.atol:g}")
        mark = _refuse_or_mark(cfg, result, msg, "; derivatives at a non-equilibrium are meaningless (")
    F = partial(tanh_map, W_z=params["W_z"], b_z=params["b_z"], U_z=params["U_z"], x=x)
    # every solver from z = 0, then J, its eigenvalues and singular values per sample at each point:
    # minutes at n_z = 300, batch 64 on two busy cores, with nothing on the screen before this spinner
    with activity(f"fixed points from z = 0, every solver (batch {cfg.batch}, n_z {cfg.model.n_z})"):
        (points, t_survey) = timed(lambda: survey_fixed_points(
            lambda zz: F(zz), z0, res, list(SOLVERS), atol=opts.atol, rtol=opts.rtol, max_iter=opts.max_iter,
            options=dict(opts.options), known={opts.solver: res}))
    if t_survey > SURVEY_NOTE_SECONDS:
        # the README's --hvp-only example spent 9 of its 11 minutes here, timed in no table
        slow = sorted((p for p in points if p.result is not None), key=lambda p: -p.result.wall_time)[:3]
        result.notes.append(f"the fixed-points table took {t_survey:.0f} s (slowest: "
                            + ", ".join(f"{p.solver} {p.result.wall_time:.0f} s" for p in slow)
                            + "); the derivatives do not need it.")
    z, polish = res.z, None
    if res.all_converged:
        polish = polish_tanh_equilibrium(params["W_z"], params["b_z"], params["U_z"], x, res.z)
        z = polish.z
        # A loose solver.atol (1e308 stops the solve at z = 0) can leave a point the polish does not bring
        # to z*: every derivative there is off by ≈ cond₂(I − J)·residual, so it is refused like a solve
        # that did not converge.
        residual, bound = fixed_point_residual(params["W_z"], params["b_z"], params["U_z"], x, z)
        if not bool((residual <= bound).all()):
            worst = int(torch.argmax(residual / bound))
            msg = (f"the {opts.solver} point (residual {res.max_residual:.1e}, solver.atol {opts.atol:g}) is too far from "
                   f"z* for the polish: its residual is still {float(residual[worst]):.1e}, above the {float(bound[worst]):.1e} "
                   f"the closed form needs in {cfg.dtype}; lower solver.atol")
            mark = _refuse_or_mark(cfg, result, msg, " (derivatives there would be off by ≈ cond₂(I − J)·residual; ")
    cond, rho = conditioning(params, z)
    bad = float(cond.max()) > cfg.max_cond or not torch.isfinite(cond).all()
    if bad or (cfg.require_contractive and float(rho.max()) >= 1):
        found = (f"{opts.solver} converged to a point where cond₂(I − J) = {float(cond.max()):.3e} "
                 f"(max_cond {cfg.max_cond:g}) and spectral radius ρ(J) = {float(rho.max()):.4f} (forward residual "
                 f"{res.max_residual:.1e}, init={cfg.model.init})")
        others = describe_alternatives([p for p in points if p.solver != opts.solver])
        hint = next((f" (--solver {p.solver} differentiates it)" for p in points
                     if p.attracting and not p.same_point), "")
        raise IllConditionedError(
            # (not 'I − J is not contractive': ρ(J) ≥ 1 is the map's fixed point repelling, I − J may be well conditioned)
            f"{'I − J at the fixed point is ill-conditioned' if bad else 'the fixed point is repelling (ρ(J) ≥ 1)'}: {found}; "
            + ("I − J is numerically singular, the implicit derivatives would be noise; refusing to report them"
               if bad else "a repelling fixed point that the weight-tied iteration never reaches; refusing to report "
               "derivatives (require_contractive=false to differentiate it anyway)")
            + f". From z = 0, {others}{hint}."
        )
    change = atol_change(cfg, opts)
    if change:
        result.notes.append(change)
    if polish is None:
        result.notes.append("the forward solve did not converge: z* was not polished (derivatives at the solver's best iterate)")
    near_critical = float(cond.max()) > NEAR_CRITICAL_COND
    if near_critical:
        result.notes.append(
            f"near-critical fixed point: cond₂(I − J) = {float(cond.max()):.3e} > {NEAR_CRITICAL_COND:g} (ρ(J) = "
            f"{float(rho.max()):.6f}); J has an eigenvalue close to 1, so every implicit derivative is that much more "
            f"sensitive to z*. z* was polished to residual {float(polish.residual.max()) if polish else float('nan'):.1e} "
            f"(extended precision), which leaves the closed form accurate to ≈ cond₂·1e-16 = {1e-16 * float(cond.max()):.0e}; "
            f"a second fixed point may lie within ~1/cond₂ of this one (see the fixed-points table).")
        result.failures.append(f"cond₂(I − J) = {float(cond.max()):.3e} at z* is above {NEAR_CRITICAL_COND:g}: a near-critical "
                               f"fixed point whose derivatives are accurate only to ≈ {1e-16 * float(cond.max()):.0e}")
    others = [p for p in points if p.converged and not p.same_point]
    if others:
        result.notes.append("other solvers found other equilibria from z = 0: " + "; ".join(
            f"{p.solver} (||z - z*|| = {p.distance:.3g}, rho(J) = {p.rho:.4f})" for p in others)
            + "; the derivatives here are those at the configured solver's point")
    for p in points:
        if p.result is None:
            result.notes.append(f"fixed-points table: {p.solver} raised: {p.error}")
    base = {"P": sum(params[g].numel() for g in groups), "batch": cfg.batch, "n_z": cfg.model.n_z,
            "cond(I-J) max": float(cond.max()), "rho(J) max": float(rho.max()),
            "forward residual": res.max_residual, "forward steps": res.n_steps, "forward converged": res.all_converged,
            "forward time (s)": t_fwd, "solver atol asked": float(cfg.solver.atol), "solver atol used": opts.atol,
            "residual after polish": float(polish.residual.max()) if polish else float("nan"),
            "polish moved ||dz||": float(polish.moved.max()) if polish else float("nan")}
    slices = group_slices(params, groups)
    result.arrays["problem"] = {
        **{k: v.detach().cpu().numpy() for k, v in params.items()},
        "x": x.cpu().numpy(), "y": y.cpu().numpy(), "z_star": z.cpu().numpy(), "groups": np.asarray(groups),
        "theta": flatten(params, groups).cpu().numpy(), "theta_names": theta_names(params, groups),
        "cond_I_minus_J": cond.cpu().numpy(), "rho_J": rho.cpu().numpy(),
    }
    if cfg.hvp_only:
        _run_hvp(cfg, result, params, groups, x, y, z, opts, base, mark)
    else:
        _run_dense(cfg, result, params, groups, x, y, z, opts, base, mark, slices)
    result.tables["fixed_points"] = fixed_point_table(
        points, f"Fixed points found from z = 0 by every registered solver{mark}",
        f"the {opts.solver} point, the one differentiated (before polishing)")
    return result


def _route(rows, result, name, detail, fn, H):
    """Time one check route and append its row; a route that fails is reported (NaN, reason), not fatal."""
    try:
        with activity(f"check route {name}"):   # (seconds each: an unrolled torch.func.hessian, 2P solves of FD)
            H_r, t = timed(fn)
    except (RuntimeError, DeqlabError) as exc:  # e.g. a linear solve of the implicit layer in float32
        reason = " ".join(str(exc).split())[:160]
        rows.append({"route": name, "rel. error": float("nan"), "time (s)": float("nan"), "detail": f"FAILED: {reason}"})
        result.failures.append(f"route {name} failed: {reason}")
        return None
    rows.append({"route": name, "rel. error": relative_error(H_r, H), "time (s)": t, "detail": detail})
    return H_r


def _run_dense(cfg, result, params, groups, x, y, z, opts, base, mark, slices):
    # opts.on_fail is "ignore": z is the polished z* or, with go_on, the solver's point (marked), as given
    parts, t_cf = timed(lambda: deq_hessian_parts(**params, x=x, y=y, groups=groups, z_star=z, opts=opts), repeats=3)
    H = parts.H
    P = H.shape[0]
    small = P <= cfg.max_reference_p
    tight = SolveOptions(**{**opts.__dict__, "on_fail": "raise"})
    cond_rho = f"cond₂(I−J) = {base['cond(I-J) max']:.3e}, ρ(J) = {base['rho(J) max']:.6f}"
    rows = [{"route": "closed form (structured)", "rel. error": 0.0,
             "time (s)": t_cf, "detail": f"reference of this table; at z*: {cond_rho}"}]
    if cfg.check_fd:
        _route(rows, result, "(a) central FD of implicit gradient", f"step {cfg.fd_step:g}, {2 * P} forward solves",
               lambda: fd_hessian(params, groups, x, y, step=cfg.fd_step, opts=tight), H)
    if small:
        # z^L − z* ~ ρ^L; its k-th θ-derivative picks up a factor L per order: ~ L²ρ^L for the Hessian
        truncation = cfg.unroll_steps**2 * base['rho(J) max'] ** cfg.unroll_steps
        _route(rows, result, f"(b) torch.func.hessian, {cfg.unroll_steps}-layer unroll",
               f"unroll truncation ~ L^2 rho^L = {truncation:.1e}",
               lambda: unrolled_hessian(params, groups, x, y, steps=cfg.unroll_steps), H)
        if truncation > 1e-10:
            result.notes.append(
                f"route (b) differentiates z^L, the state after L = {cfg.unroll_steps} layers from z = 0, not z*: its "
                f"second derivatives approach the DEQ's like L²ρ(J)^L = {cfg.unroll_steps}²·{base['rho(J) max']:.6f}^{cfg.unroll_steps} "
                f"= {truncation:.1e}, "
                "so its error here is the unroll's truncation, not the closed form's; routes (c) and (d) do not truncate "
                + ("(raise --steps to watch (b) converge)." if base['rho(J) max'] < 1 else
                   "(with ρ(J) ≥ 1 the unrolled iteration leaves z*: no depth makes (b) converge, more --steps make it worse)."))
        if cfg.check_layer:
            _route(rows, result, "(c) torch.func.hessian, implicit layer", f"IFT rules, {opts.solver} atol {opts.atol:g}",
                   lambda: layer_hessian(params, groups, x, y, opts=tight), H)
        if cfg.batch * cfg.model.n_z <= MAX_GENERIC_STATE:
            pieces, t = timed(lambda: tanh_generic_pieces(params, groups, x, y, z))
            rows.append({"route": "(d) dense generic closed form", "rel. error":
                         relative_error(pieces.hessian(), H), "time (s)": t, "detail": "same formula, unstructured code"})
            if cfg.pitfall and any(g not in READOUT for g in groups):
                wrong = two_mtz_hessian(pieces)
                rows.append({"route": "PITFALL: 001's 2 M^T Z term", "rel. error":
                             relative_error(wrong, H), "time (s)": float("nan"),
                             "detail": f"WRONG: asymmetry {symmetry_error(wrong):.3f}; not timed (built from route (d))"})
    else:
        result.notes.append(f"P = {P} > max_reference_p = {cfg.max_reference_p}: routes (b)-(d) and the pitfall skipped")
    routes = pd.DataFrame(rows)
    result.headline = {"P": float(P), **{str(r["route"]).split(" ")[0] + " rel. error": float(r["rel. error"])
                                         for r in rows[1:] if not str(r["route"]).startswith("PITFALL")}}
    result.tables["routes"] = Table(f"Closed-form Hessian vs independent routes (P={P}, batch={cfg.batch}, {cfg.dtype}; "
                                    f"{cond_rho}){mark}", routes,
                                    formats={"rel. error": "{:.2e}", "time (s)": "{:.3g}"},
                                    caption="relative Frobenius error ‖H_route − H‖_F / ‖H‖_F")
    eig = torch.linalg.eigvalsh(H.to(torch.float64))
    term_rows = []
    for name, T in (("H = A + B + R", H), ("Term A  Z^T (d2L/dh2) Z", parts.term_a), ("Term B  [I;Z]^T d2(lam^T f) [I;Z]", parts.term_b),
                    ("Term R  readout blocks", parts.term_r)):
        nrm = float(torch.linalg.norm(T))
        term_rows.append({"term": name, "Frobenius norm": nrm, "symmetry error": symmetry_error(T) if nrm > 0 else 0.0})
    result.tables["terms"] = Table(f"Terms of the Hessian{mark}", pd.DataFrame(term_rows),
                                   formats={"Frobenius norm": "{:.4e}", "symmetry error": "{:.2e}"},
                                   caption="symmetry error ‖T − Tᵀ‖_F/‖T‖_F")
    zero_tol = RANK_TOL * float(eig.abs().max())
    spec = {**base, "lambda_min": float(eig[0]), "lambda_max": float(eig[-1]),
            f"n negative (< -{RANK_TOL:g} max|lambda|)": int((eig < -zero_tol).sum()),
            "n zero (|lambda| below that)": int((eig.abs() <= zero_tol).sum()),
            "n positive": int((eig > zero_tol).sum())}
    result.tables["spectrum"] = Table(f"Spectrum of H and conditioning at z*{mark}", key_value(spec), formats=KEY_VALUE_FORMATS,
                                      caption="cond(I-J): 2-norm condition number, max over samples; rho(J): spectral radius")
    result.arrays["terms"] = {"term_a": parts.term_a.cpu().numpy(), "term_b": parts.term_b.cpu().numpy(), "term_r": parts.term_r.cpu().numpy(),
                              "grad": parts.grad.cpu().numpy(), "lam": parts.lam.cpu().numpy(), "eigenvalues": eig.cpu().numpy()}
    H_np = H.cpu().numpy()
    result.files["hessian.npy"] = lambda path: np.save(path, H_np)
    bounds = [(g, sl.start) for g, sl in slices.items()]
    mats = {"H": H_np, "Term A (Gauss-Newton)": parts.term_a.cpu().numpy(), "Term B (dynamics)": parts.term_b.cpu().numpy()}
    if any(g in READOUT for g in groups):
        mats["Term R (readout)"] = parts.term_r.cpu().numpy()
    title = f"DEQ Hessian, tanh N={cfg.model.n_z}, P={P}, batch={cfg.batch}{mark}\n{_what_ran(cfg, opts)}"
    result.figures["hessian_heatmap"] = partial(hessian_heatmaps, mats, bounds, title=title)
    spectra = {"H": eig.cpu().numpy(), "Term A": torch.linalg.eigvalsh(parts.term_a).cpu().numpy(), "Term B": torch.linalg.eigvalsh(parts.term_b).cpu().numpy()}
    if float(torch.linalg.norm(parts.term_r)) > 0:
        spectra["Term R"] = torch.linalg.eigvalsh(parts.term_r).cpu().numpy()
    result.figures["spectrum"] = partial(spectrum_plot, spectra, title=f"Eigenvalues of H and its terms (P={P}){mark}",
                                         subtitle=_what_ran(cfg, opts))
    result.notes.append(
        "H = Zᵀ(∇²ₕℓ)Z + [I; Z]ᵀ∇²₍θ,h₎(λᵀf)[I; Z] + readout blocks, Z = (I−J)⁻¹∂f/∂θ, (I−J)ᵀλ = ∇ₕℓ (seeds 000/001, "
        "with the symmetrised mixed term ZᵀM + MᵀZ of the errata). θ order: " + ", ".join(groups) + " (row-major)."
    )


def _run_hvp(cfg, result, params, groups, x, y, z, opts, base, mark):
    op, t_setup = timed(lambda: DEQHessianOperator(params, groups, x, y, z_star=z, opts=opts))
    P = op.size
    g, t_grad = timed(op.gradient, repeats=5)
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    v = torch.randn(P, generator=gen, dtype=op.theta.dtype, device="cpu").to(op.theta.device)
    v = v / torch.linalg.norm(v)
    Hv, t_hvp = timed(lambda: op.matvec(v), repeats=5)
    tight = SolveOptions(**{**opts.__dict__, "on_fail": "raise"})
    try:
        fd, t_fd = timed(lambda: fd_hvp(params, groups, x, y, v, step=cfg.fd_step, opts=tight))
        fd_error, fd_detail = relative_error(Hv, fd), f"step {cfg.fd_step:g} along a unit random v"
    except (RuntimeError, DeqlabError) as exc:  # e.g. go_on: the FD's forward solves do not converge either
        reason = " ".join(str(exc).split())[:160]
        fd, t_fd, fd_error, fd_detail = torch.full_like(Hv, float("nan")), float("nan"), float("nan"), f"FAILED: {reason}"
        result.failures.append(f"HVP vs central FD failed: {reason}")
    n0 = op.n_hvp
    with activity(f"eigsh: the {cfg.top_k} largest eigenvalues of H (P={P})", unit="HVPs") as act:
        top, t_top = timed(lambda: extreme_eigenvalues(act.counting(op.matvec), P, k=cfg.top_k, which="LA",
                                                       tol=cfg.eigsh_tol, seed=cfg.seed))
    n_top = op.n_hvp - n0
    n0 = op.n_hvp
    with activity(f"eigsh: the {cfg.top_k} smallest eigenvalues of H (P={P})", unit="HVPs") as act:
        bottom, t_bot = timed(lambda: extreme_eigenvalues(act.counting(op.matvec), P, k=cfg.top_k, which="SA",
                                                          tol=cfg.eigsh_tol, seed=cfg.seed))
    n_bot = op.n_hvp - n0
    with activity("Hutchinson trace of H", total=cfg.probes, unit="") as act:
        tr, t_tr = timed(lambda: hutchinson_trace(act.counting(op.matvec), P, probes=cfg.probes, seed=cfg.seed))
    rows = [
        {"quantity": "HVP vs central FD of the implicit gradient (rel. error)", "value": fd_error, "time (s)": t_fd,
         "detail": fd_detail},
        {"quantity": "one implicit gradient", "value": float(torch.linalg.norm(g)), "time (s)": t_grad,
         "detail": "value: ‖∇L‖; time: given λ (its adjoint solve is in the setup row)"},
        {"quantity": "one HVP", "value": t_hvp / t_grad, "time (s)": t_hvp, "detail": "value: time ratio HVP / the gradient row"},
        {"quantity": "operator setup (LU of I − W_z D, adjoint λ)", "value": float("nan"), "time (s)": t_setup,
         "detail": "a time only (value nan)"},
        {"quantity": f"top-{cfg.top_k} eigenvalues (eigsh LA)", "value": float(top[-1]), "time (s)": t_top, "detail": f"{n_top} HVPs; value: λ_max"},
        {"quantity": f"bottom-{cfg.top_k} eigenvalues (eigsh SA)", "value": float(bottom[0]), "time (s)": t_bot, "detail": f"{n_bot} HVPs; value: λ_min"},
        {"quantity": "trace (Hutchinson)", "value": tr.trace, "time (s)": t_tr, "detail": f"± {tr.std_error:.3g} (1 s.e., {tr.probes} probes)"},
    ]
    result.tables["hvp"] = Table(f"Matrix-free Hessian (P={P}, batch={cfg.batch}, N={cfg.model.n_z}){mark}", pd.DataFrame(rows),
                                 formats={"value": "{:.4e}", "time (s)": "{:.3g}"})
    spec = {**base, "lambda_min (eigsh)": float(bottom[0]), "lambda_max (eigsh)": float(top[-1]),
            "trace (Hutchinson)": tr.trace, "trace s.e.": tr.std_error}
    result.tables["spectrum"] = Table(f"Spectrum of H and conditioning at z*{mark}", key_value(spec), formats=KEY_VALUE_FORMATS,
                                      caption="cond(I-J): 2-norm condition number, max over samples; rho(J): spectral radius")
    eig_rows = [{"end": "smallest", "rank": i, "eigenvalue": float(e)} for i, e in enumerate(bottom)]
    eig_rows += [{"end": "largest", "rank": P - len(top) + i, "eigenvalue": float(e)} for i, e in enumerate(top)]
    result.tables["eigenvalues"] = Table(f"Extreme eigenvalues by eigsh on the HVP operator{mark}", pd.DataFrame(eig_rows),
                                         formats={"eigenvalue": "{:.6e}"},
                                         caption=f"rank: position in ascending order, from 0 = λ_min to {P - 1} = λ_max "
                                                 "(the figure counts 1, 2, 3 from each end)")
    result.arrays["hvp"] = {"grad": g.cpu().numpy(), "v": v.cpu().numpy(), "Hv": Hv.cpu().numpy(), "Hv_fd": fd.cpu().numpy(), "top": top, "bottom": bottom,
                            "trace": np.asarray([tr.trace, tr.std_error])}
    with activity(f"spectral density of H (SLQ, {SLQ_PROBES} probes × {min(SLQ_STEPS, P)} Lanczos steps)",
                  total=SLQ_PROBES * min(SLQ_STEPS, P), unit="") as act:
        slq, t_slq = timed(lambda: spectral_density(act.counting(op.matvec), P, probes=SLQ_PROBES, steps=SLQ_STEPS,
                                                           seed=cfg.seed, device=op.theta.device))
    result.arrays["slq"] = {"nodes": slq.nodes, "weights": slq.weights}
    result.notes.append(f"SLQ ({SLQ_PROBES} probes × {slq.nodes.shape[1]} steps, {t_slq:.1f} s): tr H ≈ "
                        f"{slq.moment(1) * P:.4g} (Hutchinson: {tr.trace:.4g} ± {tr.std_error:.2g})")
    result.figures["spectrum"] = partial(hvp_spectrum_plot, bottom, top, P, slq.nodes, slq.weights,
                                         title=f"Spectrum of H without forming it (P={P}, batch={cfg.batch}, N={cfg.model.n_z}){mark}",
                                         subtitle=_what_ran(cfg, opts))
