"""The uint8 image cache: decode, crop and resize each source file once.

A cache entry is a folder ``<cache_dir>/<kind>-<hash>/`` holding

* ``images.npy``: uint8 N x C x H x W, opened with ``np.load(mmap_mode="r")`` (no copy, shared
  by every reader through the page cache);
* ``rows.npz``: per-row arrays (labels, identities, partitions, attributes, ...);
* ``manifest.json``: keys, source paths (relative to the source's root), class names,
  preprocessing, the input hash and every skipped file with its reason.

An entry is named by a hash of the preprocessing parameters and of every input file's *content*
and path relative to the source's root (and the label files'): it is reused when nothing changed,
also after the source and the cache were moved or copied to another clone or node, and a new one
is built when anything did. Hashing the contents of 10,000 CelebA JPEGs takes about 0.3 s (1.2 s
from a cold disk), so a fast pre-check comes first: ``aliases/<kind>-<stat hash>`` maps a hash of
the files' absolute paths, sizes and mtimes to the content hash, and only when the pre-check
misses (first load, a file touched, a move) are the contents hashed and a new alias written.
Entries of format 1 (named by that stat hash) are adopted under their content name on first use.
A build writes into a private temporary folder and renames it into place in one step: readers see
a complete entry or none, and two concurrent builders of the same entry just race to the rename
(the loser discards its copy). Building fans out over all cores; workers write their rows straight
into the memory-mapped output, so no pixels travel between processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
import zipfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from privattrib.common import atomic_write_text, stable_hash
from privattrib.data.io import BadImageError, Skipped
from privattrib.data.preprocess import Preprocess, prepare, probe

log = logging.getLogger("privattrib.data")

#: 2: entries named by file contents and paths relative to the source root (1: absolute paths,
#: sizes and mtimes, which a move or a copy to another node invalidated).
CACHE_FORMAT = 2
#: The stat pre-check keeps format 1's formula, so format 1 entries are found and adopted.
STAT_FORMAT = 1
_CHUNK = 64  # files per worker task: big enough to amortise IPC, small enough for a smooth bar


def default_cache_dir() -> Path:
    """``$PRIVATTRIB_CACHE`` if set, else ``~/.cache/privattrib``."""
    env = os.environ.get("PRIVATTRIB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "privattrib"


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Entries:
    """What a source found, before decoding: one row per candidate file.

    Attributes:
        paths: absolute file paths, in row order.
        keys: stable key per row (noise key, shown to users).
        rows: per-row arrays aligned with ``paths`` (``labels`` at least).
        class_names: class index -> name.
        skipped: files left out before decoding, with reasons.
        label_files: files whose content defines the labels (hashed by size and mtime).
        info: source-specific facts for reports (counts, notes); JSON-serialisable.
    """

    paths: list[str]
    keys: list[str]
    rows: dict[str, np.ndarray]
    class_names: list[str]
    skipped: list[Skipped] = field(default_factory=list)
    label_files: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def select(self, index: np.ndarray) -> "Entries":
        index = np.asarray(index, dtype=np.int64)
        return Entries(
            paths=[self.paths[i] for i in index],
            keys=[self.keys[i] for i in index],
            rows={k: v[index] for k, v in self.rows.items()},
            class_names=self.class_names,
            skipped=self.skipped,
            label_files=self.label_files,
            info=self.info,
        )


def _stat_signature(path: str) -> list:
    try:
        st = os.stat(path)
        return [st.st_size, st.st_mtime_ns]
    except OSError as exc:
        return [None, exc.errno]


def _array_digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:32]


def files_signature(paths: list[str]) -> list:
    """[path, size, mtime_ns] per file: the fast pre-check of whether a file may have changed."""
    return [[p, *_stat_signature(p)] for p in paths]


def file_digest(path: str) -> str:
    """BLAKE2b-128 of a file's bytes (hex); ``missing:<errno>`` when it cannot be read and
    ``special`` for what is not a regular file (a FIFO would block the read; the decoder skips it)."""
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return "special"
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
    except OSError as exc:
        return f"missing:{exc.errno}"


def content_digests(paths: list[str], workers: int | None = None) -> list[str]:
    """:func:`file_digest` of every path, on a few threads (hashlib releases the GIL)."""
    if len(paths) < 256:
        return [file_digest(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(4, workers or default_workers()))) as pool:
        return list(pool.map(file_digest, paths, chunksize=64))


def _relative(path: str, root: str) -> str:
    """``path`` relative to ``root``, with ``/`` separators (the same on every node)."""
    return Path(os.path.relpath(path, root)).as_posix()


@dataclass
class CacheKey:
    """What a cache entry depends on, in a fast and a move-proof form.

    Attributes:
        kind: source kind (``celeba``, ``folder``, ``identities``), part of the entry's name.
        root: the source's root folder; paths enter the content hash relative to it.
        files: absolute image paths, in row order.
        label_files: absolute paths of the files that define labels.
        params: everything else that decides the rows (preprocessing, keys, selection), JSON.
        stat_hash: hash of the absolute paths, sizes and mtimes (and ``params``): the pre-check,
            and the name a format 1 entry had.
    """

    kind: str
    root: str
    files: list[str]
    label_files: list[str]
    params: dict
    stat_hash: str
    _content: str | None = field(default=None, repr=False)

    def content_hash(self, workers: int | None = None) -> str:
        """Hash of the files' contents and relative paths, and ``params`` (computed once)."""
        if self._content is None:
            digests = content_digests(self.files + self.label_files, workers)
            names = [_relative(p, self.root) for p in self.files + self.label_files]
            pairs = [list(t) for t in zip(names, digests)]
            self._content = stable_hash({
                "format": CACHE_FORMAT, "kind": self.kind, "params": self.params,
                "files": pairs[:len(self.files)], "label_files": pairs[len(self.files):],
            }, length=20)
        return self._content


