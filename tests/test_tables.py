"""Tables never cut a number: unit tests of the fitted layout, and every command's tables rendered
at 80 columns (the width of a pipe or a small terminal)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from deqlab.report.result import Table
from deqlab.report.tables import FittedTable, format_value, to_rich

#: The widths a table must fit without cutting a number (80: a pipe's default).
WIDTHS = (80, 100, 120, 200)


def render(table: Table, width: int) -> str:
    console = Console(width=width, record=True, force_terminal=False, color_system=None)
    console.print(to_rich(table))
    return console.export_text()


def assert_no_cut(table: Table, width: int) -> str:
    """Render at ``width`` and check that no line overflows, nothing is elided and every numeric
    cell's formatted text appears whole on one line."""
    text = render(table, width)
    assert "…" not in text, text
    assert all(len(line) <= width for line in text.splitlines()), text
    fitted = FittedTable(table)
    tokens = set(re.split(r"[\s│┃]+", text))
    for row in fitted.cells:
        for cell, numeric in zip(row, fitted.numeric):
            if numeric:
                plain = cell.plain
                assert plain in tokens, f"numeric cell {plain!r} cut at width {width}:\n{text}"
    return text


def wide_table(n_cols: int, seed: int = 0) -> Table:
    rng = np.random.default_rng(seed)
    cols = {f"quantity number {i} (units)": rng.normal(size=5) * 10.0 ** rng.integers(-16, 6, 5) for i in range(n_cols)}
    cols["method"] = ["least_change_symmetric_procrustes", "rank_k", "a", "bb", "seed method"]
    cols["n"] = [100000, 2, 3, 123456789, 7]
    cols["converged"] = [True, False, True, True, True]
    return Table("a wide table", pd.DataFrame(cols), formats={"quantity number 0 (units)": "{:.3e}"}, caption="caption")


@pytest.mark.parametrize("n_cols", [1, 3, 6, 12, 30])
@pytest.mark.parametrize("width", WIDTHS)
def test_no_number_is_cut_at_any_width(n_cols, width):
    assert_no_cut(wide_table(n_cols, seed=n_cols), width)


def header_words(table: Table) -> set[str]:
    return {w for c in table.frame.columns for w in str(c).split()}


def test_too_wide_prints_in_parts_that_repeat_the_key_and_keep_words_whole():
    """30 numeric columns at 80: parts of at most 80 columns, every header word whole, every column in
    exactly one part, and each part led by the row's key (here the row number: column 0 is a unique number)."""
    table = wide_table(30)
    text = render(table, 80)
    assert "row 1" not in text   # not the one-block-per-row fallback
    titles = re.findall(r"a wide table \(part (\d+) of (\d+)\)", text)
    n = int(titles[0][1])
    assert n > 1 and [int(i) for i, _ in titles] == list(range(1, n + 1))
    tokens = set(re.split(r"[\s│┃]+", text))
    assert header_words(table) <= tokens, "a header word was folded"
    assert FittedTable(table).key == [] and FittedTable(table).parts(80) is None
    fitted, parts = FittedTable(table).layout(80)
    shown = [j for columns, _ in parts for j in columns[len(fitted.key):]]
    assert sorted(shown) == [j for j in range(len(fitted.columns)) if j not in fitted.key]
    assert all(columns[:len(fitted.key)] == fitted.key for columns, _ in parts)
    assert fitted.columns[fitted.key[0]] == "row"
    assert text.count("caption") == 1
    assert "row" not in render(wide_table(1), 80).split()   # a table that fits whole is not numbered


def test_key_is_the_naming_columns_or_as_set():
    frame = pd.DataFrame({"family": ["g", "g", "s", "s"], "n_z": [10, 50, 10, 50], "solver": ["a", "b", "a", "b"],
                          "converged": [True] * 4, "time [ms]": [1.0, 2.0, 3.0, 4.0]})
    assert FittedTable(Table("t", frame)).key == [0, 1, 2]          # stops at the yes/no column
    assert FittedTable(Table("t", frame, key=1)).key == [0]
    unique_first = pd.DataFrame({"x": [0.1, 0.2], "y": [1.0, 2.0]})
    assert FittedTable(Table("t", unique_first)).key == []
    assert FittedTable(Table("t", unique_first), numbered=True).columns[0] == "row"
    # distinct integers name the rows themselves: no 'row' column repeating 'restart' beside it
    restarts = pd.DataFrame({"restart": [1, 2, 3], "min Re eig": [0.81, 0.68, 0.5], "converged": [True] * 3})
    assert FittedTable(Table("t", restarts)).key == [0]


