"""``deqlab converge``: finite-depth weight-tied network vs the root-found equilibrium (seed 003).

Reproduces the lecture's tables with the setup of its code (see ``shared/seeds/README.md``):
``n_z = 10``, the input ``x ~ N(0, 0.1)`` of length 3 drawn with NumPy seed 2023 and injected whole,
``z⁰ = 0``, ``z*`` from a registered solver (scipy ``fsolve`` in float64 by default).

Tables (all norms are the Euclidean norm ``‖·‖₂``, not its square; the slides label the same
number "‖z^L − z*‖²"):

1. ``gap``: ``‖z^L − z*‖`` for the configured ``layers``, in the configured dtype and in float64.
2. ``eigen``: ``restarts`` fresh models: smallest real part of ``eig(I − W_z)`` (the slides' "min EW"
   column), ``λ_min((I − W_z) + (I − W_z)ᵀ)/2`` (the monotonicity condition of monDEQ) and
   ``‖z^L − z*‖`` at ``L = eig_layers``.
3. ``solvers``: every solver of ``solver_table`` on the same model in ``solver_table_dtype``.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import torch

from deqlab.errors import ConfigError, NotConvergedError
from deqlab.report.result import Result, Table
from deqlab.models.tanh_deq import INITS, TanhDEQ
from deqlab.report.figures import convergence_curves
from deqlab.report.progress import track
from deqlab.solvers.registry import configured_solver, get_solver
from deqlab.solvers.result import resolution_hint
from deqlab.report.fixed_points import fixed_point_table
from deqlab.solvers.survey import place_point, point_diagnostics
from deqlab.report.words import counted


def make_input(cfg) -> torch.Tensor:
    """The lecture's input: ``N(0, input_std)`` of shape ``(1, n_x)`` from ``RandomState(input_seed)``."""
    rng = np.random.RandomState(cfg.input_seed)
    x = rng.normal(0.0, cfg.input_std, size=(1, cfg.model.n_x))
    if not np.isfinite(x).all():
        raise ConfigError("the input contains NaN or infinite values")
    return torch.as_tensor(x, dtype=torch.float64)


def make_model(cfg, init: str | None = None) -> TanhDEQ:
    return TanhDEQ(cfg.model.n_z, cfg.model.n_x, cfg.model.n_y, init=init or cfg.model.init)


def as_dtype(model: TanhDEQ, dtype: torch.dtype) -> TanhDEQ:
    """A copy of ``model`` in ``dtype`` (the original keeps its own)."""
    import copy

    return copy.deepcopy(model).to(dtype)


def equilibrium(model: TanhDEQ, x: torch.Tensor, solver):
    """Solve ``z = f(z, x)`` from ``z = 0`` in float64; returns the solver result."""
    m64 = as_dtype(model, torch.float64)
    x64 = x.to(torch.float64)
    return solver(lambda z: m64.f(z, x64), torch.zeros(x.shape[0], model.n_z, dtype=torch.float64))


def gap_curve(model: TanhDEQ, x: torch.Tensor, z_star: torch.Tensor, layers: int, dtype: torch.dtype) -> np.ndarray:
    """``‖z^L − z*‖`` for ``L = 0 … layers`` with the finite-depth pass in ``dtype``."""
    m = as_dtype(model, dtype)
    with torch.no_grad():
        path = m.unrolled_path(x.to(dtype), layers).to(torch.float64)
    return torch.linalg.vector_norm(path - z_star, dim=-1)[:, 0].cpu().numpy()


def eigen_columns(W: torch.Tensor) -> tuple[float, float]:
    """``(min Re eig(I − W), λ_min(sym(I − W)))`` with ``sym(A) = (A + Aᵀ)/2``."""
    A = np.eye(W.shape[0]) - W.detach().to(torch.float64).cpu().numpy()
    return float(np.linalg.eigvals(A).real.min()), float(np.linalg.eigvalsh((A + A.T) / 2).min())


def min_re_of(model) -> float:
    """Smallest real part of the eigenvalues of ``I − W_z`` (the slides' "min EW")."""
    return eigen_columns(model.weight_matrix())[0]


#: The float64 gap counts as still falling when it dropped by this factor over the last few layers.
STILL_FALLING = 0.5