def entries_key(kind: str, entries: Entries, prep: Preprocess, extra: dict | None = None) -> CacheKey:
    """The :class:`CacheKey` of a source's candidate files under ``prep``."""
    root = entries.info.get("root") or (os.path.commonpath(entries.paths) if entries.paths else ".")
    if os.path.isfile(root):
        root = os.path.dirname(root)
    rows = {k: _array_digest(v) for k, v in sorted(entries.rows.items())}
    stat = stable_hash(
        {
            "format": STAT_FORMAT,
            "kind": kind,
            "prep": prep.as_dict(),
            "files": [[p, k, *_stat_signature(p)] for p, k in zip(entries.paths, entries.keys)],
            "rows": rows,
            "class_names": entries.class_names,
            "label_files": [[p, *_stat_signature(p)] for p in entries.label_files],
            "extra": extra or {},
        },
        length=20,
    )
    params = {"prep": prep.as_dict(), "keys": stable_hash(list(entries.keys), 32), "rows": rows,
              "class_names": entries.class_names, "extra": extra or {}}
    return CacheKey(kind, str(root), list(entries.paths), list(entries.label_files), params, stat)


def input_hash(kind: str, entries: Entries, prep: Preprocess, extra: dict | None = None) -> str:
    """The content hash that names the cache entry of (``entries``, ``prep``)."""
    return entries_key(kind, entries, prep, extra).content_hash()


# ----------------------------------------------------------------------------- workers

def _work_chunk(npy_path: str | None, rows: list[int], paths: list[str], prep: dict) -> list[tuple[int, str]]:
    """Decode ``paths`` into rows of the memory-mapped ``npy_path`` (or only validate them).

    Returns:
        (row, reason) for every file that failed.
    """
    p = dict(prep)
    if p.get("size") is not None:
        p["size"] = tuple(p["size"])
    preprocess = Preprocess(**p)
    out = np.load(npy_path, mmap_mode="r+") if npy_path else None
    failed: list[tuple[int, str]] = []
    for row, path in zip(rows, paths):
        try:
            arr = prepare(path, preprocess)
            if out is not None:
                out[row] = arr
        except BadImageError as exc:
            failed.append((row, exc.reason))
        except MemoryError:
            failed.append((row, "out of memory while decoding"))
        except Exception as exc:  # a decoder bug on a malformed file must not stop a build
            failed.append((row, f"unexpected decoder error ({type(exc).__name__}: {exc})"))
    # No flush: msync of the whole map after every chunk costs more than the decoding; the
    # parent reads the same pages through the page cache, and the entry is only published
    # (renamed into place) after every worker has returned.
    del out
    return failed


