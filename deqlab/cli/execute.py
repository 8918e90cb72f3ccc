"""The one path from a CLI command to a finished run folder.

compose config (Hydra) → ``validate`` → create run folder → ``run(cfg)`` → save + print →
rename the folder to its final name. Bad input ends with one line on stderr and exit code 2
before any folder exists; a failed run leaves only a ``.failed`` folder; ``strict`` turns reported
non-convergence into exit code 1.
"""

from __future__ import annotations

import importlib
from typing import Sequence

import typer

#: context_settings for commands that take trailing ``key=value`` Hydra overrides.
OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}


def fail(message: str, code: int) -> None:
    """Print ``error: message`` to stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def option_overrides(**options) -> list[str]:
    """Typed options → Hydra overrides, skipping options the user did not give.

    Keys are config paths (``model.init``) or groups (``solver``); values ``None`` are skipped.
    """
    return [f"{key}={value}" for key, value in options.items() if value is not None]


def run_experiment(
    experiment: str,
    overrides: Sequence[str],
    *,
    folder: str | None = None,
    module: str | None = None,
) -> "object":
    """Run ``deqlab.demos.<module or experiment>.run`` with the composed config.

    Returns the :class:`~deqlab.report.result.Result` (useful to callers and tests).
    """
    from rich.console import Console

    from deqlab.cli.compose import compose
    from deqlab.errors import ConfigError, DeqlabError
    from deqlab.report.writer import save, show
    from deqlab.cli.run_folder import RunFolder

    console = Console()
    try:
        cfg = compose(experiment, list(overrides))
        check_common(cfg, experiment)
        exp = importlib.import_module(f"deqlab.demos.{module or experiment}")
        exp.validate(cfg)
    except ConfigError as exc:
        fail(str(exc), 2)
    try:
        run_dir = RunFolder.create(folder or experiment, cfg.get("output_root"))
    except OSError as exc:
        fail(f"cannot create a run folder under output_root={cfg.get('output_root')!r}: {exc.strerror or exc}", 2)
    try:
        from omegaconf import OmegaConf

        OmegaConf.save(cfg, run_dir.file("config.yaml"))
        result = exp.run(cfg)
        save(result, run_dir)
    except DeqlabError as exc:
        run_dir.fail(str(exc))
        fail(str(exc), exit_code(exc))
    except BaseException as exc:  # a bug or Ctrl-C: keep the traceback, but never leave a "success" folder
        run_dir.fail(f"{type(exc).__name__}: {exc}")
        raise
    show(result, console)
    if result.failures and cfg.get("strict", False):
        message = f"{len(result.failures)} failure report(s) and strict=true: " + "; ".join(result.failures)
        path = run_dir.fail(message)
        console.print(f"[red]outputs (marked failed):[/] {path}")
        fail(f"{len(result.failures)} failure report(s) (first: {result.failures[0]}) and strict=true", 1)
    path = run_dir.finish()
    console.print(f"[green]outputs:[/] {path}")
    return result


def exit_code(exc: BaseException) -> int:
    """The exit code of a library error: 2 for bad input (resource refusals included), 1 otherwise."""
    from deqlab.errors import InputError

    return 2 if isinstance(exc, InputError) else 1


def check_common(cfg, experiment: str) -> None:
    """Keys every command shares: ``strict`` is a boolean and ``command`` names this experiment."""
    from deqlab.errors import ConfigError

    if not isinstance(cfg.get("strict", False), bool):
        raise ConfigError(f"strict must be true or false, got {cfg.get('strict')!r}")
    if cfg.get("command") != experiment:
        raise ConfigError(f"command is fixed by the command line ({experiment!r}); do not override it")
