"""What the decode cache costs on a hit, and after the source and the cache were moved.

Copies a CelebA-layout folder (default the shared 10,000-image subset) and builds its cache in a
temporary directory, then times loads of the cached split:

  * ``stat hit``: the usual case, the stat pre-check finds the alias (listing + ``stat`` only);
  * ``content hit``: no alias for these files (first load after a move or a copy to another
    node): every file and label file is hashed (BLAKE2b), then the entry opens;
  * ``after a move``: the folder and its cache copied elsewhere with new mtimes (``cp`` without
    ``-p``), loaded there (content hit), then loaded again (stat hit on the new alias).

    python benchmarks/cache_move.py --root ../shared/data/celeba --size 32
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/data/celeba", help="CelebA-layout folder")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    from privattrib.data import load_celeba
    from privattrib.data.cache import content_digests

    src = Path(args.root)
    if not (src / "img_align_celeba").is_dir():
        print(f"no CelebA layout at {src}", file=sys.stderr)
        return 2
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="privattrib-cache-move-") as tmp:
        a = Path(tmp) / "node-a"
        shutil.copytree(src, a / "celeba", copy_function=shutil.copy)
        files = sorted(str(p) for p in (a / "celeba" / "img_align_celeba").iterdir())
        figures["files"] = len(files)
        figures["megabytes"] = round(sum(os.path.getsize(p) for p in files) / 1e6, 1)

        def load(base: Path):
            return load_celeba(base / "celeba", size=args.size, cache_dir=base / "cache", workers=args.workers,
                               progress=False)

        figures["build_s"], data = _timed(lambda: load(a))
        figures["stat_hit_s"], _ = _timed(lambda: load(a))
        figures["hash_contents_only_s"], _ = _timed(lambda: content_digests(files, args.workers))
        shutil.rmtree(a / "cache" / "aliases")
        figures["content_hit_s"], _ = _timed(lambda: load(a))
        b = Path(tmp) / "elsewhere" / "node-b"
        shutil.copytree(a, b, copy_function=shutil.copy)  # new mtimes, new absolute paths
        figures["moved_first_load_s"], moved = _timed(lambda: load(b))
        figures["moved_second_load_s"], _ = _timed(lambda: load(b))
        assert moved.meta["cache"]["hash"] == data.meta["cache"]["hash"], "the moved cache was not hit"
    if args.json:
        print(json.dumps(figures))
    else:
        for k, v in figures.items():
            print(f"{k:>22}: {v:.3f}" if isinstance(v, float) else f"{k:>22}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
