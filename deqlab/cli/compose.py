"""From the command line to typed settings: screen the overrides, compose with Hydra, merge into the
command's settings dataclass.

``configs/`` holds ``config.yaml`` (keys every command shares, Hydra's own settings) and the value
presets ``sysid_preset/``. Every command's keys, types and defaults come from its settings dataclass
(:mod:`deqlab.settings`), registered here as the Hydra group ``demo`` (one option per command);
solver presets (:data:`deqlab.settings.solver.PRESETS`) are the group ``solver``. Composition is
Hydra's (group choices, overrides, sweeps); validation is OmegaConf's structured mode (unknown keys
at any depth, wrong types) and the dataclasses' ``__post_init__`` (domains). Nothing a user typed is
ever instantiated: an override that carries ``_target_`` (or any other ``_key_``), touches
``hydra.callbacks`` or any Hydra setting outside a sweep's launcher, is refused first.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from deqlab.errors import InputError, first_line
from deqlab.settings import COMMANDS, settings_class
from deqlab.settings.solver import PRESETS, SolverSettings

HYDRA_VERSION_BASE = "1.3"
#: extra group defaults of a command (after its own values, so the preset wins)
EXTRA_GROUPS = {"sysid": [{"/sysid_preset": "default"}], "sysid_f16": [{"/sysid_f16_preset": "default"}]}
#: Hydra settings a sweep may change (the launcher and its options, the sweep folder)
SWEEP_HYDRA_KEYS = ("hydra/launcher", "hydra.launcher.", "hydra.sweep.dir")
#: Required keys that a command also takes as a typed option (deqlab/cli/commands/sysid.py): the
#: message for a missing one names both.
OPTION_FOR_KEY = {"f16.data_dir": ("--data-dir", "DIR"), "data_file": ("--data", "FILE")}
#: keys renamed since a release: old → new (a one-line error names the new key)
RENAMED: dict[str, str] = {}
#: Hydra config groups a user may choose an option of (one name each; ``hydra/launcher`` only in a sweep)
CHOICE_GROUPS = ("solver", "sysid_preset", "sysid_f16_preset", "hydra/launcher")
#: What the name of a config group's option may look like. Hydra reads ``<group>/<name>.yaml`` from the
#: configs folder, so a name with ``/`` or ``..`` (``sysid_preset=../../../tmp/x``) loaded any YAML file on
#: the disk: its keys bypassed the screening here, and in a sweep its ``hydra.callbacks`` were instantiated.
GROUP_OPTION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
#: The one line for a value nested deeper than Hydra's parser or OmegaConf can follow (a RecursionError)
NESTED_TOO_DEEPLY = "cannot compose the configuration: a value of the overrides is nested too deeply"
#: The most jobs one ``deqlab sweep`` may launch: each job is a run folder, and every swept value is
#: checked (composed and validated) before the first job starts.
MAX_SWEEP_JOBS = 1000


@dataclass
class RunOptions:
    """Keys of ``config.yaml`` that belong to the run, not to the demo."""

    output_root: str = "outputs"   # run folders go to <output_root>/<command>/<timestamp>/
    strict: bool = False           # true: any reported non-convergence ends with exit code 1

    def __post_init__(self) -> None:
        if not str(self.output_root).strip():
            # ('output_root=' silently meant ./outputs: a folder the user did not name)
            raise InputError(f"output_root must name a folder, got {self.output_root!r} (the default is outputs)")


def config_dir() -> Path:
    """Absolute path of the configs folder (source checkout first, then the installed copy)."""
    source = Path(__file__).resolve().parents[2] / "configs"
    if (source / "config.yaml").is_file():
        return source
    from importlib.resources import files

    installed = Path(str(files("deqlab._configs")))
    if (installed / "config.yaml").is_file():
        return installed
    raise RuntimeError("deqlab's configs folder was not found (broken installation?)")


def available_commands() -> list[str]:
    return sorted(COMMANDS)


# --- the Hydra config store: schemas as plain nodes ------------------------------------------------

def _plain(obj) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(obj), resolve=False)


def demo_node(command: str) -> dict:
    """The ``demo=<command>`` option: the settings' defaults as a plain node, a group default for the
    solver preset (its own changes to the preset applied after it), and ``command``."""
    schema = settings_class(command)
    node = _plain(schema)  # the class, not an instance: required ("???") keys stay required
    defaults: list = []
    solver = next((f.default_factory() for f in dataclasses.fields(schema)
                   if f.name == "solver" and f.default_factory is not dataclasses.MISSING), None)
    if isinstance(solver, SolverSettings):
        preset = _plain(SolverSettings.preset(solver.name))
        node["solver"] = {k: v for k, v in node["solver"].items() if preset.get(k) != v}
        defaults.append({"/solver": solver.name})
    defaults.append("_self_")
    defaults += EXTRA_GROUPS.get(command, [])
    return {"defaults": defaults, "command": command, **node}


_registered = False


def register_configs() -> None:
    """Put the solver presets and every command's node into Hydra's ConfigStore (once)."""
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name in PRESETS:
        store.store(group="solver", name=name, node=_plain(SolverSettings.preset(name)))
    for command in COMMANDS:
        store.store(group="demo", name=command, node=demo_node(command), package="_global_")
    _registered = True


# --- screening overrides before Hydra sees them ----------------------------------------------------

#: The longest override read: Hydra's parser took 21 s for a list of 8,000 numbers (about 40,000
#: characters) and minutes for 60,000; no setting needs more than a few hundred characters.
MAX_OVERRIDE_CHARS = 10_000


def screen(overrides: Sequence[str], *, sweep: bool = False) -> list:
    """Parse the overrides and refuse what must never reach Hydra or the code; returns them parsed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import HydraException

    for item in overrides:
        if len(item) > MAX_OVERRIDE_CHARS:
            raise InputError(f"the override of {item.split('=', 1)[0][:60]!r} is {len(item):,} characters long; at most "
                             f"{MAX_OVERRIDE_CHARS:,} are read (Hydra's parser takes seconds per thousand list items)")
        if item.startswith("-") and "=" not in item:
            raise InputError(f"no such option {item!r} (the command's --help lists its options; settings are key=value)")
        if item.startswith("~"):   # (~seed, without '=', read as "malformed" though Hydra's grammar has it)
            raise InputError(f"deleting keys is not supported ({item!r}): every key keeps a value; set it instead "
                             f"({item.lstrip('~').split('=', 1)[0]}=...)")
        if "=" not in item or item.startswith("="):
            # (`deqlab nethessian batch=3 pinn`: a sub-command after a setting reads as a setting with no value)
            word = item.isidentifier()
            raise InputError(f"malformed override {item!r}: expected key=value (e.g. seed=3)"
                             + ("; a sub-command goes right after its command, before any key=value" if word else ""))
        if "_target_" in item or any(part.startswith("_") and part.endswith("_") and len(part) > 2
                                     for part in _words(item)):
            raise InputError(f"override {item!r} names a reserved _key_ such as _target_: deqlab never instantiates "
                             "objects from the command line")
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(list(overrides))
    except (RecursionError, ValueError) as exc:
        # Hydra's parser lets these through: a value nested a few thousand levels deep, an integer of more
        # than 4,300 digits (Python's limit on converting one)
        raise InputError(_unreadable_override(parser, overrides, exc)) from None
    except HydraException as exc:
        raise InputError(_unparsable_override(parser, overrides, exc)) from None
    for o in parsed:
        key = o.key_or_group
        if o.package:
            raise InputError(f"package overrides are not supported ({o.input_line!r})")
        if key.startswith("hydra"):
            if not sweep:
                raise InputError(f"{key} is a Hydra setting: only `deqlab sweep` takes hydra/launcher and hydra.launcher.*")
            if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in SWEEP_HYDRA_KEYS):
                raise InputError(f"{key} cannot be changed: a sweep takes only hydra/launcher=..., hydra.launcher.<option>=... "
                                 "and hydra.sweep.dir=...")
            if o.is_add() or o.is_force_add():
                # (+hydra.launcher.foo=1 was handed to joblib as a backend keyword, which ignored it: exit 0, while
                # hydra.launcher.foo=1 is refused as an unknown option)
                raise InputError(f"{o.input_line!r}: a Hydra setting is set, never added; write {key}=... (the launcher's "
                                 "own options only)")
            if o.is_sweep_override():
                # (Hydra refuses it only once the sweep folder exists, and the sweep then failed with exit 1)
                raise InputError(f"{o.input_line!r}: a Hydra setting takes one value; sweep the command's own keys")
            if key == "hydra.sweep.dir":
                _check_sweep_dir(o.value())
        if key in CHOICE_GROUPS or "/" in key:
            names = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
            for name in names:
                if isinstance(name, str) and not GROUP_OPTION.fullmatch(name):
                    raise InputError(_unknown_option_message(key, name))
        if key in ("command", "demo"):
            raise InputError(f"{key} is fixed by the command line; do not override it")
        if key in CHOICE_GROUPS and not o.is_sweep_override() and not isinstance(o.value(), str):
            # Hydra would merge every preset of a list in turn (the last one winning) and take [] as the default
            several = isinstance(o.value(), list) and len(o.value()) > 1
            raise InputError(f"{key} takes one name, got {o.value()!r}"
                             + (f" (to compare several, sweep them: deqlab sweep <command> {key}=a,b)" if several else ""))
        if key.split(".")[0] in RENAMED:
            raise InputError(f"{key.split('.')[0]} was renamed to {RENAMED[key.split('.')[0]]}")
        if o.is_sweep_override():
            if key == "output_root":
                # (one sweep folder holds every job: the values went unused, and the folder went under the last)
                raise InputError(f"{o.input_line!r}: output_root takes one value; a sweep's jobs all go into one sweep folder")
            if not sweep:
                raise InputError(f"{o.input_line!r} is a sweep over several values: run it with `deqlab sweep <command> ...`")
            if o.value_type in (ValueType.INTERVAL_SWEEP, ValueType.GLOB_CHOICE_SWEEP):
                raise InputError(f"{o.input_line!r}: interval() and glob() sweeps are not supported; list the values "
                                 "(a,b,c) or use range(start,stop,step)")
    if sweep:
        jobs = sweep_jobs(parsed)
        if jobs > MAX_SWEEP_JOBS:
            raise InputError(f"the sweep has {jobs:,} jobs, over the limit of {MAX_SWEEP_JOBS:,}: sweep fewer values")
    _refuse_repeats(parsed)
    return parsed


