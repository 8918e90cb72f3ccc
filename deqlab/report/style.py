"""One colour per model, solver or method across every deqlab figure.

A reader who has learnt "Anderson is orange" in one figure should find it orange in the next, so
colours are looked up by *name*, never by a line's position in a plot. :func:`color` normalises the
name (case, spaces, hyphens, the short forms FB/PR/DR) and returns the palette entry; a name not in
the palette gets a stable colour from its CRC32, so it too keeps its colour between figures and runs.
"""

from __future__ import annotations

import re
import zlib

#: matplotlib's tab10 colours, named.
_BLUE, _ORANGE, _GREEN, _RED, _PURPLE = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"
_BROWN, _PINK, _GREY, _OLIVE, _CYAN = "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"
_BLACK = "#000000"

PALETTE: dict[str, str] = {
    # fixed-point solvers (converge, bench solvers, mondeq)
    "fixed_point": _BLUE,
    "anderson": _ORANGE,
    "broyden": _GREEN,
    "newton": _RED,
    "fsolve": _PURPLE,
    "root": _BROWN,
    # splitting methods (mondeq, bench mondeq)
    "forward_backward": _CYAN,
    "peaceman_rachford": _PINK,
    "douglas_rachford": _OLIVE,
    "direct_solve": _BLACK,
    # system identification models
    "ren": _BLUE,
    "lipschitz_ren": _GREEN,
    "lstm": _ORANGE,
    "rnn": _PURPLE,
    "linear": _BROWN,
    "measured": _GREY,
    # low-rank Hessian estimates
    "rank_k_recovery": _BLUE,
    "seed_method": _RED,
    "least_change": _GREEN,
    "symmetric_procrustes": _PURPLE,
    "scipy_sr1_auto_init": _ORANGE,
    "scipy_sr1_b0_0": _BROWN,
    "scipy_bfgs_auto_init": _PINK,
    # Hessian and its terms
    "h": _BLACK,
    "term_a": _BLUE,
    "term_b": _ORANGE,
    "term_r": _GREEN,
    # nethessian routes
    "forward": _BLUE,
    "double_backward": _ORANGE,
    # initialisations (converge)
    "init_default": _BLUE,
    "init_normal": _RED,
    # precisions
    "float32": _BLUE,
    "float64": _ORANGE,
}

_ALIASES = {
    "fb": "forward_backward", "pr": "peaceman_rachford", "dr": "douglas_rachford",
    "fixed_point_iteration": "fixed_point", "hybr": "fsolve", "direct": "direct_solve",
    "contracting_ren": "ren", "measured_data": "measured",
    "forward_recursion": "forward", "autograd_double_backward": "double_backward",
}

_FALLBACK = (_BLUE, _ORANGE, _GREEN, _RED, _PURPLE, _BROWN, _PINK, _OLIVE, _CYAN,
             "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")


def canonical(name: str) -> str:
    """``"Peaceman-Rachford"``, ``"PR"``, ``"peaceman_rachford"`` → ``"peaceman_rachford"``."""
    key = re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_")
    return _ALIASES.get(key, key)


def color(name: str) -> str:
    """The colour of ``name`` in every deqlab figure (hex string)."""
    key = canonical(name)
    if key in PALETTE:
        return PALETTE[key]
    return _FALLBACK[zlib.crc32(key.encode()) % len(_FALLBACK)]


def colors(names) -> dict[str, str]:
    """:func:`color` of each of ``names``, made distinct within the set: a name outside the palette whose
    hashed colour is taken (by a palette name or another hashed one) takes the next free fallback colour.
    Decided from the set alone (not its order), so figures of one run showing the same names agree;
    two user-named models ('lipschitz_ren_g1', 'lipschitz_ren_g2') were both drawn red."""
    names = list(dict.fromkeys(str(n) for n in names))
    out = {n: PALETTE[canonical(n)] for n in names if canonical(n) in PALETTE}
    used = set(out.values())
    for n in sorted((n for n in names if n not in out), key=canonical):
        start = zlib.crc32(canonical(n).encode()) % len(_FALLBACK)
        free = [_FALLBACK[(start + i) % len(_FALLBACK)] for i in range(len(_FALLBACK))
                if _FALLBACK[(start + i) % len(_FALLBACK)] not in used]
        out[n] = free[0] if free else _FALLBACK[start]
        used.add(out[n])
    return out


def run_label(**what) -> str:
    """``solver=anderson, dtype=float64, seed=0`` for a figure's subtitle: what was run (None skipped)."""
    return ", ".join(f"{k}={v}" for k, v in what.items() if v is not None and v != "")
