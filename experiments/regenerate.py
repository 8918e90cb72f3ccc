#!/usr/bin/env python
"""Regenerate the reproduction record: run every command of ``experiments/record.toml``, copy its
CSVs and figures beside the pages, then rewrite every generated table and number in the pages.

    python experiments/regenerate.py                  # everything (many minutes)
    python experiments/regenerate.py --only converge  # the runs of some pages, then render all pages
    python experiments/regenerate.py --render         # no runs: re-render the pages from the CSVs
    python experiments/regenerate.py --check          # exit 1 if a page differs from its CSVs
    python experiments/regenerate.py --list           # the runs, one per line

A page quotes numbers only through two markers, whose content this script owns:

    <!-- table converge/default/gap.csv columns="L;ours=||z^L - z*|| (float32)" formats="*:{:.4g}" -->
    ...generated markdown table...
    <!-- /table -->

    <!-- value mondeq/alpha_sweep.csv where="method=anderson" column="steps" -->55<!-- /value -->

Marker attributes (all optional but the file): ``columns`` (``;``-separated, ``label=column`` to
rename), ``where`` (``;``-separated ``column=value`` or ``column!=value`` filters, compared as text; a missing cell reads ``nan``), ``formats``
(``;``-separated ``column:{spec}``, ``*`` for every numeric column; default ``{:.4g}``), ``column``
and ``row`` (0-based, after ``where``) for a value, ``agg`` (``min``, ``max``, ``count``, ``sum``,
``first``; a value over all rows left by ``where``), ``join`` (a CSV of quoted numbers, e.g. a seed's,
merged on the shared columns and shown beside ours), ``pivot`` (``index;columns;values``: a long table
made wide; a row whose ``converged`` is false shows ``> value``, or ``diverged`` when its ``message``
says so).

Numbers that vary between machines (times) come from runs repeated ``repeats`` times: the CSV
beside the page is then the per-cell median, with ``<name>.min.csv`` and ``<name>.max.csv`` beside
it, and every cell whose repeats differ is rendered as ``median (min–max)``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import tomllib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MANIFEST = HERE / "record.toml"

TABLE = re.compile(r"(<!-- table (?P<attrs>.*?) -->\n)(?P<body>.*?)(<!-- /table -->)", re.DOTALL)
VALUE = re.compile(r"(<!-- value (?P<attrs>.*?) -->)(?P<body>.*?)(<!-- /value -->)", re.DOTALL)


# --- running the commands ----------------------------------------------------------------------------


def load_runs(only: list[str] | None = None) -> list[dict]:
    runs = tomllib.loads(MANIFEST.read_text())["run"]
    return [r for r in runs if not only or r["page"] in only]


def run_once(run: dict, root: Path) -> tuple[Path, str]:
    """One command into a fresh output root; returns (its run folder, what it printed)."""
    env = {**os.environ, "DEQLAB_OUTPUT_ROOT": str(root), "COLUMNS": "160", "DEQLAB_PROGRESS": "0",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **run.get("env", {})}
    cmd = [sys.executable, "-m", "deqlab", *shlex.split(run["args"])]
    print(f"$ deqlab {run['args']}", flush=True)
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode not in run.get("exit_codes", [0]):
        raise SystemExit(f"deqlab {run['args']} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    # a run that fails as expected (``exit_codes``) leaves its folder marked ``.failed``, with ``error.txt``;
    # its one-line error goes to stderr, so it is kept with what the run printed
    failed = proc.returncode != 0
    folders = [p.parent for p in root.rglob("config.yaml")
               if not p.parent.name.endswith(".partial") and p.parent.name.endswith(".failed") == failed]
    if len(folders) != 1:
        raise SystemExit(f"expected one run folder under {root}, found {folders}")
    return folders[0], proc.stdout + (proc.stderr if failed else "")


def numeric_spread(frames: list[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-cell median, min and max of the numeric columns over repeated runs. Any other cell (a
    verdict such as ``met`` / ``NOT met``) keeps the first run's value where every run agrees and
    otherwise says how the runs split, e.g. ``NOT met (2 of 3 runs); met (1 of 3 runs)``, so a page
    never shows one run's verdict beside the median of all. The runs must have the same rows in the
    same order."""
    first = frames[0]
    med, lo, hi = first.copy(), first.copy(), first.copy()
    for col in first.columns:
        if pd.api.types.is_numeric_dtype(first[col]) and not pd.api.types.is_bool_dtype(first[col]):
            stack = np.stack([f[col].to_numpy(dtype=float) for f in frames])
            if np.array_equal(stack.min(axis=0), stack.max(axis=0), equal_nan=True):
                continue  # the same in every run (sizes, counts): keep the column as it is, ints stay ints
            med[col], lo[col], hi[col] = np.median(stack, axis=0), stack.min(axis=0), stack.max(axis=0)
        else:
            cells = [[str(f[col].iloc[i]) for f in frames] for i in range(len(first))]
            if any(len(set(c)) > 1 for c in cells):
                med[col] = [split_verdict(c) for c in cells]
    return med, lo, hi


