"""The input file of experiments/lowrank.md §2: pairs of a rank-3 H (eigenvalues 3, -1, 0.2),
n = 200, k = 6, gradient changes with relative noise 1e-6.
Usage: python experiments/lowrank/make_pairs_example.py experiments/lowrank/pairs_example.npz"""

import sys

import numpy as np

rng = np.random.default_rng(0)
U, _ = np.linalg.qr(rng.standard_normal((200, 3)))
H = (U * np.array([3.0, -1.0, 0.2])) @ U.T
X = rng.standard_normal((200, 6))
Y = H @ X + 1e-6 * np.linalg.norm(H @ X, axis=0) * rng.standard_normal((200, 6)) / np.sqrt(200)
np.savez(sys.argv[1], X=X, Y=Y, H=H)
