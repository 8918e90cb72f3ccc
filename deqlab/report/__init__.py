"""Reporters: pure functions from a :class:`~deqlab.report.result.Result` to rich tables,
CSV/NPZ files and PNG figures."""
