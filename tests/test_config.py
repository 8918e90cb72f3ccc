"""Every config file composes; the configs are found by an installed package too."""

import importlib

import pytest

from deqlab.config import available, compose, config_dir
from deqlab.errors import ConfigError


@pytest.mark.parametrize("experiment", available("experiment"))
def test_every_experiment_composes_and_validates(experiment):
    cfg = compose(experiment)
    assert cfg.command
    module = importlib.import_module(f"deqlab.experiments.{cfg.command}")
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


def test_configs_ship_with_the_package():
    """A non-editable install reads configs from the data package deqlab._configs."""
    from importlib.resources import files

    shipped = files("deqlab._configs")
    assert (shipped / "config.yaml").is_file()
    assert (shipped / "solver" / "anderson.yaml").is_file()
    assert (config_dir() / "config.yaml").is_file()
