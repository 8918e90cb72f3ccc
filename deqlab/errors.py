"""Exceptions the CLI turns into one clear line and an exit code (never a traceback).

- :class:`ConfigError` (exit 2): bad user input: unknown solver, negative size, malformed override,
  non-numeric value, NaN in inputs, a bad data file.
- :class:`NotConvergedError` (exit 1): a computation that needs a converged equilibrium did not get
  one (and the user did not ask to go on).
"""


class DeqlabError(Exception):
    """Base class of errors that carry a message meant for the user."""

    exit_code = 1


class ConfigError(DeqlabError, ValueError):
    """Invalid configuration or input data; exit code 2."""

    exit_code = 2


class NotConvergedError(DeqlabError, RuntimeError):
    """A solve that had to converge did not; exit code 1."""

    exit_code = 1
