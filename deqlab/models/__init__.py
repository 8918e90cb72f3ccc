"""Models: the lecture's tanh DEQ, monotone DEQs, RENs, baselines and the pendulum.

Public API::

    from deqlab.models import (TanhDEQ, MonDEQ, UnconstrainedDEQ, mondeq_weight, monotonicity,
                               forward_backward_bound, ContractingREN, LipschitzREN)
"""

from deqlab.models.mondeq import MonDEQ, UnconstrainedDEQ, forward_backward_bound, monotonicity, mondeq_weight
from deqlab.models.ren import ContractingREN, LipschitzREN
from deqlab.models.tanh_deq import TanhDEQ

__all__ = ["ContractingREN", "LipschitzREN", "MonDEQ", "TanhDEQ", "UnconstrainedDEQ", "forward_backward_bound",
           "mondeq_weight", "monotonicity"]