def test_a_small_number_never_prints_as_zero():
    """"{:.4f}" suits a column of seconds until one entry is 3e-5 s: then it prints two significant
    digits, never a false "0.0000"; true zeros and values the spec shows stay as they were."""
    assert format_value(3.27e-5, "{:.4f}").plain == "3.3e-05"
    assert format_value(0.0019, "{:.2f}").plain == "0.0019"
    assert format_value(-0.04, "{:.1f}").plain == "-0.04"
    assert format_value(0.0, "{:.4f}").plain == "0.0000"
    assert format_value(0.2672, "{:.4f}").plain == "0.2672"
    assert format_value(1e-7, "{:.1e}").plain == "1.0e-07"
    assert format_value(0.001, "{:.1f} %").plain == "0.0 %"   # a spec with words: left alone


def test_a_value_not_measured_is_not_coloured_as_a_failure():
    """NaN in a table is a cell not measured (its caption says so: assert_nan_is_explained): a dim "nan",
    not the red of a failed verdict ("NO")."""
    for value in (float("nan"), np.float64("nan"), np.float32("nan")):
        cell = format_value(value, "{:.3g}")
        assert (cell.plain, str(cell.style)) == ("nan", "dim")
    assert str(format_value(False).style) == "bold red"


def test_parts_keep_the_key_column_that_tells_rows_apart():
    """Too wide for one grid, the key is cut: a column the others make redundant goes (batch, given
    by the task), not the method that alone tells four rows of one task apart."""
    tasks = ["laplacian"] * 4 + ["diag_hessian"] * 4
    frame = pd.DataFrame({"task": tasks, "dtype": ["float32"] * 8, "batch": [16] * 4 + [4] * 4,
                          "method": ["forward recursion", "double-backward loop", "vmap(jvp(grad))", "vmap(hessian)"] * 2}
                         | {f"measurement number {i} [ms]": np.linspace(1, 2, 8) * 10.0 ** -i for i in range(6)})
    table = Table("input derivatives", frame)
    fitted, parts = FittedTable(table).layout(80)
    assert len(parts) > 1 and fitted.key == [0, 1, 2, 3]
    for columns, _ in parts[1:]:
        assert [fitted.columns[j] for j in columns[:3]] == ["task", "dtype", "method"]


def test_parts_keep_a_naming_cell_on_one_line_when_that_prints_fewer_lines():
    """mondeq's 30-row table (this one's columns) printed its model names ('default init') over two lines
    in every row of both its parts at 80 columns, 438 lines in all: a header that wraps costs one line,
    a name that wraps one per row. The layout is the one that prints the fewest lines."""
    rng = np.random.default_rng(0)
    names = ["default init", "normal_ init", "monotone m=0.05"] * 10
    n = len(names)
    frame = pd.DataFrame({
        "model": names, "restart": np.repeat(np.arange(1, 11), 3),
        "min Re eig(I-W)": rng.normal(size=n), "lambda_min(sym(I-W))": rng.normal(size=n),
        "||z^40 - z*|| (float32)": rng.uniform(1e-8, 3, n), "FP steps": rng.integers(20, 500, n),
        "||z_FP - z*||": rng.uniform(1e-10, 3, n), "PR steps": rng.integers(10, 40, n),
        "PR converged": rng.uniform(size=n) > 0.3, "||z_PR - z*||": rng.uniform(1e-10, 3, n),
        "z* found (fsolve)": [True] * n})
    table = Table("models", frame, formats={"min Re eig(I-W)": "{:.4f}", "lambda_min(sym(I-W))": "{:.4f}",
                                            "||z^40 - z*|| (float32)": "{:.3e}", "||z_FP - z*||": "{:.2e}",
                                            "||z_PR - z*||": "{:.2e}"})
    text = assert_no_cut(table, 80)
    fitted, parts = FittedTable(table).layout(80)
    for name in ("default init", "normal_ init"):
        assert text.count(name) == len(parts) * names.count(name), text   # whole, in every part


def test_too_wide_for_parts_falls_back_to_one_block_per_row():
    """A number 90 characters wide fits no 80-column grid, whole or in parts: one block per row."""
    table = wide_table(3)
    table.formats["quantity number 1 (units)"] = "{:.80f}"
    text = render(table, 80)
    assert "row 1" in text and "row 5" in text
    assert "quantity number 2 (units)" in text  # every column name kept whole in the blocks
    assert "least_change_symmetric_procrustes" in text