def _probe_chunk(rows: list[int], paths: list[str], max_pixels: int) -> list[tuple[int, object]]:
    result: list[tuple[int, object]] = []
    for row, path in zip(rows, paths):
        try:
            result.append((row, probe(path, max_pixels)))
        except BadImageError as exc:
            result.append((row, exc.reason))
        except Exception as exc:
            result.append((row, f"unexpected decoder error ({type(exc).__name__}: {exc})"))
    return result


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def _mp_context():
    """fork on Linux (as torch's DataLoader): instant start, and it works from notebooks, stdin
    and unguarded scripts, which spawn would re-import. Workers only run Pillow and NumPy, never
    the parent's threads' locks. Elsewhere spawn (fork is unsafe on macOS)."""
    import multiprocessing as mp
    import sys

    if sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods():
        return get_context("fork")
    return get_context("spawn")


def _run_chunks(fn, args_for_chunk, n: int, workers: int, description: str, progress: bool) -> list:
    """Run ``fn(*args_for_chunk(lo, hi))`` over [0, n) in chunks, on a process pool when it pays."""
    chunks = [(lo, min(n, lo + _CHUNK)) for lo in range(0, n, _CHUNK)]
    results: list = []
    t0 = time.perf_counter()
    with _progress(progress) as bar:
        task = bar.add_task(description, total=n, rate="")

        def advance(k: int) -> None:
            done = bar.tasks[task].completed + k
            rate = done / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, advance=k, rate=f"{rate:,.0f} img/s")

        if workers <= 1 or n < 4 * _CHUNK:
            for lo, hi in chunks:
                results.extend(fn(*args_for_chunk(lo, hi)))
                advance(hi - lo)
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context()) as pool:
                futures = {pool.submit(fn, *args_for_chunk(lo, hi)): hi - lo for lo, hi in chunks}
                for fut in as_completed(futures):
                    results.extend(fut.result())
                    advance(futures[fut])
    return results


# ----------------------------------------------------------------------------- resolution

def resolve_native(entries: Entries, prep: Preprocess, workers: int, progress: bool) -> tuple[Preprocess, dict[int, str]]:
    """Fill in ``size=None`` / ``channels=None`` from the files' headers.

    Native size: the most common (H, W) of the set; other sizes are skipped (``exact_size``).
    Channels: 1 when every file is grey, else 3.

    Returns:
        (resolved preprocessing, {row: reason} for files whose header is already unusable).
    """
    if prep.size is not None and prep.channels is not None:
        return prep, {}
    n = len(entries.paths)
    found = _run_chunks(
        _probe_chunk,
        lambda lo, hi: (list(range(lo, hi)), entries.paths[lo:hi], prep.max_pixels),
        n, workers, "reading headers", progress,
    )
    bad = {row: r for row, r in found if isinstance(r, str)}
    shapes = [r for _, r in found if not isinstance(r, str)]
    if not shapes:
        return prep, bad
    size, exact = prep.size, prep.exact_size
    if size is None:
        size = Counter((h, w) for h, w, _ in shapes).most_common(1)[0][0]
        exact = True
    channels = prep.channels
    if channels is None:
        channels = 1 if all(c == 1 for _, _, c in shapes) else 3
    crop = "none" if prep.size is None else prep.crop
    return Preprocess(size=size, crop=crop, channels=channels, draft=prep.draft,
                      exact_size=exact, max_pixels=prep.max_pixels), bad


# ----------------------------------------------------------------------------- cache

@dataclass
class CachedSet:
    """A built cache entry, opened read-only."""

    images: np.ndarray  # uint8 N x C x H x W memory map
    rows: dict[str, np.ndarray]
    keys: list[str]
    paths: list[str]
    class_names: list[str]
    skipped: list[dict]
    manifest: dict
    folder: Path


#: What reading a damaged entry raises: a truncated or overwritten ``.npy`` (ValueError), a
#: truncated ``rows.npz`` (BadZipFile, not an OSError), a manifest missing a field or of another
#: shape (KeyError, TypeError, AttributeError), a missing file (OSError).
_DAMAGE = (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError, zipfile.BadZipFile)


