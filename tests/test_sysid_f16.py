"""``sysid f16`` on a stand-in benchmark made at test time in the F-16 GVT files' exact format
(tests/f16_fixture.py): the reader (layouts, CSV/.mat, padding), the demo end to end (tiny), ``sysid
evaluate`` on its run folder, and bad data: exit 2 with one line naming what was expected and where the
data comes from. Runs go through the CLI's one execution path (``run_experiment``), as the command will."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import typer
from f16_fixture import make_benchmark, records, write_csv

from deqlab.cli.execute import execute
from deqlab.cli.options import quote
from deqlab.errors import InputError
from deqlab.sysid import f16
from deqlab.sysid.metrics import nrmse
from deqlab.sysid.models import load_model

STEPS = 900
#: evaluate on the run's own test set must give the run's NRMSE (same models, same data)
SAME_RUN_TOL = 1e-12
PADDING = {1: 8, 3: 14, 5: 20, 7: 26}  # trailing zero rows the fixture appends to the odd levels' records


# Not named ``benchmark``: pytest-benchmark (installed on some machines) owns that fixture name.
@pytest.fixture(scope="session")
def f16_data(tmp_path_factory):
    """The stand-in benchmark, unzipped (``DIR/F16GVT_Files/BenchmarkData``), CSV and .mat."""
    return make_benchmark(tmp_path_factory.mktemp("f16"), steps=STEPS)


TINY = ["sysid_f16_preset=tiny"]


def _run(root: Path, data_dir, *overrides):
    return execute("sysid_f16", [f"f16.data_dir={quote(str(data_dir))}", *overrides], folder="sysid/f16")


def _refused(capsys, output_root, data_dir, *overrides) -> str:
    with pytest.raises(typer.Exit) as exc:
        _run(output_root, data_dir, *TINY, *overrides)
    assert exc.value.exit_code == 2
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert not (output_root / "sysid" / "f16").exists() or not any((output_root / "sysid" / "f16").iterdir())
    return lines[0]


def test_reader_drops_padding_and_reads_force_and_accelerations(f16_data):
    train, test, where = f16.read_records(f16_data, "sine_sweep")
    assert where.endswith("F16GVT_Files/BenchmarkData")
    assert [r.level for r in train] == [1, 3, 5, 7] and [r.level for r in test] == [2, 4, 6]
    assert all(r.name.endswith(".csv") for r in train + test)
    truth = records(STEPS)
    for r in train + test:
        rec = truth[r.name[:-4]]
        assert r.u.shape == (STEPS, 1) and r.y.shape == (STEPS, 3) and r.sample_rate == 400.0
        assert r.padding == PADDING.get(r.level, 0)
        np.testing.assert_array_equal(r.u[:, 0], rec["Force"][:STEPS])
        np.testing.assert_array_equal(r.y, rec["Acceleration"][:STEPS])


@pytest.mark.parametrize("layout", ["benchmarkdata", "zip", "zip itself", "mat only"])
def test_every_layout_and_format_reads_the_same_records(f16_data, tmp_path, layout):
    ref_train, ref_test, _ = f16.read_records(f16_data, "multisine")
    if layout == "mat only":
        train, test, _ = f16.read_records(f16_data, "multisine", file_format="mat")
        assert all(r.name.endswith(".mat") for r in train + test)
    else:
        data_dir = make_benchmark(tmp_path, layout="zip" if layout.startswith("zip") else layout, formats=("csv",), steps=STEPS)
        if layout == "zip itself":
            data_dir = data_dir / "F16GVT_Files.zip"
        train, test, where = f16.read_records(data_dir, "multisine")
        assert ("zip" in where) == layout.startswith("zip")
    for a, b in zip(ref_train + ref_test, train + test):
        assert (a.level, a.validation, a.padding) == (b.level, b.validation, b.padding)
        np.testing.assert_array_equal(a.u, b.u)
        np.testing.assert_array_equal(a.y, b.y)


@pytest.mark.slow   # (10 s; test_the_cli_command_runs_with_tiny stays in the default run: -m slow)
def test_tiny_run_end_to_end_and_evaluate_on_its_folder(f16_data, output_root, cli):
    result = _run(output_root, f16_data, *TINY)
    run = next((output_root / "sysid" / "f16").iterdir())
    table = pd.read_csv(run / "sysid.csv")
    runs = pd.read_csv(run / "sysid_runs.csv")
    files = pd.read_csv(run / "f16_files.csv")
    assert list(table["model"]) == ["ren", "lipschitz_ren", "lstm", "rnn", "linear"]
    assert len(runs) == 15 and (runs["status"] == "ok").all() and np.isfinite(runs["NRMSE"]).all()
    # measured data has no noise-free output: no column of nan 'NRMSE clean' (as there is no ×floor)
    assert "NRMSE clean" not in table.columns and "NRMSE clean" not in runs.columns and "×floor" not in table.columns
    assert list(files["role"]) == ["train"] * 4 + ["test"] * 3
    assert files.set_index("level")["padding dropped"].to_dict() == {**PADDING, 2: 0, 4: 0, 6: 0}
    # segment 200, val_fraction 0.2: 4 sequences per training record, 1 of them for validation; test 300
    assert files["train seqs"].sum() == 12 and files["val seqs"].sum() == 4 and files["test seqs"].sum() == 9
    for name in ("predictions.png", "robustness_accuracy.png", "training_curves.png", "config.yaml", "models/ren.pt",
                 "models/seed2/linear.pt"):
        assert (run / name).is_file(), name
    pred = np.load(run / "predictions.npz")
    assert pred["u"].shape == (9, 300, 1) and pred["y"].shape == (9, 300, 3)
    first = runs[runs["seed"] == 0].set_index("model")
    for name in first.index:
        _, model = load_model(run / "models" / f"{name}.pt")
        assert model.n_u == 1 and model.n_y == 3
        y_hat = model(__import__("torch").as_tensor(pred["u"]))[0].detach().numpy()
        assert abs(nrmse(y_hat, pred["y"], 20) - first.loc[name, "NRMSE"]) < SAME_RUN_TOL
    assert any("REN paper" in note for note in result.notes)
    # the figure names the output it shows (it said 'y₀' for the first of the three accelerations)
    assert result.figures["predictions"]().axes[0].get_ylabel().startswith("acceleration 1")
    # sysid evaluate on the f16 run folder, with the run's own test set
    data = output_root.parent / "f16_test.npz"
    np.savez(data, u=pred["u"], y=pred["y"])
    r = cli("sysid", "evaluate", str(run), "--data", str(data), "lipschitz.iters=1")
    assert r.exit_code == 0, r.output
    ev = pd.read_csv(next((output_root / "sysid" / "evaluate").iterdir()) / "sysid.csv").set_index("model")
    for name in first.index:
        assert abs(ev.loc[name, "NRMSE"] - first.loc[name, "NRMSE"]) < SAME_RUN_TOL


def _copy(f16_data: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(f16_data, dst)
    return dst


def _csv(root: Path, stem: str) -> Path:
    return root / "F16GVT_Files" / "BenchmarkData" / f"{stem}.csv"


@pytest.mark.slow   # (13 s: -m slow)
def test_a_folder_without_some_of_the_benchmarks_records_runs_and_says_so(f16_data, tmp_path, output_root):
    """A folder missing Level3 trained on levels 1, 5, 7; only the records table showed it, beside the paper's
    figures for the full set. The run's notes say which levels it used and that the figures are not comparable."""
    root = _copy(f16_data, tmp_path)
    for missing in root.rglob("F16Data_SineSw_Level3.*"):
        missing.unlink()
    result = _run(output_root, root, *TINY)
    (note,) = [n for n in result.notes if n.startswith("not the benchmark's full record set")]
    assert "trained on levels 1, 5, 7, tested on 2, 4, 6 (the benchmark: 1, 3, 5, 7 and 2, 4, 6)" in note
    full = _run(output_root, f16_data, *TINY)
    assert not [n for n in full.notes if n.startswith("not the benchmark's full record set")]


