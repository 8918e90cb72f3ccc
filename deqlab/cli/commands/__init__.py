"""Typer commands. Every module here defines ``register(app, bench)``; :mod:`deqlab.cli` discovers
them, so adding a command means adding a module. Modules import torch and Hydra only inside
command bodies, which keeps ``deqlab --help`` fast."""