def open_cache(folder: Path, root: str | None = None, *, warn: bool = True) -> CachedSet | None:
    """Open a complete cache entry, or None when it is absent, incomplete or damaged.

    Args:
        folder: the entry.
        root: where the source is now; the paths of a format 2 manifest (relative to the source
            root) are resolved against it (default: the root the entry was built from).
        warn: log a warning naming a damaged entry (the caller rebuilds it).
    """
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        images = np.load(folder / "images.npy", mmap_mode="r")
        with np.load(folder / "rows.npz") as z:
            rows = {k: z[k] for k in z.files}
        if list(images.shape) != manifest["shape"] or images.dtype != np.uint8:
            raise ValueError(f"images.npy is {images.dtype} {list(images.shape)}, the manifest says uint8 "
                             f"{manifest['shape']}")
        paths, skipped = manifest["paths"], manifest["skipped"]
        if manifest.get("format", 1) >= 2:  # relative to the source root
            base = root or manifest.get("root") or "."
            paths = [os.path.normpath(os.path.join(base, p)) for p in paths]
            skipped = [{**s, "path": os.path.normpath(os.path.join(base, s["path"]))} for s in skipped]
        cached = CachedSet(images, rows, manifest["keys"], paths, manifest["class_names"], skipped, manifest, folder)
    except _DAMAGE as exc:
        if warn:
            log.warning("ignoring a damaged cache entry %s (%s: %s); it will be rebuilt", folder,
                        type(exc).__name__, exc)
        return None
    return cached


def _cache_root(cache_dir) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _alias_path(cache_root: Path, key: CacheKey) -> Path:
    return cache_root / "aliases" / f"{key.kind}-{key.stat_hash}"


def _write_alias(cache_root: Path, key: CacheKey, content: str) -> None:
    """Remember ``stat hash -> content hash``, so the next load of the unchanged files skips hashing."""
    path = _alias_path(cache_root, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, content)
    except OSError as exc:  # a read-only cache still serves hits, only slower
        log.debug("cannot write cache alias %s (%s)", path, exc)


def try_open(key: CacheKey, cache_dir: str | os.PathLike | None = None, workers: int | None = None) -> CachedSet | None:
    """Open the entry of ``key`` if one is complete (lets a source skip parsing on a hit).

    The stat pre-check is tried first (no file is read); then a format 1 entry built from the same
    files at the same place is adopted; then the contents are hashed, which finds an entry built
    from the same files elsewhere (another clone or node, before a move).
    """
    cache_root = _cache_root(cache_dir)
    alias = _alias_path(cache_root, key)
    tried = None
    if alias.is_file():
        content = alias.read_text().strip()
        cached = open_cache(cache_root / f"{key.kind}-{content}", key.root)
        if cached is not None:
            key._content = content
            return cached
        tried = content
    legacy = cache_root / f"{key.kind}-{key.stat_hash}"
    if legacy.is_dir():
        adopted = _adopt_format1(legacy, key, cache_root, workers)
        if adopted is not None:
            return adopted
    content = key.content_hash(workers)
    cached = open_cache(cache_root / f"{key.kind}-{content}", key.root, warn=content != tried)
    if cached is not None:
        _write_alias(cache_root, key, content)
    return cached


def _adopt_format1(folder: Path, key: CacheKey, cache_root: Path, workers: int | None) -> CachedSet | None:
    """Rename a format 1 entry (named by the stat hash, absolute paths) to its content name, with
    a format 2 manifest; None when it is not a usable format 1 entry."""
    old = open_cache(folder)
    if old is None or old.manifest.get("format", 1) != 1:
        return None
    content = key.content_hash(workers)
    manifest = dict(old.manifest)
    manifest.update(
        format=CACHE_FORMAT, hash=content, root=key.root, adopted_from=folder.name,
        paths=[_relative(p, key.root) for p in old.paths],
        skipped=[{**s, "path": _relative(s["path"], key.root)} for s in old.skipped],
        label_files=[_relative(p, key.root) for p in manifest.get("label_files", [])],
    )
    del old
    target = cache_root / f"{key.kind}-{content}"
    try:
        atomic_write_text(folder / "manifest.json", json.dumps(manifest))
        if target.exists():  # an entry of the same content exists already: keep that one
            shutil.rmtree(folder, ignore_errors=True)
        else:
            os.rename(folder, target)
    except OSError as exc:  # a concurrent adopter won, or a read-only cache
        log.debug("cannot adopt format 1 cache entry %s (%s)", folder, exc)
    cached = open_cache(target, key.root)
    if cached is not None:
        _write_alias(cache_root, key, content)
        log.info("adopted cache entry %s as %s", folder.name, target.name)
    return cached