def _refuse_repeats(parsed) -> None:
    """A key set twice, or a sweep listing a value twice, is a mistake the composition would hide: Hydra keeps
    the last of ``seed=1 seed=2`` (and of ``--restarts 3 restarts=5``, the option being ``restarts=3``) without a
    word, and ``seed=0,0`` runs the same job twice. Only listed values are compared (a ``range()`` never repeats
    one), by their text, once each."""
    from hydra.core.override_parser.types import ValueType

    first = {}
    for o in parsed:
        key = o.key_or_group
        if key in first:
            raise InputError(f"{key} is set twice ({first[key]!r} and {o.input_line!r}; an option such as --seed sets "
                             "its key too): give it once")
        first[key] = o.input_line
        if "{" in o.input_line and (repeated := _key_repeated_in_a_mapping(o.input_line)):
            raise InputError(f"{o.input_line!r} sets {repeated} twice in one {{...}}: give it once")
        if o.value_type in (ValueType.SIMPLE_CHOICE_SWEEP, ValueType.CHOICE_SWEEP):
            seen = set()
            for value in o.sweep_string_iterator():
                if value in seen:
                    raise InputError(f"{o.input_line!r} lists {value} twice: the sweep would run the same job twice")
                seen.add(value)


def _key_repeated_in_a_mapping(line: str) -> str | None:
    """The first key that a ``{key: value, ...}`` in the override ``line`` (already parsed) names twice, at any
    depth, or ``None``: Hydra builds the mapping with ``dict(...)``, so ``model={n_z:3,n_z:4}`` kept 4 without a
    word. Read from the grammar's parse tree, where both pairs are still there."""
    from antlr4 import CommonTokenStream, InputStream
    from hydra.grammar.gen.OverrideLexer import OverrideLexer
    from hydra.grammar.gen.OverrideParser import OverrideParser

    tree = OverrideParser(CommonTokenStream(OverrideLexer(InputStream(line)))).override()
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, OverrideParser.DictContainerContext):
            keys = [pair.dictKey().getText().strip() for pair in node.dictKeyValuePair()]
            if repeated := next((k for i, k in enumerate(keys) if k in keys[:i]), None):
                return repeated
        pending.extend(node.getChildren() if hasattr(node, "getChildren") else ())
    return None


