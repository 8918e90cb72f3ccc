"""``deqlab sweep EXPERIMENT key=a,b ...``: a Hydra multirun through the configured launcher."""

from __future__ import annotations

import typer

from deqlab.commands.runner import OVERRIDES, fail


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command(context_settings=OVERRIDES)
    def sweep(
        ctx: typer.Context,
        experiment: str = typer.Argument(..., help="Command to sweep, e.g. converge."),
    ) -> None:
        """Hydra multirun of a command: `deqlab sweep converge seed=0,1,2 hydra/launcher=joblib`."""
        from deqlab.config import available, compose
        from deqlab.errors import ConfigError

        if experiment not in available("experiment"):
            fail(f"unknown experiment {experiment!r}; choose one of: {', '.join(available('experiment'))}", 2)
        # Check the overrides once up front (first value of each sweep list) so bad input fails cleanly.
        try:
            probe = [o.split(",")[0] if "=" in o and not o.startswith("hydra") else o for o in ctx.args]
            cfg = compose(experiment, [o for o in probe if not o.startswith("hydra")])
            import importlib

            importlib.import_module(f"deqlab.experiments.{experiment}").validate(cfg)
        except ConfigError as exc:
            fail(str(exc), 2)
        from deqlab.sweep import sweep as run_sweep

        run_sweep(experiment, list(ctx.args))
