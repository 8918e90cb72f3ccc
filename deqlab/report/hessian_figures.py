"""Figures of ``deqlab hessian`` (heatmaps of H and its terms, the spectrum) and of ``deqlab bench hessian`` /
``bench curvature`` (time per route, the size ladder)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from deqlab.report.figures import label_log_axis, new_axes, symlog_decades, symlog_ticks, ticks_at


def hessian_heatmaps(mats: Mapping[str, np.ndarray], boundaries: Sequence[tuple[str, int]], *, title: str):
    """One symmetric-log heatmap per matrix (``H``, Term A, Term B, …) with the parameter-group
    boundaries drawn; ``boundaries`` is ``[(group, start index), …]`` in θ order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import SymLogNorm

    n = len(mats)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.4), squeeze=False)
    # the largest finite |entry|: a NaN or inf entry (a run kept with --go-on) made the norm invalid, no figure at all
    finite = [np.abs(m)[np.isfinite(m)] for m in mats.values()]
    vmax = max((float(f.max()) for f in finite if f.size), default=0.0) or 1.0
    linthresh = max(vmax * 1e-4, 1e-300)  # entries below 1e-4·max show as white; keeps the colour bar legible
    for ax, (name, m) in zip(axes[0], mats.items()):
        im = ax.imshow(m, cmap="RdBu_r", norm=SymLogNorm(linthresh=linthresh, vmin=-vmax, vmax=vmax), interpolation="nearest")
        ax.set_title(f"{name}\n‖·‖_F = {np.linalg.norm(m):.3g}")
        ax.set_xlabel("θ index (column)")
        if ax is axes[0][0]:
            ax.set_ylabel("θ index (row)")
        for g, start in boundaries:
            if start > 0:
                ax.axhline(start - 0.5, color="k", lw=0.5)
                ax.axvline(start - 0.5, color="k", lw=0.5)
    bar = fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="entry value (loss units / θ², symlog)")
    # decades and 0 only: the norm's own ticks printed 10⁻⁴, 0 and −10⁻⁴ over one another at the linear band
    ticks, labels = symlog_decades(vmax, linthresh, within=True)
    if ticks:
        bar.set_ticks(ticks, labels=labels)
        bar.ax.minorticks_off()
    fig.suptitle(title)
    _group_names(fig, list(axes[0]), boundaries, next(iter(mats.values())).shape[0])   # last: the colour bar moved the axes
    return fig


def _group_names(fig, axes, boundaries: Sequence[tuple[str, int]], size: int) -> None:
    """Each parameter group's name at the middle of its block on both axes; a name that would overprint its
    neighbour's (short blocks side by side: b_z, U_z or W_y, b_y at N = 20) steps out to the next free row
    (x) or column (y) of names. At each block's first index, the short blocks' names ran into one another."""
    starts = [s for _, s in boundaries]
    centres = [(a + b - 1) / 2 for a, b in zip(starts, starts[1:] + [size])]
    names = [g for g, _ in boundaries]
    for ax in axes:   # rows are named once, on the first panel: the others' names stood in the gap between panels
        ax.set_xticks(centres, names, fontsize=7)
        ax.set_yticks(centres, names if ax is axes[0] else [], fontsize=7)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in axes:
        for axis in (ax.xaxis, ax.yaxis):
            last = {}   # level -> the box of the last name placed at that level (at level 0's place)
            for tick in axis.get_major_ticks():
                if not tick.label1.get_text():
                    continue
                box = tick.label1.get_window_extent(renderer).expanded(1.0, 1.0)
                level = next(k for k in range(len(names) + 1) if k not in last or not box.overlaps(last[k]))
                last[level] = box
                if level:
                    step = (box.height if axis is ax.xaxis else box.width) * 72 / fig.dpi + 1.0
                    tick.set_pad(tick.get_pad() + level * step)


