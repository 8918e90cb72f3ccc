"""The data file of experiments/sysid.md §6: pendulum trajectories under a different input class
(8 sines up to 1.5 Hz, peak 3 N·m). Usage: python experiments/sysid/make_multisine.py OUT.npz"""

import sys

import numpy as np

from deqlab.models.pendulum import PendulumParams
from deqlab.sysid.data import pendulum_dataset

ds = pendulum_dataset(PendulumParams(), trajectories=20, steps=400, hold=5, noise_std=0.05, angle_spread=0.1,
                      rate_spread=0.1, signal="multisine", amplitude=3.0, min_dwell=5, max_dwell=40, n_sines=8,
                      f_max=1.5, seed=7)
np.savez(sys.argv[1], u=ds.u, y=ds.y)
