"""deqlab's one error family, owned by the library.

The library raises these; only the command line (:mod:`deqlab.cli.errors`) maps them to exit codes
(input errors and resource refusals 2, everything else 1). Catch :class:`DeqlabError` to catch all.

- :class:`InputError` (a ``ValueError``): bad input: an unknown name, a negative size, NaN in data,
  a malformed file, an option a solver does not take.
- :class:`ResourceError` (an :class:`InputError`): a size whose estimated memory does not fit.
- :class:`NotConvergedError`: a solve that had to converge did not.
- :class:`IllConditionedError`: the system behind a derivative is too ill-conditioned (or the fixed
  point is repelling) for the derivative to be trusted; deqlab refuses instead of returning it.
"""


class DeqlabError(Exception):
    """Base class of errors that carry a message meant for the user."""


class InputError(DeqlabError, ValueError):
    """Invalid configuration, arguments or input data."""


#: The name the command line used before the error family was owned by the library.
ConfigError = InputError


class ResourceError(InputError):
    """The work asked for needs more memory (or time) than is available; raised before allocating."""


class NotConvergedError(DeqlabError, RuntimeError):
    """A solve that had to converge did not."""


class IllConditionedError(DeqlabError, ArithmeticError):
    """A derivative would rest on an ill-conditioned (or non-contractive) linear system."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, its whitespace collapsed, for a one-line error that quotes a library's
    own words (its type's name where the message is empty)."""
    text = str(exc).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(exc).__name__


def expand_home(path, what: str):
    """``path`` as a :class:`pathlib.Path` with a leading ``~`` (``~user``) replaced by that home folder; else
    :class:`InputError` naming it (pathlib raises a bare ``RuntimeError`` for ``~nosuchuser``: a traceback)."""
    from pathlib import Path

    try:
        return Path(str(path)).expanduser()
    except RuntimeError:
        user = str(path)[1:].split("/", 1)[0]
        whose = f"there is no user {user!r} here" if user else "this user's home folder is unknown (HOME is not set)"
        raise InputError(f"{what} {str(path)!r} starts with ~{user}, but {whose}") from None


def require_path(path, what: str, *, folder: bool = False):
    """``path`` as a :class:`pathlib.Path` if it names an existing file (or, with ``folder``, an existing
    folder); else :class:`InputError` saying which it is instead, e.g. ``data file '/tmp' is a folder,
    not a file``. ``what`` names the path for the user (``"data file"``)."""

    if isinstance(path, str) and not path:   # (Path('') is '.', the working directory: "'.' is a folder, not a file")
        raise InputError(f"{what} is an empty path: name {'a folder' if folder else 'a file'}")
    p = expand_home(path, what)   # (a quoted '~/data.npz' in an override reaches here unexpanded)
    try:
        if (p.is_dir() if folder else p.is_file()):
            return p
        if not p.exists():
            if p.is_symlink():   # (exists() follows the link: a loop or a missing target read as "does not exist")
                raise InputError(f"{what} {str(p)!r} is a symbolic link that leads to no file (a loop, or a missing target)")
            raise InputError(f"{what} {str(p)!r} does not exist")
        kind = "not a folder" if folder else "a folder, not a file" if p.is_dir() else "not a regular file"
    except OSError as exc:
        # (a name too long, a folder on the way that may not be searched: pathlib lets those through, and the
        # run took them for its own failure to write, "cannot write <the data file>", exit 1 and a .failed folder)
        raise InputError(f"{what} {str(p)!r} cannot be read: {exc.strerror or exc}") from None
    raise InputError(f"{what} {str(p)!r} is {kind}")


def require_count(name: str, value, *, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer (Python or NumPy, not a bool) ``>= minimum``; else
    :class:`InputError` naming it (``n_z must be an integer >= 1, got 2.5``). Sizes, step and probe counts:
    a float there failed deep inside torch or ``range`` with a ``TypeError``, a negative one ran nothing."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def require_number(name: str, value, *, minimum: float = 0.0, inclusive: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite real number (not a bool) above ``minimum`` (or equal to it,
    with ``inclusive``); else :class:`InputError` naming it (``m must be a finite number > 0, got inf``)."""
    import math
    import numbers

    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or (value < minimum if inclusive else value <= minimum)):
        raise InputError(f"{name} must be a finite number {'>=' if inclusive else '>'} {minimum:g}, got {value!r}")
    return float(value)


def require_real_dtype(dtype, name: str = "dtype"):
    """``dtype`` if it is a real floating torch dtype; else :class:`InputError` (an integer dtype truncated
    weights to 0, or failed inside torch's initialisers)."""
    if not getattr(dtype, "is_floating_point", False):
        raise InputError(f"{name} must be a real floating torch dtype (torch.float64, torch.float32), got {dtype!r}")
    return dtype
