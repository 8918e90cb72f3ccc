"""One module per demo: ``validate(cfg)`` checks user input, ``run(cfg) -> Result`` computes.

Experiments read an OmegaConf config, call library code, and return plain data
(:class:`deqlab.report.result.Result`); they print nothing and write no files.
"""
