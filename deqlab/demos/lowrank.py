"""``deqlab lowrank``: symmetric Hessians from a few (point, gradient) pairs (seed 004).

Parts (config key ``part``):

1. ``example``: the seed's worked 3×3 rank-2 example; per method the secant residual ``‖HX − Y‖_F``,
   the recovery error ``‖H − H_true‖`` (max-abs and Frobenius), rank and eigenvalues.
2. ``pairs``: the same table for a user's pairs file (``pairs_file``: ``.npz`` with ``X``, ``Y`` of
   shape ``(n, k)``, optional ``H`` ``(n, n)``); reconstructed matrices saved as ``H_<method>.npy``.
3. ``study``: relative recovery error against ``k`` for random symmetric ``H`` of rank ``r``, with
   and without gradient noise, against scipy's ``SR1``/``BFGS`` update strategies fed the same
   pairs one by one.
4. ``deq``: pairs ``(Δθ, Δ∇L)`` from small parameter steps of a tanh DEQ's loss (implicit
   gradients by an adjoint solve), reconstructed and compared with the exact Hessian
   (:func:`exact_deq_hessian`): relative error and top-eigenvector alignment against ``k``.

Which solution each method returns: :data:`deqlab.lowrank.SOLUTIONS`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deqlab import lowrank as LR
from deqlab.errors import ConfigError, require_path
from deqlab.npz_files import read_npz
from deqlab.settings.resources import check_archive
from deqlab.implicit.secant_pairs import (deq_pairs, exact_deq_hessian, flat_params, implicit_gradient, krylov_deq_pairs,
                                          unrolled_loss)
from deqlab.report.result import Result, Table
from deqlab.models.tanh_deq import TanhDEQ
from deqlab.report.progress import activity, track

PARTS = ("example", "pairs", "study", "deq")
DIFFERENCES = ("forward", "central")
DIRECTIONS = ("random", "krylov")

#: The seed's worked example (seed 004): a rank-2 Hessian and two exact pairs (columns).
SEED_H = np.array([
    [0.68753582, 0.77990032, 0.67761106],
    [0.77990032, 0.90211256, 0.71772732],
    [0.67761106, 0.71772732, 0.81647766],
])
SEED_X = np.array([[-2.20796738, -0.30411266], [-1.40391911, -0.54950598], [-0.42806159, 0.83258512]])
SEED_Y = np.array([[-2.90303289, -0.07347936], [-3.29571902, -0.13532473], [-2.85327694, 0.07932159]])
#: The seed's printed eigenvalues of H (its S).
SEED_EIGENVALUES = (2.25745730, 0.148668740, 0.0)

#: scipy.optimize quasi-Newton updates compared in the study: name → (class name, init_scale).
SCIPY_UPDATES = {"scipy SR1 (auto init)": ("SR1", "auto"), "scipy SR1 (B0 = 0)": ("SR1", 0.0), "scipy BFGS (auto init)": ("BFGS", "auto")}

#: An unrolled DEQ solve counts as converged when ``max ‖f(z^L) − z^L‖ ≤`` this.
UNROLL_RESIDUAL_TOL = 1e-13
#: The implicit gradient must match autodiff through the unrolled solve to this relative error.
GRADIENT_CHECK_RTOL = 1e-9


#: the largest |entry| of X and Y, over sqrt(n), whose products (sums of n of them) stay finite in float64
PAIRS_MAX_ABS = float(np.sqrt(np.finfo(np.float64).max)) / 4
#: ``||H − Hᵀ||_F / ||H||_F`` above which a pairs file's ``H`` is refused: a Hessian's rounding asymmetry is
#: ~eps; the recovery errors the table reports reach 1e-14, far below an asymmetry of this size.
PAIRS_H_ASYMMETRY = 1e-8


# --- config checks ---------------------------------------------------------------------------------

def load_pairs(path, *, rtol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read ``X``, ``Y`` (``(n, k)``) and optional ``H`` (``(n, n)``) from an ``.npz``; ConfigError if bad."""
    if path is None or str(path) == "":
        raise ConfigError("part=pairs needs pairs_file=FILE.npz (or --pairs FILE.npz) with arrays X and Y of shape (n, k)")
    check_archive(require_path(path, "pairs file"), "pairs file")
    p, arrays, found = read_npz(path, "pairs file", ("X", "Y"), optional=("H",))
    missing = [k for k in ("X", "Y") if k not in arrays]
    if missing:
        raise ConfigError(f"pairs file {str(p)!r} lacks array(s) {', '.join(missing)}; found: {', '.join(found) or 'none'}")
    for key, value in arrays.items():
        if key in ("X", "Y", "H") and not np.issubdtype(value.dtype, np.number):
            raise ConfigError(f"array {key} in {str(p)!r} is not numeric (dtype {value.dtype})")
        if key in ("X", "Y", "H") and np.issubdtype(value.dtype, np.complexfloating):
            # float64 conversion would drop the imaginary part with only a ComplexWarning
            raise ConfigError(f"array {key} in {str(p)!r} is complex (dtype {value.dtype}); the secant methods take real pairs")
    try:
        X, Y = LR.check_pairs(arrays["X"], arrays["Y"], rtol=rtol)
    except ValueError as exc:
        raise ConfigError(f"{p.name}: {exc}") from None
    # Every method forms X^T Y and Y^T Y: pairs of about 1e300 passed the finiteness check, overflowed there
    # (a RuntimeWarning on stderr) and the table reported an infinite residual as a finished run.
    largest = max(float(np.abs(X).max(initial=0.0)), float(np.abs(Y).max(initial=0.0)))
    if largest > PAIRS_MAX_ABS / np.sqrt(max(X.shape[0], 1)):
        raise ConfigError(f"{p.name}: X and Y hold values up to {largest:.3g}; their products X^T Y and Y^T Y overflow "
                          "float64: rescale the pairs")
    H = arrays.get("H")
    if H is not None:
        H = np.asarray(H, dtype=np.float64)
        n = X.shape[0]
        if H.shape != (n, n):
            raise ConfigError(f"{p.name}: H must have shape ({n}, {n}) to match X, got {H.shape}")
        if not np.isfinite(H).all():
            raise ConfigError(f"{p.name}: H contains NaN or infinite values")
        # Every method recovers a symmetric matrix: an H that is not one (a Jacobian of a non-gradient map, a
        # transposed block) was compared as given, and the table's errors measured its antisymmetric part.
        asymmetry = float(np.linalg.norm(H - H.T)) / max(float(np.linalg.norm(H)), np.finfo(np.float64).tiny)
        if asymmetry > PAIRS_H_ASYMMETRY:
            raise ConfigError(f"{p.name}: H is not symmetric (||H - H^T||_F / ||H||_F = {asymmetry:.2g} > "
                              f"{PAIRS_H_ASYMMETRY:g}), so it is no Hessian to recover; a finite-difference one "
                              "can be given as (H + H^T)/2")
    return X, Y, H


