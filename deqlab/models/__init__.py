"""Models: the lecture's tanh DEQ (and, in their own modules, monotone DEQs, RENs, the pendulum)."""

from deqlab.models.tanh_deq import TanhDEQ

__all__ = ["TanhDEQ"]
