"""System identification (issue 5): data sets, training, metrics and saved models for
``deqlab sysid``. Library code: no Hydra, Typer or rich here (progress goes through a callback)."""