def split_verdict(values: list[str]) -> str:
    """``["met", "NOT met", "NOT met"]`` → ``"NOT met (2 of 3 runs); met (1 of 3 runs)"``; one value if all agree."""
    if len(set(values)) == 1:
        return values[0]
    counts = sorted(((values.count(v), v) for v in set(values)), key=lambda cv: (-cv[0], cv[1]))
    return "; ".join(f"{v} ({n} of {len(values)} runs)" for n, v in counts)


def regenerate(run: dict, scratch: Path, folders: dict[str, Path]) -> None:
    """Run ``run`` (``repeats`` times) and copy its files. ``{tmp}`` in ``prepare``/``args`` is a scratch
    folder of this invocation; ``{<id>}`` is the run folder of the earlier run with that ``id``."""
    dest = HERE / run["dest"]
    dest.mkdir(parents=True, exist_ok=True)
    repeats = int(run.get("repeats", 1))
    names = {"tmp": str(scratch), **{k: str(v) for k, v in folders.items()}}
    try:
        run = {**run, "args": run["args"].format(**names)}
        prepare = [cmd.format(**names) for cmd in run.get("prepare", [])]
    except KeyError as exc:
        raise SystemExit(f"deqlab {run['args']}: needs the run {exc} in the same invocation (add its page to --only)") from None
    for cmd in prepare:
        print(f"$ {cmd}", flush=True)
        subprocess.run(shlex.split(cmd.replace("python ", sys.executable + " ", 1)), cwd=ROOT, check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    outputs = []
    tmp = tempfile.mkdtemp(dir=scratch)
    for i in range(repeats):
        folder, stdout = run_once(run, Path(tmp) / f"r{i}")
        outputs.append((folder, stdout))
    if "id" in run:
        folders[run["id"]] = outputs[0][0]
    # Check that every listed file was written before copying any: a run that no longer writes one (a
    # checkpoint whose curvature failed, say) must not leave the record half replaced.
    missing = [(entry.partition(":")[0], out) for entry in run["files"] for f, out in outputs
               if not (f / entry.partition(":")[0]).exists()]
    if missing:
        name, out = missing[0]
        tail = "\n".join(out.strip().splitlines()[-6:])
        raise SystemExit(f"`deqlab {run['args']}` did not write {name} (listed in record.toml); nothing of this "
                         f"run was copied. Its output ended with:\n{tail}")
    (dest / run.get("stdout", "stdout.txt")).write_text(f"$ deqlab {run['args']}\n" + outputs[0][1])
    for entry in run["files"]:
        src, _, dst = entry.partition(":")
        dst = dst or src
        if src.endswith(".csv") and repeats > 1:
            med, lo, hi = numeric_spread([pd.read_csv(f / src) for f, _ in outputs])
            med.to_csv(dest / dst, index=False)
            lo.to_csv(dest / dst.replace(".csv", ".min.csv"), index=False)
            hi.to_csv(dest / dst.replace(".csv", ".max.csv"), index=False)
        else:
            shutil.copyfile(outputs[0][0] / src, dest / dst)


# --- rendering the pages -----------------------------------------------------------------------------


def parse_attrs(text: str) -> tuple[str, dict[str, str]]:
    words = shlex.split(text)
    return words[0], dict(w.split("=", 1) for w in words[1:])


def _filter(frame: pd.DataFrame, where: str | None) -> pd.DataFrame:
    for cond in filter(None, (where or "").split(";")):
        negate = "!=" in cond
        col, _, val = cond.partition("!=" if negate else "=")
        # str per cell, not astype(str): pandas 3 keeps a missing value missing there, and "nan" must match it
        keep = frame[col].map(lambda v: "nan" if pd.isna(v) else str(v)) == val
        frame = frame[~keep if negate else keep]
    return frame


def _number_in_text(text: str) -> float | int | None:
    """The int or float a CSV cell of a mixed column holds as text, else ``None`` (a word)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None


def format_cell(value, spec: str | None) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "**no**"
    if isinstance(value, str):
        number = _number_in_text(value) if spec else None
        if number is not None:
            # a column that mixes words and numbers (hessian's quantity/value tables) reads back as
            # text with every digit of its numbers: a tag's format shows them as the command prints them
            return spec.format(number)
        return value.replace("|", "\\|")
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15
                                                  and (spec is None or spec == "{:.4g}")):
        return str(int(value))
    return (spec or "{:.4g}").format(value)


class Source:
    """One CSV beside a page (with its repeats' min/max when they exist)."""

    def __init__(self, page_dir: Path, rel: str):
        path = page_dir / rel
        self.frame = pd.read_csv(path)
        lo, hi = path.with_suffix(".min.csv"), path.with_suffix(".max.csv")
        self.lo = pd.read_csv(lo) if lo.exists() else None
        self.hi = pd.read_csv(hi) if hi.exists() else None

    def select(self, where: str | None):
        keep = _filter(self.frame, where).index
        pick = (lambda f: None if f is None else f.loc[keep])
        return self.frame.loc[keep], pick(self.lo), pick(self.hi)


def _formats(attrs: dict) -> dict[str, str]:
    out = {}
    for item in filter(None, attrs.get("formats", "").split(";")):
        col, _, spec = item.partition(":")
        out[col] = spec
    return out


def cell(frame, lo, hi, i: int, col: str, formats: dict) -> str:
    value = frame[col].iloc[i]
    spec = formats.get(col, formats.get("*"))
    text = format_cell(value, spec)
    if lo is not None and col in lo and pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col]):
        a, b = lo[col].iloc[i], hi[col].iloc[i]
        if np.isfinite(a) and np.isfinite(b) and a != b:
            text += f" ({format_cell(a, spec)}–{format_cell(b, spec)})"
    return text