def test_bad_data_is_refused_with_one_line_naming_the_benchmark(f16_data, tmp_path, output_root, capsys):
    line = _refused(capsys, output_root, tmp_path / "nowhere")
    assert "does not exist" in line and "nonlinearbenchmark.org" in line and "F-16 Ground Vibration Test" in line
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    line = _refused(capsys, output_root, tmp_path / "empty")
    assert "no F16 benchmark files" in line and "nonlinearbenchmark.org" in line

    bad = _copy(f16_data, tmp_path)
    rec = records(STEPS)["F16Data_SineSw_Level3"]
    write_csv(_csv(bad, "F16Data_SineSw_Level3"), rec, columns=("Force", "Voltage", "Accel1", "Acceleration2", "Acceleration3"))
    line = _refused(capsys, output_root, bad)
    assert "wrong columns" in line and "Acceleration1" in line and "F16Data_SineSw_Level3.csv" in line

    bad = _copy(f16_data, tmp_path / "nan")
    rec = {k: v.copy() for k, v in records(STEPS)["F16Data_SineSw_Level4_Validation"].items()}
    rec["Acceleration"][17, 1] = np.nan
    write_csv(_csv(bad, "F16Data_SineSw_Level4_Validation"), rec)
    line = _refused(capsys, output_root, bad)
    assert "NaN" in line and "row 18" in line and "Level4_Validation" in line

    bad = _copy(f16_data, tmp_path / "short")
    rec = {k: v[:150].copy() for k, v in records(STEPS)["F16Data_SineSw_Level1"].items()}
    rec = {k: np.concatenate([v, np.zeros((40, *v.shape[1:]))]) for k, v in rec.items()}  # 150 samples + padding
    write_csv(_csv(bad, "F16Data_SineSw_Level1"), rec)
    line = _refused(capsys, output_root, bad)
    assert "150 samples after dropping 40 padding" in line and "need at least 300" in line

    only_sweep = make_benchmark(tmp_path / "sweep", formats=("csv",), steps=STEPS)
    for p in (only_sweep / "F16GVT_Files" / "BenchmarkData").glob("F16Data_FullMSine_*"):
        p.unlink()
    line = _refused(capsys, output_root, only_sweep, "f16.excitation=multisine")
    assert "no training records for the multisine excitation" in line and "SineSw" in line

    line = _refused(capsys, output_root, f16_data, "f16.excitation=chirp")
    assert "f16.excitation" in line


