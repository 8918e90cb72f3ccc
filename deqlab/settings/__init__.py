"""Typed settings: the one boundary where configuration becomes arguments.

One module per command holds its ``Settings`` dataclass(es): every key, its type, its default and its
domain check (``__post_init__``, raising :class:`~deqlab.errors.InputError`). Standard library only, so
the command line can refuse bad input before torch is imported. The command line merges Hydra's
composed config into these classes (OmegaConf structured mode: unknown keys and wrong types refused);
the demos (:mod:`deqlab.demos`) take the resulting object and nothing else.

Optional methods the command line reads: ``memory_estimates()`` (what a run will allocate, checked against
the memory available) and ``unread()`` (``{key: why}`` for the keys this run leaves unread: a key the user
gave there is refused, :func:`deqlab.cli.compose.refuse_unread`).
"""

from __future__ import annotations

import importlib

#: command (as the config names it) → ``"module:Class"`` of its settings
COMMANDS: dict[str, str] = {
    "converge": "deqlab.settings.converge:Settings",
    "hessian": "deqlab.settings.hessian:Settings",
    "mondeq": "deqlab.settings.mondeq:Settings",
    "nethessian": "deqlab.settings.nethessian:Settings",
    "nethessian_pinn": "deqlab.settings.nethessian_pinn:Settings",
    "lowrank": "deqlab.settings.lowrank:Settings",
    "sysid": "deqlab.settings.sysid:Settings",
    "sysid_evaluate": "deqlab.settings.sysid:EvaluateSettings",
    "sysid_f16": "deqlab.settings.sysid_f16:Settings",
    "bench_solvers": "deqlab.settings.bench:SolversBench",
    "bench_hessian": "deqlab.settings.bench:HessianBench",
    "bench_lowrank": "deqlab.settings.bench:LowrankBench",
    "bench_mondeq": "deqlab.settings.bench:MonDEQBench",
    "bench_nethessian": "deqlab.settings.bench:NethessianBench",
    "bench_sysid": "deqlab.settings.bench:SysidBench",
    "train_digits": "deqlab.settings.train_digits:Settings",
    "bench_curvature": "deqlab.settings.bench_curvature:CurvatureBench",
}


def settings_class(command: str) -> type:
    """The settings dataclass of ``command``."""
    module, name = COMMANDS[command].split(":")
    return getattr(importlib.import_module(module), name)
