"""The method registry, spec strings and the :class:`Obfuscation` base class.

A *spec string* names a method with its parameters everywhere (Python, CLI, experiment files)::

    dp-pix:b=16,m=16,epsilon=0.5

Adding a method is one decorated class (timm style)::

    @register_method
    class Posterize(Obfuscation):
        name = "posterize"
        params = (Param("levels", int, 4, "grey levels per channel", minimum=2),)
        def _forward_numpy(self, x, layout, streams): ...
        def _forward_torch(self, x, streams): ...
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from privattrib.obfuscation import noise as _noise

__all__ = [
    "Param",
    "Obfuscation",
    "register_method",
    "available_methods",
    "get_method_class",
    "make",
    "parse_spec",
    "format_spec",
    "expand_grid",
    "describe_all",
]

_REGISTRY: dict[str, type["Obfuscation"]] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Param:
    """One parameter of a method: its type, default, and the values it allows.

    ``default=None`` with ``required=False`` means "optional, computed from the others" (e.g. blur's
    sigma). ``choices`` restricts strings; ``minimum``/``exclusive_minimum`` bound numbers;
    ``odd`` demands an odd integer.
    """

    name: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    exclusive_minimum: float | None = None
    odd: bool = False
    choices: tuple[str, ...] | None = None
    required: bool = False
    keep_case: bool = False  # strings such as file paths keep their case (others are lower-cased)

    def allowed(self) -> str:
        """Human description of the allowed values, used in error messages and the method table."""
        if self.choices:
            return " | ".join(self.choices)
        kind = {int: "integer", float: "number", str: "string"}[self.type]
        parts = [("odd " if self.odd else "") + kind]
        if self.minimum is not None:
            parts.append(f">= {_fmt(self.minimum)}")
        if self.exclusive_minimum is not None:
            parts.append(f"> {_fmt(self.exclusive_minimum)}")
        if self.default is None and not self.required:
            parts.append("(optional)")
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """The parameter as JSON-ready data: what ``privattrib methods --json`` lists and what the
        web page builds its form from (``type`` is ``"integer"``, ``"number"`` or ``"string"``)."""
        return {
            "name": self.name,
            "default": self.default,
            "allowed": self.allowed(),
            "help": self.help,
            "type": {int: "integer", float: "number", str: "string"}[self.type],
            "choices": list(self.choices) if self.choices else None,
            "minimum": self.minimum,
            "exclusive_minimum": self.exclusive_minimum,
            "odd": self.odd,
            "optional": self.default is None and not self.required,
            "required": self.required,
        }

    def coerce(self, method: str, value: Any) -> Any:
        """Convert ``value`` (a Python value or its spec-string text) and check it; ValueError if not allowed."""
        if value is None:
            if self.required:
                raise ValueError(f"{method}: parameter '{self.name}' is required ({self.allowed()})")
            return None
        bad = ValueError(f"{method}: {self.name}={value!r} is not allowed; {self.name} must be {self.allowed()}")
        if isinstance(value, str) and self.type is not str:
            text = value.strip()
            if text.lower() in ("none", "null", "") and self.default is None and not self.required:
                return None
            try:
                value = float(text) if self.type is float else _parse_int(text)
            except ValueError:
                raise bad from None
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
                raise bad
            if float(value) != math.floor(float(value)) or not math.isfinite(float(value)):
                raise bad
            value = int(value)
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise bad
            value = float(value)
            if not math.isfinite(value):
                raise bad
        else:
            if not isinstance(value, str):
                raise bad
            value = value.strip() if self.keep_case else value.strip().lower()
        if self.choices is not None and value not in self.choices:
            raise bad
        if self.minimum is not None and value < self.minimum:
            raise bad
        if self.exclusive_minimum is not None and value <= self.exclusive_minimum:
            raise bad
        if self.odd and value % 2 != 1:
            raise bad
        return value


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        as_float = float(text)  # accept "16.0"; a non-integer is refused by the caller's check
        if as_float != math.floor(as_float):
            raise
        return int(as_float)


def _fmt(value: Any) -> str:
    """Canonical text of a parameter value: shortest round-tripping float, no trailing '.0'."""
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


# --------------------------------------------------------------------------- base class
class Obfuscation:
    """A configured privacy method; call it on a batch of uint8 images.

    Subclasses set the class attributes and implement ``_forward_numpy`` (CPU: NumPy/OpenCV, on an
    ``N x H x W x C`` (``"nhwc"``) or ``N x C x H x W`` (``"nchw"``) contiguous uint8 array) and
    ``_forward_torch`` (any device, ``N x C x H x W`` uint8 tensor). Both receive ``streams``, one
    64-bit noise stream per image derived from (seed, spec, key) (see :mod:`privattrib.obfuscation.noise`).
    """

    name: ClassVar[str] = ""
    params_spec: ClassVar[tuple[Param, ...]] = ()
    privacy: ClassVar[str] = "none"  # "none" | "epsilon-DP (m-neighbourhood)" | "d_X-privacy"
    paper: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    randomized: ClassVar[bool] = False
    #: A spec that builds, for the listing of methods whose parameters have no usable default
    #: (e.g. a model checkpoint); None: ``make(name)``.
    example: ClassVar[str | None] = None
    #: A parameter names a file on this machine (e.g. a model checkpoint): such methods are not
    #: offered to the users of a served page, who must not make the server open its files.
    reads_local_files: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        known = {p.name for p in self.params_spec}
        unknown = sorted(set(params) - known)
        if unknown:
            allowed = ", ".join(p.name for p in self.params_spec) or "none"
            raise ValueError(f"{self.name}: unknown parameter(s) {', '.join(unknown)}; allowed: {allowed}")
        resolved = {}
        for p in self.params_spec:
            resolved[p.name] = p.coerce(self.name, params.get(p.name, p.default))
        self.params: dict[str, Any] = resolved
        self._check()

    # -- hooks --------------------------------------------------------------------------------
    def _check(self) -> None:
        """Cross-parameter checks; raise ValueError."""

    def _describe_extra(self) -> dict[str, Any]:
        return {}

    def _forward_numpy(self, x: np.ndarray, layout: str, streams: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _forward_torch(self, x, streams):  # x: torch uint8 N x C x H x W
        raise NotImplementedError

    # -- public -------------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        """Canonical spec string (all resolved parameters, optional ones left out when unset)."""
        return format_spec(self.name, {k: v for k, v in self.params.items() if v is not None})

    @property
    def epsilon(self) -> float | None:
        """The privacy parameter, or None for a method without a formal guarantee."""
        return self.params.get("epsilon") if self.privacy != "none" else None

    @property
    def noise_backend(self) -> str | None:
        return self.params.get("noise") if self.randomized else None

    def describe(self) -> dict[str, Any]:
        """Everything that defines the output: name, parameters, privacy notion and epsilon, paper."""
        out: dict[str, Any] = {
            "name": self.name,
            "spec": self.spec,
            "parameters": dict(self.params),
            "privacy": self.privacy,
            "epsilon": self.epsilon,
            "noise_backend": self.noise_backend,
            "reproducible_from_seed": self.noise_backend != "secure",
            "paper": self.paper,
        }
        out.update(self._describe_extra())
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Obfuscation) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def __call__(self, images, seed: int | None = None, keys: Sequence[Any] | None = None):
        """Obfuscate a batch.

        Args:
            images: uint8 images, one of: torch tensor ``(N, C, H, W)`` on any device; NumPy array
                ``(N, H, W, C)``; a single NumPy image ``(H, W)`` or ``(H, W, C)``. C is 1 or 3 (any C works).
            seed: non-negative integer; the noise of an image is a function of (seed, this
                method's spec, key) only: other parameters get independent noise.
                ``None`` (the default) draws a fresh secret seed from the OS, so a plain call never
                uses a public seed. Anyone who knows the seed can regenerate the ``fast`` noise and
                subtract it: pass one for reproducible experiments, keep it secret when publishing.
            keys: one key (int or str) per image; default: the image's index in the batch.

        Returns:
            The obfuscated images, same type, device, shape and dtype as ``images``.
        """
        from privattrib.obfuscation import _batch

        batch = _batch.normalize(images, self.name)
        streams = _noise.image_streams(_noise.resolve_seed(seed), keys, batch.n, salt=self.spec)
        if batch.n == 0:
            return images
        if batch.is_torch:
            out = self._forward_torch(batch.data, streams)
        else:
            out = self._forward_numpy(batch.data, batch.layout, streams)
        return batch.restore(out)


# --------------------------------------------------------------------------- registry
def register_method(cls: type[Obfuscation]) -> type[Obfuscation]:
    """Class decorator: make a method available by its ``name`` in specs, the CLI and experiments."""
    if not issubclass(cls, Obfuscation):
        raise TypeError("register_method expects a subclass of Obfuscation")
    if not cls.name or not _NAME_RE.match(cls.name):
        raise ValueError(f"method name {cls.name!r} must be lower-case letters, digits, '-' or '_'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a method named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def available_methods() -> list[str]:
    """Names of every registered method, in registration order."""
    return list(_REGISTRY)


def get_method_class(name: str) -> type[Obfuscation]:
    try:
        return _REGISTRY[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(_REGISTRY)}") from None


# --------------------------------------------------------------------------- specs
def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside [...] lists."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise ValueError(f"unbalanced '[' in {text!r}")
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _parse_raw(spec: str) -> tuple[str, dict[str, str]]:
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a method spec must be a non-empty string like 'dp-pix:b=16,m=16,epsilon=0.5', got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    get_method_class(name)  # unknown names fail here, listing what exists
    raw: dict[str, str] = {}
    for item in _split_top_level(rest):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            raise ValueError(f"{name}: expected key=value in spec, got {item!r}")
        if key in raw:
            raise ValueError(f"{name}: parameter {key!r} given twice")
        raw[key] = value.strip()
    return name, raw


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"dp-pix:b=16,m=16,epsilon=0.5"`` -> ``("dp-pix", {"b": 16, "m": 16, "epsilon": 0.5})``.

    Only the parameters written in the spec are returned (typed and validated); defaults are
    filled in by :func:`make`. Lists (``m=[1,16]``) are for :func:`expand_grid` and refused here.
    """
    name, raw = _parse_raw(spec)
    cls = get_method_class(name)
    by_name = {p.name: p for p in cls.params_spec}
    out: dict[str, Any] = {}
    for key, text in raw.items():
        if key not in by_name:
            allowed = ", ".join(by_name) or "none"
            raise ValueError(f"{name}: unknown parameter {key!r}; allowed: {allowed}")
        if text.startswith("["):
            raise ValueError(f"{name}: {key}={text} is a list; use expand_grid() for grids")
        out[key] = by_name[key].coerce(name, text)
    return name, out


def format_spec(name: str, params: dict[str, Any]) -> str:
    """Inverse of :func:`parse_spec`: parameters in the method's declared order."""
    cls = get_method_class(name)
    order = [p.name for p in cls.params_spec]
    items = [f"{k}={_fmt(params[k])}" for k in order if k in params and params[k] is not None]
    return cls.name + (":" + ",".join(items) if items else "")


def make(spec: "str | Obfuscation", **overrides: Any) -> Obfuscation:
    """Build a configured method from a spec string (and/or keyword parameters).

    >>> make("dp-pix:b=16,m=16,epsilon=0.5").spec
    'dp-pix:b=16,m=16,epsilon=0.5,noise=fast'
    >>> make("pixelate", b=8).spec
    'pixelate:b=8'
    """
    if isinstance(spec, Obfuscation):
        if not overrides:
            return spec
        spec = spec.spec
    name, params = parse_spec(spec)
    params.update(overrides)
    return get_method_class(name)(**params)


def expand_grid(spec: str) -> list[str]:
    """Expand bracket lists into the canonical spec of every combination (in parameter order).

    >>> len(expand_grid("dp-pix:b=16,m=[1,16],epsilon=[0.1,0.5]"))
    4
    """
    name, raw = _parse_raw(spec)
    keys = list(raw)
    choices = []
    for key in keys:
        text = raw[key]
        if text.startswith("[") and text.endswith("]"):
            values = [v.strip() for v in text[1:-1].split(",") if v.strip()]
            if not values:
                raise ValueError(f"{name}: empty list for {key}")
            choices.append(values)
        else:
            choices.append([text])
    specs, seen = [], set()
    for combo in itertools.product(*choices):
        body = ",".join(f"{k}={v}" for k, v in zip(keys, combo))
        canonical = make(f"{name}:{body}" if body else name).spec
        if canonical not in seen:
            seen.add(canonical)
            specs.append(canonical)
    return specs


def describe_all() -> list[dict[str, Any]]:
    """One row per registered method: parameters (:meth:`Param.as_dict`: defaults, allowed values,
    types and bounds), privacy, paper."""
    rows = []
    for name, cls in _REGISTRY.items():
        rows.append(
            {
                "name": name,
                "summary": cls.summary,
                "parameters": [p.as_dict() for p in cls.params_spec],
                "privacy": cls.privacy,
                "paper": cls.paper,
                "example": cls.example or make(name).spec,
            }
        )
    return rows