def _pivot_cell(row, column: str, formats: dict) -> str:
    """A pivoted cell: the value, or ``> value`` / ``diverged`` where the row says it did not converge."""
    text = format_cell(row[column], formats.get(column, formats.get("*")))
    if "converged" in row and not bool(row["converged"]):
        message = str(row.get("message", ""))
        # (a solver that met a NaN/inf iterate says "non-finite iterate" and returns its best finite one)
        return "diverged" if "diverged" in message or "non-finite" in message else f"> {text}"
    return text


def render_table(page_dir: Path, attrs_text: str) -> str:
    rel, attrs = parse_attrs(attrs_text)
    frame, lo, hi = Source(page_dir, rel).select(attrs.get("where"))
    if "pivot" in attrs:  # long → wide: one row per index value, one column per `columns` value
        index, columns, values = attrs["pivot"].split(";")
        text = frame.apply(lambda r: _pivot_cell(r, values, _formats(attrs)), axis=1)
        frame = frame.assign(_cell=text).pivot(index=index, columns=columns, values="_cell").reset_index()
        frame.columns = [str(c) for c in frame.columns]
        lo = hi = None
    if "join" in attrs:  # quoted numbers (a seed's) beside ours, matched on the shared columns
        frame = pd.read_csv(page_dir / attrs["join"]).merge(frame, how="inner")
        lo = hi = None
    cols = [(str(c), str(c)) for c in frame.columns]
    if "columns" in attrs:
        cols = []
        for item in attrs["columns"].split(";"):
            label, _, col = item.partition("=") if item not in frame.columns else (item, "", item)
            cols.append((label, col or label))
    formats = _formats(attrs)
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for _, c in cols]
    lines = ["| " + " | ".join(label.replace("|", "\\|") for label, _ in cols) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for i in range(len(frame)):
        lines.append("| " + " | ".join(cell(frame, lo, hi, i, c, formats) for _, c in cols) + " |")
    return "\n".join(lines) + "\n"


def render_value(page_dir: Path, attrs_text: str) -> str:
    rel, attrs = parse_attrs(attrs_text)
    frame, lo, hi = Source(page_dir, rel).select(attrs.get("where"))
    col = attrs["column"]
    formats = _formats(attrs)
    agg = attrs.get("agg")
    if agg:
        series = frame[col]
        value = {"min": series.min, "max": series.max, "sum": series.sum, "count": series.count,
                 "first": lambda: series.iloc[0]}[agg]()
        return format_cell(value.item() if hasattr(value, "item") else value, formats.get(col, formats.get("*")))
    return cell(frame, lo, hi, int(attrs.get("row", 0)), col, formats)


def render_page(path: Path) -> str:
    text = path.read_text()
    page_dir = path.parent
    text = TABLE.sub(lambda m: m.group(1) + render_table(page_dir, m.group("attrs")) + m.group(4), text)
    return VALUE.sub(lambda m: m.group(1) + render_value(page_dir, m.group("attrs")) + m.group(4), text)


def pages() -> list[Path]:
    """The pages of the record, README.md included: its example of the markers is rendered like any
    page, so the numbers it shows are the record's too."""
    return sorted(HERE.glob("*.md"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="PAGE", help="run only these pages' commands (then render all)")
    parser.add_argument("--render", action="store_true", help="no runs: re-render the pages from the CSVs")
    parser.add_argument("--check", action="store_true", help="exit 1 if a page is not what its CSVs render to")
    parser.add_argument("--list", action="store_true", help="list the runs")
    args = parser.parse_args(argv)
    if args.list:
        for r in load_runs(args.only):
            print(f"{r['page']:16s} -> experiments/{r['dest']}/  deqlab {r['args']}  (x{r.get('repeats', 1)})")
        return 0
    if not (args.render or args.check):
        folders: dict[str, Path] = {}
        with tempfile.TemporaryDirectory() as scratch:
            for run in load_runs(args.only):
                regenerate(run, Path(scratch), folders)
    stale, broken = [], []
    for path in pages():
        try:
            new = render_page(path)
        except (KeyError, FileNotFoundError, ValueError, IndexError) as exc:  # a marker names a missing CSV/column
            print(f"{path.name}: cannot render ({type(exc).__name__}: {exc}); regenerate its runs")
            broken.append(path.name)
            continue
        if new != path.read_text():
            if args.check:
                stale.append(path.name)
            else:
                path.write_text(new)
                print(f"rendered {path.relative_to(ROOT)}")
    if stale:
        print("pages out of date with their CSVs (run experiments/regenerate.py --render): " + ", ".join(stale))
    return 1 if stale or broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
