"""``deqlab nethessian`` (--check demo), ``deqlab nethessian pinn`` and ``deqlab bench nethessian``."""

from __future__ import annotations

from typing import Optional

import typer
from typer.core import TyperGroup

from deqlab.cli.errors import fail
from deqlab.cli.execute import execute
from deqlab.cli.options import DEVICE_OPTION, INTEGER, OVERRIDES, bench_help, option_help, option_overrides, split_list


class _OverridesGroup(TyperGroup):
    """A command group whose own callback also takes trailing ``key=value`` overrides.

    click reads the first extra word of a group as a sub-command name; here a word that names no
    sub-command (``batch=3``) goes back to the callback's ``ctx.args`` instead.
    """

    def parse_args(self, ctx, args):
        # without a sub-command, options may follow the overrides (`nethessian batch=3 --strict`);
        # with one (`nethessian pinn --dtype float64`), everything after its name belongs to it
        ctx.allow_interspersed_args = not any(a in self.commands for a in args)
        super().parse_args(ctx, args)
        protected = list(getattr(ctx, "_protected_args", []))
        if protected and protected[0] not in self.commands:
            ctx._protected_args = []
            ctx.args = [*protected, *ctx.args]
        return ctx.args


def register(app: typer.Typer, bench: typer.Typer) -> None:
    sub = typer.Typer(
        cls=_OverridesGroup,
        help="Input Jacobian, diagonal Hessian, Laplacian, Hessian and third derivatives of MLPs by forward "
        "recursion (seed 002, corrected). Without a sub-command: the --check demo.",
        no_args_is_help=False,
    )

    @sub.callback(invoke_without_command=True, context_settings=OVERRIDES)
    def nethessian(
        ctx: typer.Context,
        device: Optional[str] = DEVICE_OPTION,
        check: bool = typer.Option(False, "--check", help="Check every quantity against torch.func and time the routes (the default action)."),
        d: Optional[int] = typer.Option(None, **INTEGER, help=option_help("nethessian", "mlp.d", "Input size.")),
        hidden: Optional[str] = typer.Option(None, help=option_help("nethessian", "mlp.hidden", "Hidden widths, comma-separated.")),
        n_out: Optional[int] = typer.Option(None, "--n-out", **INTEGER, help=option_help("nethessian", "mlp.n_out", "Output size.")),
        activation: Optional[str] = typer.Option(None, help=option_help("nethessian", "mlp.activation", "tanh | sigmoid | softplus | silu | gelu | sin | gaussian.")),
        batch: Optional[int] = typer.Option(None, **INTEGER, help=option_help("nethessian", "batch", "Batch size.")),
        seed: Optional[int] = typer.Option(None, **INTEGER, help=option_help("nethessian", "seed", "Torch seed of weights and inputs.")),
        dtype: Optional[str] = typer.Option(None, help=option_help("nethessian", "dtype", "float64 | float32.")),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 if any check fails."),
    ) -> None:
        """Forward recursions vs torch.func: max relative error and timing of each route."""
        if ctx.invoked_subcommand is not None:
            # `nethessian --device cuda pinn` ran pinn on the CPU: options before the sub-command are this
            # demo's, and were dropped without a word
            given = [name for name, value in ctx.params.items() if value is not None and value is not False]
            if given:
                fail(f"--{given[0].replace('_', '-')} is an option of `deqlab nethessian` (the --check demo); give the options "
                     f"of `deqlab nethessian {ctx.invoked_subcommand}` after its name", 2)
            return
        overrides = option_overrides(
            **{"mlp.d": d, "mlp.hidden": split_list(hidden, "--hidden", int), "mlp.n_out": n_out,
               "mlp.activation": activation, "batch": batch, "seed": seed, "dtype": dtype,
               "strict": strict or None}
        )
        execute("nethessian", [*overrides, *ctx.args], device=device)

    @sub.command("pinn", context_settings=OVERRIDES)
    def pinn(
        ctx: typer.Context,
        device: Optional[str] = DEVICE_OPTION,
        steps: Optional[int] = typer.Option(None, **INTEGER, help=option_help("nethessian_pinn", "pinn.steps", "Adam steps per route.")),
        hidden: Optional[str] = typer.Option(None, help=option_help("nethessian_pinn", "pinn.hidden", "Hidden widths, comma-separated.")),
        activation: Optional[str] = typer.Option(None, help=option_help("nethessian_pinn", "pinn.activation", "tanh | sigmoid | softplus | silu | gelu | sin | gaussian.")),
        seed: Optional[int] = typer.Option(None, **INTEGER, help=option_help("nethessian_pinn", "seed", "Torch seed.")),
        dtype: Optional[str] = typer.Option(None, help=option_help("nethessian_pinn", "dtype", "float32 | float64.")),
    ) -> None:
        """2-D Poisson PINN: forward-recursion Laplacian vs autograd double backward (L2 error, time per step)."""
        overrides = option_overrides(
            **{"pinn.steps": steps, "pinn.hidden": split_list(hidden, "--hidden", int),
               "pinn.activation": activation, "seed": seed, "dtype": dtype}
        )
        execute("nethessian_pinn", [*overrides, *ctx.args], folder="nethessian/pinn", device=device)

    app.add_typer(sub, name="nethessian")

    @bench.command("nethessian", context_settings=OVERRIDES,
                   help=bench_help("bench_nethessian", "Laplacian / diagonal / full Hessian of a tanh MLP: forward recursion vs double backward, vmap routes.", "about 1 minute"))
    def bench_nethessian(ctx: typer.Context, device: Optional[str] = DEVICE_OPTION) -> None:
        execute("bench_nethessian", ctx.args, folder="bench/nethessian", device=device)
