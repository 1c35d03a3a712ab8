"""Experiment files: load a YAML spec, validate it with messages that name the bad key, expand the grid.

An experiment file looks like this (see ``docs/experiments.md`` for every key)::

    name: celeba-attribution
    seed: 0
    data:
      size: 64
      sources: {real: {celeba: ../shared/data/celeba}, dcgan: {gan: {arch: dcgan, preset: tiny}}}
      per_class: {train: 2000, val: 200, test: 500}
    classifier: {arch: yu2019, epochs: 10, batch: 64}
    obfuscations: [none, "pixelate:b=[4,8,16]", "dp-pix:b=16,m=[1,16],epsilon=[0.1,0.5]"]
    scenarios: [clean-train, obfuscated-train, fine-tune]
    seeds: [0, 1, 2]

A *cell* of the grid is one (method spec, scenario, seed) and gives one results row.
"""

from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from privattrib.common import DEVICE_PATTERN, stable_hash

#: The class every attribution experiment must have: the camera images.
REAL_CLASS = "real"
#: Attribution scenarios (the attribution module's ``SCENARIOS`` holds the same names).
DEFAULT_SCENARIOS = ("clean-train", "obfuscated-train", "fine-tune")
#: Attack rows that an experiment may add (issue 6, item 4).
KNOWN_ATTACKS = ("reid", "reconstruct")
#: Kinds of source a mapping may name; a plain string is a path whose kind is detected.
SOURCE_KINDS = ("celeba", "folder", "identities", "synthetic", "gan", "gan_run")

