"""deqlab's command line: the only package that imports Typer, Hydra or OmegaConf.

``deqlab.cli.app`` holds the Typer app; :func:`main` is the console entry point.
"""


def main() -> None:
    import sys

    from deqlab.cli.streams import guard
    from deqlab.cli.termination import Terminated, end_children, signals_as_exceptions

    guard()   # `deqlab ... | head` must not turn a finished run into a failure

    # From the first instruction on, SIGTERM, SIGHUP and the other terminating signals end the process like Ctrl-C: a run folder in the
    # making is marked .failed by the run's own handler; before or after a run, one line here.
    with signals_as_exceptions():
        try:
            from deqlab.cli.app import app

            app()
        except Terminated as exc:
            end_children()
            sys.stderr.write(f"error: stopped by {exc.name}\n")
            sys.exit(exc.exit_code)
