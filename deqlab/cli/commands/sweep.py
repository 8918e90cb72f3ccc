"""``deqlab sweep EXPERIMENT key=a,b ...``: a Hydra multirun through the configured launcher."""

from __future__ import annotations

import typer

from deqlab.cli.execute import OVERRIDES, fail


def _probes(args: list[str]) -> list[list[str]]:
    """Plain override lists that together try every value of every sweep once (the other sweeps at
    their first value), so bad input fails before any job runs. Raises ConfigError for bad syntax."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from deqlab.errors import ConfigError

    try:
        parsed = OverridesParser.create().parse_overrides(list(args))
    except HydraException as exc:
        raise ConfigError(f"bad override: {' '.join(str(exc).split())}") from None
    choices = [list(o.sweep_string_iterator()) if o.is_sweep_override() else [None] for o in parsed]

    def line(o, value):
        return o.input_line if value is None else f"{o.get_key_element()}={value}"

    first = [line(o, c[0]) for o, c in zip(parsed, choices)]
    probes = [first]
    for i, (o, values) in enumerate(zip(parsed, choices)):
        for value in values[1:]:
            probes.append(first[:i] + [line(o, value)] + first[i + 1:])
    return probes


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command(context_settings=OVERRIDES)
    def sweep(
        ctx: typer.Context,
        experiment: str = typer.Argument(..., help="Command to sweep, e.g. converge."),
    ) -> None:
        """Hydra multirun of a command: `deqlab sweep converge seed=0,1,2 hydra/launcher=joblib`."""
        import importlib
        from pathlib import Path

        from deqlab.cli.compose import available, compose
        from deqlab.errors import ConfigError
        from deqlab.cli.run_folder import RunFolder

        if experiment not in available("demo"):
            fail(f"unknown experiment {experiment!r}; choose one of: {', '.join(available('experiment'))}", 2)
        args = list(ctx.args)
        try:
            module = importlib.import_module(f"deqlab.demos.{experiment}")
            for probe in _probes(args):
                cfg = compose(experiment, probe, with_hydra=True)
                module.validate(cfg)
        except ConfigError as exc:
            fail(str(exc), 2)
        given = [a.split("=", 1)[1] for a in args if a.startswith("hydra.sweep.dir=")]
        if given:
            sweep_dir = Path(given[-1])
        else:  # a fresh folder we know, so every job's failures can be collected afterwards
            sweep_dir = RunFolder.fresh_path(f"sweep/{experiment}", cfg.get("output_root"))
            args.append(f"hydra.sweep.dir={sweep_dir}")
        from deqlab.cli.launch import sweep as run_sweep

        run_sweep(experiment, args)
        failed = sorted(sweep_dir.glob("*/failures.txt"))
        typer.echo(f"sweep folder: {sweep_dir} ({len(failed)} job(s) with failure reports)")
        if failed and cfg.get("strict", False):
            fail(f"{len(failed)} job(s) reported failures and strict=true: {', '.join(str(f.parent) for f in failed)}", 1)