_TOP_KEYS = {
    "name", "seed", "device", "data", "classifier", "obfuscations", "scenarios", "seeds",
    "obfuscated_fraction", "attacks", "report", "description", "resources",
}
_DATA_KEYS = {"size", "channels", "sources", "per_class", "cache_dir"}
_GAN_KEYS = {"arch", "preset", "steps", "seed", "batch_size", "overrides"}
#: Options a file source may carry beside its path (handed to the data layer's loader).
_LOADER_OPTIONS = {"limit", "partitions", "crop", "skip_ambient", "strict"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class SpecError(ValueError):
    """An experiment file that cannot be run; the message names the offending key."""


#: The key group of fine-tune rows: the attribution key plus the fine-tune options.
FINE_TUNE_GROUP = "attribution:fine-tune"
#: The key group of the adversarial-training scenarios (``...+adv``): the whole classifier config.
ADV_TRAIN_GROUP = "attribution:adv-train"


def key_group(task: str, scenario: str) -> str:
    """Which task key a row of this task and scenario is stamped with."""
    if task == "attribution" and scenario.endswith("+adv"):
        return ADV_TRAIN_GROUP
    return FINE_TUNE_GROUP if task == "attribution" and scenario == "fine-tune" else task


@dataclass(frozen=True)
class Cell:
    """One point of the grid: a method spec (canonical, no brackets), a scenario and a seed."""

    spec: str
    scenario: str
    seed: int

    @property
    def task(self) -> str:
        """``attribution``, ``reid`` or ``reconstruct``."""
        return self.scenario.split(":")[0] if self.scenario.startswith(("reid", "reconstruct")) else "attribution"

    @property
    def key_group(self) -> str:
        """The task key its row is stamped with (see :meth:`ExperimentSpec.task_keys`)."""
        return key_group(self.task, self.scenario)

    @property
    def cell_id(self) -> str:
        return f"{self.scenario}|{self.spec}|{self.seed}"

    @property
    def file_stem(self) -> str:
        """A file-system-safe, readable and unique name for this cell's row file."""
        slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{self.scenario}__{self.spec}__s{self.seed}")
        return f"{slug[:120]}-{stable_hash(self.cell_id, 8)}"


@dataclass
class ExperimentSpec:
    """A validated experiment file.

    Attributes:
        name: experiment name (letters, digits, ``_.+-``).
        seed: base seed for data splits, GAN training and sampling.
        data: ``{"size", "channels", "sources", "per_class", "cache_dir"}``; ``sources`` maps each class
            name to a normalised source mapping (see :func:`normalise_source`).
        classifier: options handed to the attribution classifier (``arch`` required).
        methods: the obfuscation grid, expanded to canonical spec strings (``none`` first if present).
        scenarios: attribution scenarios to run.
        seeds: one cell per seed (model initialisation, obfuscation noise, fraction choice).
        obfuscated_fraction: share of test images that are obfuscated (1.0, or 0.5 as in Yu et al.).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
        attacks: attack rows to add (``reid``, ``reconstruct``), each with its options.
        resources: what each cell asks a Ray cluster for: ``{"cpus": 1, "gpus": 0.5}`` (fractions
            share a device; ``--gpus-per-cell`` overrides ``gpus``). Placement only: not part of
            any results key, and ignored by the local executor.
        raw: the file as loaded (for the report).
        base_dir: directory relative paths were resolved against.
    """

    name: str
    seed: int
    data: dict
    classifier: dict
    methods: list[str]
    scenarios: list[str]
    seeds: list[int]
    obfuscated_fraction: float = 1.0
    device: str = "auto"
    attacks: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)
    base_dir: str = "."

    @property
    def class_names(self) -> list[str]:
        """Class order: ``real`` first (index 0), then the other sources sorted by name.

        Never the order of the YAML mapping or of a directory listing, so the same set of sources
        always gives the same label indices.
        """
        others = sorted(k for k in self.data["sources"] if k != REAL_CLASS)
        return [REAL_CLASS, *others]

    def data_key(self, *, legacy: bool = False) -> dict:
        """Everything that decides the images and splits (hashing it names the data cache).

        Source paths enter as written in the spec, not as resolved, and ``cache_dir`` not at all,
        so moving a repository (its runs and the data beside it) keeps its results valid.
        ``legacy=True`` gives the key of privattrib before that: resolved paths and ``cache_dir``.
        """
        return _key_form({"seed": self.seed, "data": self.data}, legacy)

    def task_keys(self, *, legacy: bool = False) -> dict[str, dict]:
        """Per key group (``attribution``, ``attribution:fine-tune``, ``reid``, ``reconstruct``),
        everything that, when changed, invalidates that group's finished rows (:func:`key_group`
        says which group a row belongs to).

        The grid itself (methods, scenarios, seeds, an attack's ``methods`` and ``variants``) is not
        part of it: adding a method or a seed only adds cells, and removing one only hides its
        rows. Each task has its own key, so adding an attack to a finished experiment, or changing
        the attribution classifier, leaves the other tasks' rows valid; changing only the fine-tune
        options invalidates only the fine-tune rows.
        """
        from privattrib.attribution.scenarios import ADV_TRAIN_KEY, FINE_TUNE_KEYS

        attribution = {"data": self.data_key(legacy=legacy), "obfuscated_fraction": self.obfuscated_fraction}
        without_adv = {k: v for k, v in self.classifier.items() if k != ADV_TRAIN_KEY}
        keys: dict[str, dict] = {
            # fine-tune options (e.g. fine_tune_epochs) leave clean-train and obfuscated-train rows
            # valid, and adversarial-training options every row but those of the +adv scenarios
            "attribution": {**attribution, "classifier": {k: v for k, v in without_adv.items()
                                                          if k not in FINE_TUNE_KEYS}},
            FINE_TUNE_GROUP: {**attribution, "classifier": without_adv},
            ADV_TRAIN_GROUP: {**attribution, "classifier": self.classifier},
        }
        for name, opts in self.attacks.items():
            keys[name] = _key_form({"attack": name, **{k: v for k, v in opts.items()
                                                       if k not in ("methods", "variants")}}, legacy)
        return keys

    def task_hashes(self, *, legacy: bool = False) -> dict[str, str]:
        return {task: stable_hash(key) for task, key in self.task_keys(legacy=legacy).items()}

    def accepted_hashes(self) -> dict[str, set[str]]:
        """Per key group, every stamp that marks a row as valid for this spec: its own hash, the
        hash of its older key with resolved paths (:meth:`data_key`), and for ``attribution`` also
        the fine-tune group's, whose key contains it (rows written before the fine-tune options had
        a group of their own were stamped with the whole classifier)."""
        hashes, legacy = self.task_hashes(), self.task_hashes(legacy=True)
        accepted = {group: {h, legacy[group]} for group, h in hashes.items()}
        accepted["attribution"] |= {hashes[FINE_TUNE_GROUP], legacy[FINE_TUNE_GROUP]}
        if "fine-tune" not in self.scenarios:
            del accepted[FINE_TUNE_GROUP]  # like a task the spec does not run: its rows are only hidden
        if not any(s.endswith("+adv") for s in self.scenarios):
            del accepted[ADV_TRAIN_GROUP]
        return accepted

    def rows_key(self) -> dict:
        """The whole-spec key that rows were stamped with before per-task keys (kept so that rows
        of an unchanged spec written by an older privattrib still resume; those used resolved
        paths)."""
        return {
            "data": self.data_key(legacy=True),
            "classifier": self.classifier,
            "obfuscated_fraction": self.obfuscated_fraction,
            "attacks": _key_form(self.attacks, legacy=True),
        }

    def rows_hash(self) -> str:
        return stable_hash(self.rows_key())

    def data_hash(self, *, legacy: bool = False) -> str:
        return stable_hash(self.data_key(legacy=legacy))

    def cells(self) -> list[Cell]:
        """Every cell of the grid, seed-major so each seed's clean model is trained first; attack
        cells (scenario ``reid:retrain``, ``reid:no-retrain``, ``reconstruct``) come after.

        ``none`` runs only as ``clean-train`` (with no obfuscation the other two scenarios repeat the
        clean experiment); its row is the clean reference of every plot.
        """
        out: list[Cell] = []
        for seed in self.seeds:
            for spec in self.methods:
                for scenario in self.scenarios:
                    if spec == "none" and scenario != "clean-train":
                        continue
                    out.append(Cell(spec, scenario, seed))
        if "none" in self.methods and "clean-train" not in self.scenarios:
            # The clean row is still wanted as the reference line.
            out = [Cell("none", "clean-train", s) for s in self.seeds] + out
        for seed in self.seeds:
            for name, opts in self.attacks.items():
                for spec in opts.get("methods", self.methods):
                    if name == "reid":
                        for variant in opts["variants"]:
                            if spec == "none" and variant != "retrain":
                                continue  # with clean images both variants are the same experiment
                            out.append(Cell(spec, f"reid:{variant}", seed))
                    elif spec != "none":  # there is nothing to reconstruct from clean images
                        out.append(Cell(spec, "reconstruct", seed))
        return out

    def to_dict(self) -> dict:
        """The resolved spec (absolute paths, expanded grid) as plain data."""
        return {
            "name": self.name,
            "seed": self.seed,
            "device": self.device,
            "data": copy.deepcopy(self.data),
            "classifier": copy.deepcopy(self.classifier),
            "obfuscations": list(self.methods),
            "scenarios": list(self.scenarios),
            "seeds": list(self.seeds),
            "obfuscated_fraction": self.obfuscated_fraction,
            "attacks": copy.deepcopy(self.attacks),
            "report": copy.deepcopy(self.report),
            "resources": dict(self.resources),
        }