def _unreadable_override(parser, overrides: Sequence[str], exc: BaseException) -> str:
    """The one line for an override Hydra's parser failed on with ``exc``, naming it (shortened)."""
    from hydra.errors import HydraException

    bad = "?"
    for item in overrides:
        try:
            parser.parse_override(item)
        except (RecursionError, ValueError, HydraException):
            bad = item
            break
    why = ("it is nested too deeply" if isinstance(exc, RecursionError)
           else "an integer has too many digits" if "digits" in str(exc) else first_line(exc))
    shown = bad if len(bad) <= 80 else bad[:60] + f"… ({len(bad):,} characters)"
    return f"cannot read the override {shown!r}: {why}"


def _unparsable_override(parser, overrides: Sequence[str], exc: BaseException) -> str:
    """The one line for the override Hydra's grammar refused, named, in words: Hydra's own message listed
    the grammar's tokens ("expecting {<EOF>, ':', BRACKET_OPEN, ...}"), ended in a link, ran to 250
    characters, often did not name the override (``models=[a``), and the advice to quote the value was
    given for a mistake in the key (``a b=1``) or for a quote left open (``seed='a``: "as in seed=''a'")."""
    from hydra.errors import HydraException

    lexer = "LexerNoViableAltException" in str(exc)   # (a character no token starts with: ~, a space...)
    bad = None
    for item in overrides:
        try:
            parser.parse_override(item)
        except HydraException as error:
            bad, exc = item, error
            break
    text = " ".join(str(exc).split())
    lexer = lexer or text.startswith("token recognition error")
    if bad is None:
        return f"cannot read the overrides: {_grammar_words(text, '')}"
    key, _, value = bad.partition("=")
    try:
        parser.parse_override(f"{key}=1")
    except HydraException:
        return (f"cannot read the override {bad!r}: {key!r} is not a key (keys are names joined by dots, such as "
                "model.n_z)")
    if any(c.isdigit() and not c.isascii() for c in value):
        # (quoted, '٣' is text that int() and float() read as 3: the advice to quote would not help)
        return f"cannot read the override {bad!r}: write numbers with the digits 0-9"
    if value[:1] in ("'", '"') and (len(value) < 2 or value[-1] != value[0]):
        return f"cannot read the override {bad!r}: the quote {value[0]} that opens its value is not closed"
    if lexer:
        # (output_root=~/runs: Hydra's lexer message alone does not say what to do)
        return (f"cannot read the override {bad!r}: quote a value that holds characters such as ~, spaces or brackets, "
                f"as in {key}='{value}'")
    return f"cannot read the override {bad!r}: {_grammar_words(text, bad)}"


