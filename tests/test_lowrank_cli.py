"""`deqlab lowrank` and `deqlab bench lowrank` through the CLI: outputs, files, bad input."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deqlab.demos.lowrank import SEED_H
from deqlab.errors import InputError
import helpers
from sample_checks import assert_reproduces, load_samples


def run_folder(output_root: Path, command: str = "lowrank") -> Path:
    return helpers.run_folder(output_root, command)


def test_default_reproduces_seed_example(cli, output_root):
    r = cli("lowrank")
    assert r.exit_code == 0, r.output
    folder = run_folder(output_root)
    table = pd.read_csv(folder / "example.csv").set_index("method")
    assert table.loc["rank_k_recovery", "max|H - H_true|"] < 1e-7
    assert table.loc["seed_method", "max|H - H_true|"] < 1e-7
    assert table.loc["least_change", "max|H - H_true|"] > 0.1  # errata: the least-norm solution is not H
    assert (table["||HX - Y||_F"] < 1e-7).all()
    arrays = np.load(folder / "example.npz")
    np.testing.assert_allclose(arrays["H_rank_k_recovery"], SEED_H, atol=1e-7)
    assert (folder / "config.yaml").is_file()
    assert (folder / "example.png").stat().st_size > 10_000   # the estimates' eigenvalues beside H's (it had no figure)
    assert "Y (X^T Y)^+ Y^T" in r.output


def _pairs_run(cli, output_root, path, X, H):
    """``lowrank --pairs`` on the exact pairs ``(X, HX)`` saved at ``path`` with ``H`` as the truth;
    returns the result and its run folder."""
    np.savez(path, X=X, Y=H @ X, H=H)
    r = cli("lowrank", "--pairs", str(path))
    assert r.exit_code == 0, r.output
    return r, run_folder(output_root)


def test_pairs_file(cli, output_root, tmp_path):
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((12, 3)))
    H = (U * np.array([2.0, -1.0, 0.5])) @ U.T
    X = rng.standard_normal((12, 4))
    r, folder = _pairs_run(cli, output_root, tmp_path / "my pairs.npz", X, H)
    table = pd.read_csv(folder / "pairs.csv").set_index("method")
    assert table.loc["rank_k_recovery", "||H - H_true||_F / ||H_true||_F"] < 1e-12
    H_est = np.load(folder / "H_rank_k_recovery.npy")
    np.testing.assert_allclose(H_est, H, atol=1e-12)
    factors = np.load(folder / "factors.npz")
    assert factors["rank_k_recovery_U"].shape == (12, 3) and factors["rank_k_recovery_S"].shape == (3,)
    assert {f"H_{m}.npy" for m in ("least_change", "symmetric_procrustes", "seed_method")} <= {p.name for p in folder.iterdir()}


def test_pairs_file_without_truth(cli, output_root, tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "p.npz"
    np.savez(path, X=rng.standard_normal((6, 2)), Y=rng.standard_normal((6, 2)))
    r = cli("lowrank", "--pairs", str(path))
    assert r.exit_code == 0, r.output
    table = pd.read_csv(run_folder(output_root) / "pairs.csv")
    assert table["max|H - H_true|"].isna().all()
    assert (run_folder(output_root) / "pairs.png").stat().st_size > 10_000


def _bad(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def bad_pair_files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 2))
    nan = X.copy()
    nan[0, 0] = np.nan
    garbage = tmp_path / "garbage.npz"
    garbage.write_text("not an archive")
    return {
        "different shapes": (_bad(tmp_path, "a.npz", X=X, Y=rng.standard_normal((5, 3))), "same shape"),
        "k > n": (_bad(tmp_path, "b.npz", X=rng.standard_normal((3, 5)), Y=rng.standard_normal((3, 5))), "exceed the dimension"),
        "rank-deficient X": (_bad(tmp_path, "c.npz", X=np.stack([X[:, 0], 2 * X[:, 0]], 1), Y=X), "rank-deficient"),
        "NaN": (_bad(tmp_path, "d.npz", X=nan, Y=X), "NaN"),
        "missing Y": (_bad(tmp_path, "e.npz", X=X), "lacks array"),
        "wrong H shape": (_bad(tmp_path, "f.npz", X=X, Y=X, H=np.eye(4)), "H must have shape"),
        "not an npz": (str(garbage), "is text (a CSV?), not an .npz archive"),
        "no such file": (str(tmp_path / "nope.npz"), "does not exist"),
        "a folder": (str(tmp_path), "is a folder, not a file"),
        "complex X": (_bad(tmp_path, "g.npz", X=X + 1j * X, Y=X), "is complex"),
        "complex H": (_bad(tmp_path, "h.npz", X=X, Y=X, H=np.eye(5) * (1 + 1j)), "is complex"),
        # (exit 0: the table's recovery errors measured H's antisymmetric part against symmetric estimates)
        "non-symmetric H": (_bad(tmp_path, "i.npz", X=X, Y=X, H=np.triu(np.ones((5, 5)))), "H is not symmetric"),
    }


@pytest.mark.parametrize("case", ["different shapes", "k > n", "rank-deficient X", "NaN", "missing Y", "wrong H shape", "not an npz", "no such file", "a folder",
                                  "complex X", "complex H", "non-symmetric H"])
def test_bad_pair_files(cli, output_root, tmp_path, case):
    path, message = bad_pair_files(tmp_path)[case]
    r = cli("lowrank", "--pairs", path)
    assert r.exit_code == 2
    assert message in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.output
    assert not (output_root / "lowrank").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--part", "nonsense"), "unknown part"),
        (("--part", "pairs"), "part=pairs reads a pairs file"),
        (("--part", "study", "study.n=5", "study.k=[1,6]"), "study.k contains 6"),
        (("--part", "study", "study.noise=[-1]"), "study.noise"),
        (("--part", "deq", "deq.k=[1000]"), "deq.k contains 1000"),
        # (exit 0: every pair (dθ, d∇L) was zero, since θ + 1e-300 is θ, and the table held NaN residuals and rank 0)
        (("--part", "deq", "deq.eps=1e-300"), "deq.eps must be >= 2.2e-16 (float64's epsilon"),
        (("--rtol", "-1"), "rtol must be >"),
        (("--rtol", "1"), "rtol must be < 1"),      # the settings took 1, the method refused it in other words
        (("--part", "study", "study.definite=maybe"), "study.definite"),
        (("--part", "deq", "deq.directions=[sideways]"), "deq.directions"),
        (("--part", "study", "--pairs", "x.npz"), "cannot be combined"),
        (("pairs_file=x.npz",), "pairs_file is not read by this run: it is read only by part=pairs, and this run is "
                                "part=example (--part pairs)"),
        (("pairs_file=''",), "pairs_file must name a .npz file, or be null; got an empty path"),   # (ran part=example)
        (("part=pairs", "pairs_file=''"), "pairs_file must name a .npz file"),
        # (exit 0, part=example ran and the study's size was ignored)
        (("study.n=50",), "study.n is not read by this run: it is read only by part=study, and this run is part=example"),
        (("--part", "deq", "study={n:50}"), "study is not read by this run: it is read only by part=study"),
        (("dense_max=10",), "dense_max is not read by this run: it is read only by part=pairs"),
    ],
)
def test_bad_config(cli, output_root, args, message):
    r = cli("lowrank", *args)
    assert r.exit_code == 2
    assert message in r.stderr and "Traceback" not in r.output
    assert not (output_root / "lowrank").exists()


def test_a_sweep_over_parts_takes_a_pairs_file_that_one_job_reads(cli, output_root, tmp_path):
    """`deqlab sweep lowrank part=example,pairs pairs_file=F` was refused by the settings' own check, although
    the pairs job reads F; a sweep none of whose jobs reads it is refused in one line, before any job."""
    path = tmp_path / "p.npz"
    rng = np.random.default_rng(2)
    X = rng.standard_normal((6, 3))
    np.savez(path, X=X, Y=2.0 * X)
    r = cli("sweep", "lowrank", "part=example,pairs", f"pairs_file={path}", f"output_root={output_root}")
    assert r.exit_code == 0, r.output + r.stderr
    (folder,) = list((output_root / "sweep" / "lowrank").iterdir())
    summary = pd.read_csv(folder / "summary.csv")
    assert list(summary["part"]) == ["example", "pairs"] and list(summary["status"]) == ["ok", "ok"]
    r = cli("sweep", "lowrank", "part=example,study", f"pairs_file={path}", f"output_root={tmp_path / 'refused'}")
    helpers.assert_one_line_error(r, "pairs_file is not read by any job of the sweep: it is read only by part=pairs",
                                  code=2)
    assert not (tmp_path / "refused").exists()


def test_study_small(cli, output_root):
    r = cli("lowrank", "--part", "study", "study.n=12", "study.rank=2", "study.k=[1,2,4]", "study.trials=2", "study.noise=[0,1e-3]")
    assert r.exit_code == 0, r.output
    folder = run_folder(output_root)
    wide = pd.read_csv(folder / "study.csv")
    assert {"noise", "k", "rank_k_recovery", "scipy SR1 (B0 = 0)"} <= set(wide.columns) and len(wide) == 6
    assert len(pd.read_csv(folder / "study_trials.csv")) == 2 * 2 * 3 * 7
    study = pd.read_csv(folder / "study_summary.csv")
    exact = study[(study["noise"] == 0) & (study["k"] >= 2)].set_index(["k", "method"])
    assert (exact.loc[(slice(None), "rank_k_recovery"), "max rel error"] < 1e-12).all()
    assert (exact.loc[(slice(None), "least_change"), "median rel error"] > 1e-2).all()
    assert {"scipy SR1 (auto init)", "scipy SR1 (B0 = 0)", "scipy BFGS (auto init)"} <= set(study["method"])
    assert (folder / "study.png").stat().st_size > 10_000


def test_deq_small(cli, output_root):
    r = cli("lowrank", "--part", "deq", "deq.n_z=2", "deq.n_x=2", "deq.n_y=1", "deq.batch=3", "deq.k=[2,13]", "deq.difference=central")
    assert r.exit_code == 0, r.output
    folder = run_folder(output_root)
    deq = pd.read_csv(folder / "deq.csv").set_index(["directions", "k", "method"])
    for directions in ("random", "krylov"):
        assert deq.loc[(directions, 13, "symmetric_procrustes"), "rel error"] < 1e-4  # k = P = 13 central pairs
    arrays = np.load(folder / "deq.npz")
    assert arrays["H"].shape == (13, 13) and arrays["X_random"].shape == (13, 13) and arrays["Y_krylov"].shape == (13, 13)
    assert (folder / "deq.png").is_file()


def test_bench_small(cli, output_root):
    r = cli("bench", "lowrank", "n=40", "rank=3", "k=6", "repeats=2", "large_n=[3000]")
    assert r.exit_code == 0, r.output
    folder = run_folder(output_root, "bench/lowrank")
    bench = pd.read_csv(folder / "bench.csv")
    rk = bench[bench["method"] == "rank_k_recovery"]
    assert (rk["rel error"] < 1e-12).all() and set(rk["n"]) == {40, 3000}
    assert "speed-up vs SR1" in bench.columns and "Machine:" in r.output


def test_bench_writes_a_figure_and_the_samples_behind_every_median(cli, output_root):
    r = cli("bench", "lowrank", "n=40", "rank=3", "k=6", "repeats=3", "large_n=[3000]")
    assert r.exit_code == 0, r.output
    folder = run_folder(output_root, "bench/lowrank")
    assert (folder / "bench.png").stat().st_size > 0
    bench = pd.read_csv(folder / "bench.csv")
    samples = load_samples(folder / "bench_samples.npz")
    assert samples["time_s"].shape == (len(bench), 3)
    assert_reproduces(samples, bench, labels=["n", "method"],
                      columns={"time [ms]": ("time_s", 1e3), "numpy closed form [ms]": ("numpy_closed_form_s", 1e3)})


def test_bench_bad_input(cli, output_root):
    r = cli("bench", "lowrank", "k=600")
    assert r.exit_code == 2 and "must not exceed" in r.stderr
    assert not (output_root / "bench").exists()


def test_a_pairs_file_whose_name_holds_a_backslash_or_quote_is_found(cli, output_root, tmp_path):
    """Typed options reach Hydra quoted; the quoting doubled every backslash, so ``a\\b.npz`` was looked
    for as ``a\\\\b.npz`` ("does not exist")."""
    rng = np.random.default_rng(1)
    path = tmp_path / "it's a\\b\\.npz"
    np.savez(path, X=rng.standard_normal((6, 2)), Y=rng.standard_normal((6, 2)))
    r = cli("lowrank", "--pairs", str(path))
    assert r.exit_code == 0, r.stderr
    assert len(pd.read_csv(run_folder(output_root) / "pairs.csv")) == 4


def test_pairs_eigenvalue_summary_shows_both_ends(cli, output_root, tmp_path):
    """Least change returns a rank-2k matrix with negative eigenvalues; its summary printed the 6 largest
    and '...', which hid every negative one (-0.47 against +0.56 on the record's pairs file)."""
    rng = np.random.default_rng(1)
    A = rng.standard_normal((20, 20))
    H = (A + A.T) / 2   # full rank, indefinite: least change gets rank 2k = 10
    X = rng.standard_normal((20, 5))
    r, folder = _pairs_run(cli, output_root, tmp_path / "pairs.npz", X, H)
    S = np.sort(np.load(folder / "factors.npz")["least_change_S"])
    assert len(S) > 6 and S[0] < 0
    shown = pd.read_csv(folder / "pairs.csv").set_index("method").loc["least_change", "eigenvalues"]
    assert f"{S[0]:.6g}" in shown and f"{S[-1]:.6g}" in shown, shown
    assert "factors.npz" in " ".join(r.output.split())


def test_a_pairs_archive_too_large_to_read_is_refused_before_reading(cli, output_root, tmp_path, monkeypatch):
    """A compressed archive declares how large its arrays are uncompressed; np.load read them all (a
    few MB of zeros can declare tens of GB: the OOM killer, no line, a .partial folder)."""
    import deqlab.settings.resources as resources

    path = tmp_path / "pairs.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(path, X=rng.normal(size=(4, 2)), Y=rng.normal(size=(4, 2)), padding=np.zeros(8_000_000))
    assert path.stat().st_size < 1_000_000
    monkeypatch.setattr(resources, "available_memory", lambda: 100 * 2**20)   # 64 MB of arrays, 3 copies: too many
    helpers.assert_one_line_error(cli("lowrank", "--pairs", str(path)), "holds 61 MiB of arrays uncompressed")
    assert not output_root.exists() or not any(output_root.rglob("*.partial"))


def test_pairs_whose_products_overflow_are_refused(cli, output_root, tmp_path):
    """Pairs of about 1e300 are finite, but X^T Y is not: the run ended 0 with an infinite residual in
    every row and a RuntimeWarning on stderr."""
    rng = np.random.default_rng(0)
    path = tmp_path / "big.npz"
    np.savez(path, X=rng.normal(size=(5, 2)) * 1e300, Y=rng.normal(size=(5, 2)) * 1e300)
    helpers.assert_one_line_error(cli("lowrank", "--pairs", str(path)), "overflow float64: rescale the pairs")
    assert not output_root.exists() or not any(output_root.rglob("*"))


@pytest.mark.parametrize("name", ["p${x}.npz", "p\\${x}.npz", "${oc.env:HOME}.npz"])
def test_a_pairs_file_whose_name_holds_an_interpolation_is_found(cli, output_root, tmp_path, name):
    """The value came out of Hydra as typed, then the merge into the settings read its ``${x}`` again as an
    interpolation: "bad value: Interpolation key 'x' not found" for a file that exists."""
    rng = np.random.default_rng(1)
    path = tmp_path / name
    np.savez(path, X=rng.standard_normal((6, 2)), Y=rng.standard_normal((6, 2)))
    r = cli("lowrank", "--pairs", str(path))
    assert r.exit_code == 0, r.stderr
    assert len(pd.read_csv(run_folder(output_root) / "pairs.csv")) == 4


def _zeros(path, **shapes):
    """An ``.npz`` of float64 zeros of ``shapes``, written member by member in 16 MiB pieces at the fastest deflate
    level (a 60000 x 3000 pair of them: 2.9 GB of arrays in a 13 MB file, a few seconds, never all in memory)."""
    import math
    import zipfile

    piece = bytes(2**24)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, shape in shapes.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": shape})
                left = math.prod(shape) * 8
                while left:
                    f.write(piece[:min(left, len(piece))])
                    left -= min(left, len(piece))
    return str(path)


def test_pairs_too_large_for_memory_are_refused_from_the_files_shapes(cli, output_root, tmp_path, monkeypatch):
    """A pairs file of 60000 rows passed the guard (only the archive's own bytes were checked, 3 x 2.9 GB for 3000
    pairs) and the run died "out of memory". The estimate now reads the shapes the file's .npy headers declare:
    with 24 GiB free that file is refused in one line (26.8 GiB: 20 float64 copies of one (n, k) array, as
    measured), k = 1000 (measured: 8.45 GB peak RSS) is taken. With 4 GiB free an H of 8000 x 8000 (measured:
    3.35 GB) is refused, one of 4000 x 4000 (0.82 GB) taken. Pairs stored as int8 count as the float64 they are
    read as; a header that declares more than its member holds is a damaged file, left to the reader."""
    from deqlab.cli.execute import check_resources
    from deqlab.settings.lowrank import Settings

    def pairs(name, n, k, **more):
        return Settings(part="pairs", pairs_file=_zeros(tmp_path / name, X=(n, k), Y=(n, k), **more))

    monkeypatch.setattr("deqlab.settings.resources.available_memory", lambda: 24 * 2**30)
    rows = pairs("rows.npz", 60000, 3000)
    with pytest.raises(InputError, match="would need about 26.8 GiB"):   # (first: without the estimate, before the run)
        check_resources(rows)
    helpers.assert_one_line_error(cli("lowrank", "--pairs", rows.pairs_file),
                                  "the 60000x3000 pairs of the pairs file and the four methods' factors would need about "
                                  "26.8 GiB, more than the 19.2 GiB this machine can give (80% of 24 GiB available); "
                                  "lower the pairs file's n (rows) or k (pairs)")
    assert not output_root.exists()
    check_resources(pairs("fits.npz", 60000, 1000))
    monkeypatch.setattr("deqlab.settings.resources.available_memory", lambda: 4 * 2**30)
    with pytest.raises(InputError, match=r"the 8000x8000 H of the pairs file and its eigendecomposition would need about 3.81 GiB"):
        check_resources(pairs("h.npz", 8000, 5, H=(8000, 8000)))
    check_resources(pairs("h_fits.npz", 4000, 5, H=(4000, 4000)))
    small = tmp_path / "int8.npz"
    np.savez(small, X=np.ones((60000, 100), np.int8), Y=np.ones((60000, 100), np.int8))   # (12 MB of arrays)
    monkeypatch.setattr("deqlab.settings.resources.available_memory", lambda: 2**30)
    with pytest.raises(InputError, match=r"the 60000x100 pairs of the pairs file .* would need about 916 MiB"):
        check_resources(Settings(part="pairs", pairs_file=str(small)))


def test_recovery_errors_above_the_dense_size_factor_h_once_and_agree_with_the_dense_route(monkeypatch):
    """Above DENSE_ERROR_MAX the recovery errors come from one eigendecomposition of H_true, shared by every method
    (each method factored H_true anew: four O(n^3) eigh, 10 minutes at n = 8000), and equal the dense route's."""
    import deqlab.demos.lowrank as demo

    rng = np.random.default_rng(3)
    n, k = 60, 6
    U, _ = np.linalg.qr(rng.standard_normal((n, 4)))
    H = U @ np.diag([3.0, -2.0, 1.0, 0.5]) @ U.T + 1e-3 * np.eye(n)   # (full rank: no method recovers it exactly)
    X = rng.standard_normal((n, k))
    Y = H @ X
    dense, _ = demo.method_table(X, Y, H, rtol=1e-10)
    calls = []
    real_eigh = np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", lambda A, *a, **kw: calls.append(A.shape) or real_eigh(A, *a, **kw))
    monkeypatch.setattr(demo, "DENSE_ERROR_MAX", n - 1)
    factored, _ = demo.method_table(X, Y, H, rtol=1e-10)
    assert calls.count((n, n)) == 1, calls
    column = "||H - H_true||_F / ||H_true||_F"
    assert dense[column].min() > 1e-4   # (errors worth comparing, not round-off)
    np.testing.assert_allclose(factored[column], dense[column], rtol=1e-10)
    assert factored["max|H - H_true|"].isna().all()   # (only the dense difference gives the largest entry)
