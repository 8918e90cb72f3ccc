"""The command line's options: typed Typer options → Hydra override words, help texts that read keys and
defaults from the settings dataclasses (so help and schema cannot drift)."""

from __future__ import annotations

from collections.abc import Sequence

import re
from typing import Any

import typer

from deqlab.cli.errors import fail

#: context_settings for commands that take trailing ``key=value`` Hydra overrides.
OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}
#: ``--device`` of every command (the settings key ``device``)
DEVICE_OPTION = typer.Option(None, "--device", help="cpu | cuda | cuda:N | auto (CUDA when there is one). Key device, default cpu.")


def quote(text: str) -> str:
    """A string as a Hydra override value that comes out as ``text`` itself, whatever it holds.

    Single-quoted, with ``'`` and ``${`` escaped: OmegaConf resolves ``${...}`` inside quotes, so an output
    root or a data folder holding ``${x}`` failed a sweep, and ``${oc.env:VAR}`` sent its jobs to another
    folder while the sweep reported none. Backslashes are doubled only where Hydra or OmegaConf read
    them as escapes (before a quote, ``${`` or the end); doubled elsewhere they stayed doubled."""
    return "'" + _ESCAPED.sub(lambda m: 2 * m.group(1) + ("\\" + m.group(2) if m.group(2) else ""), text) + "'"


#: a run of backslashes (maybe none) before what Hydra's and OmegaConf's quoted strings treat as special
_ESCAPED = re.compile(r"(\\*)('|\$\{|\Z)")


class Verbatim(str):
    """A typed option's value as the user wrote it: it goes into its override unquoted, so the option and
    ``key=value`` are read by the same parser and checks (see :func:`integer_text`)."""


def _typed_text(text: str, node: str, words: str) -> Verbatim:
    """``text`` if Hydra's override grammar and OmegaConf's ``node`` (``IntegerNode``, ``FloatNode``) take it,
    as they do for ``key=text``; else a one-line usage error (click names the option)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    import omegaconf

    taken = text.isascii()   # int() and float() read any Unicode digit ('٣', '３'); the key does not
    try:
        if taken:
            override = OverridesParser.create().parse_override(f"x={text}")
            taken = not override.is_sweep_override()   # (a sweep, 1,2 or range(3), is no single value)
        if taken:
            getattr(omegaconf, node)(override.value())
    except Exception:   # (Hydra's grammar errors, OmegaConf's ValidationError)
        taken = False
    if not taken:
        raise typer.BadParameter(f"must be {words}, got {text!r}")
    return Verbatim(text)


def integer_text(text: str) -> Verbatim:
    """The parser of every integer option. Typer's own conversion took what ``key=value`` refuses: ``--seed
    1.0`` and ``--seed -0.0`` ran with seed 1 and 0 (pydantic's lax integers; click's ``int()`` took
    others), while ``seed=1.0`` is refused. The text now goes through the override's own parser."""
    return _typed_text(text, "IntegerNode", "an integer")


def number_text(text: str) -> Verbatim:
    """The parser of every number option (see :func:`integer_text`)."""
    return _typed_text(text, "FloatNode", "a number")


def path_text(text: str) -> str:
    """The parser of every file or folder option: the text as typed, never empty. Typer's ``Path`` read
    ``--data ''`` as ``.``, the working directory: "data file '.' is a folder, not a file", and ``--data-dir ''``
    searched the working directory for the F-16 files."""
    if text == "":
        raise typer.BadParameter("must name a file or folder, got an empty path")
    return text


#: typer.Option arguments of an integer / a number option: read like ``key=value`` (see :func:`integer_text`)
INTEGER = {"parser": integer_text, "metavar": "<int>"}
NUMBER = {"parser": number_text, "metavar": "<float>"}
#: typer.Option arguments of a file or folder option (:func:`path_text`)
PATH = {"parser": path_text, "metavar": "<path>"}


#: keys whose typed option is a path (kept as typed, spaces and all)
PATH_KEYS = ("data.path", "data_file", "run_dir", "pairs_file", "f16.data_dir")


def option_overrides(**options) -> list[str]:
    """Typed options → Hydra overrides, skipping options the user did not give.

    Keys are config paths (``model.init``) or groups (``solver``); values ``None`` are skipped;
    strings are quoted so that ``/``, ``=``, ``,`` or spaces survive Hydra's parser.
    """
    out = []
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, Verbatim):
            pass
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            value = "[" + ",".join(quote(str(v)) for v in value) + "]"
        elif isinstance(value, str) and key != "solver" and not key.endswith("_preset"):   # group choices stay bare
            # Hydra strips the spaces around an unquoted value: `device=auto ` runs, so `--device 'auto '`
            # must too (it was refused). A path keeps them: a file's name may hold them.
            value = quote(value if key in PATH_KEYS else value.strip())
        out.append(f"{key}={value}")
    return out


def preset_overrides(preset: dict, given: Sequence[str]) -> list[str]:
    """A preset's ``key=value`` overrides, less the keys the ``given`` overrides set (theirs win): the command line
    refuses a key set twice, and ``deqlab train digits --tiny --epochs 1`` was refused as setting epochs twice."""
    keys = {item.split("=", 1)[0].lstrip("+~") for item in given if "=" in item}
    return option_overrides(**{k: v for k, v in preset.items() if k not in keys})


def split_list(text: str | None, option: str, cast=str) -> list | None:
    """``"16,16"`` → ``[16, 16]`` for a comma-separated option; ``None`` when the option was not given.
    An empty entry or a value ``cast`` refuses is a one-line usage error (exit 2)."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        fail(f"{option} must be comma-separated values without empty entries, got {text!r}", 2)
    try:
        if cast is int:   # as the key reads them: int() took '٣' and '３' (any Unicode digit), the key refuses them
            for item in items:
                integer_text(item)
        return [cast(t) for t in items]
    except (ValueError, typer.BadParameter):
        fail(f"{option} must be comma-separated {cast.__name__} values, got {text!r}", 2)


def default_of(command: str, key: str) -> str:
    """The default of ``key`` in ``command``'s settings, as a user would type it (read from the dataclass
    fields, without constructing the settings: a command may have required keys)."""
    import dataclasses

    from deqlab.settings import settings_class

    value: Any = settings_class(command)
    for part in key.split("."):
        if not isinstance(value, type):   # a group made by its parent's factory: its own values, not
            value = getattr(value, part)  # its class's (hessian's model has n_z=6, TanhDEQSettings 10)
            continue
        spec = next(f for f in dataclasses.fields(value) if f.name == part)
        value = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
    value = getattr(value, "name", value)   # a solver: its name
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def option_help(command: str, key: str, text: str) -> str:
    """An option's help with its settings key and default taken from the settings (they cannot drift).
    Escaped for Typer's rich markup, which took "[rad]" for a style tag and printed "the angle ."."""
    from rich.markup import escape

    return escape(f"{text.rstrip('. ')}. Key {key}, default {default_of(command, key)}.")


def bench_help(command: str, text: str, duration: str) -> str:
    """A bench's help: what it measures, how long it takes, and its keys (from its settings)."""
    import dataclasses

    from deqlab.settings import settings_class

    keys = ", ".join(f.name for f in dataclasses.fields(settings_class(command)))
    return f"{text} Takes {duration} on a 2-core machine. Keys: {keys}."
