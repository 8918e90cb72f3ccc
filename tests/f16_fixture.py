"""A small stand-in for the F-16 ground vibration test benchmark, in exactly its file format, made at test
time (no committed data): a three-mass chain (the shaker force on mass 1) whose middle link has a
clearance (dead-zone) spring, like the F-16's wing-to-payload connection, sampled at 400 Hz.

    m ẍ₁ = F − k x₁ − c ẋ₁ − k (x₁ − x₂) − c (ẋ₁ − ẋ₂)
    m ẍ₂ = k (x₁ − x₂) + c (ẋ₁ − ẋ₂) − f_gap(x₂ − x₃) − c (ẋ₂ − ẋ₃)
    m ẍ₃ = f_gap(x₂ − x₃) + c (ẋ₂ − ẋ₃) − k x₃ − c ẋ₃
    f_gap(d) = k_gap · sign(d) · max(|d| − gap, 0)

integrated with RK4 (8 sub-steps per sample). Outputs: the three accelerations; "Voltage" is a noisy
multiple of the force (the shaker's drive). Files: ``F16Data_{SineSw,FullMSine}_Level{1,3,5,7}.csv`` and
``..._Level{2,4,6}_Validation.csv`` with the benchmark's columns (plus ``Fs``, as in the benchmark), and
``.mat`` twins (``Force`` 1×N, ``Voltage`` 1×N, ``Acceleration`` 3×N, ``Fs``); some records end in
rows of zeros (padding).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

FS = 400.0
M, K, C, K_GAP, GAP = 1.0, 4.0e3, 2.0, 8.0e3, 2.0e-4
TAGS = {"sine_sweep": "SineSw", "multisine": "FullMSine"}


def _accelerations(x: np.ndarray, v: np.ndarray, force: np.ndarray) -> np.ndarray:
    """``x, v`` (records, 3), ``force`` (records,) → accelerations (records, 3)."""
    d = x[:, 1] - x[:, 2]
    gap = K_GAP * np.sign(d) * np.maximum(np.abs(d) - GAP, 0.0)
    a1 = force - K * x[:, 0] - C * v[:, 0] - K * (x[:, 0] - x[:, 1]) - C * (v[:, 0] - v[:, 1])
    a2 = K * (x[:, 0] - x[:, 1]) + C * (v[:, 0] - v[:, 1]) - gap - C * (v[:, 1] - v[:, 2])
    a3 = gap + C * (v[:, 1] - v[:, 2]) - K * x[:, 2] - C * v[:, 2]
    return np.stack([a1, a2, a3], axis=1) / M


def simulate(force: np.ndarray, substeps: int = 8) -> np.ndarray:
    """Accelerations (records, N, 3) under the forces (records, N), each held over its sample
    (zero-order hold), from rest; all records integrated together."""
    h = 1.0 / (FS * substeps)
    x = np.zeros((force.shape[0], 3))
    v = np.zeros_like(x)
    out = np.empty((*force.shape, 3))
    for k in range(force.shape[1]):
        f = force[:, k]
        out[:, k] = _accelerations(x, v, f)
        for _ in range(substeps):
            k1x, k1v = v, _accelerations(x, v, f)
            k2x, k2v = v + 0.5 * h * k1v, _accelerations(x + 0.5 * h * k1x, v + 0.5 * h * k1v, f)
            k3x, k3v = v + 0.5 * h * k2v, _accelerations(x + 0.5 * h * k2x, v + 0.5 * h * k2v, f)
            k4x, k4v = v + h * k3v, _accelerations(x + h * k3x, v + h * k3v, f)
            x = x + h / 6 * (k1x + 2 * k2x + 2 * k3x + k4x)
            v = v + h / 6 * (k1v + 2 * k2v + 2 * k3v + k4v)
    return out


def excitation(kind: str, level: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Force [N]: a linear sine sweep 2–40 Hz or a random-phase multisine 2–40 Hz, peak 0.6·level N."""
    t = np.arange(steps) / FS
    if kind == "sine_sweep":
        f0, f1 = 2.0, 40.0
        s = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1])))
    else:
        freqs = np.arange(2.0, 40.0, 0.5)
        s = np.sin(2 * np.pi * freqs[:, None] * t[None, :] + rng.uniform(0, 2 * np.pi, freqs.size)[:, None]).sum(0)
    return 0.6 * level * s / np.abs(s).max()


