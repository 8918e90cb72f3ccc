"""Reporters: pure functions from a :class:`~deqlab.experiments.result.Result` to rich tables,
CSV/NPZ files and PNG figures."""
