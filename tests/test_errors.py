"""deqlab's error family: the path check every reader of a user's file or folder goes through."""

import pytest

from deqlab.errors import InputError, require_path


def test_require_path_names_what_the_path_is_instead(tmp_path):
    data = tmp_path / "data.npz"
    data.write_bytes(b"")
    assert require_path(data, "data file") == data
    assert require_path(str(tmp_path), "run folder", folder=True) == tmp_path
    cases = [
        (tmp_path / "nope.npz", {}, "data file '{p}' does not exist"),
        (tmp_path, {}, "data file '{p}' is a folder, not a file"),
        (data, {"folder": True}, "data file '{p}' is not a folder"),
    ]
    for path, kwargs, message in cases:
        with pytest.raises(InputError) as info:
            require_path(path, "data file", **kwargs)
        assert str(info.value) == message.format(p=path)


def test_the_library_raises_only_its_own_error_family_for_bad_input():
    """``except DeqlabError`` catches every refusal: no module of the package raises a bare ``ValueError``
    (51 places did, in the solvers, models, lowrank and spectra; a CLI run that met one inside the run
    took it for a bug: a traceback, where an InputError is one line and exit 2)."""
    import ast
    from pathlib import Path

    import deqlab

    found = []
    for path in sorted(Path(deqlab.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(exc, ast.Name) and exc.id in ("ValueError", "TypeError", "Exception"):
                    found.append(f"{path.name}:{node.lineno} raises {exc.id}")
    assert not found, found
