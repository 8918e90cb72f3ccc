"""``deqlab sysid f16 --data-dir DIR``: the F-16 ground vibration test benchmark (the REN paper's F16
experiment: Revay, Wang & Manchester, IEEE TAC 2023, arXiv:2104.05942) on a user's copy of the data, with
the models, training, table, figures and saved models of ``deqlab sysid pendulum``
(:func:`deqlab.demos.sysid.identify`); ``deqlab sysid evaluate`` works on its run folders.

Protocol, as far as the paper and its authors' code publish it: train on the identification records of
one excitation (levels 1, 3, 5, 7), test on its ``_Validation`` records (levels 2, 4, 6); input the shaker
force, outputs the three accelerations; signals standardised with the training records' statistics (inside
each saved model); training records cut into sequences of 1024 samples; a washout at the start of every
sequence. Not published, so ours: early stopping on the last ``val_fraction`` of every training record's
sequences (the authors' code validates on the test records), model sizes and training settings
(:mod:`deqlab.settings.sysid_f16`). Reader: :mod:`deqlab.sysid.f16`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from deqlab.benchmarks import torch_threads
from deqlab.demos.sysid import Parts, identify
from deqlab.errors import InputError
from deqlab.report.result import Table
from deqlab.settings import resources
from deqlab.sysid import f16


def _min_steps(cfg) -> int:
    """The shortest record that still gives one training sequence (and a test sequence past the washout)."""
    test = cfg.f16.test_steps
    return max(int(cfg.f16.segment), int(test) if test is not None else 0, int(cfg.washout) + 2)


def make_parts(cfg) -> tuple[Parts, pd.DataFrame, str]:
    """Train/validation/test arrays from the benchmark records, a table of the files used, and where they were."""
    c = cfg.f16
    # the record files are read whole, then parsed: refused before reading when they could not fit in memory
    train_records, test_records, where = f16.read_records(
        str(c.data_dir), c.excitation, file_format=c.format, min_steps=_min_steps(cfg),
        max_bytes=int(resources.FRACTION * resources.available_memory() / resources.ARCHIVE_COPIES))
    train_parts, val_parts, rows = [], [], []
    for r in train_records:
        u, y, (n,) = f16.segments([r], int(c.segment))
        n_val = max(1, round(n * float(c.val_fraction))) if n > 1 else 0
        train_parts.append((u[: n - n_val], y[: n - n_val]))
        if n_val:
            val_parts.append((u[n - n_val:], y[n - n_val:]))
        rows.append({"file": r.name, "role": "train", "level": r.level, "samples": r.u.shape[0], "padding dropped": r.padding,
                     "train seqs": n - n_val, "val seqs": n_val, "test seqs": 0})
    if not val_parts:  # every training record gave one sequence: validate on the last one
        u, y = train_parts[-1]
        train_parts[-1], val_parts = (u[:0], y[:0]), [(u, y)]
        rows[-1]["train seqs"], rows[-1]["val seqs"] = 0, 1
    u_tr = np.concatenate([p[0] for p in train_parts])
    y_tr = np.concatenate([p[1] for p in train_parts])
    if u_tr.shape[0] == 0:
        raise InputError(f"the training records give too few sequences of f16.segment={c.segment} samples to keep one for training")
    u_va = np.concatenate([p[0] for p in val_parts])
    y_va = np.concatenate([p[1] for p in val_parts])
    if c.test_steps is None:
        length = min(r.u.shape[0] for r in test_records)
        u_te = np.stack([r.u[:length] for r in test_records])
        y_te = np.stack([r.y[:length] for r in test_records])
        counts = [1] * len(test_records)
    else:
        u_te, y_te, counts = f16.segments(test_records, int(c.test_steps))
    for r, n in zip(test_records, counts):
        rows.append({"file": r.name, "role": "test", "level": r.level, "samples": r.u.shape[0], "padding dropped": r.padding,
                     "train seqs": 0, "val seqs": 0, "test seqs": n})
    rate = train_records[0].sample_rate
    return Parts(u_tr, y_tr, u_va, y_va, u_te, y_te, None, 1.0 / rate), pd.DataFrame(rows), where


def _listed(levels) -> str:
    return ", ".join(str(level) for level in levels)


def run(cfg):
    with torch_threads(cfg.threads):
        return _run(cfg)


def _run(cfg):
    parts, files, where = make_parts(cfg)
    title = f"F-16 GVT, {cfg.f16.excitation.replace('_', ' ')}"
    result = identify(cfg, parts, title=title, physical=False, command="sysid_f16",
                      output="acceleration 1")   # the predictions figure shows the first output channel
    result.tables["f16_files"] = Table(title=f"F-16 benchmark records used ({where})", frame=files,
                                       caption="train seqs / val seqs / test seqs: sequences cut from each record; "
                                               "padding dropped: trailing all-zero rows removed")
    levels = tuple(files.loc[files["role"] == "train", "level"]), tuple(files.loc[files["role"] == "test", "level"])
    if levels != (f16.TRAINING_LEVELS, f16.VALIDATION_LEVELS):
        # (a folder missing Level3 trained on levels 1, 5, 7 and said so only in the records table)
        result.notes.insert(0, f"not the benchmark's full record set: trained on levels {_listed(levels[0])}, tested on "
                               f"{_listed(levels[1])} (the benchmark: {_listed(f16.TRAINING_LEVELS)} and "
                               f"{_listed(f16.VALIDATION_LEVELS)}), so the published figures below are not comparable")
    result.notes.insert(0, f"data: {where}, {cfg.f16.excitation} excitation; input force, outputs accelerations 1–3; "
                           f"sequences train/val/test = {parts.u_train.shape[0]}/{parts.u_val.shape[0]}/{parts.u_test.shape[0]} "
                           f"of {parts.u_train.shape[1]}/{parts.u_val.shape[1]}/{parts.u_test.shape[1]} samples at "
                           f"{1.0 / parts.sample_time:g} Hz, washout {cfg.washout}")
    result.notes.append("REN paper (Revay, Wang & Manchester 2023), F16 test NRMSE: contracting REN ≈ 0.16, LSTM ≈ 0.19, "
                        "RNN ≈ 0.21 (their models, sizes and training; compare the protocol in experiments/sysid.md)")
    return result
