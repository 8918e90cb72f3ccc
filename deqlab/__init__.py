"""deqlab: a command-line lab for Deep Equilibrium Models.

Library layers (no Hydra, Typer or rich inside): :mod:`deqlab.solvers`, :mod:`deqlab.models`.
The CLI (:mod:`deqlab.cli`) composes Hydra configs, calls ``deqlab.experiments.<name>.run(cfg)``
and hands the :class:`~deqlab.experiments.result.Result` to :mod:`deqlab.report`.
"""

__version__ = "0.1.0"
