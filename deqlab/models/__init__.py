"""Models: the lecture's tanh DEQ, monotone DEQs, RENs, baselines and the pendulum.

Public API::

    from deqlab.models import (TanhDEQ, MonDEQ, UnconstrainedDEQ, mondeq_weight, monotonicity,
                               forward_backward_bound, ContractingREN, LipschitzREN)

Devices: a model's constructor creates its parameters on torch's default device (the CPU unless changed)
from torch's global generator, so a seed gives the same initial weights on every machine; move it with
``model.to(device)`` (all state is parameters or buffers). From then on every method computes on the
parameters' device and creates its tensors (start points, initial states, identities) there.
"""

from deqlab.models.mondeq import MonDEQ, UnconstrainedDEQ, forward_backward_bound, monotonicity, mondeq_weight
from deqlab.models.ren import ContractingREN, LipschitzREN
from deqlab.models.tanh_deq import TanhDEQ

__all__ = ["ContractingREN", "LipschitzREN", "MonDEQ", "TanhDEQ", "UnconstrainedDEQ", "forward_backward_bound",
           "mondeq_weight", "monotonicity"]
