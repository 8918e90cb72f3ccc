# Makes configs/ importable as the data package `deqlab._configs` in an installed wheel
# (see setup.py); Hydra itself only reads the YAML files here.