# --- method table shared by the example and pairs parts ----------------------------------------------

#: Eigenvalues an estimate's summary lists in full; beyond, the largest and smallest half of them each.
SHOWN_EIGENVALUES = 6
EIGENVALUE_CAPTION = (f"eigenvalues: all of them up to {SHOWN_EIGENVALUES}, else the {SHOWN_EIGENVALUES // 2} largest "
                      f"... the {SHOWN_EIGENVALUES // 2} smallest; every one in factors.npz (<method>_S)")


def eigenvalue_summary(S: np.ndarray) -> str:
    """``S`` in decreasing order as text: all of them up to :data:`SHOWN_EIGENVALUES`, else both ends
    ("3 0.2 ... -0.01 -1"): the six largest alone hid every negative eigenvalue of a least-change estimate."""
    S = np.sort(np.asarray(S, dtype=float))[::-1]
    half = SHOWN_EIGENVALUES // 2
    shown = list(S) if len(S) <= SHOWN_EIGENVALUES else [*S[:half], None, *S[-half:]]
    return " ".join("..." if s is None else f"{s:.6g}" for s in shown)


#: Up to this ``n`` the recovery errors come from the dense difference ``H − H_true``; above it (where the
#: difference and its copies would take GBs) from the factored distance to one eigendecomposition of ``H_true``.
DENSE_ERROR_MAX = 4000