def test_bad_settings_are_refused(f16_data, output_root, capsys):
    assert "too short for washout" in _refused(capsys, output_root, f16_data, "f16.segment=20")
    assert "f16.val_fraction" in _refused(capsys, output_root, f16_data, "f16.val_fraction=1.5")
    assert "f16.format" in _refused(capsys, output_root, f16_data, "f16.format=xlsx")
    assert "seeds lists 3 twice" in _refused(capsys, output_root, f16_data, "seeds=[3,3]")


def test_reader_errors_are_input_errors(tmp_path):
    (tmp_path / "bad.zip").write_text("not a zip")
    with pytest.raises(InputError, match="cannot read the zip"):
        f16.find_benchmark(tmp_path / "bad.zip")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(InputError, match="not a folder or a zip"):
        f16.find_benchmark(tmp_path / "data.txt")
    with pytest.raises(InputError, match="too short for segments"):
        f16.segments([f16.Record("r", 1, False, np.zeros((5, 1)), np.zeros((5, 3)), 400.0, 0)], 10)


@pytest.mark.parametrize("key, value, match", [
    ("Fs", "abc", "Fs must be numbers, got text"),
    ("Fs", {"a": 1.0}, "Fs must be numbers, got a struct"),
    ("Fs", np.array([[0.0]]), "Fs must be a positive sample rate in Hz .* got 0"),
    ("Fs", np.array([[np.nan]]), "Fs must be a positive sample rate in Hz .* got nan"),
    ("Force", np.array([["a", "b"]], dtype=object), "Force must be numbers, got a cell array"),
    ("Voltage", "volts", "Voltage must be numbers, got text"),
])
def test_a_mat_record_whose_variables_are_not_numbers_is_an_input_error(f16_data, tmp_path, key, value, match):
    """A .mat record with Fs as text, a struct or a cell array (or Force, Voltage so) ended in a ValueError or
    TypeError traceback from np.asarray(..., float64), and Fs = 0 in a ZeroDivisionError when 1/Fs was formed."""
    from scipy.io import loadmat, savemat

    data = make_benchmark(tmp_path / "bench", formats=("mat",))
    (path,) = list(data.rglob("F16Data_SineSw_Level1.mat"))
    mat = {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
    savemat(path, {**mat, key: value})
    with pytest.raises(InputError, match=f"F16Data_SineSw_Level1.mat: {match}"):
        f16.read_records(data, "sine_sweep")


@pytest.mark.parametrize("key", ["Force", "Voltage", "Acceleration"])
def test_a_mat_record_with_complex_signals_is_refused_naming_the_variable(tmp_path, key):
    """A complex Force (or Voltage, Acceleration) was cast to float64 with only a ComplexWarning: its imaginary part
    dropped, the model fitted to the real part alone. Refused now in one line naming the variable; a complex
    variable whose imaginary part is all zero (MATLAB's storage after complex(x)) loses nothing and reads as the
    real records, without a warning."""
    import warnings

    from scipy.io import loadmat, savemat

    data = make_benchmark(tmp_path / "bench", formats=("mat",))
    (path,) = list(data.rglob("F16Data_SineSw_Level1.mat"))
    mat = {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
    expected = f16.read_records(data, "sine_sweep")
    savemat(path, {**mat, key: mat[key] * (1 + 0.5j)})
    with pytest.raises(InputError, match=f"F16Data_SineSw_Level1.mat: {key} is complex .* non-zero imaginary part"):
        f16.read_records(data, "sine_sweep")
    savemat(path, {**mat, key: mat[key] + 0j})
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # (the ComplexWarning was all there was)
        for got, want in zip(f16.read_records(data, "sine_sweep")[0], expected[0]):
            np.testing.assert_array_equal(np.column_stack([got.u, got.y]), np.column_stack([want.u, want.y]))


def test_the_cli_command_runs_with_tiny(cli, output_root, f16_data):
    """`deqlab sysid f16 --data-dir DIR --tiny` from the command line, and one line when the folder is empty."""
    r = cli("sysid", "f16", "--data-dir", str(f16_data), "--tiny", "--seed", "0")
    assert r.exit_code == 0, r.output + r.stderr
    (folder,) = list((output_root / "sysid" / "f16").iterdir())
    assert (folder / "sysid.csv").is_file() and list((folder / "models").glob("*.pt"))
    empty = f16_data.parent / "empty-f16"
    empty.mkdir(exist_ok=True)
    bad = cli("sysid", "f16", "--data-dir", str(empty), "--tiny")
    assert bad.exit_code == 2 and "nonlinearbenchmark.org" in bad.stderr and bad.stderr.count("\n") == 1


@pytest.mark.parametrize("layout", ["zip", "unzipped"])
def test_records_that_cannot_fit_in_memory_are_refused_before_any_is_read(tmp_path, monkeypatch, layout):
    """Each record file is read whole (a zip member too), then parsed: a zip of a few MB whose members declared
    tens of GB was read until the OOM killer ended the run. The sizes (as the zip declares them) are checked
    against ``max_bytes`` first, which `deqlab sysid f16` sets from the memory available (here 1 MB)."""
    import deqlab.settings.resources as resources
    from deqlab.demos.sysid_f16 import make_parts
    from deqlab.errors import ResourceError

    data_dir = make_benchmark(tmp_path, layout=layout, formats=("csv",), steps=STEPS)

    def never(self, name):
        raise AssertionError(f"{name} was read")

    monkeypatch.setattr(f16._Source, "read_bytes", never)
    with pytest.raises(ResourceError, match=r"its 7 F16 record files hold .* MiB, more than the 0.0 MiB that may be read"):
        f16.read_records(data_dir, "sine_sweep", max_bytes=1000)
    monkeypatch.setattr(resources, "available_memory", lambda: 2**20)
    cfg = SimpleNamespace(f16=SimpleNamespace(data_dir=data_dir, excitation="sine_sweep", format="auto", segment=64,
                                              val_fraction=0.2, test_steps=None), washout=8)
    with pytest.raises(ResourceError, match="F16 record files hold"):
        make_parts(cfg)


@pytest.mark.parametrize("damage", ["bad CRC", "encrypted", "unknown compression"])
def test_a_zip_member_that_cannot_be_read_is_an_input_error(tmp_path, damage):
    """A damaged member of F16GVT_Files.zip ended in zipfile's or zlib's traceback."""
    import struct
    import zipfile

    make_benchmark(tmp_path / "src", formats=("csv",), steps=STEPS)
    archive = tmp_path / "F16GVT_Files.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted((tmp_path / "src").rglob("*.csv")):
            zf.write(path, f"F16GVT_Files/BenchmarkData/{path.name}")
    data = bytearray(archive.read_bytes())
    if damage == "bad CRC":   # one byte of every member's data
        at = data.find(b"Force,")
        while at >= 0:
            data[at + 100] ^= 1
            at = data.find(b"Force,", at + 1)
    else:   # the flag bit "encrypted" or the compression method, in every local and central header
        for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            at = data.find(signature)
            while at >= 0:
                if damage == "encrypted":
                    data[at + offset] |= 1
                else:
                    data[at + offset + 2:at + offset + 4] = struct.pack("<H", 99)
                at = data.find(signature, at + 4)
    archive.write_bytes(bytes(data))
    with pytest.raises(InputError, match="cannot read F16Data_"):
        f16.read_records(tmp_path, "sine_sweep")