def spectrum_plot(spectra: Mapping[str, np.ndarray], *, title: str, subtitle: str = ""):
    """Sorted eigenvalues of ``H`` and of each of its terms, one panel each on a shared symlog axis.

    ``spectra``: label (``"H"``, ``"Term A"``, …) → eigenvalues. Each term's panel repeats H as a
    thin grey line, so a term whose spectrum matches H's (Term B when the loss is nearly linear in
    h) is seen beside it, never hidden under it. The linear band of the symlog axis is 1e-6 of the
    largest |eigenvalue| (smaller values are rounding at these sizes), with decade ticks outside it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deqlab.report.style import canonical, color

    vals = {k: np.sort(np.asarray(v, dtype=float)) for k, v in spectra.items()}
    top = max((float(np.abs(v).max()) for v in vals.values() if v.size), default=1.0) or 1.0
    linthresh = top * 1e-6
    fig, axes = plt.subplots(1, len(vals), figsize=(3.6 * len(vals) + 1.0, 4.4), sharey=True, squeeze=False)
    h = vals.get("H")
    for ax, (label, v) in zip(axes[0], vals.items()):
        ax.set_yscale("symlog", linthresh=linthresh, linscale=0.6)
        if h is not None and label != "H":
            ax.plot(np.arange(len(h)), h, color="0.6", lw=1.0, label="H")
        ax.plot(np.arange(len(v)), v, ".-" if len(v) <= 120 else "-", ms=4, lw=1.6, color=color(canonical(label)), label=label)
        ax.axhspan(-linthresh, linthresh, color="0.93", zorder=0)
        ax.set_title(f"{label}: max |λ| = {np.abs(v).max():.2g}", fontsize=9)
        ax.set_xlabel("eigenvalue rank (ascending)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    symlog_ticks(axes[0][0], top, linthresh)
    # two lines: on one it was taller than the axes and ran to the figure's edge
    axes[0][0].set_ylabel(f"eigenvalue (loss units / θ²)\nsymlog; |λ| < {linthresh:.1g} linear")
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""))
    fig.tight_layout()
    return fig


def hvp_spectrum_plot(bottom: np.ndarray, top: np.ndarray, size: int, nodes: np.ndarray, weights: np.ndarray, *,
                      title: str, subtitle: str = ""):
    """Matrix-free spectrum of ``H`` (``size × size``): three panels.

    Left and middle: the ``k`` smallest and ``k`` largest eigenvalues found by eigsh, ranked from
    each end (1 = the extreme), each with its value. Right: the eigenvalue density estimated by
    stochastic Lanczos quadrature (``nodes``/``weights`` of shape ``(probes, steps)``, see
    :class:`deqlab.implicit.spectrum.SpectralDensity`), Gaussian-smoothed, log density axis (as
    PyHessian draws it), with the eigsh extremes as ticks on the x axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deqlab.implicit.spectrum import SpectralDensity

    b = np.sort(np.asarray(bottom, float))
    t = np.sort(np.asarray(top, float))[::-1]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6), gridspec_kw={"width_ratios": [1, 1, 2.2]})
    for ax, vals, name, col in ((axes[0], b, "smallest", "tab:blue"), (axes[1], t, "largest", "tab:red")):
        ranks = np.arange(1, len(vals) + 1)
        ax.plot(ranks, vals, "o-", color=col, ms=6)
        for i, (r, v) in enumerate(zip(ranks, vals)):
            # on the side the line leaves free: below-right where it rises to the next point (above-right, its
            # old place, printed the value over a rising line), above-right where it falls
            nxt = vals[i + 1] if i + 1 < len(vals) else (2 * v - vals[i - 1] if i else v)
            rising = nxt > v
            ax.annotate(f"{v:.4g}", (r, v), textcoords="offset points", xytext=(6, -6 if rising else 6), fontsize=7,
                        va="top" if rising else "bottom")
        ax.set_xticks(ranks)
        ax.set_xlabel(f"rank from the {'bottom' if name == 'smallest' else 'top'} (1 = λ_{'min' if name == 'smallest' else 'max'})")
        ax.set_title(f"{len(vals)} {name} eigenvalues (eigsh)")
        ax.grid(True, alpha=0.3)
        ax.margins(x=0.25, y=0.2)   # room right of the last point for its value (0.15 let it run over the edge)
        ax.set_ylabel("eigenvalue (loss units / θ²)")   # each panel: they do not share a scale
    sd = SpectralDensity(np.asarray(nodes, float), np.asarray(weights, float), size)
    lo = min(float(sd.nodes.min()), float(b.min()) if b.size else np.inf)
    hi = max(float(sd.nodes.max()), float(t.max()) if t.size else -np.inf)
    pad = 0.03 * (hi - lo or 1.0)
    grid = np.linspace(lo - pad, hi + pad, 4000)
    sigma = (hi - lo or 1.0) / 500  # a kernel 1/500 of the range: resolves outliers, smooths the bulk
    dens = sd.density(grid, sigma)
    ax = axes[2]
    ax.semilogy(grid, np.maximum(dens, 1e-12), color="k", lw=1.2)
    ax.set_ylim(max(float(dens.max()) * 1e-7, 1e-12), float(dens.max()) * 3)
    ax.plot(b, np.full_like(b, ax.get_ylim()[0] * 1.5), "|", color="tab:blue", ms=14, label="eigsh smallest")
    ax.plot(t, np.full_like(t, ax.get_ylim()[0] * 1.5), "|", color="tab:red", ms=14, label="eigsh largest")
    probes, steps = sd.nodes.shape
    ax.set_title(f"eigenvalue density (SLQ: {probes} probes × {steps} Lanczos steps, σ = {sigma:.2g})")
    ax.set_xlabel("eigenvalue λ (loss units / θ²)")
    ax.set_ylabel("density (fraction of the P eigenvalues per unit λ)")
    ax.grid(True, which="major", alpha=0.3)   # (minor lines at every 2…9 of each decade hid the curve)
    ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""))
    fig.tight_layout()
    return fig