def _grammar_words(text: str, override: str) -> str:
    """Hydra's message about an override, without the override itself, the grammar's token names and the link."""
    text = text.replace(f"Error parsing override '{override}'", "").strip()
    text = re.sub(r" ?See https?://\S+ for details\.?$", "", text)
    text = re.sub(r" expecting (\{[^}]*\}|\S+)", "", text)
    text = text.replace("mismatched input '<EOF>'", "it ends where more was expected")
    text = re.sub(r"^(extraneous|mismatched) input ", "unexpected ", text)
    text = re.sub(r"^no viable alternative at input ('.*')", r"\1 is malformed (a bracket or brace left open?)", text)
    text = re.sub(r"^\w+ while evaluating ", "", text)   # "ValueError while evaluating 'choice()': ..."
    return text.strip() or "Hydra's override grammar refuses it"


def _check_sweep_dir(value) -> None:
    """``hydra.sweep.dir`` must be a plain path: deqlab creates the folder before Hydra starts, and Hydra
    would resolve an interpolation (``${now:%H}``, ``${oc.env:HOME}``) to another folder, where the jobs
    went while the sweep reported none from the folder it had made."""
    if value is None or isinstance(value, (list, dict)) or not str(value).strip():
        raise InputError(f"hydra.sweep.dir must be a folder path, got {'null' if value is None else repr(value)}")
    if "${" in str(value):
        raise InputError(f"hydra.sweep.dir must be a plain folder path, got {value!r}: deqlab creates the folder "
                         "before Hydra starts, so ${...} interpolations are not resolved there")


def _unknown_option_message(group: str, name: str) -> str:
    """The one line for a name that is not an option of ``group`` (as :func:`explain` words Hydra's error)."""
    if group == "hydra/launcher":
        return f"unknown launcher {name!r}: use basic, joblib, submitit_local or submitit_slurm (pip install deqlab[sweep])"
    if group in ("solver", "sysid_preset", "sysid_f16_preset"):
        choices = sorted(PRESETS) if group == "solver" else _group_options(group)
        return f"unknown {group} {name!r}; choose one of: {', '.join(choices)}"
    return f"{group} takes the name of one of its options, got {name!r}"


def sweep_jobs(parsed) -> int:
    """How many jobs the parsed overrides launch: the product of every key's number of values, a key
    given twice counted once, at its last value (as Hydra's basic sweeper does)."""
    last = {o.get_key_element(): o for o in parsed}
    jobs = 1
    for o in last.values():
        jobs *= sweep_size(o)
    return jobs


def sweep_size(o) -> int:
    """How many values the parsed override ``o`` takes (1 unless it is a sweep), counted without
    listing them (``range(0,10**9)`` would take minutes to list). Raises :class:`InputError` for a
    range that is empty, never ends (step 0) or has a non-finite bound."""
    import decimal
    import math

    from hydra.core.override_parser.types import RangeSweep, Sweep

    if not o.is_sweep_override():
        return 1
    value = o.value()
    if not isinstance(value, RangeSweep) and any(isinstance(v, Sweep) for v in value.list):
        raise InputError(f"{o.input_line!r}: a sweep inside a list of values is not supported; give one range() "
                         "or one list a,b,c per key")
    if isinstance(value, RangeSweep):
        start, stop, step = (decimal.Decimal(str(v)) for v in (value.start, value.stop, value.step))
        if not all(v.is_finite() for v in (start, stop, step)):
            raise InputError(f"{o.input_line!r}: range() needs finite start, stop and step")
        if step == 0:
            raise InputError(f"{o.input_line!r}: range() step must not be 0")
        count = max(0, math.ceil((stop - start) / step))
    else:
        count = len(value.list)
    if count == 0:
        raise InputError(f"{o.input_line!r} sweeps over no values (range(start,stop,step) stops before it starts)")
    return count


def _words(item: str) -> list[str]:
    import re

    return re.findall(r"[A-Za-z0-9_]+", item)


# --- composition ---------------------------------------------------------------------------------