def _key_form(obj: Any, legacy: bool) -> Any:
    """A copy of ``obj`` as results are keyed: each source's path as written (``given``) and no
    ``cache_dir``; or, with ``legacy``, the resolved path and ``cache_dir``, as before ``given``."""
    if isinstance(obj, list):
        return [_key_form(v, legacy) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: _key_form(v, legacy) for k, v in obj.items()
           if k != "given" and (legacy or k != "cache_dir")}
    if "given" in obj and not legacy:
        out["path"] = obj["given"]
    return out


# --------------------------------------------------------------------------------------------
# loading and validation


def load_spec(source: str | os.PathLike | dict, *, base_dir: str | os.PathLike | None = None) -> ExperimentSpec:
    """Load and validate an experiment file (a YAML path) or an already-parsed mapping.

    Relative paths in sources are resolved against ``base_dir`` (default: the current directory,
    so ``privattrib run examples/x.yaml`` from the repository root reads ``../shared/data`` as the
    issue's examples write it).

    Raises:
        SpecError: naming the key that is missing or wrong and what is allowed.
        FileNotFoundError: when the YAML file does not exist.
    """
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"experiment file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise SpecError(f"{path}: not valid YAML: {exc}") from exc
        if raw is None:
            raise SpecError(f"{path}: the file is empty")
    return validate_spec(raw, base_dir=base_dir)


