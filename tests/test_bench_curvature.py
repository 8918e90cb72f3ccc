"""``deqlab bench curvature`` at tiny sizes: the tables, the targets' columns, the HVP's correctness."""

import pytest

from deqlab.demos import bench_curvature as bc
from deqlab.errors import InputError
from deqlab.settings.bench_curvature import CurvatureBench

#: Lagrangian vs direct HVP (both exact up to the Anderson tolerance 1e-10).
RTOL = 1e-8


@pytest.fixture(scope="module")
def tiny_result():
    """One tiny bench for the module's checks (each run takes several seconds)."""
    return bc.run(CurvatureBench.tiny())


def test_tiny_bench(tiny_result):
    r = tiny_result
    hvp = r.tables["hvp"].frame
    assert hvp["route"].iloc[0].startswith("gradient") and hvp["ratio to gradient"].iloc[0] == 1
    target = hvp[hvp["target"] != ""]
    assert len(target) == 2 and set(target["met"]) <= {"yes", "NO"}
    assert (hvp["rel. difference to LU HVP"].dropna() <= RTOL).all()
    eig = r.tables["eigsh"].frame
    assert len(eig) == 2 and (eig["HVPs"] > 0).all() and set(eig["met"]) <= {"yes", "NO"}
    lu, iterative = (float(e["top eigenvalues"].split(",")[0]) for _, e in eig.iterrows())
    assert abs(lu - iterative) <= 1e-4 * abs(lu)
    assert len(eig["top eigenvalues"].iloc[0].split(",")) == 2
    assert any("threads" in n for n in r.notes)


@pytest.mark.parametrize("overrides", [{"threads": 0}, {"eigsh_tol": 0.0}, {"repeats": 0}, {"top_k": 1.5}])
def test_bad_settings(overrides):
    with pytest.raises(InputError):
        CurvatureBench(**overrides)


def test_tiny_bench_writes_its_figure_and_the_samples_behind_every_time(tiny_result, tmp_path):
    """hvp.png; hvp_samples.npz holds every timed call (seconds) of each route, one row per ``hvp.csv``
    row, whose median is the table's median time; eigsh_samples.npz the one timed call of each ``eigsh.csv`` row."""
    import numpy as np
    import pandas as pd

    from deqlab.report.writer import save

    save(tiny_result, tmp_path)
    assert (tmp_path / "hvp.png").stat().st_size > 0
    hvp = pd.read_csv(tmp_path / "hvp.csv")
    with np.load(tmp_path / "hvp_samples.npz", allow_pickle=False) as npz:
        assert list(npz["route"]) == list(hvp["route"]) and list(npz["P"]) == list(hvp["P"])
        samples = npz["time_s"]
    assert samples.shape == (len(hvp), CurvatureBench.tiny().repeats) and np.isfinite(samples).all()
    np.testing.assert_allclose(1e3 * np.median(samples, axis=1), hvp["median time (ms)"], rtol=1e-12)
    eig = pd.read_csv(tmp_path / "eigsh.csv")
    with np.load(tmp_path / "eigsh_samples.npz", allow_pickle=False) as npz:
        assert list(npz["linear_solves"]) == list(eig["linear solves"]) and list(npz["P"]) == list(eig["P"])
        np.testing.assert_allclose(np.median(npz["time_s"], axis=1), eig["time (s)"], rtol=1e-12)
