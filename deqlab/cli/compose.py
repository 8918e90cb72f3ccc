"""Finding and composing the Hydra configs; checking the values a user can get wrong.

The configs live in the top-level ``configs/`` folder: ``config.yaml`` plus the groups
``experiment/`` (one file per command, ``# @package _global_``), ``solver/`` and ``model/``.
A source checkout (editable install, tests, a helper worktree) reads them from there; a
non-editable install reads the copy shipped as the data package ``deqlab._configs``.

Hydra's compose API is used for single runs (it makes no run folder; :mod:`deqlab.cli.run_folder` does);
sweeps go through ``hydra.main`` in :mod:`deqlab.sweep` so Hydra's launchers work.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from deqlab.errors import ConfigError

HYDRA_VERSION_BASE = "1.3"


def config_dir() -> Path:
    """Absolute path of the configs folder (source checkout first, then the installed copy)."""
    source = Path(__file__).resolve().parents[2] / "configs"
    if (source / "config.yaml").is_file():
        return source
    from importlib.resources import files

    installed = Path(str(files("deqlab._configs")))
    if (installed / "config.yaml").is_file():
        return installed
    raise RuntimeError("deqlab's configs folder was not found (broken installation?)")


def available(group: str) -> list[str]:
    """Names of the options in a config group, e.g. ``available("solver")``."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def compose(experiment: str, overrides: Sequence[str] = (), *, with_hydra: bool = False) -> Any:
    """Compose ``config.yaml`` with ``experiment=<experiment>`` and the user's overrides.

    ``with_hydra`` also composes Hydra's own config (so ``hydra/launcher=...`` overrides are
    checked; the result then carries a ``hydra`` key). Raises :class:`ConfigError` with one readable
    line for a malformed override, an unknown key or an unknown group option (naming the allowed
    values).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    for item in overrides:
        if "=" not in item and not item.startswith("~"):
            raise ConfigError(f"malformed override {item!r}: expected key=value (e.g. seed=3)")
        if item.startswith("+") and "." not in item.split("=", 1)[0]:
            # Hydra would add a top-level key no command reads: refuse the typo. Nested additions
            # (+model_settings.ren.batch_size=6) stay allowed: the experiments check those keys.
            raise ConfigError(f"adding top-level keys is not supported ({item!r}): a command reads only the keys of its config")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base=HYDRA_VERSION_BASE, config_dir=str(config_dir()), job_name="deqlab"):
            return hydra_compose(
                config_name="config", overrides=[f"demo={experiment}", *overrides], return_hydra_config=with_hydra
            )
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(_explain(exc)) from None
    finally:
        GlobalHydra.instance().clear()


def _explain(exc: Exception) -> str:
    """Turn Hydra's multi-line errors into one line, listing choices for a missing group option."""
    text = " ".join(str(exc).split())
    if "Could not find 'hydra/launcher/" in text:
        bad = text.split("'hydra/launcher/", 1)[1].split("'", 1)[0]
        return f"unknown launcher {bad!r}: use basic, joblib, submitit_local or submitit_slurm (pip install deqlab[sweep])"
    for group in ("solver", "model", "demo"):
        if f"Could not find '{group}/" in text or f"In '{group}'" in text and "Could not find" in text:
            bad = text.split(f"'{group}/", 1)[1].split("'", 1)[0] if f"'{group}/" in text else "?"
            return f"unknown {group} {bad!r}; choose one of: {', '.join(available(group))}"
    for marker in ("Could not override '", "Key '"):
        if marker in text and ("Could not override" in text or "is not in struct" in text):
            key = text.split(marker, 1)[1].split("'", 1)[0]
            return f"unknown config key {key!r}: the command has no such setting (see its configs/demo/*.yaml)"
    return f"bad override: {text.split(' Traceback')[0]}"


# --- value checks used by experiments' validate(cfg) ---------------------------------------------

def get(cfg: Any, key: str) -> Any:
    """``cfg`` value at a dotted ``key``; :class:`ConfigError` if it is a required ``???`` value not given."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except MissingMandatoryValue:
        raise ConfigError(f"{key} is required: give {key}=...") from None


def require_int(cfg: Any, key: str, *, minimum: int | None = None) -> int:
    value = get(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {value}")
    return value


def require_float(cfg: Any, key: str, *, minimum: float | None = None, exclusive: bool = False) -> float:
    value = get(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{key} must be finite, got {value}")
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        raise ConfigError(f"{key} must be {'>' if exclusive else '>='} {minimum}, got {value}")
    return value


def require_choice(cfg: Any, key: str, choices: Sequence[str]) -> str:
    value = get(cfg, key)
    if value not in choices:
        raise ConfigError(f"unknown {key} {value!r}; choose one of: {', '.join(choices)}")
    return value


def require_int_list(cfg: Any, key: str, *, minimum: int = 0) -> list[int]:
    values = get(cfg, key)
    try:
        items = list(values)
    except TypeError:
        raise ConfigError(f"{key} must be a list of integers, got {values!r}") from None
    if not items or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in items):
        raise ConfigError(f"{key} must be a non-empty list of integers >= {minimum}, got {values!r}")
    return items


def require_solver(cfg: Any, key: str = "solver") -> None:
    """Check a ``configs/solver/*.yaml`` entry before any work: tolerances finite and ``>= 0``, every
    number finite, and the solver's own argument checks (``memory >= 1``, ``damping`` in ``(0, 1]``, ...)
    run once on a one-dimensional contraction so a bad option is a one-line :class:`ConfigError`."""
    import torch
    from hydra.utils import instantiate

    require_float(cfg, f"{key}.atol", minimum=0.0)
    require_float(cfg, f"{key}.rtol", minimum=0.0)
    require_int(cfg, f"{key}.max_iter", minimum=1)
    for name, value in get(cfg, key).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}.{name} must be finite, got {value}")
    try:
        solver = instantiate(get(cfg, key))
        solver(lambda z: 0.5 * z + 1.0, torch.zeros(1, 1, dtype=torch.float64))
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    except Exception as exc:  # instantiate wraps a bad keyword in its own error type
        raise ConfigError(f"{key}: {' '.join(str(exc).split())}") from None


DTYPES = ("float32", "float64")


def torch_dtype(name: str):
    """``"float32"``/``"float64"`` → the torch dtype."""
    import torch

    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}; choose one of: {', '.join(DTYPES)}")
    return getattr(torch, name)
