"""The attack grid of docs/results-attacks.md: re-identification and reconstruction on Extended
Yale B and CelebA identities, for every obfuscation of issue 6, three seeds.

Three steps (each resumable; rows are appended to JSONL files keyed by a hash of the cell)::

    # 1. decode the real data once into small uint8 arrays (never committed: .cache/ is ignored)
    python benchmarks/reid_grid.py prepare --yaleb ../shared/data/yaleb --celeba ../shared/data/celeba

    # 2. run the cells (sharded: several processes share one GPU well, the networks are small;
    #    --shard auto in each instead lets every process take the next free cell)
    python benchmarks/reid_grid.py run --device cuda --shard 0/4 &  ... --shard 3/4
    # CPU-sized: 32 px sets, 20 epochs (runs/attacks-cpu32.sh does this for Yale B)
    python benchmarks/reid_grid.py prepare --yaleb ../shared/data/yaleb --yaleb-size 32 --sets .cache/attacks-grid-32
    python benchmarks/reid_grid.py run --sets .cache/attacks-grid-32 --out runs/attacks-grid-cpu32 --device cpu \
        --protocols yaleb-8/2 --epochs-scale 0.5 --tag cpu32 --compact --no-reconstruct

    # 3. the markdown tables
    python benchmarks/reid_grid.py table > docs/results-attacks-tables.md

Adversarial perturbation (``adv``, docs/adversarial.md): a grid method written ``adv:eps=4,...``
(no ``model``) attacks a surrogate trained per protocol and seed on the clean training split with
its own weight seed (``--surrogate-seed-offset``), written to ``OUT/surrogates``; the cells add
``target=reid,model=<that checkpoint>``. ``--transfer-archs resnet18:width=32`` adds a
``no-retrain`` cell of that network for every method (a model the perturbation never saw).
``adv-gen:eps=4`` trains a one-pass generator against that surrogate on the split's clean
training faces (``--generator-epochs``)::

    python benchmarks/reid_grid.py run --sets .cache/attacks-grid-32 --out runs/adv-reid-cpu32 --device cpu \
        --protocols yaleb-48/12 --epochs-scale 0.34 --tag cpu32-adv --compact --no-reconstruct \
        --methods none "adv:eps=2" "adv:eps=4" "adv:eps=8" --transfer-archs resnet18:width=32

Protocols: ``yaleb-8/2`` (AT&T-like: 8 training and 2 test images per person, 38 people),
``yaleb-48/12`` (a larger training set from Yale B's 64 lighting conditions), ``celeba-4/1``
(500 CelebA identities drawn with seed 0 from the 2,000 x 5 subset, 4 training / 1 test image),
``celeba-500of2000-4/1`` (500 targets drawn per seed from all 2,000 people, so that
``--pretrain-others`` can give a stronger attacker the other 1,500 people to pretrain on).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_SETS = Path(".cache/attacks-grid")
DEFAULT_OUT = Path("runs/attacks-grid")

#: run order: Fan 2018's comparison first (a CPU run that stops early still answers it)
METHODS = [
    "none",
    "pixelate:b=16",
    "dp-pix:b=16,m=16,epsilon=0.1",
    "dp-pix:b=16,m=16,epsilon=0.3",
    "dp-pix:b=16,m=16,epsilon=0.5",
    "dp-pix:b=16,m=16,epsilon=1",
    "pixelate:b=4",
    "dp-pix:b=4,m=1,epsilon=0.1",
    "dp-pix:b=4,m=1,epsilon=0.3",
    "dp-pix:b=4,m=1,epsilon=0.5",
    "dp-pix:b=4,m=1,epsilon=1",
    "pixelate:b=8",
    "blur:k=15",
    "blur:k=45",
    "blur:k=99",
    "dp-blur:b=4,m=16,epsilon=0.5,k=99",
    "svd-mp:k=4,epsilon=1",
    "svd-mp:k=4,epsilon=0.1",
]
#: table order
DISPLAY = ["none", "pixelate:b=4", "pixelate:b=8", "pixelate:b=16", "blur:k=15", "blur:k=45", "blur:k=99",
           "dp-pix:b=16,m=16,epsilon=0.1", "dp-pix:b=16,m=16,epsilon=0.3", "dp-pix:b=16,m=16,epsilon=0.5",
           "dp-pix:b=16,m=16,epsilon=1", "dp-pix:b=4,m=1,epsilon=0.1", "dp-pix:b=4,m=1,epsilon=0.3",
           "dp-pix:b=4,m=1,epsilon=0.5", "dp-pix:b=4,m=1,epsilon=1", "dp-blur:b=4,m=16,epsilon=0.5,k=99",
           "svd-mp:k=4,epsilon=1",
           "svd-mp:k=4,epsilon=0.1"]
RECON_METHODS = [
    "pixelate:b=4",
    "pixelate:b=8",
    "pixelate:b=16",
    "blur:k=45",
    "blur:k=99",
    "dp-pix:b=16,m=16,epsilon=0.5",
    "dp-pix:b=16,m=16,epsilon=1",
    "dp-blur:b=4,m=16,epsilon=0.5,k=99",
    "svd-mp:k=4,epsilon=1",
]
#: name -> (data file, train per identity, test per identity, epochs, batch size)
PROTOCOLS = {
    "yaleb-8/2": ("yaleb.npz", 8, 2, 40, 32),
    "celeba-4/1": ("celeba.npz", 4, 1, 30, 64),
    "yaleb-48/12": ("yaleb.npz", 48, 12, 30, 64),
    "celeba-500of2000-4/1": ("celeba-all.npz", 4, 1, 30, 64),
}
#: protocols whose targets are a subset of the set's people (the rest can serve for pretraining)
MAX_IDENTITIES = {"celeba-500of2000-4/1": 500}
#: Fan 2018, Table 3 (AT&T, 40 people, 8 train / 2 test, b = 16, m = 16), top-1 accuracy in %.
FAN2018 = {
    "none": None,
    "pixelate:b=16": 96.25,
    "dp-pix:b=16,m=16,epsilon=0.1": 3.75,
    "dp-pix:b=16,m=16,epsilon=0.3": 18.75,
    "dp-pix:b=16,m=16,epsilon=0.5": 43.75,
    "dp-pix:b=16,m=16,epsilon=1": 77.5,
}


# --------------------------------------------------------------------------- prepare
def prepare(args) -> None:
    from privattrib.data import load_source

    out = Path(args.sets)
    out.mkdir(parents=True, exist_ok=True)
    if args.yaleb:
        faces = load_source(str(args.yaleb), size=args.yaleb_size)
        _save(out / "yaleb.npz", faces, {"source": "Extended Yale B (cropped)", "size": args.yaleb_size})
        print(f"yaleb: {faces.images.shape}, {faces.num_classes} people")
    if args.celeba:
        faces = load_source({"celeba": str(args.celeba)}, size=args.celeba_size)
        ids = np.asarray(faces.identities)
        people, counts = np.unique(ids, return_counts=True)
        eligible = people[counts >= 5]
        rng = np.random.default_rng(0)
        chosen = np.sort(rng.choice(eligible, size=min(args.celeba_identities, len(eligible)), replace=False))
        keep = np.flatnonzero(np.isin(ids, chosen))
        part = faces.subset(keep)
        _save(out / "celeba.npz", part, {"source": "CelebA img_align_celeba, yu2019 crop",
                                         "size": args.celeba_size, "identities_drawn": len(chosen)})
        print(f"celeba: {part.images.shape}, {len(chosen)} identities")
        every = faces.subset(np.flatnonzero(np.isin(ids, eligible)))
        _save(out / "celeba-all.npz", every, {"source": "CelebA img_align_celeba, yu2019 crop",
                                              "size": args.celeba_size, "identities": len(eligible)})
        print(f"celeba-all: {every.images.shape}, {len(eligible)} identities")


def _save(path: Path, data, info: dict) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, images=data.images, labels=data.labels, identities=data.identities,
                        keys=np.array(data.keys), class_names=np.array(data.class_names),
                        info=np.array(json.dumps(info)))
    os.replace(tmp, path)


def _load(path: Path):
    from privattrib.data.dataset import LabeledImages

    z = np.load(path, allow_pickle=False)
    return LabeledImages(images=z["images"], labels=z["labels"].astype(np.int64),
                         class_names=[str(s) for s in z["class_names"]], keys=[str(s) for s in z["keys"]],
                         identities=z["identities"].astype(np.int64), meta=json.loads(str(z["info"])))


# --------------------------------------------------------------------------- cells
def build_cells(args) -> list[dict]:
    seeds = args.seeds
    cells: list[dict] = []
    # --protocols in the order given: a run cut short by its time limit has done the first ones
    protocols = list(dict.fromkeys(args.protocols)) if args.protocols else list(PROTOCOLS)
    methods = METHODS if not args.methods else args.methods
    if args.recon_only:
        protocols = []
    # priority order: the paper's protocol first, then CelebA, the larger Yale B split,
    # reconstruction, and the stronger network
    for protocol in protocols:
        pretrained = bool(args.pretrain_others) and protocol in MAX_IDENTITIES
        # "only": every model of the protocol is pretrained (the scratch ones recognise almost nobody)
        kinds = ([] if pretrained and args.pretrain_others == "only" else [{}]) + \
                ([{"pretrain": "others"}] if pretrained else [])
        for seed in seeds:
            for method in methods:
                for kind in kinds:
                    for variant in ("retrain", "no-retrain"):
                        if variant == "no-retrain" and method == "none":
                            continue
                        if variant == "no-retrain" and kind and args.pretrain_others == "also":
                            continue  # "also" adds the pretrained attacker only, as it always has
                        cells.append({"attack": "reid", "protocol": protocol, "method": method, "seed": seed,
                                      "variant": variant, "arch": "mcpherson2016", **kind})
    if not args.no_reconstruct:
        for seed in seeds:
            recon_methods = args.recon_methods or RECON_METHODS
            if recon_methods == ["all"]:  # every obfuscation of the re-identification tables
                recon_methods = [m for m in METHODS if m != "none"]
            for method in recon_methods:
                cells.append({"attack": "reconstruct", "protocol": args.recon_protocol, "method": method,
                              "seed": seed, "arch": "mcpherson2016", "unet_base": args.unet_base})
    if args.resnet and not args.recon_only:
        for protocol in [p for p in ("yaleb-8/2", "celeba-4/1") if p in protocols]:
            for seed in seeds:
                for method in methods:
                    cells.append({"attack": "reid", "protocol": protocol, "method": method, "seed": seed,
                                  "variant": "retrain", "arch": "resnet18"})
    for spec in getattr(args, "transfer_archs", None) or []:
        arch, options = parse_arch(spec)
        for protocol in protocols:
            only_pretrained = args.pretrain_others == "only" and protocol in MAX_IDENTITIES
            for seed in seeds:
                for method in methods:  # "none" too: the network's clean accuracy, to read the others against
                    cells.append({"attack": "reid", "protocol": protocol, "method": method, "seed": seed,
                                  "variant": "no-retrain", "arch": arch, "arch_options": options,
                                  **({"pretrain": "others"} if only_pretrained else {})})
    if args.arch_only:
        cells = [c for c in cells if c["arch"] == args.arch_only]
    return cells


def parse_arch(text: str) -> tuple[str, dict]:
    """``resnet18:width=32`` -> ``("resnet18", {"width": 32})`` (integer, float or string values)."""
    name, _, rest = text.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        for kind in (int, float):
            try:
                options[key.strip()] = kind(value)
                break
            except ValueError:
                continue
        else:
            options[key.strip()] = value.strip()
    return name.strip(), options


def arch_label(cell_or_row: dict) -> str:
    options = cell_or_row.get("arch_options") or {}
    return cell_or_row["arch"] + (f" ({', '.join(f'{k} {v}' for k, v in options.items())})" if options else "")


def is_adv(method: str) -> bool:
    """``adv`` (PGD) and ``adv-gen`` (the one-pass generator) grid methods attack a surrogate."""
    return method.split(":")[0] in ("adv", "adv-gen")


def surrogate_path(args, protocol: str, seed: int) -> Path:
    slug = protocol.replace("/", "-")
    pretrained = "-pre" if surrogate_pretrained(args, protocol) else ""
    return Path(args.out) / "surrogates" / \
        f"{slug}-s{seed}-{args.surrogate_arch}-w{seed + args.surrogate_seed_offset}{pretrained}.pt"


def surrogate_pretrained(args, protocol: str) -> bool:
    """``--surrogate-pretrain-others``: the surrogate learns the other people first (target-subset
    protocols only; elsewhere nobody is left out to learn from)."""
    return bool(getattr(args, "surrogate_pretrain_others", False)) and protocol in MAX_IDENTITIES


def resolve_method(method: str, cell: dict, args, data, n_train: int, n_test: int, arch_cfg: dict) -> str:
    """A grid method as the cell runs it: ``adv`` methods get the surrogate of their protocol and
    seed (trained now if it is not there yet) and ``target=reid``."""
    if not is_adv(method):
        return method
    from privattrib.attacks.reid import train_reid_surrogate
    from privattrib.common import file_lock

    path = surrogate_path(args, cell["protocol"], cell["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_suffix(".lock")):  # shards that need it at once: one trains, the others wait
        if not path.is_file():
            print(f"training the surrogate {path}", flush=True)
            train_reid_surrogate(data, path, seed=cell["seed"],
                                 surrogate_seed=cell["seed"] + args.surrogate_seed_offset,
                                 arch_cfg={**arch_cfg, "arch": args.surrogate_arch}, train_per_identity=n_train,
                                 test_per_identity=n_test, max_identities=MAX_IDENTITIES.get(cell["protocol"]),
                                 device=args.device, pretrain_others=surrogate_pretrained(args, cell["protocol"]))
    name, _, body = method.partition(":")
    if name == "adv":
        return f"adv:{body + ',' if body else ''}target=reid,model={path}"
    # adv-gen:eps=E: a generator trained on the split's clean training faces against that surrogate
    from privattrib.attacks.reid import split_identity_set
    from privattrib.obfuscation.adversarial import train_perturbation_generator

    eps = generator_eps(method)
    gen_path = path.with_name(path.stem + f"-gen-eps{eps:g}-e{args.generator_epochs}.pt")
    if not gen_path.is_file():
        print(f"training the generator {gen_path}", flush=True)
        train, _ = split_identity_set(data, n_train, n_test, seed=cell["seed"],
                                      max_identities=MAX_IDENTITIES.get(cell["protocol"]))
        train_perturbation_generator(path, train.images, gen_path, eps=eps, epochs=args.generator_epochs,
                                     seed=cell["seed"], device=args.device)
    return f"adv-gen:model={gen_path}"


def generator_eps(method: str) -> float:
    """The budget of a grid method ``adv-gen[:eps=E]`` (default 4): the only option it takes."""
    _, _, body = method.partition(":")
    options = dict(item.partition("=")[::2] for item in filter(None, body.split(",")))
    if set(options) - {"eps"}:
        raise ValueError(f"{method}: a grid's adv-gen takes eps=E only (an L-inf generator per split), "
                         f"got {', '.join(sorted(options))}")
    try:
        eps = float(options.get("eps", 4))
    except ValueError:
        raise ValueError(f"{method}: eps must be a number >= 1, got {options['eps']!r}") from None
    if not eps >= 1:
        raise ValueError(f"{method}: eps must be a number >= 1, got {eps:g}")
    return eps


def check_grid_methods(methods: list[str]) -> None:
    """Refuse a bad method before any cell runs (a cell's error would only show in its row):
    every spec is parsed, ``adv`` with a placeholder surrogate, which the grid adds itself."""
    from privattrib.obfuscation import make

    for method in methods:
        name, _, body = method.partition(":")
        if name == "adv-gen":
            generator_eps(method)
        elif name == "adv":
            given = {item.partition("=")[0].strip() for item in filter(None, body.split(","))}
            if given & {"model", "target"}:
                raise ValueError(f"{method}: the grid sets model= and target=reid itself (a surrogate per split)")
            make(f"adv:{body + ',' if body else ''}target=reid,model=surrogate.pt")
        else:
            make(method)


def cell_key(cell: dict, args) -> str:
    from privattrib.common import stable_hash

    extra = {"surrogate": [args.surrogate_arch, args.surrogate_seed_offset]} if is_adv(cell["method"]) else {}
    if is_adv(cell["method"]) and surrogate_pretrained(args, cell["protocol"]):
        extra["surrogate"].append("pretrained on others")
    if cell["method"].startswith("adv-gen"):
        extra["generator_epochs"] = args.generator_epochs
    return stable_hash({**cell, "epochs_scale": args.epochs_scale, "size": args.tag, **extra})


def check_sets(out: Path, sets_dir: Path) -> None:
    """Refuse to mix rows of different prepared sets in one --out: the cell keys do not include
    the sets (rows made at 32 px would count as done for a 96 px run with the same tag). A set file
    added since is fine; one that changed size, or another sets folder, is refused."""
    from privattrib.common import atomic_write_text

    now = {p.name: p.stat().st_size for p in sorted(sets_dir.glob("*.npz"))}
    path = out / "sets.json"
    old = json.loads(path.read_text()) if path.is_file() else {"sets": str(sets_dir.resolve()), "files": {}}
    changed = {n: (size, now.get(n)) for n, size in old["files"].items() if now.get(n) != size}
    if old["sets"] != str(sets_dir.resolve()) or changed:
        raise SystemExit(f"{out} holds rows made from the sets {old['sets']} {old['files']}, not "
                         f"{sets_dir.resolve()} {now}: use another --out")
    # shards start together on one --out: a plain write could be read half-written by another
    atomic_write_text(path, json.dumps({"sets": old["sets"], "files": {**old["files"], **now}}, indent=1))


def done_keys(out: Path) -> set[str]:
    keys = set()
    for path in out.glob("rows-*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                if "error" not in row:  # failed cells are tried again
                    keys.add(row["cell_key"])
            except (json.JSONDecodeError, KeyError):
                continue  # a line cut by an interrupted write: that cell is simply redone
    return keys


class CellClaims:
    """``--shard auto``: which cells this process has taken. A cell is taken by holding an exclusive
    ``flock`` on ``OUT/claims/<cell key>.claim`` while it runs; the kernel drops it when the process
    ends, even by SIGKILL, so a dead process's cells are free again without any bookkeeping. Claim
    files are never deleted (deleting one that another process has opened would let a third lock
    a new file of the same name). Locks over NFS depend on its lock daemon."""

    def __init__(self, out: Path) -> None:
        self.folder = out / "claims"
        self.folder.mkdir(exist_ok=True)
        self.out = out
        self.held: dict[str, int] = {}
        self.failed: list[int] = []

    def take(self, key: str) -> bool:
        """True when this process now holds ``key`` and its row is not written yet."""
        import fcntl

        fd = os.open(self.folder / f"{key}.claim", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process is running it
            os.close(fd)
            return False
        if key in done_keys(self.out):  # finished by another process after this one listed its cells
            os.close(fd)
            return False
        self.held[key] = fd
        return True

    def release(self, key: str, failed: bool = False) -> None:
        """Let the cell go once its row is written; a failed cell stays held until this process
        ends, so the other processes of the run do not each repeat the same failure."""
        fd = self.held.pop(key)
        if failed:
            self.failed.append(fd)
        else:
            os.close(fd)


def run(args) -> None:
    import torch

    from privattrib.attacks import run_reconstruct_cell, run_reid_cell

    torch.set_num_threads(max(1, min(args.threads, os.cpu_count() or 1)))
    auto = args.shard == "auto"
    shard, shards = (0, 1) if auto else (int(x) for x in args.shard.split("/"))
    try:  # before any folder or cell: a bad method would otherwise fail in every cell of it
        check_grid_methods(args.methods or METHODS)
    except ValueError as exc:
        sys.exit(f"--methods: {exc}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grids").mkdir(exist_ok=True)
    check_sets(out, Path(args.sets))
    cells = build_cells(args)[shard::shards]
    finished = done_keys(out)
    todo = [c for c in cells if cell_key(c, args) not in finished]
    print(f"{'auto' if auto else f'shard {shard}/{shards}'}: {len(cells)} cells, {len(cells) - len(todo)} already "
          "done", flush=True)
    # every set the cells need must exist now, not when the first cell of a missing one comes up
    missing = sorted({PROTOCOLS[c["protocol"]][0] for c in todo} - {p.name for p in Path(args.sets).glob("*.npz")})
    if missing:
        sys.exit(f"{args.sets}: missing {', '.join(missing)} (make them with `prepare`, or choose "
                 f"--protocols whose sets are there)")
    sets: dict[str, object] = {}
    name = f"{socket.gethostname()}-{os.getpid()}" if auto else str(shard)
    claims = CellClaims(out) if auto else None
    rows_path = out / (f"rows-{name}.jsonl" if args.tag == "default" else f"rows-{args.tag}-{name}.jsonl")
    start = time.perf_counter()
    elsewhere = 0
    for i, cell in enumerate(todo):
        if claims is not None and not claims.take(cell_key(cell, args)):
            elsewhere += 1  # another process has it, or has finished it since this one started
            continue
        file, n_train, n_test, epochs, batch = PROTOCOLS[cell["protocol"]]
        if file not in sets:
            sets[file] = _load(Path(args.sets) / file)
        data = sets[file]
        max_ids = MAX_IDENTITIES.get(cell["protocol"])
        epochs = max(1, round(epochs * args.epochs_scale))
        arch_cfg = {"arch": cell["arch"], "epochs": epochs, "batch_size": batch, "lr": 1e-3,
                    **cell.get("arch_options", {})}
        work = out / "models"
        t0 = time.perf_counter()
        try:
            method = resolve_method(cell["method"], cell, args, data, n_train, n_test,
                                    {"epochs": epochs, "batch_size": batch, "lr": 1e-3})
            if cell["attack"] == "reid":
                row = run_reid_cell(data, method, cell["seed"], arch_cfg, work, n_train, n_test,
                                    variant=cell["variant"], device=args.device, max_identities=max_ids,
                                    pretrain=cell.get("pretrain"))
            else:
                grid = out / "grids" / f"{cell['method'].replace(':', '_').replace(',', '_').replace('=', '')}" \
                                       f"-s{cell['seed']}.png"
                row = run_reconstruct_cell(data, method, cell["seed"], arch_cfg, work, n_train, n_test,
                                           unet_cfg={"epochs": max(1, round(30 * args.epochs_scale)),
                                                     "base": cell["unet_base"]},
                                           device=args.device, grid_path=grid, max_identities=max_ids)
        except Exception as exc:  # one failing method must not stop the grid; the error is a row too
            import traceback

            traceback.print_exc()
            row = {"attack": cell["attack"], "error": repr(exc), "arch": cell["arch"], "seed": cell["seed"],
                   "variant": cell.get("variant"), "device": args.device}
        row.update({"cell_key": cell_key(cell, args), "protocol": cell["protocol"], "grid_method": cell["method"],
                    "grid_tag": args.tag, "arch_options": cell.get("arch_options")})
        row.pop("method_describe", None) if args.compact else None
        with open(rows_path, "a") as f:  # one line per cell, flushed: an interrupted run loses one cell at most
            f.write(json.dumps(row, default=str) + "\n")
            f.flush()
        if claims is not None:
            claims.release(row["cell_key"], failed="error" in row)
        acc = row.get("accuracy", row.get("reid_restored", float("nan")))
        print(f"[{name}] {i + 1}/{len(todo)} {cell['attack']} {cell['protocol']} {cell['arch']} "
              f"{cell.get('variant', '')} {cell['method']} s{cell['seed']}: {acc:.3f} "
              f"({time.perf_counter() - t0:.1f}s, total {time.perf_counter() - start:.0f}s)", flush=True)
    if elsewhere:
        print(f"[{name}] {elsewhere} of the {len(todo)} cells were taken by other processes", flush=True)


# --------------------------------------------------------------------------- tables
def load_rows(out: Path) -> list[dict]:
    """Every row of ``out``'s rows-*.jsonl files, each cell once: files returned by several calls of
    one lease overlap. A finished row beats a failed one for the same cell (as in ``done_keys``);
    otherwise the first one read is kept (files by name, rows in order)."""
    rows: dict[str, dict] = {}
    for path in sorted(out.glob("rows-*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            key = row.get("cell_key") or f"no-key-{len(rows)}"
            if key not in rows or ("error" in rows[key] and "error" not in row):
                rows[key] = row
    return list(rows.values())


def _stat(values: list[float]) -> str:
    if not values:
        return "-"
    values = [100 * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"


def table(args) -> None:
    rows = load_rows(Path(args.out))
    lines = []
    errors = [r for r in rows if "error" in r]
    rows = [r for r in rows if "error" not in r]
    reid = [r for r in rows if r.get("attack") == "reid"]
    for protocol in PROTOCOLS:
        sub = [r for r in reid if r.get("protocol") == protocol]
        if args.protocol and protocol not in args.protocol:
            continue
        if not sub:
            continue
        first = sub[0]
        lines.append(f"\n#### {protocol}: {first['n_identities']} people, {first['n_train']} training / "
                     f"{first['n_test']} test images, {first['image_shape'][1]}x{first['image_shape'][2]} "
                     f"{'grey' if first['image_shape'][0] == 1 else 'RGB'}, chance {100 * first['chance']:.2f}%\n")
        for r in sub:  # a pretrained attacker, or a network with options, is its own column
            r["arch"] = arch_label(r) + (" pretrained on others" if r.get("pretrain") else "")
        archs = sorted({r["arch"] for r in sub}, key=lambda a: (a != "mcpherson2016", a))
        header = ["method"]
        for arch in archs:
            if any(r["arch"] == arch and r["variant"] == "retrain" for r in sub):
                header.append(f"{arch} retrain")
            if any(r["arch"] == arch and r["variant"] == "no-retrain" for r in sub):
                header.append(f"{arch} no-retrain")
        with_surrogate = any(r.get("accuracy_surrogate") is not None for r in sub)
        if with_surrogate:
            header.append("surrogate (attacked model)")
        header += ["PSNR dB", "SSIM", "Fan 2018 AT&T"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        others = [m for m in dict.fromkeys(r.get("grid_method") for r in sub) if m not in DISPLAY]
        for method in DISPLAY + others:
            mrows = [r for r in sub if r.get("grid_method") == method]
            if not mrows:
                continue
            cols = [f"`{method}`"]
            for arch in archs:
                if f"{arch} retrain" in header:
                    cols.append(_stat([r["accuracy"] for r in mrows if r["arch"] == arch and r["variant"] == "retrain"]))
                if f"{arch} no-retrain" in header:
                    cols.append(_stat([r["accuracy"] for r in mrows
                                       if r["arch"] == arch and r["variant"] == "no-retrain"]))
            if with_surrogate:
                cols.append(_stat([r["accuracy_surrogate"] for r in mrows if r.get("accuracy_surrogate") is not None
                                   and r["variant"] == "retrain"]))
            psnr = [r["psnr_obfuscated"] for r in mrows if isinstance(r.get("psnr_obfuscated"), float)]
            ssim = [r["ssim_obfuscated"] for r in mrows if isinstance(r.get("ssim_obfuscated"), float)]
            cols.append(f"{np.mean(psnr):.1f}" if psnr and method != "none" else "-")
            cols.append(f"{np.mean(ssim):.3f}" if ssim and method != "none" else "-")
            fan = FAN2018.get(method)
            cols.append(f"{fan}" if fan is not None else "-")
            lines.append("| " + " | ".join(cols) + " |")
        seeds = sorted({r["seed"] for r in sub})
        lines.append(f"\nTop-1 accuracy in %: mean ± sample std over the seeds run for that cell (seeds {seeds} "
                     "in this protocol; a single value = one seed).")
    # one table per protocol and U-Net budget: rows of different splits must not be averaged together
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("attack") == "reconstruct":
            groups.setdefault((r["protocol"], r["unet_cfg"]["base"], r["unet_cfg"]["epochs"]), []).append(r)
    for (protocol, base, epochs), recon in groups.items():
        if args.protocol and protocol not in args.protocol:
            continue
        first = recon[0]
        lines.append(f"\n#### Reconstruction (U-Net, base {base}, {epochs} epochs), {protocol}: "
                     f"{first['n_train']} training pairs, {first['n_test']} test images, {first['image_shape'][1]} px\n")
        lines.append("| method | seeds | PSNR obf. | PSNR restored | SSIM obf. | SSIM restored | re-id clean | "
                     "re-id obf. | re-id restored |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        present = [m for m in DISPLAY + RECON_METHODS if any(r.get("grid_method") == m for r in recon)]
        for method in dict.fromkeys(present):
            m = [r for r in recon if r.get("grid_method") == method]

            def mean(key):
                return float(np.mean([r[key] for r in m]))

            seeds = ", ".join(str(seed) for seed in sorted({r["seed"] for r in m}))
            lines.append(f"| `{method}` | {seeds} | {mean('psnr_obfuscated'):.2f} | {mean('psnr_restored'):.2f} | "
                         f"{mean('ssim_obfuscated'):.3f} | {mean('ssim_restored'):.3f} | "
                         f"{_stat([r['reid_clean'] for r in m])} | {_stat([r['reid_obfuscated'] for r in m])} | "
                         f"{_stat([r['reid_restored'] for r in m])} |")
        lines.append("\nMeans over the seeds listed (± sample std where there are several); re-identification by a "
                     f"{first['arch']} trained on the clean training images.")
    devices = sorted({r.get("device", "?") for r in rows})
    wall = sum(r.get("wall_s", 0) for r in rows)
    for r in errors:
        lines.append(f"\nFAILED: {r.get('attack')} {r.get('protocol')} {r.get('grid_method')} seed {r.get('seed')}: "
                     f"{r['error']}")
    lines.append(f"\n{len(rows)} rows, devices {devices}, {wall / 60:.1f} min of cell time in total.")
    print("\n".join(lines))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="decode Yale B and CelebA once into .npz arrays")
    p.add_argument("--yaleb", type=Path)
    p.add_argument("--celeba", type=Path)
    p.add_argument("--yaleb-size", type=int, default=96)
    p.add_argument("--celeba-size", type=int, default=64)
    p.add_argument("--celeba-identities", type=int, default=500)
    p.add_argument("--sets", default=str(DEFAULT_SETS))
    r = sub.add_parser("run", help="run (a shard of) the grid; resumes")
    r.add_argument("--sets", default=str(DEFAULT_SETS))
    r.add_argument("--out", default=str(DEFAULT_OUT))
    r.add_argument("--device", default="auto")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--protocols", nargs="*", default=None, choices=list(PROTOCOLS),
                   help="in priority order (default: all, in the order above)")
    r.add_argument("--methods", nargs="*", default=None)
    r.add_argument("--shard", default="0/1",
                   help="i/n: run every n-th cell starting at i; 'auto': take the next cell no other process has "
                        "taken (start several such processes on one --out: none waits on a slower share)")
    r.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every epoch count (CPU runs)")
    r.add_argument("--resnet", action="store_true", help="also the stronger resnet18 (retrain)")
    r.add_argument("--pretrain-others", nargs="?", const="also", default=None, choices=["also", "only"],
                   help="'also': an attacker (retrain) pretrained on the people outside the targets, beside the "
                        "models trained from scratch; 'only': every model pretrained (the attacker, the clean model "
                        "of no-retrain and the --transfer-archs); protocols with a target subset only")
    r.add_argument("--arch-only", default=None, help="keep only the cells of this network")
    r.add_argument("--no-reconstruct", action="store_true")
    r.add_argument("--recon-only", action="store_true", help="only the reconstruction cells")
    r.add_argument("--recon-protocol", default="yaleb-48/12", choices=list(PROTOCOLS))
    r.add_argument("--recon-methods", nargs="*", default=None,
                   help="default: the nine of RECON_METHODS; 'all': every method of the re-identification grid")
    r.add_argument("--unet-base", type=int, default=32)
    r.add_argument("--compact", action="store_true", help="leave method_describe out of the rows")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--tag", default="default", help="a label kept in the rows and the cell keys")
    r.add_argument("--transfer-archs", nargs="*", default=None,
                   help="also a no-retrain cell of these networks for every method, e.g. resnet18:width=32")
    r.add_argument("--surrogate-arch", default="mcpherson2016", help="network of the adv methods' surrogate")
    r.add_argument("--surrogate-pretrain-others", action="store_true",
                   help="the adv methods' surrogate learns the people outside the targets first (protocols with "
                        "a target subset only; CelebA's 4 photos per person are too few to learn from scratch)")
    r.add_argument("--surrogate-seed-offset", type=int, default=1000,
                   help="the surrogate of seed s trains with weight seed s + this")
    r.add_argument("--generator-epochs", type=int, default=10, help="training epochs of adv-gen generators")
    t = sub.add_parser("table", help="print the markdown tables of the rows so far")
    t.add_argument("--out", default=str(DEFAULT_OUT))
    t.add_argument("--protocol", nargs="*", default=None, choices=list(PROTOCOLS))
    args = parser.parse_args(argv)
    {"prepare": prepare, "run": run, "table": table}[args.step](args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
