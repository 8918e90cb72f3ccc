"""``deqlab nethessian --check``: every forward-recursion quantity against ``torch.func`` (seed 002).

For a random MLP (``mlp.*``, ``seed``) and ``x ~ N(0, 1)`` of shape ``(batch, d)``, in ``dtype``:

1. table ``check``: per quantity, the maximum relative error ``max|ours − ref| / max|ref|`` against an
   independent ``torch.func`` route and the median time of each route. Quantities above ``tolerance``
   are reported as failures (``--strict``: exit 1).
2. table ``pitfalls``: the seed's formulas that are wrong or unstable, measured on the same kind of
   network: eq. (21) division form (fine on this net, NaN at an exact stationary point of
   ``exp(−z²)``), eqs. (30)–(31) third derivative as printed, eq. (25) output derivative by
   element-wise division (on a square 3→3 net, against the ``J⁻¹`` chain rule checked by central
   differences through a Newton inverse of the network).
"""

from __future__ import annotations

from functools import partial

import pandas as pd
import torch

from deqlab.benchmarks import median_time, torch_threads
from deqlab.report.progress import activity, track
from deqlab.report.result import Result, Table
from deqlab.nethessian import derivatives_wrt_outputs, input_derivatives, laplacian, make_mlp
from deqlab.nethessian import pitfalls as P
from deqlab.nethessian import reference as R
from deqlab.nethessian.outputs import invert_network

#: default tolerance of the check per dtype (``tolerance: null``): float64 is the issue's bar
DEFAULT_TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
FD_STEP = 1e-5  # central differences through the inverse network (error ~ h² + eps/h)
PITFALL_TOL = 1e-12  # float64: a formula that is right matches torch.func to this


def max_rel_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """``max|ours − ref| / max|ref|`` (``max|ours|`` where ``ref`` is exactly zero); NaN if ``ours`` is not finite."""
    ours, ref = ours.detach(), ref.detach()
    if not bool(torch.isfinite(ours).all()):
        return float("nan")
    scale = float(ref.abs().max())
    diff = float((ours - ref).abs().max())
    return diff / scale if scale > 0 else diff


