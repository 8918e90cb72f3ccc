"""Anderson's stall safeguard on random tanh DEQs: where does it switch, and what does it change?

    PYTHONPATH=. python experiments/anderson_stall_study.py        # ~15 s on one core

Each problem is ``f(z) = tanh(z Wᵀ + x)`` with ``W = scale · N(0, 1/n)`` (n × n) and a batch of 4 inputs
``x ~ N(0, 1)``, for n in 2–50, scale in {0.6, 0.9, 1.2} and 60 seeds each (1260 solves), solved from
``z = 0`` to ``atol = 1e-12`` within 1000 evaluations by Anderson with the safeguard
(``stall_patience = 50``, the default) and without it (``stall_patience = 0``). Prints how many solves
the safeguard changed at all, and among those how many it made converge, converge sooner or later.
The figures are quoted in ``deqlab/solvers/anderson.py``'s module docstring.
"""

from __future__ import annotations

import torch

from deqlab.solvers import anderson

SIZES = (2, 3, 5, 8, 12, 20, 50)
SCALES = (0.6, 0.9, 1.2)
SEEDS = range(60)


def problem(n: int, scale: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    W = scale * torch.randn(n, n, generator=g, dtype=torch.float64) / n**0.5
    x = torch.randn(4, n, generator=g, dtype=torch.float64)
    return (lambda z: torch.tanh(z @ W.T + x)), torch.zeros(4, n, dtype=torch.float64)


def main() -> None:
    torch.set_num_threads(1)
    counts = dict.fromkeys(("solves", "changed", "now converge", "sooner", "later", "still not converged",
                            "no longer converge"), 0)
    for n in SIZES:
        for scale in SCALES:
            for seed in SEEDS:
                f, z0 = problem(n, scale, seed)
                off = anderson(f, z0, atol=1e-12, max_iter=1000, stall_patience=0)
                on = anderson(f, z0, atol=1e-12, max_iter=1000)
                counts["solves"] += 1
                if off.n_fevals == on.n_fevals and torch.equal(off.z, on.z):
                    continue
                counts["changed"] += 1
                if on.all_converged and not off.all_converged:
                    counts["now converge"] += 1
                elif off.all_converged and not on.all_converged:
                    counts["no longer converge"] += 1
                elif not on.all_converged:
                    counts["still not converged"] += 1
                else:
                    counts["sooner" if on.n_fevals < off.n_fevals else "later"] += 1
                    print(f"  n={n} scale={scale} seed={seed}: {off.n_fevals} -> {on.n_fevals} evaluations")
    for key, value in counts.items():
        print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