def test_narrow_table_stays_a_grid():
    table = wide_table(2)
    text = render(table, 120)
    assert "row 1" not in text and "┃" in text


# Every command, with settings small enough to run in seconds; COLUMNS=80 is what a pipe gets.
COMMANDS = {
    "converge": ("converge", "--restarts", "2", "solver_table=[fixed_point,anderson]"),
    "hessian": ("hessian", "--batch", "2", "unroll_steps=60"),
    "hessian_hvp": ("hessian", "--hvp-only", "--n-z", "12", "--batch", "3", "probes=8", "top_k=3"),
    "lowrank": ("lowrank",),
    "lowrank_study": ("lowrank", "--part", "study", "study.n=12", "study.rank=2", "study.k=[1,2,4]", "study.trials=2",
                      "study.noise=[0,1e-3]"),
    "lowrank_deq": ("lowrank", "--part", "deq", "deq.n_z=2", "deq.n_x=2", "deq.n_y=1", "deq.batch=3", "deq.k=[2,13]",
                    "deq.difference=central"),
    "mondeq": ("mondeq", "eigen.restarts=2", "train.epochs=2", "train.samples=128", "sweep.alphas=[0.01,0.1,1.0,10.0]",
               "sweep.max_iter=400", "sweep.batch=4", "model.n_z=8", "max_iter=10000"),
    "nethessian": ("nethessian", "--check", "--activation", "softplus", "--hidden", "5,4", "batch=3", "repeats=1"),
    "nethessian_pinn": ("nethessian", "pinn", "--steps", "5", "--hidden", "8", "pinn.grid=9", "pinn.n_interior=32",
                        "pinn.n_boundary=16"),
    "sysid": ("sysid", "pendulum", "sysid_preset=tiny"),
    "bench_solvers": ("bench", "solvers", "sizes=[8]", "norms=[0.9]", "families=[symmetric]", "repeats=1", "batch=4"),
    # hybr left out (n_z above scipy_max_n): the ratios to it are nan, which the caption must explain
    "bench_solvers_no_hybr": ("bench", "solvers", "sizes=[8]", "norms=[0.9]", "families=[symmetric]", "repeats=1", "batch=4",
                              "scipy_max_n=4"),
    "bench_hessian": ("bench", "hessian", "n_z=5", "n_x=2", "batch=3", "ladder=[4,6]", "repeats=1", "warmup=0",
                      "unroll_steps=80", "top_k=2", "memory=false"),
    "bench_lowrank": ("bench", "lowrank", "n=40", "rank=3", "k=6", "repeats=2", "large_n=[3000]"),
    "bench_mondeq": ("bench", "mondeq", "sizes=[8,16]", "repeats=1", "alphas=[0.5,1.0]", "batch=4", "n_x=3"),
    "bench_nethessian": ("bench", "nethessian", "mlp.d=3", "mlp.hidden=[4]", "batch=4", "hessian_batch=2", "repeats=1",
                         "warmup=0"),
    "bench_curvature": ("bench", "curvature", "n_x=4", "classes=3", "batch=4", "hvp_n_z=3", "eig_n_z=3", "top_k=2",
                        "repeats=1", "warmup=0", "eig_iterative=false"),
    "bench_sysid": ("bench", "sysid", "batch=2", "steps=5", "n_x=2", "n_v=3", "lstm_hidden=3", "threads=[1]", "warmup=0",
                    "repeats=1"),
}


@pytest.fixture()
def shown_results(monkeypatch):
    """Every Result the CLI prints, captured (the printed text itself depends on COLUMNS)."""
    from deqlab.report import writer

    seen = []
    original = writer.show

    def show(result, console):
        seen.append(result)
        original(result, console)

    monkeypatch.setattr(writer, "show", show)
    return seen


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_fits_80_columns(name, output_root, shown_results):
    from typer.testing import CliRunner

    from deqlab.cli.app import app

    r = CliRunner().invoke(app, list(COMMANDS[name]), env={"COLUMNS": "80"})
    assert r.exit_code in (0, 1), r.output  # 1: a tiny run may report non-convergence; its tables still print
    assert "…" not in r.output, r.output
    assert shown_results, r.output
    for result in shown_results:
        assert result.tables
        for table in result.tables.values():
            assert_no_cut(table, 80)
            # whole, or in parts repeating the key, with every header word whole (never "conver|ged")
            assert FittedTable(table).layout(80) is not None, f"{table.title!r} folds words at 80 columns"
            assert_no_number_shown_as_zero(table)
            assert_text_columns_show_no_nan(table)
            assert_parts_keep_rows_apart(table, 80)
            assert_nan_is_explained(table, result.notes)
            assert_one_notation_per_column(table)
            for column in map(str, table.frame.columns):
                if is_time_column(column):
                    assert TIME_UNIT.search(column), f"time column {column!r} of {table.title!r} names no unit"