def load_builtin_spec(name: str = "demo") -> dict:
    """The YAML of a spec shipped inside the package (``demo``), parsed."""
    from importlib.resources import files

    resource = files("privattrib.experiments").joinpath(f"{name}.yaml")
    if not resource.is_file():
        raise SpecError(f"no built-in experiment named {name!r}")
    return yaml.safe_load(resource.read_text(encoding="utf-8"))


def validate_spec(raw: Any, *, base_dir: str | os.PathLike | None = None) -> ExperimentSpec:
    """Check a parsed experiment mapping and return the resolved :class:`ExperimentSpec`."""
    if not isinstance(raw, dict):
        raise SpecError(f"an experiment file must be a mapping of keys, got {type(raw).__name__}")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise SpecError(
            f"unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}"
        )
    base = Path(base_dir) if base_dir is not None else Path.cwd()

    name = _require(raw, "name", str, "name")
    if not _NAME_RE.match(name):
        raise SpecError(f"name: {name!r} may hold only letters, digits and '_.+-'")
    seed = _int(raw.get("seed", 0), "seed", minimum=0)
    device = raw.get("device", "auto")
    if not isinstance(device, str) or not re.match(DEVICE_PATTERN, device):
        raise SpecError(f"device: {device!r} is not one of auto, cpu, cuda, cuda:N, mps")

    data = _validate_data(_require(raw, "data", dict, "data"), base)
    classifier = _validate_classifier(_require(raw, "classifier", dict, "classifier"), data)
    methods = _validate_methods(raw.get("obfuscations"))
    scenarios = _validate_scenarios(raw.get("scenarios", list(DEFAULT_SCENARIOS)))
    seeds_raw = raw.get("seeds", [seed])
    if isinstance(seeds_raw, int) and not isinstance(seeds_raw, bool):
        seeds_raw = [seeds_raw]
    if not isinstance(seeds_raw, list) or not seeds_raw:
        raise SpecError(f"seeds: must be a non-empty list of integers, got {seeds_raw!r}")
    seeds = [_int(s, f"seeds[{i}]", minimum=0) for i, s in enumerate(seeds_raw)]
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"seeds: {seeds} lists a seed twice")

    fraction = raw.get("obfuscated_fraction", 1.0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise SpecError(f"obfuscated_fraction: must be a number in (0, 1], got {fraction!r}")

    attacks = _validate_attacks(raw.get("attacks"), base, data, methods)
    report = raw.get("report") or {}
    if not isinstance(report, dict):
        raise SpecError(f"report: must be a mapping, got {report!r}")

    resources = validate_resources(raw.get("resources"), "resources")
    return ExperimentSpec(
        name=name, seed=seed, data=data, classifier=classifier, methods=methods,
        scenarios=scenarios, seeds=seeds, obfuscated_fraction=float(fraction), device=device,
        attacks=attacks, report=dict(report), resources=resources, raw=copy.deepcopy(raw), base_dir=str(base),
    )


def validate_resources(value: Any, where: str = "resources") -> dict:
    """``{cpus: 1, gpus: 0.5}`` -> ``{"cpus": 1.0, "gpus": 0.5}``: what one cell asks a Ray cluster for."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{where}: must be a mapping such as {{cpus: 1, gpus: 0.5}}, got {value!r}")
    unknown = set(value) - {"cpus", "gpus"}
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: cpus, gpus")
    return {key: resource_amount(value[key], key, f"{where}.{key}") for key in ("cpus", "gpus") if key in value}


def resource_amount(amount: Any, kind: str, where: str) -> float:
    """A number of CPUs (> 0) or GPUs (>= 0) for one cell: fractions share a device; above 1 only
    whole numbers, as Ray requires."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) \
            or amount < 0 or (kind == "cpus" and amount == 0):
        raise SpecError(f"{where}: must be a number {'> 0' if kind == 'cpus' else '>= 0'} "
                        f"(fractions share a device), got {amount!r}")
    if amount > 1 and float(amount) != int(amount):
        raise SpecError(f"{where}: above 1 it must be a whole number (Ray's rule), got {amount!r}")
    return float(amount)


def _require(mapping: dict, key: str, kind: type, where: str):
    if key not in mapping or mapping[key] is None:
        raise SpecError(f"{where}: missing (required)")
    value = mapping[key]
    if not isinstance(value, kind):
        raise SpecError(f"{where}: must be a {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _int(value: Any, where: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where}: must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise SpecError(f"{where}: must be >= {minimum}, got {value}")
    return int(value)


def _validate_data(data: dict, base: Path) -> dict:
    unknown = set(data) - _DATA_KEYS
    if unknown:
        raise SpecError(f"data: unknown key(s) {sorted(unknown)}; allowed: {sorted(_DATA_KEYS)}")
    size = _int(_require(data, "size", int, "data.size"), "data.size", minimum=8)
    channels = _int(data.get("channels", 3), "data.channels")
    if channels not in (1, 3):
        raise SpecError(f"data.channels: must be 1 or 3, got {channels}")
    sources_raw = _require(data, "sources", dict, "data.sources")
    if REAL_CLASS not in sources_raw:
        raise SpecError(
            f"data.sources: needs a source named {REAL_CLASS!r} (the camera images); got {sorted(sources_raw)}"
        )
    if len(sources_raw) < 2:
        raise SpecError("data.sources: attribution needs at least two sources (real and one fake)")
    sources = {}
    for name, src in sources_raw.items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise SpecError(f"data.sources: source name {name!r} may hold only letters, digits and '_.+-'")
        sources[name] = normalise_source(src, f"data.sources.{name}", base)
    if sources[REAL_CLASS]["kind"] in ("gan", "gan_run"):
        raise SpecError(f"data.sources.{REAL_CLASS}: the real class cannot be a GAN")
    gan_sources = [name for name, src in sources.items() if src["kind"] == "gan"]
    if gan_sources:  # refused here, not after the real data has been decoded for the GAN's training
        from privattrib.gans.registry import check_size

        try:
            check_size(size)
        except ValueError as exc:
            raise SpecError(f"data.size: the GAN source(s) {gan_sources} cannot train at it: {exc}") from None
    per_class_raw = _require(data, "per_class", dict, "data.per_class")
    unknown = set(per_class_raw) - {"train", "val", "test"}
    if unknown:
        raise SpecError(f"data.per_class: unknown key(s) {sorted(unknown)}; allowed: train, val, test")
    per_class = {
        "train": _int(_require(per_class_raw, "train", int, "data.per_class.train"), "data.per_class.train", minimum=1),
        "val": _int(per_class_raw.get("val", 0), "data.per_class.val", minimum=0),
        "test": _int(_require(per_class_raw, "test", int, "data.per_class.test"), "data.per_class.test", minimum=1),
    }
    out = {"size": size, "channels": channels, "sources": sources, "per_class": per_class}
    if data.get("cache_dir") is not None:
        out["cache_dir"] = str((base / str(data["cache_dir"])).resolve())
    return out


def normalise_source(src: Any, where: str, base: Path) -> dict:
    """Turn one source entry into ``{"kind": ..., ...}`` with absolute paths.

    Accepted forms: ``PATH`` (kind detected by the data layer), ``{celeba: PATH}``,
    ``{folder: PATH}``, ``{identities: PATH}`` (these three may add loader options ``limit``,
    ``partitions``, ``crop``, ``skip_ambient``, ``strict``), ``{synthetic: {n_identities, per_identity, seed}}``,
    ``{gan: {arch, preset | steps, seed, batch_size, overrides}}`` (trained on the real TRAIN images) and
    ``{gan_run: PATH}`` (sample an existing GAN run).
    """
    if isinstance(src, (str, os.PathLike)):
        return {"kind": "auto", "path": str((base / str(src)).resolve()), "given": os.path.normpath(str(src))}
    kinds = [k for k in SOURCE_KINDS if isinstance(src, dict) and k in src]
    if not isinstance(src, dict) or len(kinds) != 1:
        raise SpecError(
            f"{where}: must be a path or a mapping naming exactly one kind of {list(SOURCE_KINDS)}, got {src!r}"
        )
    kind = kinds[0]
    value = src[kind]
    extra = {k: v for k, v in src.items() if k != kind}
    if extra and kind not in ("celeba", "folder", "identities"):
        raise SpecError(f"{where}: unknown key(s) {sorted(extra)} beside {kind!r}")
    bad = set(extra) - _LOADER_OPTIONS
    if bad:
        raise SpecError(f"{where}: unknown option(s) {sorted(bad)}; allowed: {sorted(_LOADER_OPTIONS)}")
    if "limit" in extra:
        _int(extra["limit"], f"{where}.limit", minimum=1)
    if kind in ("celeba", "folder", "identities", "gan_run"):
        if not isinstance(value, (str, os.PathLike)):
            raise SpecError(f"{where}.{kind}: must be a path, got {value!r}")
        # ``given`` (the path as written) keys the results; ``path`` is where it is read from now
        out = {"kind": kind, "path": str((base / str(value)).resolve()), "given": os.path.normpath(str(value))}
        if extra:
            out["options"] = extra
        return out
    if kind == "synthetic":
        value = value or {}
        if not isinstance(value, dict):
            raise SpecError(f"{where}.synthetic: must be a mapping of options, got {value!r}")
        for key in ("n_identities", "per_identity", "seed"):
            if key in value:
                _int(value[key], f"{where}.synthetic.{key}", minimum=0 if key == "seed" else 1)
        return {"kind": "synthetic", "options": dict(value)}
    # gan
    if not isinstance(value, dict):
        raise SpecError(f"{where}.gan: must be a mapping such as {{arch: dcgan, preset: tiny}}, got {value!r}")
    unknown = set(value) - _GAN_KEYS
    if unknown:
        raise SpecError(f"{where}.gan: unknown key(s) {sorted(unknown)}; allowed: {sorted(_GAN_KEYS)}")
    arch = value.get("arch")
    if not isinstance(arch, str):
        raise SpecError(f"{where}.gan.arch: missing or not a name (e.g. dcgan, lsgan, wgan-gp, sngan, progan)")
    if "steps" not in value and "preset" not in value:
        raise SpecError(f"{where}.gan: give `preset` (e.g. tiny, gpu-64) or `steps`")
    out = {"kind": "gan", "arch": arch, "seed": _int(value.get("seed", 0), f"{where}.gan.seed", minimum=0)}
    if "steps" in value:
        out["steps"] = _int(value["steps"], f"{where}.gan.steps", minimum=1)
    if "preset" in value:
        if not isinstance(value["preset"], str):
            raise SpecError(f"{where}.gan.preset: must be a preset name, got {value['preset']!r}")
        out["preset"] = value["preset"]
    if "batch_size" in value:
        out["batch_size"] = _int(value["batch_size"], f"{where}.gan.batch_size", minimum=1)
    if value.get("overrides") is not None:
        if not isinstance(value["overrides"], dict):
            raise SpecError(f"{where}.gan.overrides: must be a mapping of recipe options (e.g. {{width: 32}})")
        out["overrides"] = dict(value["overrides"])
    return out


def _validate_classifier(cfg: dict, data: dict | None = None) -> dict:
    arch = cfg.get("arch")
    if not isinstance(arch, str):
        raise SpecError("classifier.arch: missing (e.g. yu2019, resnet18, dct)")
    for key in ("epochs", "batch", "batch_size", "fine_tune_epochs"):
        if key in cfg:
            _int(cfg[key], f"classifier.{key}", minimum=1)
    if "lr" in cfg and (isinstance(cfg["lr"], bool) or not isinstance(cfg["lr"], (int, float)) or cfg["lr"] <= 0):
        raise SpecError(f"classifier.lr: must be a positive number, got {cfg['lr']!r}")
    try:
        from privattrib.attribution.models import available_classifiers
    except ImportError:  # the classifier registry is not importable: checked when the cell runs
        return dict(cfg)
    names = list(available_classifiers())
    if names and arch not in names:
        raise SpecError(f"classifier.arch: unknown classifier {arch!r}; available: {names}")
    if data is not None:
        # Build the classifier and its training options once now, so that a misspelt option, a bad
        # value or an input size the architecture cannot take is refused before the data (and any
        # GAN source) is assembled, not by every cell afterwards.
        from privattrib.attribution.models import make_classifier
        from privattrib.attribution.scenarios import split_classifier_config
        from privattrib.training import TrainConfig

        try:
            name, model_options, train_kwargs, _ = split_classifier_config(dict(cfg))
            TrainConfig(**train_kwargs)
            if train_kwargs.get("keep_best") and data["per_class"]["val"] == 0:
                raise ValueError("keep_best needs validation images: set data.per_class.val >= 1")
            make_classifier(name, len(data["sources"]), data["size"], data["channels"], seed=0, **model_options)
        except (ValueError, TypeError) as exc:
            raise SpecError(f"classifier: {exc}") from exc
    return dict(cfg)


def _validate_methods(value: Any) -> list[str]:
    if value is None:
        raise SpecError("obfuscations: missing (e.g. [none, \"pixelate:b=[4,8]\"])")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise SpecError(f"obfuscations: must be a non-empty list of method specs, got {value!r}")
    from privattrib.obfuscation import expand_grid, make

    methods: list[str] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, str):
            raise SpecError(f"obfuscations[{i}]: must be a spec string such as 'pixelate:b=[4,8]', got {entry!r}")
        try:
            expanded = expand_grid(entry)
            canonical = [make(s).spec for s in expanded]
        except ValueError as exc:
            raise SpecError(f"obfuscations[{i}] ({entry!r}): {exc}") from exc
        for spec in canonical:
            if spec not in methods:
                methods.append(spec)
    if "none" in methods:  # the clean reference first
        methods.remove("none")
        methods.insert(0, "none")
    return methods


def _validate_scenarios(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise SpecError(f"scenarios: must be a non-empty list, allowed {list(DEFAULT_SCENARIOS)}, got {value!r}")
    try:
        from privattrib.attribution.scenarios import SCENARIOS
        allowed = list(SCENARIOS)
    except ImportError:
        allowed = list(DEFAULT_SCENARIOS)
    out = []
    for i, s in enumerate(value):
        if s not in allowed:
            raise SpecError(f"scenarios[{i}]: unknown scenario {s!r}; allowed: {allowed}")
        if s not in out:
            out.append(s)
    return out


_ATTACK_KEYS = {"data", "size", "channels", "arch", "variants", "train_per_identity", "test_per_identity",
                "max_identities", "unet", "methods"}


def _validate_attacks(value: Any, base: Path, data: dict, methods: list[str]) -> dict:
    """``attacks: [reid, reconstruct]`` or ``attacks: {reid: {...options}}`` -> ``{name: resolved options}``.

    Options: ``data`` (an identity source; default the real source, which must carry identities),
    ``size``/``channels`` (default the experiment's), ``arch`` (the attack's network options, e.g.
    ``{arch: mcpherson2016, epochs: 30}``), ``variants`` (reid: ``retrain``, ``no-retrain``),
    ``train_per_identity``/``test_per_identity`` (default 8/2, AT&T), ``max_identities``, ``unet``
    (reconstruct: U-Net options) and ``methods`` (a subset of the grid's method specs; default all).
    """
    if value is None:
        return {}
    if isinstance(value, list):
        value = {name: {} for name in value}
    if not isinstance(value, dict):
        raise SpecError(f"attacks: must be a list such as [reid, reconstruct] or a mapping, got {value!r}")
    out = {}
    for name, opts in value.items():
        where = f"attacks.{name}"
        if name not in KNOWN_ATTACKS:
            raise SpecError(f"attacks: unknown attack {name!r}; allowed: {list(KNOWN_ATTACKS)}")
        if opts is not None and not isinstance(opts, dict):
            raise SpecError(f"{where}: options must be a mapping, got {opts!r}")
        opts = dict(opts or {})
        unknown = set(opts) - _ATTACK_KEYS
        if unknown:
            raise SpecError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_ATTACK_KEYS)}")
        res: dict[str, Any] = {
            "data": normalise_source(opts["data"], f"{where}.data", base) if opts.get("data") is not None
            else data["sources"][REAL_CLASS],
            "size": _int(opts.get("size", data["size"]), f"{where}.size", minimum=8),
            "channels": _int(opts.get("channels", data["channels"]), f"{where}.channels", minimum=1),
            "train_per_identity": _int(opts.get("train_per_identity", 8), f"{where}.train_per_identity", minimum=1),
            "test_per_identity": _int(opts.get("test_per_identity", 2), f"{where}.test_per_identity", minimum=1),
        }
        if res["data"]["kind"] in ("gan", "gan_run"):
            raise SpecError(f"{where}.data: an attack needs an identity set, not a GAN")
        if res["channels"] not in (1, 3):
            raise SpecError(f"{where}.channels: must be 1 or 3, got {res['channels']}")
        if opts.get("max_identities") is not None:
            res["max_identities"] = _int(opts["max_identities"], f"{where}.max_identities", minimum=2)
        for key in ("arch", "unet"):
            if opts.get(key) is not None:
                if isinstance(opts[key], str) and key == "arch":
                    opts[key] = {"arch": opts[key]}
                if not isinstance(opts[key], dict):
                    raise SpecError(f"{where}.{key}: must be a mapping of options, got {opts[key]!r}")
                res[key] = dict(opts[key])
        # Build the networks' options once now, so a typo fails before any cell runs.
        from privattrib.attacks.reconstruction import resolve_unet_cfg
        from privattrib.attacks.reid import check_arch_cfg

        try:
            check_arch_cfg(res.get("arch"), res["size"], res["channels"])
            if name == "reconstruct":
                resolve_unet_cfg(res.get("unet"))
        except ValueError as exc:
            raise SpecError(f"{where}: {exc}") from exc
        if name == "reid":
            variants = opts.get("variants", ["retrain", "no-retrain"])
            if isinstance(variants, str):
                variants = [variants]
            if not isinstance(variants, list) or not variants or any(v not in ("retrain", "no-retrain") for v in variants):
                raise SpecError(f"{where}.variants: a list of retrain, no-retrain; got {variants!r}")
            res["variants"] = list(dict.fromkeys(variants))
        elif "variants" in opts:
            raise SpecError(f"{where}.variants: only reid has variants")
        chosen = opts.get("methods")
        if chosen is not None:
            if isinstance(chosen, str):
                chosen = [chosen]
            from privattrib.obfuscation import expand_grid, make

            try:
                specs = [make(s).spec for entry in chosen for s in expand_grid(entry)]
            except (ValueError, TypeError) as exc:
                raise SpecError(f"{where}.methods: {exc}") from exc
            missing = [s for s in specs if s not in methods]
            if missing:
                raise SpecError(f"{where}.methods: {missing} are not in obfuscations")
            res["methods"] = specs
        out[name] = res
    return out
