"""``deqlab sweep COMMAND key=a,b ...``: a Hydra multirun of any command through the configured launcher."""

from __future__ import annotations

import typer

from deqlab.cli.execute import OVERRIDES, fail

#: CLI names of the sweepable commands → their config names (the underscore spellings work too)
SWEEPABLE = {
    "converge": "converge", "hessian": "hessian", "mondeq": "mondeq", "nethessian": "nethessian",
    "nethessian-pinn": "nethessian_pinn", "lowrank": "lowrank", "sysid-pendulum": "sysid",
    "sysid-evaluate": "sysid_evaluate", "bench-solvers": "bench_solvers", "bench-hessian": "bench_hessian",
    "bench-lowrank": "bench_lowrank", "bench-mondeq": "bench_mondeq", "bench-nethessian": "bench_nethessian",
    "bench-sysid": "bench_sysid",
}


def resolve(name: str) -> str:
    if name in SWEEPABLE:
        return SWEEPABLE[name]
    if name in SWEEPABLE.values():
        return name
    if name == "sysid":
        return "sysid"
    raise KeyError(name)


def probes(parsed) -> list[list[str]]:
    """Plain override lists that together try every value of every sweep once (the other sweeps at their
    first value), so bad input fails before any job runs."""
    choices = [list(o.sweep_string_iterator()) if o.is_sweep_override() else [None] for o in parsed]

    def line(o, value):
        return o.input_line if value is None else f"{o.get_key_element()}={value}"

    first = [line(o, c[0]) for o, c in zip(parsed, choices)]
    out = [first]
    for i, (o, values) in enumerate(zip(parsed, choices)):
        for value in values[1:]:
            out.append(first[:i] + [line(o, value)] + first[i + 1:])
    return out


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command(context_settings=OVERRIDES,
                 help="Hydra multirun of a command: `deqlab sweep converge seed=0,1,2 hydra/launcher=joblib`. "
                      f"COMMAND is one of: {', '.join(SWEEPABLE)}. Trailing key=value words are overrides; "
                      "a,b,c or range(a,b) sweeps a key. Each job gets its own folder; the sweep ends with a table "
                      "across jobs (summary.csv).")
    def sweep(ctx: typer.Context, command: str = typer.Argument(..., metavar="COMMAND", help="Command to sweep.")) -> None:
        from deqlab.cli.sweeping import run_sweep

        try:
            name = resolve(command)
        except KeyError:
            fail(f"unknown command {command!r} to sweep; choose one of: {', '.join(SWEEPABLE)}", 2)
        run_sweep(name, list(ctx.args))
