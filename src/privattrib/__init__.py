"""privattrib: can obfuscated images still be attributed, re-identified or restored?

Subpackages (see DESIGN.md): ``obfuscation`` (privacy methods), ``metrics`` (utility and
classification metrics), ``data`` (sources, cache, splits), ``gans`` (GAN zoo), ``attribution``
(source classifiers and the shared training loop), ``attacks`` (re-identification, reconstruction,
DP audit), ``experiments`` (YAML grids, runner, results store), ``report`` (tables, plots, HTML).
Imports stay lazy: ``import privattrib`` is cheap.
"""

__version__ = "0.1.0"