def method_table(X: np.ndarray, Y: np.ndarray, H_true: np.ndarray | None, *, rtol: float,
                 true_factors: tuple[np.ndarray, np.ndarray] | None = None):
    """Per method: secant residual, recovery errors, rank, eigenvalues, solution. Returns (frame, estimates).

    ``true_factors``: ``(V, λ)`` with ``H_true = V diag(λ) Vᵀ``, if the caller has them; above
    :data:`DENSE_ERROR_MAX` they are otherwise computed here, once for every method (each method factored
    ``H_true`` anew: four ``O(n³)`` eigendecompositions, 10 minutes at ``n = 8000``)."""
    rows, estimates = [], {}
    ref = np.linalg.norm(H_true) if H_true is not None else np.nan
    dense_errors = H_true is not None and H_true.shape[0] <= DENSE_ERROR_MAX
    if H_true is not None and not dense_errors and true_factors is None:
        true_factors = factor_dense(H_true)
    for method in LR.METHODS:
        est = LR.estimate(method, X, Y, rtol=rtol)
        estimates[method] = est
        row = {
            "method": method,
            "||HX - Y||_F": est.secant_residual(X, Y),
            "max|H - H_true|": np.nan,
            "||H - H_true||_F / ||H_true||_F": np.nan,
            "rank": est.rank,
            "eigenvalues": eigenvalue_summary(est.S),
            "solution": est.solution,
        }
        if dense_errors:
            D = H_true - est.dense()
            row["max|H - H_true|"] = float(np.abs(D).max())
            row["||H - H_true||_F / ||H_true||_F"] = float(np.linalg.norm(D)) / ref
        elif H_true is not None:
            row["||H - H_true||_F / ||H_true||_F"] = LR.relative_error(est, *true_factors)
        rows.append(row)
    return pd.DataFrame(rows), estimates


def seed_method_note(est: LR.SymmetricEstimate) -> str:
    """What the seed's construction had to do on these pairs (complex eigenvalues, non-orthogonal u)."""
    i = est.info
    return (f"seed_method: Gram-Schmidt rank of [X Y] = {i['gram_schmidt_rank']}, rank of J = Ŷ Ŷᵀ: {i['J_rank']}, "
            f"{i['complex_eigenvalues']} complex eigenvalue(s) of its non-symmetric eigenproblem (real parts kept), "
            f"||U_r^T U_r - I|| = {i['u_orthogonality']:.1e}.")


