"""deqlab's command line: the only package that imports Typer, Hydra or OmegaConf.

``deqlab.cli.app`` holds the Typer app; :func:`main` is the console entry point.
"""


def main() -> None:
    from deqlab.cli.app import app

    app()
