"""The command line's options: typed Typer options → Hydra override words, help texts that read keys and
defaults from the settings dataclasses (so help and schema cannot drift)."""

from __future__ import annotations

import re
from typing import Any

import typer

from deqlab.cli.errors import fail

#: context_settings for commands that take trailing ``key=value`` Hydra overrides.
OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}
#: ``--device`` of every command (the settings key ``device``)
DEVICE_OPTION = typer.Option(None, "--device", help="cpu | cuda | cuda:N | auto (CUDA when there is one). Key device, default cpu.")


def quote(text: str, *, literal: bool = False) -> str:
    """``text`` as a single-quoted Hydra override value that Hydra reads back as ``text``.

    Hydra unescapes backslashes only where they precede a quote or end the value; elsewhere they stay as
    typed, so escaping every backslash doubled them (``--pairs 'a\\b'`` looked for ``a\\\\b``, and a sweep
    under such an output root wrote its jobs to another folder than the one it summarised). With
    ``literal``, ``${`` is escaped for OmegaConf too, so an interpolation-like part of a path deqlab made
    itself stays as it is (an odd number of backslashes before ``${`` escapes it, each pair is one)."""
    if literal:
        text = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    text = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text)
    return "'" + text + "'"


def option_overrides(**options) -> list[str]:
    """Typed options → Hydra overrides, skipping options the user did not give.

    Keys are config paths (``model.init``) or groups (``solver``); values ``None`` are skipped;
    strings are quoted so that ``/``, ``=``, ``,`` or spaces survive Hydra's parser.
    """
    out = []
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            value = "[" + ",".join(quote(str(v)) for v in value) + "]"
        elif isinstance(value, str) and key != "solver" and not key.endswith("_preset"):   # group choices stay bare
            value = quote(value)
        out.append(f"{key}={value}")
    return out


def split_list(text: str | None, option: str, cast=str) -> list | None:
    """``"16,16"`` → ``[16, 16]`` for a comma-separated option; ``None`` when the option was not given.
    An empty entry or a value ``cast`` refuses is a one-line usage error (exit 2)."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        fail(f"{option} must be comma-separated values without empty entries, got {text!r}", 2)
    try:
        return [cast(t) for t in items]
    except ValueError:
        fail(f"{option} must be comma-separated {cast.__name__} values, got {text!r}", 2)


def default_of(command: str, key: str) -> str:
    """The default of ``key`` in ``command``'s settings, as a user would type it (read from the dataclass
    fields, without constructing the settings: a command may have required keys)."""
    import dataclasses

    from deqlab.settings import settings_class

    value: Any = settings_class(command)
    for part in key.split("."):
        spec = next(f for f in dataclasses.fields(value) if f.name == part)
        value = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
    value = getattr(value, "name", value)   # a solver: its name
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def option_help(command: str, key: str, text: str) -> str:
    """An option's help with its settings key and default taken from the settings (they cannot drift)."""
    return f"{text.rstrip('. ')}. Key {key}, default {default_of(command, key)}."


def bench_help(command: str, text: str, duration: str) -> str:
    """A bench's help: what it measures, how long it takes, and its keys (from its settings)."""
    import dataclasses

    from deqlab.settings import settings_class

    keys = ", ".join(f.name for f in dataclasses.fields(settings_class(command)))
    return f"{text} Takes {duration} on a 2-core machine. Keys: {keys}."
