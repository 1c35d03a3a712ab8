"""The ``none`` method: the unobfuscated baseline, so grids can include "no obfuscation" by name."""

from __future__ import annotations

from privattrib.obfuscation.base import Obfuscation, register_method


@register_method
class Identity(Obfuscation):
    """Returns a copy of the images unchanged."""

    name = "none"
    summary = "no obfuscation (baseline)"
    params_spec = ()
    privacy = "none"
    paper = ""

    def _forward_numpy(self, x, layout, streams):
        return x.copy()

    def _forward_torch(self, x, streams):
        return x.clone()
