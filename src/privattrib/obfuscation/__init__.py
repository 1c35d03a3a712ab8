"""Privacy obfuscations (DESIGN.md section 2): a registry by name, spec strings, one file per family.

>>> from privattrib.obfuscation import make
>>> ob = make("dp-pix:b=16,m=16,epsilon=0.5")
>>> out = ob(images, seed=0)          # torch N x C x H x W (any device) | NumPy N x H x W x C | one H x W (x C)
>>> ob.describe()["privacy"]
'epsilon-DP (m-neighbourhood)'
"""

from privattrib.obfuscation.base import (
    Obfuscation,
    Param,
    available_methods,
    describe_all,
    expand_grid,
    format_spec,
    get_method_class,
    make,
    parse_spec,
    register_method,
)

# Importing the families registers their methods (order = listing order).
from privattrib.obfuscation import identity as _identity  # noqa: E402,F401
from privattrib.obfuscation import pixelate as _pixelate  # noqa: E402,F401
from privattrib.obfuscation import blur as _blur  # noqa: E402,F401
from privattrib.obfuscation import svd as _svd  # noqa: E402,F401
from privattrib.obfuscation import adversarial as _adversarial  # noqa: E402,F401

__all__ = [
    "Obfuscation",
    "Param",
    "available_methods",
    "describe_all",
    "expand_grid",
    "format_spec",
    "get_method_class",
    "make",
    "parse_spec",
    "register_method",
]