def closing_note(cfg, curve, curve64, deepest: int, ref, z_star, model, x, solver_name: str) -> str:
    """What the deepest gaps say, for the dtype that ran: a float32 floor sentence only when the pass
    ran in float32, and "keeps falling" only when the float64 gap is still falling at ``deepest``;
    a gap flat at the accuracy of ``z*`` itself is named as that."""
    if curve64[deepest] >= 1e-3 * curve64[0]:
        return (f"The finite-depth pass does not approach z*: the gap is {curve64[deepest]:.2g} at L={deepest} "
                f"(it was {curve64[0]:.2g} at L=0), in float64 as in {cfg.dtype}.")
    parts = [f"Deepest gap (L={deepest}): {curve64[deepest]:.1e} in float64"
             + (f", {curve[deepest]:.1e} in {cfg.dtype}." if cfg.dtype != "float64" else ".")]
    if cfg.dtype == "float32":
        unit = float(np.finfo(np.float32).eps) / 2
        parts.append(f"float32 stores each entry of z^L to a relative {unit:.1e} (unit round-off), so its gap floors near "
                     f"u*||z*|| = {unit * float(torch.linalg.vector_norm(z_star)):.1e}.")
    back = max(0, deepest - 5)
    if curve64[deepest] < STILL_FALLING * curve64[back]:
        parts.append(f"The float64 gap is still falling geometrically at L={deepest}.")
    else:
        m64 = as_dtype(model, torch.float64)
        sigma = float(point_diagnostics(lambda z: m64.f(z, x.to(torch.float64)), z_star).sigma_min.min())
        known = ref.max_residual / sigma
        flat_from = int(np.argmax(curve64 <= 2 * curve64[deepest]))
        parts.append(f"The float64 gap is flat at {curve64[deepest]:.1e} from L≈{flat_from}: that is how well z* itself is "
                     f"known ({solver_name} stopped at residual {ref.max_residual:.1e}, so z* is within ≈ "
                     f"residual/σ_min(I−J) = {known:.1e} of the equilibrium), not a limit of the finite-depth pass.")
    return " ".join(parts)


def depth_frame(cfg, curve, curve64, deepest: int, z_star: torch.Tensor) -> pd.DataFrame:
    """One row: the deepest finite-depth gaps (``deepest = max(layers, curve_layers)``) in the configured
    dtype and in float64, with what bounds the first from below: ``‖z*‖``, the unit round-off
    ``u = eps/2`` of the dtype and the rounding floor ``u·‖z*‖`` (the numbers of the closing note)."""
    unit = float(torch.finfo(getattr(torch, cfg.dtype)).eps) / 2
    norm = float(torch.linalg.vector_norm(z_star))
    return pd.DataFrame([{
        "L": deepest,
        f"||z^L - z*|| ({cfg.dtype})": float(curve[deepest]),
        "||z^L - z*|| (float64)": float(curve64[deepest]),
        "||z*||": norm,
        f"unit round-off ({cfg.dtype})": unit,
        f"u*||z*|| ({cfg.dtype})": unit * norm,
    }])