def route_times(routes: Sequence[str], samples_s: np.ndarray, *, reference: str, target_ratio: float | None = None,
                target_label: str = "", title: str, subtitle: str = ""):
    """Time per call of each route, one row per route: every timed sample a dot, the median a bar;
    right of the axes each median's value and its multiple of the ``reference`` route's median.

    ``samples_s``: ``(routes, samples)`` seconds, NaN-padded (a bench's ``.npz``). ``target_ratio``:
    a vertical dashed line at that multiple of the reference's median (the target's bound). The time
    axis is logarithmic when the medians span more than a decade.
    """
    import matplotlib

    samples_ms = 1e3 * np.asarray(samples_s, dtype=float)
    medians = np.nanmedian(samples_ms, axis=1)
    ref = medians[list(routes).index(reference)]
    spread = np.nanmax(samples_ms) / max(np.nanmin(samples_ms), 1e-300)
    fig, ax = new_axes(title + (f"\n{subtitle}" if subtitle else ""), "time per call [ms]", "", logx=spread > 10)
    fig.set_size_inches(9, 1.6 + 0.55 * len(routes))
    rows = np.arange(len(routes))[::-1]  # the table's first route on top
    # colours by position (the reference black): these route names are not in the palette, and their
    # CRC32 fallback colours drew two of five routes in the same brown
    cycle = iter(matplotlib.colormaps["tab10"].colors)
    for y, name, s, m in zip(rows, routes, samples_ms, medians):
        s = s[np.isfinite(s)]
        col = "black" if name == reference else next(cycle)
        jitter = np.linspace(-0.12, 0.12, len(s)) if len(s) > 1 else np.zeros(1)
        # the dots over the bar: the middle sample of an odd count sits exactly on it
        ax.plot(s, y + jitter, "o", ms=3, alpha=0.6, color=col, mec="white", mew=0.4, zorder=3,
                label="every timed call" if y == rows[0] else None)
        ax.plot([m, m], [y - 0.3, y + 0.3], "-", lw=3, color=col, label="median" if y == rows[0] else None)
        # beside the axes, not beside the dots: there the target line ran through the text
        ax.text(1.01, y, f"{m:.3g} ms" + (" (reference)" if name == reference else f" = {m / ref:.2f}× reference"),
                transform=ax.get_yaxis_transform(), va="center", fontsize=7)
    if target_ratio is not None:
        ax.axvline(target_ratio * ref, color="red", ls="--", lw=1.0, label=target_label or f"{target_ratio:g}× {reference}")
    ax.set_yticks(rows, list(routes), fontsize=8)
    ax.set_ylim(rows.min() - 0.6, rows.max() + 0.6)
    ax.margins(x=0.05)
    if spread > 10:
        label_log_axis(ax, "x", samples_ms)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14 - 0.4 / len(routes)), ncol=3)
    return fig


