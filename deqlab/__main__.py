"""``python -m deqlab`` runs the same Typer app as the ``deqlab`` console script."""
from deqlab.cli import main

main()
