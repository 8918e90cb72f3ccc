"""Sweeps: Hydra multiruns of any command through Hydra's configured launcher.

Hydra's launchers (basic, joblib, submitit_local, submitit_slurm) run only under ``hydra.main`` with
``--multirun``, which the compose API cannot do, so :func:`launch` rewrites ``sys.argv`` and calls a
``hydra.main``-wrapped task. Every job goes through :func:`deqlab.cli.execute.run_job`, the same path as
a single run, into ``<sweep dir>/<num>.partial`` (→ ``<num>`` or ``<num>.failed``). The sweep folder is
created exclusively before Hydra starts, so sweeps started together never share one; one deqlab names is
``<stamp>.partial`` until the sweep ends (→ ``<stamp>`` or ``<stamp>.failed``, :mod:`deqlab.cli.sweeping`).
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from deqlab.cli.compose import HYDRA_VERSION_BASE, config_dir, register_configs


def launch(command: str, overrides: Sequence[str]) -> None:
    """Run the multirun; each job leaves ``job.json`` (its summary) in its folder."""
    import hydra

    from deqlab.cli.execute import run_job

    register_configs()
    task = hydra.main(version_base=HYDRA_VERSION_BASE, config_path=str(config_dir()), config_name="config")(
        lambda cfg: run_job(command, cfg))
    saved, saved_full_error = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    # Hydra's own logging is off: its launch lines were timestamped, named the internal override demo=<command>
    # and ran past any terminal's width, and its job logging left an empty launch.log in every job folder.
    # The sweep prints its own lines instead (run_sweep, run_job).
    sys.argv = ["deqlab-sweep", "--multirun", f"demo={command}", *overrides,
                "hydra/hydra_logging=disabled", "hydra/job_logging=disabled"]
    # Hydra's hydra.main prints a traceback and exits 1 when its launcher raises (a joblib worker that
    # died, say); with HYDRA_FULL_ERROR it re-raises instead, and the caller ends the sweep in one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        task()
    finally:
        sys.argv = saved
        if saved_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full_error