def median_ms(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in ms over ``repeats`` calls after one warm-up call."""
    return 1e3 * median_time(fn, repeats)[0]


def run(cfg) -> Result:
    with torch_threads(cfg.threads):
        return _run(cfg)


def _run(cfg) -> Result:
    dtype = getattr(torch, cfg.dtype)
    m = cfg.mlp
    torch.manual_seed(cfg.seed)
    net = make_mlp(m.d, list(m.hidden), m.n_out, m.activation, dtype=dtype).requires_grad_(False)
    x = torch.randn(cfg.batch, m.d, dtype=dtype)
    result = Result(command="nethessian")
    reps = cfg.repeats
    tol = DEFAULT_TOLERANCE[cfg.dtype] if cfg.tolerance is None else float(cfg.tolerance)

    def trace(H):
        return torch.diagonal(H, dim1=-2, dim2=-1).sum(-1)

    rows = []
    checks = [
        # quantity, seed eqs, our route, our call, reference name, reference call
        ("value y", "1-2", "forward pass", lambda: input_derivatives(net, x, jacobian=False).value, "net(x)", lambda: net(x)),
        ("jacobian J", "8, 14", "forward recursion", lambda: input_derivatives(net, x).jacobian,
         "vmap(jacrev)", lambda: R.jacobian_func(net, x)),
        ("diag Hessian Hd", "23", "forward recursion",
         lambda: input_derivatives(net, x, jacobian=False, diag_hessian=True, diag_method="forward").diag_hessian,
         "diag vmap(hessian)", lambda: R.diag_hessian_func(net, x)),
        ("diag Hessian Hd", "-", "adjoint (fwd J + bwd)",
         lambda: input_derivatives(net, x, jacobian=False, diag_hessian=True, diag_method="adjoint").diag_hessian,
         "diag vmap(hessian)", lambda: R.diag_hessian_func(net, x)),
        ("Laplacian", "23 summed", "forward recursion", lambda: laplacian(net, x),
         "trace vmap(hessian)", lambda: trace(R.hessian_func(net, x))),
        ("Hessian H", "22", "forward recursion",
         lambda: input_derivatives(net, x, jacobian=False, hessian=True, hessian_method="forward").hessian,
         "vmap(hessian)", lambda: R.hessian_func(net, x)),
        ("Hessian H", "-", "adjoint (fwd J + bwd)",
         lambda: input_derivatives(net, x, jacobian=False, hessian=True, hessian_method="adjoint").hessian,
         "vmap(hessian)", lambda: R.hessian_func(net, x)),
        ("third T=dHd/dx", "31 corrected", "forward recursion",
         lambda: input_derivatives(net, x, jacobian=False, third=True).third,
         "diag vmap(jacfwd(hessian))", lambda: R.third_func(net, x)),
    ]
    arrays = {"x": x.cpu().numpy()}
    # each route timed `repeats` times beside its reference: seconds on a wide net, so a bar names the one running
    for quantity, eqs, route, ours_fn, ref_name, ref_fn in track(checks, "nethessian check", label=lambda c: f"{c[0]} ({c[2]})"):
        ours, ref = ours_fn(), ref_fn()
        err = max_rel_error(ours, ref)
        ok = bool(err <= tol)
        rows.append({
            "quantity": quantity, "seed eq.": eqs, "route": route, "reference": ref_name,
            "max rel error": err, "ok": ok,
            "ours [ms]": median_ms(ours_fn, reps), "reference [ms]": median_ms(ref_fn, reps),
        })
        if not ok:
            result.failures.append(f"{quantity} ({route}): relative error {err:.2e} > tolerance {tol:g}")
    frame = pd.DataFrame(rows)
    frame["speed-up"] = frame["reference [ms]"] / frame["ours [ms]"]
    arch = f"{m.d}→{'→'.join(map(str, m.hidden))}→{m.n_out} {m.activation}"
    result.tables["check"] = Table(
        f"Forward recursions vs torch.func: MLP {arch}, batch {cfg.batch}, {cfg.dtype}, seed {cfg.seed}",
        frame,
        formats={"max rel error": "{:.2e}", "ours [ms]": "{:.3f}", "reference [ms]": "{:.3f}", "speed-up": "{:.1f}"},
        caption=f"max rel error: max|ours − ref| / max|ref|, tolerance {tol:g}; speed-up: reference [ms] / ours [ms] "
        f"(above 1: ours is faster); times: median of {reps} after a warm-up, "
        f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}.",
    )
    full = input_derivatives(net, x, diag_hessian=True, laplacian=True, hessian=True, third=True)
    arrays.update({k: getattr(full, k).cpu().numpy() for k in ("value", "jacobian", "diag_hessian", "laplacian", "hessian", "third")})
    arrays["max_rel_error"] = frame["max rel error"].to_numpy()

    with activity("the seed's pitfall formulas (float64)"):
        result.tables["pitfalls"] = pitfall_table(cfg, torch.float64)  # about formulas, not precision: always float64
    for _, row in result.tables["pitfalls"].frame.iterrows():
        if not row["as predicted"]:
            result.failures.append(f"pitfall {row['formula']!r} did not behave as predicted ({row['observed']})")
    result.arrays["nethessian"] = arrays
    from deqlab.report.nethessian_figures import check_errors

    result.figures["check"] = partial(check_errors, frame, tolerance=tol, dtype=cfg.dtype,
                                      title=f"Forward recursions vs torch.func ({arch}, {cfg.dtype})",
                                      subtitle=f"batch={cfg.batch}, seed={cfg.seed}, median of {cfg.repeats}")
    result.notes.append(
        "'auto' routes: full Hessian and diagonal by the adjoint formula (forward J + one backward pass of the output "
        "adjoints) unless the third-derivative term is requested, which needs the forward H of every layer anyway."
    )
    return result


def pitfall_table(cfg, dtype) -> Table:
    """The seed's division forms, eq. 31 as printed and eq. 25, each against the correct value."""
    m = cfg.mlp
    wrong = cfg.wrong_threshold
    rows = []
    torch.manual_seed(cfg.seed)
    net = make_mlp(m.d, list(m.hidden), m.n_out, m.activation, dtype=dtype).requires_grad_(False)
    x = torch.randn(cfg.batch, m.d, dtype=dtype)
    Hd_ref = R.diag_hessian_func(net, x)
    err = max_rel_error(P.division_diag_hessian(net, x), Hd_ref)
    rows.append({"formula": "eq. 21 (divides by A'^2)", "network": f"the {m.activation} MLP above",
                 "predicted": "right (A' != 0)", "max rel error": err, "as predicted": bool(err <= PITFALL_TOL),
                 "observed": f"{err:.1e}"})
    # exact stationary point: gaussian exp(-z^2), hidden neuron 0 at z = x0 - x1 = 0 with dz/dx = (1, -1)
    torch.manual_seed(cfg.seed)
    g = make_mlp(2, [8, 8], 1, "gaussian", dtype=dtype).requires_grad_(False)
    g[0].weight[0] = torch.tensor([1.0, -1.0], dtype=dtype)
    g[0].bias[0] = 0.0
    xg = torch.randn(cfg.batch, 1, dtype=dtype).repeat(1, 2)
    bad = P.division_diag_hessian(g, xg)
    nonfinite = float((~torch.isfinite(bad)).float().mean())
    stable_err = max_rel_error(input_derivatives(g, xg, diag_hessian=True).diag_hessian, R.diag_hessian_func(g, xg))
    rows.append({"formula": "eq. 21 (divides by A'^2)", "network": "gaussian 2→8→8→1, A'(z)=0 exactly",
                 "predicted": "NaN", "max rel error": float("nan"), "as predicted": nonfinite == 1.0,
                 "observed": f"{100 * nonfinite:.0f}% NaN; eq. 23 error {stable_err:.1e}"})
    # eq. 31 as printed
    T_ref = R.third_func(net, x)
    err = max_rel_error(P.seed_third(net, x), T_ref)
    rows.append({"formula": "eqs. 30-31 as printed", "network": f"the {m.activation} MLP above",
                 "predicted": "wrong", "max rel error": err, "as predicted": bool(err > wrong), "observed": f"{err:.2f}"})
    # eq. 25 on a square, invertible network
    torch.manual_seed(cfg.seed)
    sq = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh(), torch.nn.Linear(3, 3)).to(dtype).requires_grad_(False)
    sq[0].weight.mul_(0.3)
    sq[2].weight.copy_(torch.eye(3, dtype=dtype) + 0.2 * sq[2].weight)
    xs = 0.5 * torch.randn(2, 3, dtype=dtype)
    out = input_derivatives(sq, xs, hessian=True)
    dJ, _ = derivatives_wrt_outputs(out.jacobian, out.hessian)
    fd = torch.empty_like(dJ)
    for k in range(3):
        e = torch.zeros_like(out.value)
        e[:, k] = FD_STEP
        xp, xm = invert_network(sq, out.value + e, xs), invert_network(sq, out.value - e, xs)
        fd[..., k] = (input_derivatives(sq, xp).jacobian - input_derivatives(sq, xm).jacobian) / (2 * FD_STEP)
    err_ok = max_rel_error(dJ, fd)
    err_seed = max_rel_error(P.seed_outputs_jacobian(out.jacobian, out.hessian), fd)
    rows.append({"formula": "dJ/dy = H J^-1 (ours)", "network": "tanh 3→3→3, invertible",
                 "predicted": "right (to FD error)", "max rel error": err_ok, "as predicted": bool(err_ok < 1e-6),
                 "observed": f"{err_ok:.1e} vs central differences through the inverse"})
    rows.append({"formula": "eq. 25 (sum H/J element-wise)", "network": "tanh 3→3→3, invertible",
                 "predicted": "wrong", "max rel error": err_seed, "as predicted": bool(err_seed > wrong),
                 "observed": f"{err_seed:.2f}"})
    frame = pd.DataFrame(rows)
    return Table(
        "The seed's wrong or unstable formulas (pitfalls), measured in float64",
        frame,
        formats={"max rel error": "{:.2e}"},
        caption=f"'wrong' means relative error > {wrong:g}; NaN rows: the division form returns NaN (0/0).",
    )


