"""A user's .npz (sysid's data, lowrank's pairs): every file that is not one is named for what it is, in one
line that says how to write the archive instead; nothing is ever unpickled."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

from deqlab.errors import InputError
from deqlab.npz_files import read_npz
from tests.helpers import assert_one_line_error


class _Payload:
    """A pickle that would run code when unpickled (touch a file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _files(tmp_path):
    """name → (writer, words the message must hold)."""
    def zip_of(path, **members):
        with zipfile.ZipFile(path, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)

    return {
        "a .npy file": (lambda p: np.save(open(p, "wb"), np.zeros((3, 4))), "is a .npy file (one array, as np.save writes)"),
        "a CSV": (lambda p: p.write_text("u,y\n1,2\n3,4\n"), "is text (a CSV?), not an .npz archive"),
        "an empty file": (lambda p: p.write_bytes(b""), "is empty"),
        "a pickle": (lambda p: p.write_bytes(pickle.dumps(_Payload(tmp_path / "ran"))), "is a Python pickle, not an .npz archive"),
        "random bytes": (lambda p: p.write_bytes(bytes(range(256)) * 2), "is not an .npz archive (nor a .npy file, nor text)"),
        "a truncated archive": (lambda p: p.write_bytes(_archive(tmp_path)[:200]), "starts like an .npz archive but cannot be read"),
        "a damaged member": (lambda p: zip_of(p, **{"u.npy": b"\x93NUMPY\x01\x00garbage", "y.npy": b"\x93NUMPY\x01\x00x"}),
                             "starts like an .npz archive but cannot be read"),
        "Python objects": (lambda p: np.savez(p, u=np.array([{"a": 1}], dtype=object), y=np.zeros(3)),
                           "holds Python objects, not plain numeric arrays"),
    }


def _archive(tmp_path) -> bytes:
    path = tmp_path / "whole.npz"
    np.savez(path, u=np.zeros((4, 50, 1)), y=np.ones((4, 50, 1)))
    return path.read_bytes()


@pytest.mark.parametrize("case", ["a .npy file", "a CSV", "an empty file", "a pickle", "random bytes", "a truncated archive",
                                  "a damaged member", "Python objects"])
def test_a_file_that_is_no_npz_archive_is_named_for_what_it_is(tmp_path, case):
    """A .npy given for an .npz ended in "'numpy.ndarray' object does not support the context manager protocol"
    (sysid) or "not a readable .npz archive (TypeError)" (lowrank); a CSV in "(ValueError)"."""
    write, words = _files(tmp_path)[case]
    path = tmp_path / "data.npz"
    write(path)
    with pytest.raises(InputError) as info:
        read_npz(path, "data file", ("u", "y"))
    message = str(info.value)
    assert message.startswith(f"data file {str(path)!r} ") and words in message, message
    assert "\n" not in message and "allow_pickle" not in message and "unsafe" not in message
    if case not in ("a truncated archive", "a damaged member"):
        assert message.endswith("write it with np.savez(FILE, u=..., y=...)" + (" from numeric arrays" if case == "Python objects" else ""))
    assert not (tmp_path / "ran").exists()


def test_only_the_arrays_asked_for_are_read(tmp_path):
    path = tmp_path / "pairs.npz"
    np.savez(path, X=np.eye(2), Y=np.eye(2), meta=np.array([{"a": 1}], dtype=object))
    found, arrays, names = read_npz(path, "pairs file", ("X", "Y"), optional=("H",))
    assert found == path and sorted(arrays) == ["X", "Y"] and sorted(names) == ["X", "Y", "meta"]


@pytest.mark.parametrize("args, option", [(["sysid", "pendulum", "--tiny"], "--data"), (["lowrank"], "--pairs")])
def test_a_npy_file_for_an_npz_is_one_line_from_the_command_line(cli, output_root, tmp_path, args, option):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((3, 4)))
    assert_one_line_error(cli(*args, option, str(path)), "is a .npy file (one array, as np.save writes), not an .npz archive")
    assert not output_root.exists()


def _false_size_archive(path, shape=(10**6, 10**6)):
    """An archive whose members' .npy headers declare ``shape`` (float64) but hold 64 bytes each."""
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as z:
        for name in ("X.npy", "Y.npy"):
            z.writestr(name, header.getvalue() + b"\0" * 64)


def test_a_member_declaring_more_bytes_than_it_holds_is_refused_before_allocating(tmp_path):
    """A 600-byte archive whose header declared a (10⁶, 10⁶) array made np.load ask for 7 TiB: a MemoryError."""
    path = tmp_path / "pairs.npz"
    _false_size_archive(path)
    with pytest.raises(InputError) as info:
        read_npz(path, "pairs file", ("X", "Y"))
    assert "declares shape (1000000, 1000000) of float64" in str(info.value) and "holds 64" in str(info.value)


def test_a_false_size_archive_is_bad_input_from_the_command_line(cli, output_root, tmp_path):
    """It was "out of memory (lower the sizes in the settings)", exit 1, and a .failed run folder."""
    path = tmp_path / "pairs.npz"
    _false_size_archive(path)
    assert_one_line_error(cli("lowrank", "--pairs", str(path)), "declares shape (1000000, 1000000) of float64")
    assert not output_root.exists()


def test_an_array_named_twice_in_the_archive_is_refused(tmp_path):
    """A pairs file holding two X.npy members (zip appends one of the same name) was read with the later X, exit 0,
    and eigenvalues half those of the same pairs without it."""
    path = tmp_path / "pairs.npz"
    np.savez(path, X=np.eye(3), Y=np.eye(3))
    with zipfile.ZipFile(path, "a") as z, pytest.warns(UserWarning, match="Duplicate name"):
        z.writestr("X.npy", (lambda b: (np.save(b, 2 * np.eye(3)), b.getvalue())[1])(io.BytesIO()))
    with pytest.raises(InputError, match=r"holds 2 arrays named X: which one is meant is not clear"):
        read_npz(path, "pairs file", ("X", "Y"))
