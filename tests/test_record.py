"""The reproduction record stays true: every page of experiments/ is what its CSVs render to, and
the renderer shows machine-dependent numbers with their spread."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def regenerate():
    spec = importlib.util.spec_from_file_location("regenerate", ROOT / "experiments" / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pages_match_their_csvs():
    assert regenerate().main(["--check"]) == 0


def test_every_run_belongs_to_a_page():
    runs = tomllib.loads((ROOT / "experiments" / "record.toml").read_text())["run"]
    assert runs
    for run in runs:
        assert (ROOT / "experiments" / f"{run['page']}.md").is_file(), run
        assert run["files"] and run["args"].split()[0] in {"converge", "hessian", "lowrank", "mondeq", "nethessian", "sysid", "train", "bench"}


def test_every_file_the_pages_name_exists():
    """A page (or the README) that sends the reader to a file that is not there is a broken record:
    mondeq.md once named `configs/demo/mondeq.yaml` long after the settings moved to deqlab/settings/."""
    import re

    pages = sorted((ROOT / "experiments").glob("*.md")) + [ROOT / "README.md"]
    missing = []
    for page in pages:
        text = page.read_text()
        links = [m.group(1) for m in re.finditer(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if "://" not in m.group(1)]
        for link in links:
            if not (page.parent / link).exists():
                missing.append(f"{page.name}: link {link}")
        for m in re.finditer(r"(?<![\w/.~-])((?:deqlab|tests|configs|experiments)/[\w/.-]*\.(?:py|yaml|toml|sh|md))", text):
            if not (ROOT / m.group(1)).exists():
                missing.append(f"{page.name}: {m.group(1)}")
    assert not missing, missing


def test_table_value_spread_and_pivot(tmp_path):
    R = regenerate()
    frame = pd.DataFrame({"n": [1, 2], "method": ["a", "b"], "time [ms]": [2.0, 3.0], "steps": [5, 7], "converged": [True, False],
                          "message": ["converged", "diverged (non-finite residual)"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.assign(**{"time [ms]": [1.5, 3.0]}).to_csv(tmp_path / "t.min.csv", index=False)
    frame.assign(**{"time [ms]": [2.5, 3.0]}).to_csv(tmp_path / "t.max.csv", index=False)
    page = tmp_path / "page.md"
    page.write_text('<!-- table t.csv columns="n;time=time [ms];converged" -->\nold\n<!-- /table -->\n'
                    'steps of b: <!-- value t.csv where="method=b" column="steps" -->?<!-- /value -->\n'
                    '<!-- table t.csv pivot="n;method;steps" -->\n<!-- /table -->\n')
    text = R.render_page(page)
    assert "| 1 | 2 (1.5–2.5) | yes |" in text  # varied between repeats: median (min–max)
    assert "| 2 | 3 | **no** |" in text  # identical in every repeat: one number
    assert "steps of b: <!-- value" in text and "-->7<!--" in text
    assert "| 1 | 5 | — |" in text and "| 2 | — | diverged |" in text  # long → wide; a failed run says how
    assert "old" not in text


def test_where_matches_a_missing_cell_as_nan(tmp_path):
    """``where="col!=nan"`` drops the rows whose cell is empty (pandas 3's astype(str) keeps them missing)."""
    R = regenerate()
    pd.DataFrame({"alpha": [0.1, None, 1.0], "steps": [5, 7, 9]}).to_csv(tmp_path / "t.csv", index=False)
    page = tmp_path / "page.md"
    page.write_text('<!-- value t.csv where="alpha!=nan" column="steps" agg=sum -->?<!-- /value -->\n'
                    '<!-- value t.csv where="alpha=nan" column="steps" -->?<!-- /value -->\n'
                    '<!-- value t.csv where="alpha=1.0" column="steps" -->?<!-- /value -->\n')
    text = R.render_page(page)
    assert "-->14<!--" in text and "-->7<!--" in text and "-->9<!--" in text


def test_repeated_runs_that_disagree_on_a_verdict_say_so():
    """A ``met`` column from repeated runs: kept where the runs agree, else the split, never the first run's word."""
    R = regenerate()
    runs = [pd.DataFrame({"quantity": ["a", "b"], "ratio": [r, 0.3], "met": [m, "met"]})
            for r, m in ((0.9, "NOT met"), (1.1, "met"), (0.8, "NOT met"))]
    med, lo, hi = R.numeric_spread(runs)
    assert list(med["met"]) == ["NOT met (2 of 3 runs); met (1 of 3 runs)", "met"]
    assert list(med["ratio"]) == [0.9, 0.3] and list(lo["ratio"]) == [0.8, 0.3] and list(hi["ratio"]) == [1.1, 0.3]


def test_a_run_that_fails_as_expected_keeps_its_failed_folder(tmp_path, monkeypatch):
    """``exit_codes = [1]``: the run's ``.failed`` folder (with ``error.txt``) is its record and its
    one-line error is kept with what it printed; the same exit without ``exit_codes`` stops regeneration."""
    import subprocess

    R = regenerate()

    def fake_run(cmd, **kwargs):
        folder = Path(kwargs["env"]["DEQLAB_OUTPUT_ROOT"]) / "hessian" / "2026-01-01_00-00-00.failed"
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text("seed: 0\n")
        (folder / "error.txt").write_text("I - J is not contractive\n")
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="error: I - J is not contractive\n")

    monkeypatch.setattr(R.subprocess, "run", fake_run)
    folder, printed = R.run_once({"args": "hessian --init normal", "exit_codes": [1]}, tmp_path / "a")
    assert folder.name.endswith(".failed") and (folder / "error.txt").is_file()
    assert "error: I - J is not contractive" in printed
    with pytest.raises(SystemExit, match="exited 1"):
        R.run_once({"args": "hessian --init normal"}, tmp_path / "b")


def test_every_benchmark_page_says_which_figures_and_samples_are_not_kept():
    """The benches came to write figures and `*_samples.npz` beside their CSVs while the record kept the CSVs
    only, and four pages did not say so. Every figure and array a benchmark writes (the literal names its
    demo gives them) is either kept by record.toml or named on its page."""
    import re

    runs = tomllib.loads((ROOT / "experiments" / "record.toml").read_text())["run"]
    unsaid = []
    for run in runs:
        words = run["args"].split()
        if words[0] != "bench":
            continue
        source = (ROOT / "deqlab" / "demos" / f"bench_{words[1]}.py").read_text()
        written = {name + (".png" if kind == "figures" else ".npz")
                   for kind, name in re.findall(r'result\.(figures|arrays)\[\s*"([^"]+)"\s*\]', source)}
        assert written, f"bench {words[1]} writes no figure or array the test can see"
        kept = {entry.partition(":")[0] for entry in run["files"]}
        page = (ROOT / "experiments" / f"{run['page']}.md").read_text()
        unsaid += [f"{run['page']}.md: {name}" for name in sorted(written - kept) if f"`{name}`" not in page]
    assert not unsaid, unsaid