def compose(command: str, overrides: Sequence[str] = (), *, with_hydra: bool = False):
    """Hydra's composition of ``config.yaml`` + ``demo=<command>`` + the overrides (screened first).

    Raises :class:`InputError` with one line for anything a user can get wrong.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if command not in COMMANDS:
        raise InputError(f"unknown command {command!r}; choose one of: {', '.join(available_commands())}")
    _refuse_adding_a_setting(screen(overrides, sweep=with_hydra), command)
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base=HYDRA_VERSION_BASE, config_dir=str(config_dir()), job_name="deqlab"):
            return hydra_compose(config_name="config", overrides=[f"demo={command}", *overrides],
                                 return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        launcher_key = next((o.split("=", 1)[0] for o in overrides
                             if o.startswith("hydra.launcher.") and o.split("=", 1)[0] in str(exc)), None)
        if launcher_key:
            raise InputError(_launcher_key_message(command, overrides, launcher_key)) from None
        raise InputError(explain(exc, command)) from None
    except OSError as exc:   # Hydra looks a key up as a config file (a 100,000-character key: ENAMETOOLONG)
        raise InputError(f"cannot compose the configuration from the overrides: {exc.strerror or exc}") from None
    except RecursionError:   # OmegaConf's nodes, a hundred levels deep (layers=[[[...]]]), recurse per level
        raise InputError(NESTED_TOO_DEEPLY) from None
    finally:
        GlobalHydra.instance().clear()


def _refuse_adding_a_setting(parsed, command: str) -> None:
    """``+key=...`` adds a key the settings do not have; on one they have, Hydra refuses a scalar
    (``+seed=3``) but set a list or a mapping (``+layers=[1]`` ran with ``layers=[1]``, exit 0). Both are refused."""
    keys = set(schema_keys(settings_class(command))) | {f.name for f in dataclasses.fields(RunOptions)}
    for o in parsed:
        if o.is_add() and o.key_or_group in keys:
            raise InputError(_exists_already(o.key_or_group))


def _exists_already(key: str) -> str:
    return f"{key} exists already: set it without '+' ({key}=...)"


def _launcher_key_message(command: str, overrides: Sequence[str], key: str) -> str:
    """One line for a ``hydra.launcher.<option>`` that the chosen launcher does not have (its own options,
    read from its config, and the closest one) or that got a value of the wrong type (the option's
    default). The generic message would suggest the settings' keys, which are no launcher's options."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    choice = [o for o in overrides if o.startswith("hydra/launcher=")]
    launcher = choice[-1].split("=", 1)[1] if choice else "basic"
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base=HYDRA_VERSION_BASE, config_dir=str(config_dir()), job_name="deqlab"):
            options = hydra_compose(config_name="config", overrides=[f"demo={command}", *choice],
                                    return_hydra_config=True).hydra.launcher
        defaults = {k: options[k] for k in options if k != "_target_"}
    except Exception:   # (the launcher itself is fine here: its choice composed in the first place)
        defaults = {}
    finally:
        GlobalHydra.instance().clear()
    name = key.removeprefix("hydra.launcher.")
    if name in defaults:
        given = next(o.split("=", 1)[1] for o in reversed(overrides) if o.split("=", 1)[0] == key)
        return f"{key} must be a value like its default {defaults[name]!r} (the {launcher} launcher's option), got {given!r}"
    if not defaults:
        return f"unknown key {key!r}: the {launcher} launcher takes no options (hydra/launcher=joblib does)"
    close = difflib.get_close_matches(name, list(defaults), n=1)
    hint = f"; did you mean hydra.launcher.{close[0]}?" if close else ""
    return f"unknown key {key!r}{hint} (the {launcher} launcher's options: {', '.join(defaults)})"


def to_settings(command: str, cfg) -> tuple[Any, RunOptions]:
    """Merge a composed config into ``command``'s settings dataclass and the run options.

    The value returned is the value checked: interpolations are resolved once here, types come from the
    schema, and ``__post_init__`` checks the domains.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    in_sweep = "hydra" in cfg
    if in_sweep:   # Hydra's own node (a sweep): not the run's business, and resolvable only inside a job
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        # A resolver may warn (oc.deprecated does, in two lines of stderr): the settings' own checks
        # below are what the user hears about, in one line.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise InputError(f"cannot resolve the configuration: {first_line(exc)}") from None
    except RecursionError:
        raise InputError("cannot resolve the configuration: an interpolation refers to itself") from None
    _refuse_reserved(container)
    container = _literal_strings(_without_negative_zero(container))
    container.pop("hydra", None)
    container.pop("command", None)
    run_keys = {f.name: container.pop(f.name) for f in dataclasses.fields(RunOptions) if f.name in container}
    run = _merge(RunOptions, run_keys, command)
    return _merge(settings_class(command), container, command, options=not in_sweep), run


def load(command: str, overrides: Sequence[str] = (), *, preset: Sequence[str] = ()) -> tuple[Any, RunOptions]:
    """``compose`` then ``to_settings``: the typed settings of one run (:func:`refuse_unread` checked on the
    user's ``overrides``; a command's own ``preset`` overrides come first and are not checked)."""
    settings, run = to_settings(command, compose(command, [*preset, *overrides]))
    refuse_unread([unread_given(settings, overrides)])
    return settings, run


def unread_given(settings, overrides: Sequence[str]) -> dict[str, str]:
    """``{key: reason}`` for the keys given in ``overrides`` that a run of ``settings`` does not read.

    A settings class says which of its keys a run leaves unread, and why, by a method ``unread()`` returning
    ``{key: reason}`` (a key covers its sub-keys). Only keys the user gave count: the defaults of the unread
    keys are no choice."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    unread = getattr(settings, "unread", None)
    reasons = unread() if unread is not None else {}
    out = {}
    # (parsed only: the overrides were screened when composed, a sweep's Hydra settings included)
    for o in OverridesParser.create().parse_overrides(list(overrides)) if reasons else ():
        given = o.key_or_group
        for key, reason in reasons.items():
            if given == key or given.startswith(key + ".") or key.startswith(given + "."):
                out.setdefault(given, reason)
    return out


