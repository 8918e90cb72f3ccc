"""The "which fixed point" table: each solver's point placed relative to a reference equilibrium
(:mod:`deqlab.solvers.survey`)."""

from __future__ import annotations

import pandas as pd

from deqlab.report.result import Table
from deqlab.solvers.survey import SurveyedPoint, point_verdict


def fixed_point_table(points: list[SurveyedPoint], title: str, reference: str) -> Table:
    """One row per solver: converged, residual, distance from the reference, ρ(J) and cond₂(I − J) at
    its own point, and the verdict (same point / OTHER equilibrium / none). Narrow enough for 80 columns."""
    rows = [{"solver": p.solver, "conv.": p.converged,
             "resid.": float("nan") if p.result is None else p.result.max_residual,
             "|z-z*|": p.distance, "rho(J)": p.rho, "cond2": p.cond, "point": point_verdict(p)} for p in points]
    return Table(title, pd.DataFrame(rows),
                 formats={"resid.": "{:.1e}", "|z-z*|": "{:.1e}", "rho(J)": "{:.4f}", "cond2": "{:.1e}"},
                 caption=f"z*: {reference}. resid.: ||f(z) - z||; |z-z*|, rho(J) (spectral radius of J = df/dz; < 1: "
                         "attracting), cond2 (of I - J): max over samples at each solver's own point. point: 'same' = "
                         "within 100x the first-order bound (r + r_ref)/sigma_min(I-J) of z*; OTHER = another "
                         "equilibrium; none = did not converge")
