"""The monDEQ guarantees as hypothesis properties: margin ≥ m, PR converges from any start, unique fixed point."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from deqlab.models.mondeq import NONLINEARITIES, monotonicity, mondeq_weight
from deqlab.solvers.splitting import douglas_rachford, peaceman_rachford

DT = torch.float64
#: Slack of λ_min(sym(I − W)) ≥ m, relative to the size of the entries (eigvalsh round-off).
MARGIN_RTOL = 1e-12
#: Residual tolerance of the splitting solves; two starts must agree to a few times it over the margin.
ATOL = 1e-10
MAX_ITER = 20000
SETTINGS = settings(max_examples=25, deadline=None)

finite = dict(allow_nan=False, allow_infinity=False)


@st.composite
def monotone_problems(draw, max_n=8, entry=1.0):
    n = draw(st.integers(1, max_n))
    k = draw(st.integers(1, max_n))
    A = draw(arrays(np.float64, (k, n), elements=st.floats(-entry, entry, **finite)))
    B = draw(arrays(np.float64, (n, n), elements=st.floats(-entry, entry, **finite)))
    m = draw(st.floats(0.05, 3.0))
    return torch.as_tensor(A), torch.as_tensor(B), m


@SETTINGS
@given(problem=monotone_problems(max_n=12, entry=5.0))
def test_margin_is_at_least_m(problem):
    A, B, m = problem
    W = mondeq_weight(A, B, m)
    scale = 1.0 + float((A.T @ A).abs().max()) + float(B.abs().max())
    assert monotonicity(W) >= m - MARGIN_RTOL * scale


def _scaled(A, B):
    n = B.shape[0]
    return A / np.sqrt(n), B / np.sqrt(n)


@SETTINGS
@given(
    problem=monotone_problems(),
    nonlinearity=st.sampled_from(["relu", "tanh", "softplus"]),
    alpha=st.floats(0.1, 5.0),
    data=st.data(),
)
def test_peaceman_rachford_converges_from_any_start_to_one_fixed_point(problem, nonlinearity, alpha, data):
    A, B, m = problem
    A, B = _scaled(A, B)
    W = mondeq_weight(A, B, m)
    n = W.shape[0]
    c = torch.as_tensor(data.draw(arrays(np.float64, (2, n), elements=st.floats(-3, 3, **finite))))
    starts = [torch.as_tensor(data.draw(arrays(np.float64, (2, n), elements=st.floats(-10, 10, **finite))))
              for _ in range(2)]
    nl = NONLINEARITIES[nonlinearity]
    ends = []
    for z0 in starts:
        res = peaceman_rachford(W, c, z0, nonlinearity=nl, alpha=alpha, atol=ATOL, max_iter=MAX_ITER)
        assert res.all_converged, res.message
        ends.append(res.z)
    # z̃ = f(z) solves the problem exactly with c − W r (r = f(z) − z), so by m-strong monotonicity
    # ‖z − z*‖ ≤ ‖r‖ (1 + ‖W‖₂/m): two converged starts lie within twice that of each other.
    bound = 2 * ATOL * (1 + float(torch.linalg.matrix_norm(W, 2)) / m) * 1.01
    assert float((ends[0] - ends[1]).norm(dim=-1).max()) < bound
    dr = douglas_rachford(W, c, starts[0], nonlinearity=nl, alpha=alpha, atol=ATOL, max_iter=MAX_ITER)
    assert dr.all_converged and float((dr.z - ends[0]).norm(dim=-1).max()) < bound