def assert_no_number_shown_as_zero(table: Table) -> None:
    """A non-zero number printed as ``0.0000`` reads as an exact zero (a gradient's 3e-5 s once did)."""
    fitted = FittedTable(table)
    for column, numeric in zip(table.frame.columns, fitted.numeric[len(fitted.columns) - len(table.frame.columns):]):
        if not numeric:
            continue
        for value, cell in zip(table.frame[column], (row[fitted.columns.index(str(column))] for row in fitted.cells)):
            shown = cell.plain.strip()
            if isinstance(value, (float, np.floating)) and np.isfinite(value) and value != 0 and re.fullmatch(r"-?0(\.0*)?", shown):
                raise AssertionError(f"{table.title!r}: {column!r} = {value!r} shown as {shown!r}")


def assert_text_columns_show_no_nan(table: Table) -> None:
    """A verdict column ('met', '') that a row leaves out must print blank, not 'nan' (bench lowrank's
    scipy rows once did, beside blank cells of the same meaning)."""
    fitted = FittedTable(table)
    for j, numeric in enumerate(fitted.numeric):
        if not numeric:
            shown = {row[j].plain for row in fitted.cells}
            assert "nan" not in shown, f"{table.title!r}: text column {fitted.columns[j]!r} shows 'nan'"


def assert_nan_is_explained(table: Table, notes: list[str]) -> None:
    """A number shown as 'nan' reads as a failure unless the table says what it means: its caption,
    a note, or a word in its row ('not timed', 'FAILED', 'value nan'). mondeq's solver table once printed
    alpha = nan for anderson with no word why, sysid's 'Lip bound' nan for every model but one."""
    fitted = FittedTable(table)
    said = (table.caption + " " + " ".join(notes)).lower()
    for row in fitted.cells:
        shown = [cell.plain for cell, numeric in zip(row, fitted.numeric) if numeric]
        if any(s in ("nan", "inf", "-inf") for s in shown):
            words = " ".join(cell.plain for cell, numeric in zip(row, fitted.numeric) if not numeric).lower()
            assert "nan" in said or "inf" in said or any(w in words for w in ("nan", "not timed", "failed")), (
                f"{table.title!r}: a row shows nan/inf and nothing says why: {[c.plain for c in row]}")


def assert_one_notation_per_column(table: Table) -> None:
    """Within a column of real numbers, either every shown value is in scientific notation or none is:
    '0.2' above '0.031' above '1e-05' makes a reader compare digits that do not line up."""
    fitted = FittedTable(table)
    for j, numeric in enumerate(fitted.numeric):
        if not numeric or j >= len(fitted.columns) or not pd.api.types.is_float_dtype(table.frame.iloc[:, j]):
            continue
        shown = [row[j].plain for row in fitted.cells if row[j].plain not in ("nan", "inf", "-inf")]
        scientific = {bool(re.search(r"\de[+-]\d", s)) for s in shown if s not in ("0", "0.0")}
        assert len(scientific) <= 1, f"{table.title!r}: column {fitted.columns[j]!r} mixes notations: {shown}"


def assert_parts_keep_rows_apart(table: Table, width: int) -> None:
    """A table printed in parts repeats a key that tells its rows apart whenever the key inferred for
    the whole table does: four 'laplacian float32 16' rows with no method are not a table."""
    fitted = FittedTable(table)
    layout = fitted.layout(width)
    if layout is None or len(layout[1]) == 1:
        return
    fitted, parts = layout

    def distinct(columns):
        rows = [tuple(row[j].plain for j in columns) for row in fitted.cells]
        return len(set(rows)) == len(rows)

    if distinct(fitted.key):
        for columns, _ in parts:
            key = [j for j in columns if j in fitted.key]
            assert distinct(key), f"{table.title!r}: parts keyed by {[fitted.columns[j] for j in key]} repeat rows"