def run(cfg) -> Result:
    dtype = getattr(torch, cfg.dtype)
    table_dtype = getattr(torch, cfg.solver_table_dtype)
    solver = configured_solver(cfg.solver.name, **cfg.solver.keywords())
    x = make_input(cfg)
    result = Result(command="converge")

    torch.manual_seed(cfg.seed)
    model = make_model(cfg)
    ref = equilibrium(model, x, solver)
    z_star = ref.z
    if not ref.all_converged:
        # Every gap of the tables and the figure is a distance to z*: against a point that is not the
        # equilibrium they would measure nothing. (A restart's or a compared solver's failure below is
        # part of the demonstration and only reported.)
        # (the message names an atol below float resolution; more iterations cannot help that)
        advice = ("" if resolution_hint(ref.z, ref.atol, ref.rtol)
                  else " (raise solver.max_iter, or choose another solver, e.g. solver=fsolve)")
        raise NotConvergedError(
            f"reference solve ({solver.name}) for z* did not converge: {ref.message} (residual "
            f"{ref.max_residual:.3e}); every gap is measured against z*, so nothing is reported" + advice)
    # 1. the slides' first table
    deepest = max(max(cfg.layers), cfg.curve_layers)
    curve = gap_curve(model, x, z_star, deepest, dtype)
    curve64 = gap_curve(model, x, z_star, deepest, torch.float64)
    gap = pd.DataFrame(
        {
            "L": cfg.layers,
            f"||z^L - z*|| ({cfg.dtype})": [curve[L] for L in cfg.layers],
            "||z^L - z*|| (float64)": [curve64[L] for L in cfg.layers],
            f"||z^L - z*||^2 ({cfg.dtype})": [curve[L] ** 2 for L in cfg.layers],
        }
    )
    result.tables["gap"] = Table(
        f"Finite depth vs equilibrium, init={cfg.model.init}, z* by {solver.name} "
        f"(residual {ref.max_residual:.1e})",
        gap,
        formats={c: "{:.3e}" for c in gap.columns if c != "L"},
        caption="Euclidean norm; the slides print this norm under a 'squared' label. Last column: its square.",
    )

    # 2. eigenvalue table over restarts (restart 0 is the model above)
    torch.manual_seed(cfg.seed)
    rows = []
    restart_arrays: dict[str, list] = {"W_z": [], "b_z": [], "U_z": [], "z_star": []}
    for r in track(range(cfg.restarts), "restarts"):
        m = make_model(cfg)
        sol = equilibrium(m, x, solver)
        restart_arrays["W_z"].append(m.W_z.weight.detach().double().cpu().numpy())
        restart_arrays["b_z"].append(m.W_z.bias.detach().double().cpu().numpy())
        restart_arrays["U_z"].append(m.U_z.weight.detach().double().cpu().numpy())
        restart_arrays["z_star"].append(sol.z[0].cpu().numpy())
        min_re, min_sym = eigen_columns(m.weight_matrix())
        g = gap_curve(m, x, sol.z, cfg.eig_layers, dtype)[-1]
        rows.append(
            {
                "restart": r + 1,
                "min Re eig(I-W_z)": min_re,
                "lambda_min(sym(I-W_z))": min_sym,
                f"||z^{cfg.eig_layers} - z*||": g,
                "finite depth reached z*": bool(g < cfg.converged_gap),
                f"z* found ({solver.name})": sol.all_converged,
            }
        )
        if not sol.all_converged:
            result.failures.append(f"restart {r + 1}: {solver.name} did not find z* (residual {sol.max_residual:.3e})")
    eigen = pd.DataFrame(rows)
    result.arrays["eigen"] = {k: np.stack(v) for k, v in restart_arrays.items()}
    result.tables["eigen"] = Table(
        f"Eigenvalues of I - W_z over {counted(cfg.restarts, 'restart')}, init={cfg.model.init}, L={cfg.eig_layers}",
        eigen,
        formats={"min Re eig(I-W_z)": "{:.4f}", "lambda_min(sym(I-W_z))": "{:.4f}", f"||z^{cfg.eig_layers} - z*||": "{:.3e}"},
        caption="min Re eig: the slides' 'min EW' column. lambda_min of the symmetric part >= m > 0 is monDEQ's condition.",
    )

    # 3. every solver on the first model
    m_table = as_dtype(model, table_dtype)
    x_table = x.to(table_dtype)
    z_ref = z_star.to(table_dtype)
    f_table = lambda z: m_table.f(z, x_table)
    ref_diag = point_diagnostics(f_table, z_ref)
    solver_rows = []
    points = []
    for name in track(list(cfg.solver_table), "solvers"):
        res = get_solver(name)(
            lambda z: m_table.f(z, x_table),
            torch.zeros(1, model.n_z, dtype=table_dtype),
            atol=cfg.solver.atol,
            rtol=cfg.solver.rtol,
            max_iter=max(cfg.solver.max_iter, 200),
        )
        solver_rows.append(
            {
                "solver": name,
                "converged": res.all_converged,
                "steps": res.n_steps,
                "f evals": res.n_fevals,
                "residual ||f(z)-z||": res.max_residual,
                "||z - z*_ref||": float(torch.linalg.vector_norm(res.z - z_ref)),
                "time [ms]": 1e3 * res.wall_time,
            }
        )
        points.append(place_point(f_table, name, res, ref, ref_diag))
        if not res.all_converged:
            result.failures.append(f"solver {name}: {res.message} (residual {res.max_residual:.3e})")
    solvers = pd.DataFrame(solver_rows)
    result.tables["solvers"] = Table(
        f"Solvers on the same model ({cfg.solver_table_dtype}, atol={cfg.solver.atol:g})",
        solvers,
        formats={"residual ||f(z)-z||": "{:.2e}", "||z - z*_ref||": "{:.2e}", "time [ms]": "{:.2f}"},
    )
    result.tables["fixed_points"] = fixed_point_table(
        points, f"Which fixed point each solver found ({cfg.solver_table_dtype})",
        f"z*_ref, found by {solver.name} in float64 (rho(J) = {float(ref_diag.rho.max()):.4f} there)")
    other_points = [p for p in points if p.converged and not p.same_point]
    if other_points:
        result.notes.append(
            "solvers that converged to another equilibrium than z*_ref: " + "; ".join(
                f"{p.solver} (||z - z*_ref|| = {p.distance:.3g}, rho(J) = {p.rho:.4f}, "
                f"{'attracting' if p.rho < 1 else 'repelling: the weight-tied iteration never reaches it'})"
                for p in other_points))

    # curves for both inits (same seed) for the figure
    curves, notes, z_acc = {}, [], {}
    for init in INITS:
        torch.manual_seed(cfg.seed)
        m = make_model(cfg, init)
        sol = equilibrium(m, x, solver)
        curves[f"init={init}, {cfg.dtype}"] = gap_curve(m, x, sol.z, cfg.curve_layers, dtype)
        curves[f"init={init}, float64"] = gap_curve(m, x, sol.z, cfg.curve_layers, torch.float64)
        z_acc[init] = sol.max_residual
        c64 = curves[f"init={init}, float64"]
        if min_re_of(m) < 0 and c64[-1] < 1e-3 * c64[0]:
            notes.append(f"init={init}: min Re eig(I−W) < 0, yet the depth iteration reaches the z* that {solver.name} "
                         "found: this draw has an attracting equilibrium (equilibria are not unique here)")
        if not sol.all_converged:
            notes.append(f"init={init}: {solver.name} did not find z* (residual {sol.max_residual:.1e}); its gap is to a non-equilibrium")
    u32 = float(np.finfo(np.float32).eps) / 2 * float(torch.linalg.vector_norm(z_star))
    floors = {f"z* accuracy ({solver.name} residual, init={cfg.model.init})": z_acc[cfg.model.init]}
    if cfg.dtype == "float32":
        floors[f"float32 rounding u·‖z*‖ (init={cfg.model.init})"] = u32
    result.figures["convergence"] = partial(
        convergence_curves, curves, title=f"Finite depth vs equilibrium, init={cfg.model.init} (n_z={cfg.model.n_z})",
        subtitle=f"z* by {solver.name} (atol={cfg.solver.atol:g}), depth pass in {cfg.dtype} and float64, seed={cfg.seed}",
        emphasis=f"init={cfg.model.init}", floors=floors, notes=notes)

    p = {k: v.detach().to(torch.float64).cpu().numpy() for k, v in model.state_dict().items()}
    result.arrays["converge"] = {
        "W_z": p["W_z.weight"], "b_z": p["W_z.bias"], "U_z": p["U_z.weight"],
        "W_y": p["W_y.weight"], "b_y": p["W_y.bias"],
        "x": x.cpu().numpy(), "z_star": z_star.cpu().numpy(),
        "gap": curve, "gap_float64": curve64,
    }
    result.notes.append(closing_note(cfg, curve, curve64, deepest, ref, z_star, model, x, solver.name))
    result.files["depth.csv"] = partial(depth_frame(cfg, curve, curve64, deepest, z_star).to_csv, index=False)
    result.headline = {f"gap at L={deepest} ({cfg.dtype})": float(curve[deepest]),
                       f"gap at L={deepest} (float64)": float(curve64[deepest]), "z* residual": float(ref.max_residual)}
    return result