def records(steps: int = 900, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """``{file stem: {"Force", "Voltage", "Acceleration" (N, 3)}}`` for both excitations, levels 1–7, with
    trailing zero padding on the odd levels' records (5–17 rows)."""
    rng = np.random.default_rng(seed)
    keys = [(kind, tag, level) for kind, tag in TAGS.items() for level in range(1, 8)]
    forces = np.stack([excitation(kind, level, steps, rng) for kind, _, level in keys])
    accs = simulate(forces) + 1e-3 * rng.standard_normal((len(keys), steps, 3))
    out = {}
    for (kind, tag, level), force, acc in zip(keys, forces, accs):
        volt = 0.05 * force + 1e-3 * rng.standard_normal(steps)
        pad = 5 + 3 * level if level % 2 else 0
        stem = f"F16Data_{tag}_Level{level}" + ("_Validation" if level % 2 == 0 else "")
        out[stem] = {"Force": np.concatenate([force, np.zeros(pad)]), "Voltage": np.concatenate([volt, np.zeros(pad)]),
                     "Acceleration": np.concatenate([acc, np.zeros((pad, 3))])}
    return out


def write_csv(path: Path, rec: dict[str, np.ndarray], *, columns=("Force", "Voltage", "Acceleration1", "Acceleration2", "Acceleration3", "Fs")) -> None:
    values = {"Force": rec["Force"], "Voltage": rec["Voltage"], "Acceleration1": rec["Acceleration"][:, 0],
              "Acceleration2": rec["Acceleration"][:, 1], "Acceleration3": rec["Acceleration"][:, 2],
              "Fs": np.where(np.arange(rec["Force"].size) == 0, FS, FS)}
    with open(path, "w") as f:
        f.write(",".join(columns) + "\n")
        f.writelines(",".join(repr(float(v)) for v in row) + "\n" for row in zip(*(values.get(c, values["Force"]) for c in columns)))


def write_mat(path: Path, rec: dict[str, np.ndarray]) -> None:
    from scipy.io import savemat

    savemat(path, {"Force": rec["Force"][None, :], "Voltage": rec["Voltage"][None, :],
                   "Acceleration": rec["Acceleration"].T, "Fs": np.array([[FS]])})


def make_benchmark(root: Path, *, layout: str = "unzipped", formats=("csv", "mat"), steps: int = 900, seed: int = 0) -> Path:
    """Write the stand-in benchmark under ``root`` and return what a user passes as ``--data-dir``.

    ``layout``: ``unzipped`` (``root/F16GVT_Files/BenchmarkData/``; returns ``root``), ``benchmarkdata``
    (returns the ``BenchmarkData`` folder itself) or ``zip`` (``root/F16GVT_Files.zip``; returns ``root``)."""
    folder = root / "F16GVT_Files" / "BenchmarkData"
    folder.mkdir(parents=True, exist_ok=True)
    for stem, rec in records(steps, seed).items():
        if "csv" in formats:
            write_csv(folder / f"{stem}.csv", rec)
        if "mat" in formats:
            write_mat(folder / f"{stem}.mat", rec)
    if layout == "benchmarkdata":
        return folder
    if layout == "zip":
        with zipfile.ZipFile(root / "F16GVT_Files.zip", "w") as zf:
            for p in sorted(folder.iterdir()):
                zf.write(p, f"F16GVT_Files/BenchmarkData/{p.name}")
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
        (root / "F16GVT_Files").rmdir()
    return root
