"""Every config file composes; the configs are found by an installed package too."""

import importlib
import os
import subprocess
import sys

import pytest

from deqlab.cli.compose import available, compose, config_dir
from deqlab.errors import ConfigError


@pytest.mark.parametrize("experiment", available("demo"))
def test_every_experiment_composes_and_validates(experiment):
    """Defaults validate; an experiment with required (``???``) values names the first one missing."""
    from omegaconf import OmegaConf

    cfg = compose(experiment)
    assert cfg.command
    module = importlib.import_module(f"deqlab.demos.{cfg.command}")
    missing = OmegaConf.missing_keys(cfg)
    if missing:
        with pytest.raises(ConfigError, match="is required"):
            module.validate(cfg)
    else:
        module.validate(cfg)


@pytest.mark.parametrize("solver", available("solver"))
def test_every_solver_config_instantiates(solver):
    from hydra.utils import instantiate

    from deqlab.solvers import SOLVERS

    cfg = compose("converge", [f"solver={solver}"])
    fn = instantiate(cfg.solver)
    assert fn.name == solver and solver in SOLVERS


@pytest.mark.parametrize("model", available("model"))
def test_every_model_config_composes(model):
    assert compose("converge", [f"model={model}"]).model is not None


def test_unknown_group_option_lists_choices():
    with pytest.raises(ConfigError, match="choose one of: anderson, broyden"):
        compose("converge", ["solver=nope"])


def test_installed_package_finds_its_configs(tmp_path):
    """The installed deqlab (run outside the source tree) finds config.yaml and the groups.

    Under CI's non-editable install this is the data package ``deqlab._configs`` inside the wheel.
    """
    code = (
        "import deqlab.cli.compose as c; d = c.config_dir(); "
        "print(d); assert (d / 'config.yaml').is_file() and (d / 'solver' / 'anderson.yaml').is_file(); "
        "print(c.compose('converge').command)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "converge"


def test_source_configs_are_found():
    assert (config_dir() / "config.yaml").is_file()