def build_or_open(
    kind: str,
    entries: Entries,
    prep: Preprocess,
    *,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    strict: bool = False,
    progress: bool = True,
    rebuild: bool = False,
    meta: dict | None = None,
    key: CacheKey | None = None,
) -> CachedSet:
    """Return the cache entry for (``entries``, ``prep``), building it when needed.

    Args:
        kind: source kind, part of the folder name (``celeba``, ``folder``, ``identities``).
        entries: candidate files and their per-row arrays.
        prep: preprocessing; ``size``/``channels`` of None are resolved from the headers.
        cache_dir: root of the cache (default :func:`default_cache_dir`).
        workers: decoding processes (default: all cores available to this process).
        strict: raise :class:`BadImageError` on the first unusable file instead of skipping it.
        progress: show a rich progress bar while building.
        rebuild: ignore an existing entry.
        meta: JSON facts stored in the manifest (source info).
        key: a precomputed key (see :func:`try_open`); default :func:`entries_key`.

    Raises:
        BadImageError: ``strict`` and a file (or an entry skipped before decoding) is unusable.
        ValueError: no usable image at all.
    """
    if strict and entries.skipped:
        s = entries.skipped[0]
        raise BadImageError(s.path, s.reason)
    cache_root = _cache_root(cache_dir)
    key = key or entries_key(kind, entries, prep)
    if not rebuild:
        cached = try_open(key, cache_root, workers)
        if cached is not None:
            return cached
    folder = cache_root / f"{kind}-{key.content_hash(workers)}"
    workers = default_workers() if workers is None else max(1, int(workers))
    n = len(entries.paths)
    if n == 0:
        raise ValueError("no image files found for this selection" + (f" ({len(entries.skipped)} entries skipped)" if entries.skipped else ""))

    t0 = time.perf_counter()
    resolved, bad = resolve_native(entries, prep, workers, progress)
    if strict and bad:
        row, reason = min(bad.items())
        raise BadImageError(entries.paths[row], reason)
    todo = np.array([i for i in range(n) if i not in bad], dtype=np.int64)
    if len(todo) == 0:
        raise ValueError(f"none of the {n} files is a usable image")
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = cache_root / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        keep = _decode_into(tmp / "images.npy", entries, todo, bad, resolved, workers, kind, strict, progress)
        np.savez(tmp / "rows.npz", **{k: np.asarray(v)[keep] for k, v in entries.rows.items()})
        manifest = _manifest(kind, key, entries, keep, bad, prep, resolved, meta)
        manifest.update(build_seconds=round(time.perf_counter() - t0, 3), build_workers=workers)
        atomic_write_text(tmp / "manifest.json", json.dumps(manifest))
        existing = _publish(tmp, folder, key.root, rebuild)
        if existing is not None:
            return existing
        log.info("cached %d images (%d skipped) in %.1fs at %s", len(keep), len(manifest["skipped"]),
                 manifest["build_seconds"], folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_alias(cache_root, key, key.content_hash())
    opened = open_cache(folder, key.root)
    assert opened is not None
    return opened


def _decode_into(npy: Path, entries: Entries, todo: np.ndarray, bad: dict[int, str], resolved: Preprocess,
                 workers: int, kind: str, strict: bool, progress: bool) -> np.ndarray:
    """Decode the rows ``todo`` of ``entries`` into a new ``npy`` (uint8 N x C x H x W), then drop
    the rows of files that failed (their reasons are added to ``bad``).

    Returns:
        The indices into ``entries`` of the rows ``npy`` holds, in order.

    Raises:
        BadImageError: ``strict`` and a file failed.
        ValueError: every file failed.
    """
    (h, w), c = resolved.size, resolved.channels
    out = np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=(len(todo), c, h, w))
    del out  # workers reopen it; the header is on disk
    todo_paths = [entries.paths[i] for i in todo]
    failed = _run_chunks(
        _work_chunk,
        lambda lo, hi: (str(npy), list(range(lo, hi)), todo_paths[lo:hi], resolved.as_dict()),
        len(todo), workers, f"caching {kind} {h}x{w}", progress,
    )
    failed_rows = {row: reason for row, reason in failed}
    if strict and failed_rows:
        row, reason = min(failed_rows.items())
        raise BadImageError(todo_paths[row], reason)
    for row, reason in failed_rows.items():
        bad[int(todo[row])] = reason
    keep_local = np.array([r for r in range(len(todo)) if r not in failed_rows], dtype=np.int64)
    if len(keep_local) == 0:
        raise ValueError(f"none of the {len(entries.paths)} files is a usable image")
    if len(keep_local) < len(todo):
        # Compact: rows of failed files are dropped by a sequential copy, cheap next to decoding.
        src = np.load(npy, mmap_mode="r")
        compact = npy.with_name("images.compact.npy")
        dst = np.lib.format.open_memmap(compact, mode="w+", dtype=np.uint8, shape=(len(keep_local), c, h, w))
        for lo in range(0, len(keep_local), 1024):
            dst[lo : lo + 1024] = src[keep_local[lo : lo + 1024]]
        dst.flush()
        del dst, src
        os.replace(compact, npy)
    return todo[keep_local]


