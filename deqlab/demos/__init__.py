"""One module per command: ``run(settings) -> Result``.

``settings`` is the command's typed settings dataclass (:mod:`deqlab.settings`), already checked; a demo
reads it by attribute, calls library code, and returns a plain :class:`~deqlab.report.result.Result`
(tables, arrays, figure callables, notes, failures) that :mod:`deqlab.report` prints and saves.
The same ``run`` serves the command line, every sweep job and the tests.
"""
