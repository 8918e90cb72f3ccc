"""deqlab: a command-line lab for Deep Equilibrium Models.

Library layers (no Hydra, Typer or rich inside): :mod:`deqlab.solvers`, :mod:`deqlab.models`.
The CLI (:mod:`deqlab.cli`) composes Hydra configs, calls ``deqlab.demos.<name>.run(cfg)``
and hands the :class:`~deqlab.report.result.Result` to :mod:`deqlab.report`.
"""

__version__ = "0.1.0"
