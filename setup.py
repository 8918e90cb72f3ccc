"""Packaging glue that pyproject.toml cannot express on its own.

The Hydra configs live in the top-level ``configs/`` folder (fixed project layout), outside the
``deqlab`` package. They are shipped inside the wheel as the data package ``deqlab._configs`` so
that a non-editable install finds them too (see ``deqlab/cli/compose.py``).
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["deqlab", "deqlab.*"]) + ["deqlab._configs"],
    package_dir={"deqlab._configs": "configs"},
    package_data={"deqlab._configs": ["*.yaml", "**/*.yaml"]},
    include_package_data=True,
)
