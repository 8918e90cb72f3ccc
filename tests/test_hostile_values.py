"""Every key of every command, given a value of the wrong type, is refused in one line that names it.

The keys are read from the settings themselves (``deqlab config``'s view), so a key added later is
covered without touching this file. One hostile value per key, chosen by the key's type: a word where
a number belongs, a list where a word or a switch belongs, a mapping where a list belongs. The default
run takes the first key of each (command, type of value, depth of key); the rest (about 400
compositions, 1.5 minutes) is marked ``slow``.
"""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from deqlab.cli.compose import load
from deqlab.errors import InputError
from deqlab.settings import COMMANDS

REQUIRED = {"sysid_evaluate": ["run_dir=r", "data_file=d.npz"], "sysid_f16": ["f16.data_dir=DIR"]}


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def _cases():
    seen = set()
    for command in COMMANDS:
        settings, run = load(command, REQUIRED.get(command, []))
        tree = {**OmegaConf.to_container(OmegaConf.structured(settings)), **dataclasses.asdict(run)}
        for key, value in _leaves(tree):
            if key in ("run_dir", "data_file", "f16.data_dir"):
                continue
            if isinstance(value, bool):
                hostile = "[true]"
            elif isinstance(value, (int, float)):
                hostile = "abc"
            elif isinstance(value, list):
                hostile = "{a:1}"
            elif isinstance(value, str):
                hostile = "[a]"
            else:        # an optional key left unset: a mapping is wrong for every such key
                hostile = "{a:1}"
            kind = (command, type(value).__name__, key.count("."))
            marks = [pytest.mark.slow] if kind in seen else []
            seen.add(kind)
            yield pytest.param(command, key, hostile, id=f"{command}:{key}={hostile}", marks=marks)


@pytest.mark.parametrize("command, key, hostile", list(_cases()))
def test_a_value_of_the_wrong_type_is_refused_naming_its_key(command, key, hostile):
    with pytest.raises(InputError) as info:
        load(command, [*REQUIRED.get(command, []), f"{key}={hostile}"])
    message = str(info.value)
    assert "\n" not in message
    assert key in message or key.split(".")[-1] in message, message
    for jargon in ("ListConfig", "DictConfig", "AnyNode", "Incompatible value", "Merge error", "a value must"):
        assert jargon not in message, message
