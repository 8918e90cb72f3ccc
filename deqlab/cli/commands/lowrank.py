"""``deqlab lowrank`` and ``deqlab bench lowrank`` (seed 004)."""

from __future__ import annotations

from typing import Optional

import typer

from deqlab.cli.errors import fail
from deqlab.cli.execute import execute
from deqlab.cli.options import DEVICE_OPTION, INTEGER, PATH, NUMBER, OVERRIDES, bench_help, option_help, option_overrides


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command(context_settings=OVERRIDES)
    def lowrank(
        ctx: typer.Context,
        device: Optional[str] = DEVICE_OPTION,
        part: Optional[str] = typer.Option(None, help=option_help("lowrank", "part", "example (seed 004's 3x3 case, default) | pairs | study | deq.")),
        pairs: Optional[str] = typer.Option(None, "--pairs", **PATH, help="FILE.npz with X, Y (n, k) (pairs as columns), optional H (n, n); implies --part pairs."),
        seed: Optional[int] = typer.Option(None, **INTEGER, help=option_help("lowrank", "seed", "Seed of the random study / DEQ.")),
        rtol: Optional[float] = typer.Option(None, **NUMBER, help=option_help("lowrank", "rtol", "Relative cut-off of singular values treated as zero.")),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 if any reported check failed."),
    ) -> None:
        """Symmetric Hessians from a few (step, gradient-change) pairs: seed method, least change, rank-k, Procrustes."""
        if pairs is not None and part not in (None, "pairs"):
            fail(f"--pairs reads a pairs file (part pairs); it cannot be combined with --part {part}", 2)
        overrides = option_overrides(
            **{"part": "pairs" if pairs is not None and part is None else part,
               "pairs_file": pairs,
               "seed": seed, "rtol": rtol, "strict": strict or None}
        )
        execute("lowrank", [*overrides, *ctx.args], device=device)

    @bench.command("lowrank", context_settings=OVERRIDES,
                   help=bench_help("bench_lowrank", "n = 500, rank 8, k = 16: recovery error and time against scipy SR1 updated pair by pair; factored n up to 1e5.", "about 30 seconds"))
    def bench_lowrank(ctx: typer.Context, device: Optional[str] = DEVICE_OPTION) -> None:
        execute("bench_lowrank", ctx.args, folder="bench/lowrank", device=device)