def refuse_unread(per_run: Sequence[dict[str, str]]) -> None:
    """:class:`InputError` for the first key that no run reads, given :func:`unread_given` of each run (one for
    a single run; a sweep's probes, so that a key read by some of its jobs passes).

    ``deqlab hessian probes=128`` without ``--hvp-only`` and ``deqlab lowrank study.n=100`` without
    ``--part study`` ran with the value ignored and exit 0, the user believing it used."""
    if not per_run:
        return
    for key, reason in per_run[0].items():
        if all(key in other for other in per_run[1:]):
            raise InputError(f"{key} is not read by this run: {reason}" if len(per_run) == 1 else
                             f"{key} is not read by any job of the sweep: {reason}")


def _merge(schema: type, values: dict, command: str, *, options: bool = True):
    """``values`` merged into ``schema``'s dataclass; ``options``: whether the command that runs takes
    the typed options of :data:`OPTION_FOR_KEY` (``deqlab sweep`` takes only overrides)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

    _check_groups(schema, values)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
        return OmegaConf.to_object(merged)
    except RecursionError:
        raise InputError(NESTED_TOO_DEEPLY) from None
    except ConfigKeyError as exc:
        key = getattr(exc, "full_key", None) or first_line(exc)
        raise InputError(unknown_key_message(str(key), schema)) from None
    except MissingMandatoryValue as exc:
        key = str(getattr(exc, "full_key", "") or first_line(exc))
        option, metavar = OPTION_FOR_KEY.get(key, (None, None))
        if not option:
            hint = ""
        elif options:
            hint = f": give {option} {metavar} (or {key}={metavar})"
        else:   # (the sweep said to give --data-dir, an option 'deqlab sweep' does not take)
            hint = f": give {key}={metavar}"
        raise InputError(f"{key} is required{hint}") from None
    except ValidationError as exc:
        raise InputError(_validation_message(exc, schema)) from None
    except OmegaConfBaseException as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, InputError):
            raise InputError(str(cause)) from None
        raise InputError(f"bad value: {first_line(exc)}") from None


def _without_negative_zero(node):
    """``node`` with every ``-0.0`` replaced by ``0.0``. A negative zero passes every ``>= 0`` check but
    not every library's: NumPy's ``normal(0, -0.0)`` raises "scale < 0" (it tests the sign bit), so a
    setting like ``eigen.input_std=-0.0`` got past the checks and ended in a traceback."""
    if isinstance(node, dict):
        return {key: _without_negative_zero(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_without_negative_zero(value) for value in node]
    if isinstance(node, float) and node == 0.0:
        return 0.0
    return node


#: a run of backslashes before a ``${`` (OmegaConf's escape of an interpolation)
_BEFORE_INTERPOLATION = re.compile(r"(\\*)\$\{")


def _literal_strings(node):
    """``node`` with every string escaped for OmegaConf, so that it comes out of the merge into the settings
    as it is. The values are already resolved; the merge read a ``${`` in one again as an interpolation:
    ``--pairs 'runs/${x}.npz'`` (a file name, quoted) failed with "Interpolation key 'x' not found"."""
    if isinstance(node, dict):
        return {key: _literal_strings(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_literal_strings(value) for value in node]
    if isinstance(node, str) and "${" in node:
        return _BEFORE_INTERPOLATION.sub(lambda m: 2 * m.group(1) + "\\${", node)
    return node


def _refuse_reserved(node, path: str = "") -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.startswith("_") and key.endswith("_"):
                raise InputError(f"{path}{key}: reserved _key_ in the configuration; deqlab never instantiates objects from it")
            _refuse_reserved(value, f"{path}{key}.")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _refuse_reserved(value, f"{path}[{i}].")


# --- one-line messages ------------------------------------------------------------------------------

def schema_keys(schema: type, prefix: str = "") -> list[str]:
    """Every dotted key of a settings dataclass (nested dataclasses expanded)."""
    keys = []
    for f in dataclasses.fields(schema):
        keys.append(prefix + f.name)
        sub = f.type if isinstance(f.type, type) else None
        if sub is None:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            sub = type(default) if dataclasses.is_dataclass(default) else None
        if sub is not None and dataclasses.is_dataclass(sub):
            keys += schema_keys(sub, f"{prefix}{f.name}.")
    return keys


def unknown_key_message(key: str, schema: type) -> str:
    keys = schema_keys(schema) + [f.name for f in dataclasses.fields(RunOptions)]
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
    parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
    owner = _key_type(schema, parent[:-1]) if parent else None
    if isinstance(owner, type) and dataclasses.is_dataclass(owner) and key.count(".") > 1:
        # inside an entry of a mapping (model_settings.ren.foo): the entry's own keys, which schema_keys cannot list
        close = difflib.get_close_matches(key, [parent + f.name for f in dataclasses.fields(owner)], n=3, cutoff=0.0)
    if not close:
        siblings = [k for k in keys if k.startswith(parent) and "." not in k[len(parent):]]
        close = difflib.get_close_matches(key, siblings, n=3, cutoff=0.0)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"unknown key {key!r}{hint}"


def _validation_message(exc, schema: type) -> str:
    key = getattr(exc, "full_key", "") or "a value"
    expected = _field_type(schema, key)
    text = first_line(exc)
    got = text.split("Value ", 1)[1].split(" could not", 1)[0].split(" of type", 1)[0].split(" is not", 1)[0] if "Value " in text else ""
    if text.startswith("Incompatible value 'None'"):
        got = "null"
    elif text.startswith("Cannot convert '") and ": " in text:      # Cannot convert 'ListConfig' to string: '['a']'
        got = text.split(": ", 1)[1]
        if got[:2] in ("'[", "'{") and got[-2:] in ("]'", "}'"):      # a list or mapping: shown as written, unquoted
            got = got[1:-1]
    elif not got and hasattr(exc, "value"):                          # AnyNode is not a ListConfig...: the value itself
        got = "null" if exc.value is None else repr(exc.value)
    if got in ("None", "'None'"):
        got = "null"
    if got:
        return f"{key} must be {expected}, got {got}"
    return f"{key} must be {expected}: {text}"


def _field_type(schema: type, key: str) -> str:
    """``key``'s type in words (``an integer``, ``a number``, ``true or false``...)."""
    import typing

    hint = _key_type(schema, key)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _group_words(key, hint)
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    for base, word in words.items():
        if hint is base or hint == typing.Optional[base]:
            return word
    if typing.get_origin(hint) in (list, typing.List):
        item = (typing.get_args(hint) or (None,))[0]
        return {str: "a list of names, such as [a,b]", int: "a list of integers, such as [1,2]",
                float: "a list of numbers, such as [0.5,1.0]"}.get(item, "a list such as [1,2]")
    if typing.get_origin(hint) in (dict, typing.Dict):
        return "a mapping of names to settings, such as {name:{key:value}}"
    return "of the right type"


def _key_type(schema: type, key: str) -> Any:
    """The type annotation of a dotted ``key`` (``model.n_z``, ``layers[0]``, ``model_settings.ren.lr``)
    in ``schema``; as far as the key can be followed."""
    import re
    import typing

    hint: Any = schema
    for part in key.split("."):
        if typing.get_origin(hint) in (dict, typing.Dict):   # model_settings.<name>: the part is a name
            hint = typing.get_args(hint)[1]
            continue
        name, indexed = re.fullmatch(r"(.*?)((?:\[\d+\])*)", part).groups()
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            break
        hints = typing.get_type_hints(hint)
        if name not in hints:
            break
        hint = hints[name]
        for _ in range(indexed.count("[")):                    # layers[0]: an item of the list
            if typing.get_origin(hint) in (list, typing.List):
                hint = typing.get_args(hint)[0]
    return hint




def _check_groups(schema: type, values: dict, prefix: str = "") -> None:
    """Refuse what OmegaConf would take or word badly: a group of settings (``model``, ``train``...) given a
    plain value (``model=3``; OmegaConf's error names only the dataclass), and a switch given anything but
    ``true``/``false`` (OmegaConf turns ``1``, ``2``, ``yes``, ``on`` into ``True``: a typo would pass)."""
    import typing

    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        hint = hints.get(f.name)
        if f.name not in values:
            continue
        value = values[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise InputError(f"{prefix}{f.name} must be {_group_words(prefix + f.name, hint)}, got {value!r}")
            _check_groups(hint, value, f"{prefix}{f.name}.")
        elif typing.get_origin(hint) in (dict, typing.Dict) and isinstance(value, dict):   # model_settings.<name>
            entry = typing.get_args(hint)[1]
            if isinstance(entry, type) and dataclasses.is_dataclass(entry):
                for name, item in value.items():
                    key = f"{prefix}{f.name}.{name}"
                    if not isinstance(item, dict):
                        raise InputError(f"{key} must be {_group_words(key, entry)}, got {item!r}")
                    _check_groups(entry, item, f"{key}.")
        elif hint in (bool, typing.Optional[bool]) and not isinstance(value, bool) and not (value is None and hint is not bool):
            raise InputError(f"{prefix}{f.name} must be true or false, got {value!r}")
        else:
            _check_digits(f"{prefix}{f.name}", hint, value)


#: a number's type → its words; a quoted number (``seed='3'``) reaches the settings as text, which OmegaConf converts
_NUMBER_WORDS = {int: "an integer", float: "a number"}


def _check_digits(key: str, hint, value) -> None:
    """Refuse a number written with other digits than 0-9. OmegaConf converts a quoted number with Python's
    ``int()``/``float()``, which read every Unicode digit: ``seed='３'`` (full-width) and ``model.m='٣'``
    (Arabic-Indic) ran with 3, while ``seed=３`` unquoted is refused by Hydra's parser. Refuse too an
    integer that a number key cannot hold (``input_std=<400 digits>``: float() overflows)."""
    import typing

    if typing.get_origin(hint) in (list, typing.List):
        item = (typing.get_args(hint) or (None,))[0]
        for i, entry in enumerate(value if isinstance(value, list) else []):
            if item is str and isinstance(entry, (list, dict)):
                # (OmegaConf lets a list or a mapping into a list of names: `models=[[ren]]` ended in "bad value:
                # Could not create instance of `Settings`: unhashable type: 'list'")
                raise InputError(f"{key}[{i}] must be a string, got {entry!r}")
            _check_digits(f"{key}[{i}]", item, entry)
        return
    if typing.get_origin(hint) is typing.Union:   # Optional[int]: the number's own type
        hint = next((h for h in typing.get_args(hint) if h is not type(None)), hint)
    if hint in _NUMBER_WORDS and isinstance(value, str) and not value.isascii():
        raise InputError(f"{key} must be {_NUMBER_WORDS[hint]} written with the digits 0-9, got {value!r}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:   # (OmegaConf's float() of it raised OverflowError through the merge: a traceback)
            raise InputError(f"{key} must be finite, got an integer of {len(str(abs(value))):,} digits "
                             f"(float64 ends near 1.8e308)") from None


def _group_words(key: str, group: type) -> str:
    return f"a group of settings, set key by key (e.g. {key}.{dataclasses.fields(group)[0].name}=...)"


def explain(exc: Exception, command: str) -> str:
    """Turn Hydra's multi-line errors into one line."""
    unknown = _unknown_key_in_chain(exc)
    if unknown:   # "Could not override 'model'" for model={n_z:3,foo:1}: name the key that is unknown
        return unknown_key_message(unknown, settings_class(command))
    text = " ".join(str(exc).split())
    if "Could not find 'hydra/launcher/" in text:
        bad = text.split("'hydra/launcher/", 1)[1].split("'", 1)[0]
        return f"unknown launcher {bad!r}: use basic, joblib, submitit_local or submitit_slurm (pip install deqlab[sweep])"
    for group in ("solver", "sysid_preset", "sysid_f16_preset", "demo"):
        if f"Could not find '{group}/" in text or (f"In '{group}'" in text and "Could not find" in text):
            bad = text.split(f"'{group}/", 1)[1].split("'", 1)[0] if f"'{group}/" in text else "?"
            choices = sorted(PRESETS) if group == "solver" else _group_options(group)
            return f"unknown {group} {bad!r}; choose one of: {', '.join(choices)}"
    for marker in ("Could not override '", "Could not append to config. An item is already at '", "Key '"):
        if marker in text:
            key = text.split(marker, 1)[1].split("'", 1)[0]
            if "full_key:" in text:
                key = text.split("full_key:", 1)[1].split()[0]
            if "already at" in marker:
                return _exists_already(key)
            return unknown_key_message(key, settings_class(command))
    past_end = _key_in_chain(exc, (_config_index_error(),))
    if past_end:   # seeds.5=1 on a list of 3 ("Error merging override seeds.5=1", nothing more)
        whole = past_end.split("[", 1)[0]
        return (f"{past_end} is past the end of the list {whole}: an item can be set only where the list has one; "
                f"set the whole list instead ({whole}=[...])")
    mistyped = _mistyped_key_in_chain(exc)
    if mistyped and "Error merging override " in text:   # mlp.hidden={a:1}: a mapping where a list belongs
        given = text.split("Error merging override ", 1)[1].split(" full_key", 1)[0].split("=", 1)[-1]
        return f"{mistyped} must be {_field_type(settings_class(command), mistyped)}, got {given}"
    if "Error merging override" in text or "Error parsing override" in text or "mismatched input" in text:
        return f"bad override: {text.split(' full_key')[0]}"
    return f"bad override: {text.split(' Traceback')[0]}"


def _key_in_chain(exc: BaseException, kinds: tuple[type, ...]) -> str | None:
    """The dotted key of the first error of one of ``kinds`` among ``exc``'s causes (Hydra wraps OmegaConf's)."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, kinds) and getattr(exc, "full_key", None):
            return str(exc.full_key)
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _config_index_error() -> type:
    from omegaconf.errors import ConfigIndexError

    return ConfigIndexError


def _unknown_key_in_chain(exc: BaseException) -> str | None:
    """The key of an unknown-key error among ``exc``'s causes, if any."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    return _key_in_chain(exc, (ConfigKeyError, ConfigAttributeError))


def _mistyped_key_in_chain(exc: BaseException) -> str | None:
    """The key of a type error (a mapping merged into a list, ...) among ``exc``'s causes, if any."""
    from omegaconf.errors import ConfigTypeError

    return _key_in_chain(exc, (ConfigTypeError,))


def _group_options(group: str) -> list[str]:
    if group == "demo":
        return available_commands()
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
