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
        # a link to itself (a loop) or to nothing read as "does not exist", which the user can see it does
        (tmp_path / "loop", {}, "data file '{p}' is a symbolic link that leads to no file (a loop, or a missing target)"),
        (tmp_path / "dangling", {}, "data file '{p}' is a symbolic link that leads to no file (a loop, or a missing target)"),
    ]
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "nope.npz")
    for path, kwargs, message in cases:
        with pytest.raises(InputError) as info:
            require_path(path, "data file", **kwargs)
        assert str(info.value) == message.format(p=path)


def test_require_path_expands_the_home_folder(tmp_path, monkeypatch):
    """A quoted '~/data.npz' in an override reached the check unexpanded: 'does not exist'."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "data.npz").write_bytes(b"")
    assert require_path("~/data.npz", "data file") == tmp_path / "data.npz"


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


def _library_calls():
    """(what, call, message): each call is bad input that used to pass silently or fail inside torch."""
    import torch

    from deqlab.implicit import SolveOptions
    from deqlab.implicit.mondeq import unrolled_equilibrium
    from deqlab.implicit.params import model_params, unflatten
    from deqlab.implicit.polish import polish_tanh_equilibrium
    from deqlab.models.mondeq import MonDEQ, forward_backward_bound, lipschitz, monotonicity
    from deqlab.models.tanh_deq import TanhDEQ

    f64 = torch.float64
    mon, tanh = MonDEQ(3, 2), TanhDEQ(3, 2, 1, dtype=f64)
    p = model_params(tanh)
    x, z = torch.zeros(4, 2, dtype=f64), torch.zeros(4, 3, dtype=f64)
    return [
        ("MonDEQ n_z=3.0", lambda: MonDEQ(3.0, 2), "n_z must be an integer >= 1, got 3.0"),       # (TypeError in torch)
        ("MonDEQ m=inf", lambda: MonDEQ(3, 2, m=float("inf")), "m must be a finite number > 0"),  # (W's diagonal −inf)
        ("MonDEQ init_scale=nan", lambda: MonDEQ(3, 2, init_scale=float("nan")), "init_scale must be a finite number"),
        ("MonDEQ int dtype", lambda: MonDEQ(3, 2, dtype=torch.int64), "dtype must be a real floating torch dtype"),
        ("MonDEQ x float32", lambda: mon(x.float()), r"x must be \(batch, n_x = 2\) float64"),
        ("MonDEQ x width", lambda: mon(torch.zeros(4, 5, dtype=f64)), r"x must be \(batch, n_x = 2\)"),
        ("MonDEQ x NaN", lambda: mon(x * float("nan")), "x contains NaN"),                        # (one step, no error)
        ("unrolled steps=-1", lambda: unrolled_equilibrium(mon, x, -1), "steps must be an integer >= 0, got -1"),
        ("forward_backward_bound m=-1", lambda: forward_backward_bound(mon.weight(), m=-1), "m must be a finite number > 0"),
        # (torch's LinAlgError from eigvalsh, and a broadcasting RuntimeError)
        ("forward_backward_bound NaN W", lambda: forward_backward_bound(mon.weight() * float("nan")), "W contains NaN"),
        ("monotonicity non-square W", lambda: monotonicity(torch.zeros(3, 4, dtype=f64)), r"W must be a real square matrix"),
        ("lipschitz inf W", lambda: lipschitz(torch.full((2, 2), float("inf"), dtype=f64)), "W contains NaN or infinite"),
        ("TanhDEQ.unrolled layers=2.5", lambda: tanh.unrolled(x, 2.5), "layers must be an integer >= 0, got 2.5"),  # (TypeError)
        ("TanhDEQ.unrolled_path layers=-1", lambda: tanh.unrolled_path(x, -1), "layers must be an integer >= 0"),  # (z⁰ alone)
        ("TanhDEQ int dtype", lambda: TanhDEQ(3, 2, 1, dtype=torch.int64), "dtype must be a real floating torch dtype"),
        ("model_params int dtype", lambda: model_params(tanh, torch.int64), "dtype must be a real floating"),  # (weights → 0)
        ("unflatten wrong size", lambda: unflatten(torch.zeros(3, dtype=f64), p, ("W_z",)), r"theta must be a \(9,\) tensor"),
        ("unflatten 2-D", lambda: unflatten(torch.zeros(3, 3, dtype=f64), p, ("W_z",)), r"theta must be a \(9,\) tensor"),
        ("polish max_steps=-1", lambda: polish_tanh_equilibrium(p["W_z"], p["b_z"], p["U_z"], x, z, max_steps=-1),
         "max_steps must be an integer >= 0"),
        ("polish z0 shape", lambda: polish_tanh_equilibrium(p["W_z"], p["b_z"], p["U_z"], x, torch.zeros(4, 5, dtype=f64)),
         r"z0 must be \(B, N = 3\)"),
        ("SolveOptions memory=2.5", lambda: SolveOptions(options={"memory": 2.5}), "memory must be an integer"),
        ("SolveOptions unknown option", lambda: SolveOptions(options={"foo": 1}), "solver 'anderson' takes no option foo"),
        ("SolveOptions option the linear solver lacks", lambda: SolveOptions(solver="fixed_point", linear_solver="anderson",
                                                                            options={"damping": 0.5}),
         "solver 'anderson' takes no option damping"),   # (a TypeError at the first backward)
    ]


@pytest.mark.parametrize("what, call, message", [pytest.param(*case, id=case[0]) for case in _library_calls()])
def test_library_constructors_and_helpers_refuse_bad_arguments(what, call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_require_path_refuses_an_empty_path():
    """Path('') is '.', the working directory: an empty path read as "data file '.' is a folder, not a file"."""
    for folder, kind in ((False, "a file"), (True, "a folder")):
        with pytest.raises(InputError) as info:
            require_path("", "data file", folder=folder)
        assert str(info.value) == f"data file is an empty path: name {kind}"


def test_require_path_answers_a_name_too_long_in_one_line(tmp_path):
    """pathlib lets ENAMETOOLONG through its checks: the run took it for its own failure to write ("cannot write
    <the data file>", exit 1, a .failed run folder)."""
    long = tmp_path / ("x" * 300 + ".npz")
    for folder in (False, True):
        with pytest.raises(InputError) as info:
            require_path(long, "data file", folder=folder)
        assert str(info.value) == f"data file {str(long)!r} cannot be read: File name too long"


def test_parameter_groups_take_one_name_and_model_params_names_what_it_reads():
    """groups="W_z" was read as its letters ('got ['W', '_', 'z']'); model_params of another module was an
    AttributeError on model.W_z."""
    import torch
    from torch import nn

    from deqlab.implicit.params import flatten, model_params
    from deqlab.models.tanh_deq import TanhDEQ

    p = model_params(TanhDEQ(3, 2, 1, dtype=torch.float64))
    assert torch.equal(flatten(p, "W_z"), flatten(p, ("W_z",)))
    with pytest.raises(InputError, match="model_params reads a TanhDEQ"):
        model_params(nn.Linear(2, 2))
