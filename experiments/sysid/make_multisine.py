"""The data file of experiments/sysid.md §6: pendulum trajectories under a different input class
(8 sines up to 1.5 Hz, peak 3 N·m). Usage: python experiments/sysid/make_multisine.py OUT.npz [FLOOR.csv]

With FLOOR.csv, also writes the file's noise floor: the NRMSE of the simulator's noise-free output
against the measured one after the washout (what a perfect model scores; OUT.npz holds only the
measured output, so `deqlab sysid evaluate` cannot compute it)."""

import sys

import numpy as np
import pandas as pd

from deqlab.models.pendulum import PendulumParams
from deqlab.sysid.data import pendulum_dataset
from deqlab.sysid.metrics import nrmse

WASHOUT = 100   # the washout of the §3 run whose models are evaluated (its config.yaml)

ds = pendulum_dataset(PendulumParams(), trajectories=20, steps=400, hold=5, noise_std=0.05, angle_spread=0.1,
                      rate_spread=0.1, signal="multisine", amplitude=3.0, min_dwell=5, max_dwell=40, n_sines=8,
                      f_max=1.5, seed=7)
np.savez(sys.argv[1], u=ds.u, y=ds.y)
if len(sys.argv) > 2:
    pd.DataFrame([{"trajectories": ds.y.shape[0], "steps": ds.y.shape[1], "washout": WASHOUT,
                   "output std [rad]": float(ds.y[:, WASHOUT:].std()),
                   "noise floor NRMSE": nrmse(ds.y_clean, ds.y, WASHOUT)}]).to_csv(sys.argv[2], index=False)