def _manifest(kind: str, key: CacheKey, entries: Entries, keep: np.ndarray, bad: dict[int, str],
              prep: Preprocess, resolved: Preprocess, meta: dict | None) -> dict:
    """The manifest of an entry holding rows ``keep`` of ``entries`` (paths relative to the root)."""
    skipped = [{**s.as_dict(), "path": _relative(s.path, key.root)} for s in entries.skipped] + [
        {"path": _relative(entries.paths[i], key.root), "reason": r} for i, r in sorted(bad.items())
    ]
    return {
        "format": CACHE_FORMAT,
        "kind": kind,
        "hash": key.content_hash(),
        "root": key.root,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "preprocess": resolved.as_dict(),
        "requested_preprocess": prep.as_dict(),
        "shape": [int(len(keep)), resolved.channels, *resolved.size],
        "class_names": list(entries.class_names),
        "keys": [entries.keys[i] for i in keep],
        "paths": [_relative(entries.paths[i], key.root) for i in keep],  # relative to "root"
        "label_files": [_relative(p, key.root) for p in entries.label_files],
        "skipped": skipped,
        "info": {**entries.info, **(meta or {})},
    }


def _publish(tmp: Path, folder: Path, root: str, rebuild: bool) -> CachedSet | None:
    """Rename the finished ``tmp`` into place as ``folder``, in one step.

    Returns:
        The entry another process published first under the same name (``tmp`` is discarded),
        or None when ``tmp`` is now ``folder``. A damaged entry in the way, or any entry when
        ``rebuild``, is moved aside and removed.
    """
    try:
        os.rename(tmp, folder)
        return None
    except OSError:
        existing = open_cache(folder, root, warn=False)  # a damaged one was named already
        if existing is not None and not rebuild:
            shutil.rmtree(tmp, ignore_errors=True)
            return existing
    stale = folder.with_name(f".{folder.name}.stale-{uuid.uuid4().hex[:8]}")
    os.rename(folder, stale)
    os.rename(tmp, folder)
    shutil.rmtree(stale, ignore_errors=True)
    return None


def validate(
    entries: Entries,
    *,
    max_pixels: int | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, list[dict], Counter]:
    """Fully decode every candidate at its native size (as a build would), writing nothing.

    Returns:
        (indices of usable rows, skipped entries as dicts incl. those found before decoding,
        a Counter of "WxH xC" shapes of the usable images).
    """
    workers = default_workers() if workers is None else max(1, int(workers))
    prep = Preprocess(size=None, crop="none", channels=None, draft=False,
                      **({} if max_pixels is None else {"max_pixels": max_pixels}))
    n = len(entries.paths)
    skipped = [s.as_dict() for s in entries.skipped]
    results = _run_chunks(
        _check_chunk,
        lambda lo, hi: (list(range(lo, hi)), entries.paths[lo:hi], prep.as_dict()),
        n, workers, "checking", progress,
    )
    shapes: Counter = Counter()
    good = []
    for row, res in sorted(results, key=lambda t: t[0]):
        if isinstance(res, str):
            skipped.append({"path": entries.paths[row], "reason": res})
        else:
            good.append(row)
            shapes[res] += 1
    return np.array(good, dtype=np.int64), skipped, shapes


def _check_chunk(rows: list[int], paths: list[str], prep: dict) -> list[tuple[int, str]]:
    preprocess = Preprocess(**prep)
    result: list[tuple[int, str]] = []
    for row, path in zip(rows, paths):
        try:
            c, h, w = prepare(path, preprocess).shape
            result.append((row, (f"{w}x{h}", c)))
        except BadImageError as exc:
            result.append((row, exc.reason))
        except Exception as exc:
            result.append((row, f"unexpected decoder error ({type(exc).__name__}: {exc})"))
    return result