def factor_dense(H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(V, λ)``: the eigendecomposition of ``H``'s symmetric part, ``(H + Hᵀ)/2 = V diag(λ) Vᵀ``."""
    lam, V = np.linalg.eigh((H + H.T) / 2)
    return V, lam


METHOD_FORMATS = {"||HX - Y||_F": "{:.2e}", "max|H - H_true|": "{:.2e}", "||H - H_true||_F / ||H_true||_F": "{:.2e}"}


def run_example(cfg, result: Result) -> None:
    frame, est = method_table(SEED_X, SEED_Y, SEED_H, rtol=cfg.rtol)
    result.tables["example"] = Table(
        "Seed 004 worked example: 3x3 rank-2 H from 2 exact pairs",
        frame,
        formats=METHOD_FORMATS,
        caption=f"Seed's eigenvalues of H: {', '.join(f'{s:g}' for s in SEED_EIGENVALUES)}. "
        "Only the methods whose range is span(Y) give the example's H back.",
    )
    result.arrays["example"] = {"X": SEED_X, "Y": SEED_Y, "H_true": SEED_H, **{f"H_{m}": e.dense() for m, e in est.items()}}
    lam = np.linalg.eigvalsh(SEED_H)
    result.notes.append(
        f"Seed data: max|H X - Y| = {np.abs(SEED_H @ SEED_X - SEED_Y).max():.1e}, "
        f"||X^T Y - Y^T X|| / ||X^T Y|| = {est['rank_k_recovery'].info['xty_asymmetry']:.1e}, "
        f"eig(H_true) = {', '.join(f'{v:.8g}' for v in lam[::-1])}."
    )
    result.notes.append(seed_method_note(est["seed_method"]))
    _figure_of_estimates(result, "example", frame, est, SEED_Y, lam,
                         "Seed 004 worked example: what each method recovers of the 3x3 rank-2 H from 2 exact pairs")


def _figure_of_estimates(result: Result, name: str, frame: pd.DataFrame, est: dict, Y: np.ndarray,
                         truth: np.ndarray | None, title: str) -> None:
    """``<name>.png``: each estimate's eigenvalues beside the true ones (when known), and its secant
    residual and recovery error (:func:`deqlab.report.lowrank_figures.estimates_against_truth`)."""
    from deqlab.report.lowrank_figures import estimates_against_truth

    result.figures[name] = partial(estimates_against_truth, frame, {m: e.S for m, e in est.items()}, truth,
                                   y_norm=float(np.linalg.norm(Y)), title=title)


def run_pairs(cfg, result: Result) -> None:
    X, Y, H = load_pairs(cfg.pairs_file, rtol=cfg.rtol)
    n, k = X.shape
    # H's eigendecomposition, once: the recovery errors above DENSE_ERROR_MAX and the figure's true eigenvalues
    factors = factor_dense(H) if H is not None and n > DENSE_ERROR_MAX else None
    frame, est = method_table(X, Y, H, rtol=cfg.rtol, true_factors=factors)
    result.tables["pairs"] = Table(
        f"Pairs from {Path(str(cfg.pairs_file)).name}: n = {n}, k = {k}" + ("" if H is not None else " (no H: recovery error not available)"),
        frame,
        formats=METHOD_FORMATS,
        caption=EIGENVALUE_CAPTION,
    )
    result.notes.append(seed_method_note(est["seed_method"]))
    # the true eigenvalues cost one dense eigvalsh: only at sizes whose estimates are also saved dense
    truth = None
    if H is not None and n <= cfg.dense_max:
        truth = factors[1] if factors is not None else np.linalg.eigvalsh((H + H.T) / 2)
    _figure_of_estimates(result, "pairs", frame, est, Y, truth,
                         f"Pairs from {Path(str(cfg.pairs_file)).name}: n = {n}, k = {k}"
                         + ("" if H is not None else " (no H given)"))
    result.arrays["factors"] = {f"{m}_{part}": getattr(e, part) for m, e in est.items() for part in ("U", "S")}
    if n <= cfg.dense_max:
        for m, e in est.items():
            result.files[f"H_{m}.npy"] = partial(_save_npy, e)
    else:
        result.notes.append(f"n = {n} > dense_max = {cfg.dense_max}: only the factors (factors.npz: <method>_U (n, r), <method>_S (r,)) are saved")


def _save_npy(est: LR.SymmetricEstimate, path) -> None:
    np.save(path, est.dense())


# --- the scipy quasi-Newton route --------------------------------------------------------------------

def scipy_update(kind: str, X: np.ndarray, Y: np.ndarray, *, init_scale="auto") -> np.ndarray:
    """Feed the pairs one by one to ``scipy.optimize.SR1``/``BFGS`` (approx_type ``"hess"``) and
    return the dense ``(n, n)`` matrix. Pairs are used in column order."""
    import warnings

    from scipy import optimize

    strategy = getattr(optimize, kind)(init_scale=init_scale)
    strategy.initialize(X.shape[0], "hess")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # BFGS warns on every skipped (y^T s <= 0) update
        for j in range(X.shape[1]):
            strategy.update(X[:, j], Y[:, j])
    return strategy.get_matrix()


# --- part 3: recovery study ------------------------------------------------------------------------

def run_study(cfg, result: Result) -> None:
    s = cfg.study
    rng = np.random.default_rng(cfg.seed)
    rows = []
    cases = [(t, noise) for t in range(s.trials) for noise in s.noise]
    for trial, noise in track(cases, "study"):
        U, S = LR.random_low_rank(s.n, s.rank, rng=rng, definite=bool(s.definite))
        H = (U * S) @ U.T
        Xall = rng.standard_normal((s.n, max(s.k)))
        E = rng.standard_normal(Xall.shape)
        HX = H @ Xall
        # noise relative to each gradient difference: y_i = H s_i + noise ||H s_i|| e_i / sqrt(n)
        Yall = HX + noise * np.linalg.norm(HX, axis=0, keepdims=True) * E / np.sqrt(s.n)
        for k in s.k:
            X, Y = Xall[:, :k], Yall[:, :k]
            for method in LR.METHODS:
                est = LR.estimate(method, X, Y, rtol=cfg.rtol)
                rows.append({"noise": noise, "trial": trial, "k": k, "method": method,
                             "rel error": LR.relative_error(est, U, S), "rank": est.rank,
                             "rel secant residual": est.secant_residual(X, Y) / np.linalg.norm(Y)})
            for name, (kind, init) in SCIPY_UPDATES.items():
                B = scipy_update(kind, X, Y, init_scale=init)
                rows.append({"noise": noise, "trial": trial, "k": k, "method": name,
                             "rel error": float(np.linalg.norm(B - H) / np.linalg.norm(H)),
                             "rank": int(np.linalg.matrix_rank(B)),
                             "rel secant residual": float(np.linalg.norm(B @ X - Y) / np.linalg.norm(Y))})
    raw = pd.DataFrame(rows)
    summary = raw.groupby(["noise", "k", "method"], sort=False, as_index=False).agg(
        **{"median rel error": ("rel error", "median"), "max rel error": ("rel error", "max"),
           "median rank": ("rank", "median"), "median rel secant residual": ("rel secant residual", "median")})
    wide = summary.pivot_table(index=["noise", "k"], columns="method", values="median rel error", sort=False).reset_index()
    wide.columns.name = None
    result.tables["study"] = Table(
        f"Median ||H_est - H||_F/||H||_F over {s.trials} trials: random symmetric H (n = {s.n}, rank {s.rank}, "
        f"{'definite' if s.definite else 'indefinite'}) from k Gaussian steps",
        wide,
        formats={c: "{:.2e}" for c in wide.columns if c not in ("noise", "k")},
        caption="noise: y_i = H s_i + noise*||H s_i||*e_i/sqrt(n), e_i ~ N(0, I). Long form with max error, rank and "
        "secant residual: study_summary.csv; every trial: study_trials.csv.",
    )
    result.files["study_summary.csv"] = partial(summary.to_csv, index=False)
    result.files["study_trials.csv"] = partial(raw.to_csv, index=False)
    from deqlab.report.lowrank_figures import error_against_k

    result.figures["study"] = partial(
        error_against_k, summary, rank=s.rank,
        title=f"Symmetric H (n={s.n}, rank {s.rank}) from k pairs: error vs k (float64, {s.trials} trials, seed={cfg.seed})",
    )
    exact = summary[(summary["noise"] == 0) & (summary["k"] >= s.rank) & (summary["method"] == "rank_k_recovery")]
    if len(exact):
        result.notes.append(f"Exact pairs, k >= rank: rank_k_recovery worst relative error {exact['max rel error'].max():.1e}.")


# --- part 4: a DEQ's loss Hessian -----------------------------------------------------------------

def run_deq(cfg, result: Result) -> None:
    d = cfg.deq
    with torch.device("cpu"):  # drawn on the CPU (a seed gives the same problem on every device), then moved
        torch.manual_seed(cfg.seed)
        model = TanhDEQ(d.n_z, d.n_x, d.n_y, init="default", dtype=torch.float64)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        x = torch.randn(d.batch, d.n_x, generator=gen, dtype=torch.float64)
        y = torch.randn(d.batch, d.n_y, generator=gen, dtype=torch.float64)
    device = torch.get_default_device()
    model, x, y = model.to(device), x.to(device), y.to(device)
    theta0 = flat_params(model)
    P = theta0.numel()

    with activity(f"exact Hessian of the DEQ loss (P={P}, closed form)"):
        H = exact_deq_hessian(model, x, y).cpu().numpy()
    asym = float(np.abs(H - H.T).max() / np.abs(H).max())
    H = (H + H.T) / 2
    with activity("implicit vs unrolled gradient check"):
        g_imp = implicit_gradient(model, theta0, x, y)
        th = theta0.clone().requires_grad_(True)
        g_unr = torch.autograd.grad(unrolled_loss(model, th, x, y, d.layers), th)[0]
    g_err = float(torch.linalg.vector_norm(g_imp - g_unr) / torch.linalg.vector_norm(g_unr))
    if g_err > GRADIENT_CHECK_RTOL:
        result.failures.append(f"implicit gradient differs from unrolled autodiff by {g_err:.1e} (> {GRADIENT_CHECK_RTOL:g})")

    lam, V = np.linalg.eigh(H)
    order = np.argsort(-np.abs(lam))
    lam, V = lam[order], V[:, order]
    u1 = V[:, 0]
    rows, pairs, noise = [], {}, {}
    for kind in d.directions:
        with activity(f"{max(d.k)} secant pairs along {kind} directions ({d.difference} differences)"):
            if kind == "random":
                dirs = torch.randn(P, max(d.k), generator=gen, dtype=torch.float64, device="cpu").to(device)
                Xall, Yall = deq_pairs(model, theta0, x, y, dirs / torch.linalg.vector_norm(dirs, dim=0, keepdim=True),
                                       eps=d.eps, difference=d.difference)
            else:
                Xall, Yall = krylov_deq_pairs(model, theta0, x, y, max(d.k), eps=d.eps, difference=d.difference,
                                              generator=gen)
        pairs[kind] = (Xall, Yall)
        noise[kind] = np.linalg.norm(Yall - H @ Xall) / np.linalg.norm(H @ Xall)
        for k in track(list(d.k), f"deq k ({kind})"):
            X, Y = Xall[:, :k], Yall[:, :k]
            best = float(np.linalg.norm(lam[k:]) / np.linalg.norm(lam))  # Eckart-Young floor for rank k
            cands = {m: LR.estimate(m, X, Y, rtol=cfg.rtol).dense() for m in LR.METHODS}
            for name, (sp_kind, init) in SCIPY_UPDATES.items():
                cands[name] = scipy_update(sp_kind, X, Y, init_scale=init)
            for method, B in cands.items():
                mu, W = np.linalg.eigh((B + B.T) / 2)
                top = int(np.argmax(np.abs(mu)))
                rows.append({
                    "directions": kind, "k": k, "method": method,
                    "rel error": float(np.linalg.norm(B - H) / np.linalg.norm(H)),
                    "best rank-k error": best,
                    "|<u1, u1_true>|": float(abs(W[:, top] @ u1)),
                    "top eig rel error": float(abs(mu[top] - lam[0]) / abs(lam[0])),
                    "rank": int(np.linalg.matrix_rank(B, tol=cfg.rtol * max(np.abs(mu).max(), 1e-300))),
                })
    frame = pd.DataFrame(rows)
    result.tables["deq"] = Table(
        f"DEQ loss Hessian (tanh DEQ n_z={d.n_z}, n_x={d.n_x}, n_y={d.n_y}, batch {d.batch}, P={P}) "
        f"from k pairs ({d.difference} differences, eps={d.eps:g}; directions: {', '.join(d.directions)})",
        frame,
        formats={"rel error": "{:.2e}", "best rank-k error": "{:.2e}", "|<u1, u1_true>|": "{:.6f}", "top eig rel error": "{:.2e}"},
        caption="rel error: ||H_est - H||_F/||H||_F; best rank-k error: Eckart-Young floor ||lambda_{k+1:}||/||lambda||; "
        "u1: eigenvector of the largest |eigenvalue|.",
    )
    result.arrays["deq"] = {"H": H, "theta0": theta0.cpu().numpy(), "x": x.cpu().numpy(), "y": y.cpu().numpy(), "eigenvalues": lam,
                            **{f"{a}_{kind}": p for kind, (Xa, Ya) in pairs.items() for a, p in (("X", Xa), ("Y", Ya))}}
    from deqlab.report.lowrank_figures import deq_against_k

    result.figures["deq"] = partial(deq_against_k, frame, title=f"DEQ loss Hessian (P={P}) from k secant pairs "
                                    f"({d.difference} differences, float64, seed={cfg.seed})")
    result.notes.append(
        f"DEQ: implicit (adjoint) gradient vs autodiff through {d.layers} unrolled layers: relative difference {g_err:.1e}; "
        f"||Y - H X|| / ||H X|| = {', '.join(f'{v:.1e} ({k})' for k, v in noise.items())} ({d.difference} differences); "
        f"max|H - H^T|/max|H| = {asym:.1e}; "
        f"eigenvalues of H: {lam[0]:.3e} (largest |.|) ... {lam[-1]:.3e}, {int(np.sum(lam > 0))} positive / {int(np.sum(lam < 0))} negative."
    )


def run(cfg) -> Result:
    result = Result(command="lowrank")
    {"example": run_example, "pairs": run_pairs, "study": run_study, "deq": run_deq}[cfg.part](cfg, result)
    return result