#: A time column names its unit: ``time [ms]``, ``train time [s]``, ``time (s)``.
TIME_UNIT = re.compile(r"[\[(](s|ms|µs)[\])]")


def is_time_column(name: str) -> bool:
    """Columns holding a duration (ratios of times, ``time / fixed_point``, are dimensionless)."""
    return bool(re.search(r"\btime\b|\bs$|^median$|\[m?s\]|\(m?s\)", name)) and "/" not in name and "ratio" not in name


@pytest.mark.parametrize("width", [80, 200])
def test_brackets_in_headers_titles_and_cells_print_as_written(width):
    """"time [ms]" is a header, not a rich markup tag: the unit must reach the screen (it once did not)."""
    frame = pd.DataFrame({"solver": ["[fp]"], "time [ms]": [1.5], "size [MiB]": [2.0]})
    text = render(Table("routes [bold]not markup[/bold]", frame, caption="units in [brackets]"), width)
    for piece in ("[ms]", "[MiB]", "[fp]", "[bold]not markup[/bold]", "[brackets]"):
        assert piece in " ".join(text.split()), (piece, text)


def test_notes_and_failures_print_as_written():
    """Notes and failure lines are plain text too: a note quoting a column such as 'train time [s]' or a
    user's path with '[run]' in it lost the bracketed words to rich's markup."""
    import io

    from deqlab.report.result import Result
    from deqlab.report.writer import show

    buffer = io.StringIO()
    result = Result("x", notes=["REN train time [s] is in [bold]the table[/bold]"],
                    failures=["model saved under /data/[run]/ren.pt did not converge"])
    show(result, Console(file=buffer, width=200, force_terminal=False))
    text = buffer.getvalue()
    assert "REN train time [s] is in [bold]the table[/bold]" in text, text
    assert "not converged: model saved under /data/[run]/ren.pt did not converge" in text, text


def test_a_column_prints_in_one_notation():
    """'0.747' above '2.19e-05' (a '{:.3g}' column of seconds) and a fixed-point column whose small
    entry falls back to '3.3e-05': the whole column goes scientific, keeping the spec's digits; a column
    that needs no exponent, and one whose spec carries words, are left as they were."""
    frame = pd.DataFrame({"route": ["a", "b", "c", "d"], "time (s)": [0.747, 2.19e-5, 0.0, float("nan")],
                          "t [s]": [0.2672, 3.27e-5, 1.5, 2.0], "plain": [0.5, 0.25, 12.0, 3.0],
                          "pct": [0.001, 2e-7, 1.0, 2.0]})
    table = Table("t", frame, formats={"time (s)": "{:.3g}", "t [s]": "{:.4f}", "pct": "{:.1f} %"})
    cells = {c: [row[i].plain for row in FittedTable(table).cells] for i, c in enumerate(frame.columns)}
    assert cells["time (s)"] == ["7.47e-01", "2.19e-05", "0.00e+00", "nan"]
    assert cells["t [s]"] == ["2.67e-01", "3.27e-05", "1.50e+00", "2.00e+00"]
    assert cells["plain"] == ["0.5", "0.25", "12", "3"]
    assert cells["pct"] == ["0.0 %", "0.0 %", "1.0 %", "2.0 %"]
    # without a spec, a column of exponents keeps its trailing zeros ('4.03e-08' above '4.724e-08' before)
    sweep = Table("sweep", pd.DataFrame({"job": ["0", "1"], "gap": [4.03e-08, 4.724e-08]}))
    assert [row[1].plain for row in FittedTable(sweep).cells] == ["4.030e-08", "4.724e-08"]
    same = Table("tol", pd.DataFrame({"k": [1, 2], "tol": [1e-06, 1e-06], "signs": [-2e-08, 3e-08]}))
    assert [[row[j].plain for j in (1, 2)] for row in FittedTable(same).cells] == [["1e-06", "-2e-08"], ["1e-06", "3e-08"]]


def test_counted_takes_the_noun_in_its_number():
    """'1 warm-up calls', '1 torch threads' in bench captions (and '1 restarts' in titles) before counted()."""
    from deqlab.report.words import counted

    assert counted(1, "warm-up call") == "1 warm-up call"
    assert counted(0, "restart") == "0 restarts"
    assert counted(3, "torch thread") == "3 torch threads"
    assert counted(2, "matrix", "matrices") == "2 matrices"
