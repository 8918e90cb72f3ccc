"""Hydra multiruns of any experiment through Hydra's configured launcher.

Hydra's launchers (basic, joblib, submitit_local, submitit_slurm) run only under ``hydra.main``
with ``--multirun``, which the compose API cannot do. :func:`sweep` therefore rewrites ``sys.argv``
and calls a ``hydra.main``-wrapped task. With ``version_base="1.3"`` a job does not ``chdir``;
each job writes into ``HydraConfig.get().runtime.output_dir``
(``<output_root>/sweep/<command>/<timestamp>/<job number>/``), never into the working directory.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Sequence

from deqlab.cli.compose import HYDRA_VERSION_BASE, config_dir


def run_job(cfg) -> str:
    """One multirun job: validate, run, save the Result into the job's own folder.

    Returns the job folder (Hydra stores it as the job's return value).
    """
    from hydra.core.hydra_config import HydraConfig

    from deqlab.report.writer import save
    from deqlab.cli.run_folder import RunFolder

    folder = RunFolder.at(Path(HydraConfig.get().runtime.output_dir))
    experiment = importlib.import_module(f"deqlab.demos.{cfg.command}")
    experiment.validate(cfg)
    result = experiment.run(cfg)
    save(result, folder)
    if result.failures:
        (folder.file("failures.txt")).write_text("\n".join(result.failures) + "\n")
    print(f"job done: {folder.path} ({len(result.failures)} non-convergence reports)", flush=True)
    return str(folder.path)


def sweep(experiment: str, overrides: Sequence[str]) -> None:
    """Run ``experiment`` as a Hydra multirun over the comma-separated values in ``overrides``."""
    import hydra

    task = hydra.main(version_base=HYDRA_VERSION_BASE, config_path=str(config_dir()), config_name="config")(run_job)
    saved = sys.argv
    sys.argv = ["deqlab-sweep", "--multirun", f"demo={experiment}", *overrides]
    try:
        task()
    finally:
        sys.argv = saved