#: The size ladder's time columns drawn by :func:`ladder_times`: (column, legend, colour, line style, marker).
_LADDER_LINES = (
    ("dense closed form (s)", "dense closed form Hessian", "black", "-", "s"),
    ("dense floor (s)", "its floor: one (P×B)@(B×P) product", "0.55", ":", "s"),
    ("gradient (s)", "implicit gradient", "tab:blue", "-", "o"),
    ("HVP cold (s)", "HVP, cold (set-up + first product)", "tab:orange", "-", "^"),
    ("HVP warm (s)", "HVP, warm (a later product)", "tab:green", "-", "v"),
)


def ladder_times(ladder, references: Mapping[str, tuple[float, float]], *, title: str, subtitle: str = ""):
    """Median time per call [s] against the parameter count ``P`` (log-log) over ``bench hessian``'s
    size ladder: the dense closed form and its matrix-product floor, the implicit gradient, the HVP
    cold and warm; one line per quantity and dtype (float32 dashed and hollow). ``references``:
    label → ``(P, seconds)``, single points (the closed form and the unrolled ``torch.func.hessian``
    at the issue's size) drawn as stars.

    ``ladder``: the ``ladder`` table (a DataFrame with ``dtype``, ``P`` and the time columns above).
    """
    fig, ax = new_axes(title + (f"\n{subtitle}" if subtitle else ""), "parameter count P",
                       "median time per call [s]", logx=True, logy=True)
    fig.set_size_inches(8, 5)
    shown = []
    for dtype in dict.fromkeys(ladder["dtype"]):
        part = ladder[ladder["dtype"] == dtype].sort_values("P")
        f32 = dtype != "float64"
        for column, label, col, ls, marker in _LADDER_LINES:
            P, t = part["P"].to_numpy(dtype=float), part[column].to_numpy(dtype=float)
            ok = np.isfinite(t) & (t > 0)
            if not ok.any():
                continue
            ax.plot(P[ok], t[ok], ls="--" if f32 and ls == "-" else ls, marker=marker, ms=5, color=col,
                    mfc="none" if f32 else col, label=f"{label}, {dtype}")
            shown.append(t[ok])
    for (label, (P, t)), col in zip(references.items(), ("black", "tab:red", "tab:purple")):
        # hollow: the closed form's star sits on its own ladder point when n_z is on the ladder
        ax.plot([P], [t], "*", ms=16, color=col, mfc="none", mew=1.2, label=label)
        shown.append(np.array([t]))
    sizes = np.unique(np.concatenate([ladder["P"].to_numpy(dtype=float), [P for P, _ in references.values()]]))
    # slanted where two neighbours are closer than a factor 2.5 (the default ladder's 256 and 316: P 67,840
    # and 102,660 printed over each other)
    crowded = len(sizes) > 6 or (len(sizes) > 1 and np.min(np.diff(np.log10(sizes))) < np.log10(2.5))
    ticks_at(ax, sizes, [f"{int(p):,}" for p in sizes], rotation=35 if crowded else 0, ha="right" if crowded else "center",
             fontsize=8)
    ax.grid(False, which="minor")
    label_log_axis(ax, "y", np.concatenate(shown) if shown else [])
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
