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
