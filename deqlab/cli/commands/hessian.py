"""``deqlab hessian`` and ``deqlab bench hessian``."""

from __future__ import annotations

from typing import Optional

import typer

from deqlab.cli.execute import execute
from deqlab.cli.options import DEVICE_OPTION, INTEGER, NUMBER, OVERRIDES, bench_help, option_help, option_overrides, split_list


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command(context_settings=OVERRIDES)
    def hessian(
        ctx: typer.Context,
        device: Optional[str] = DEVICE_OPTION,
        check_fd: bool = typer.Option(False, "--check-fd", help="Also compare with central finite differences of the implicit gradient (2P solves)."),
        hvp_only: bool = typer.Option(False, "--hvp-only", help="Matrix-free: eigsh top/bottom eigenvalues, Hutchinson trace, HVP vs FD; no dense H."),
        init: Optional[str] = typer.Option(None, help=option_help("hessian", "model.init", "W_z init: default | normal (nn.init.normal_: a repelling fixed point, refused with exit 1).")),
        n_z: Optional[int] = typer.Option(None, "--n-z", **INTEGER, help=option_help("hessian", "model.n_z", "Hidden size N.")),
        n_x: Optional[int] = typer.Option(None, "--n-x", **INTEGER, help=option_help("hessian", "model.n_x", "Input size d.")),
        n_y: Optional[int] = typer.Option(None, "--n-y", **INTEGER, help=option_help("hessian", "model.n_y", "Output size.")),
        batch: Optional[int] = typer.Option(None, **INTEGER, help=option_help("hessian", "batch", "Samples; curvature is summed.")),
        groups: Optional[str] = typer.Option(None, help=option_help("hessian", "groups", "Comma-separated parameter groups forming theta, from W_z,b_z,U_z,W_y,b_y.")),
        dtype: Optional[str] = typer.Option(None, help=option_help("hessian", "dtype", "float64 | float32.")),
        seed: Optional[int] = typer.Option(None, **INTEGER, help=option_help("hessian", "seed", "Torch seed of the weights.")),
        solver: Optional[str] = typer.Option(None, help=option_help("hessian", "solver", "Forward/adjoint solver: anderson, broyden, newton, fixed_point, fsolve, root.")),
        fd_step: Optional[float] = typer.Option(None, "--fd-step", **NUMBER, help=option_help("hessian", "fd_step", "Central-difference step.")),
        steps: Optional[int] = typer.Option(None, **INTEGER, help=option_help("hessian", "unroll_steps", "Layers of the unrolled reference.")),
        go_on: bool = typer.Option(False, "--go-on", help="Report derivatives even if the forward solve did not converge (all output marked)."),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 if anything did not converge."),
    ) -> None:
        """Exact DEQ gradient and Hessian (seeds 000/001) vs finite differences, unrolled autodiff and the implicit layer."""
        overrides = option_overrides(
            **{"check_fd": check_fd or None, "hvp_only": hvp_only or None, "model.init": init,
               "model.n_z": n_z, "model.n_x": n_x, "model.n_y": n_y, "batch": batch, "groups": split_list(groups, "--groups"), "dtype": dtype,
               "seed": seed, "fd_step": fd_step, "unroll_steps": steps, "go_on": go_on or None,
               "solver": solver, "strict": strict or None}
        )
        execute("hessian", [*overrides, *ctx.args], device=device)

    @bench.command("hessian", context_settings=OVERRIDES,
                   help=bench_help("bench_hessian", "Closed-form Hessian vs torch.func through an unroll; HVP vs gradient; eigsh at P ~ 1e5; peak memory.", "about 3 minutes (memory=false: about 1)"))
    def bench_hessian(ctx: typer.Context, device: Optional[str] = DEVICE_OPTION) -> None:
        execute("bench_hessian", list(ctx.args), folder="bench/hessian", device=device)
