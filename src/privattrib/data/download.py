"""Download CelebA from its official Google Drive folder, verified by MD5, into the layout
``load_celeba`` reads (``img_align_celeba/`` + label files).

The file ids and MD5 digests are those of the official MMLAB release (the same that
torchvision's CelebA loader checks). Every file goes to ``<name>.part`` first and is renamed only
after its digest matches, so an interrupted download never leaves a file that looks complete; a
rerun skips files that are already there and verified. Zip members are checked before extraction
(no absolute paths, no ``..``), extracted into a temporary folder and renamed into place.

Terms: CelebA is for non-commercial research only (Liu, Luo, Wang, Tang, ICCV 2015).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

CELEBA_IMAGES = 202_599


@dataclass(frozen=True)
class RemoteFile:
    name: str
    drive_id: str
    md5: str


CELEBA_FILES: tuple[RemoteFile, ...] = (
    RemoteFile("img_align_celeba.zip", "0B7EVK8r0v71pZjFTYXZWM3FlRnM", "00d2c5bc6d35e252742224ab0c1e8fcb"),
    RemoteFile("list_attr_celeba.txt", "0B7EVK8r0v71pblRyaVFSWGxPY0U", "75e246fa4810816ffd6ee81facbd244c"),
    RemoteFile("identity_CelebA.txt", "1_ee_0u7vcNLOfNLegJRHmolfH5ICW-XS", "32bd1bd63d3c78cd57e08160ec5ed1e2"),
    RemoteFile("list_eval_partition.txt", "0B7EVK8r0v71pY0NSMzRuSXJEVkk", "d32c9cbf5e040fd4025c592c306e6668"),
)

#: ``fetch(remote, destination)``: writes the whole of ``remote`` to ``destination``.
Fetch = Callable[[RemoteFile, Path], None]


class DownloadError(RuntimeError):
    pass


def md5_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def drive_url(drive_id: str) -> str:
    # The usercontent endpoint with confirm=t skips the "cannot scan this large file" page.
    return f"https://drive.usercontent.google.com/download?id={drive_id}&export=download&confirm=t"


def http_fetch(remote: RemoteFile, destination: Path, timeout: float = 60.0) -> None:
    """Stream one Google Drive file to ``destination`` with a progress bar."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    request = urllib.request.Request(drive_url(remote.drive_id), headers={"User-Agent": "privattrib"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except OSError as exc:
        raise DownloadError(f"cannot reach Google Drive for {remote.name}: {exc}") from None
    with response:
        if "text/html" in response.headers.get("Content-Type", ""):
            raise DownloadError(
                f"Google Drive returned a web page instead of {remote.name} (download quota exceeded or "
                "the file moved); download it by hand from the CelebA page and put it in the root folder"
            )
        total = int(response.headers.get("Content-Length") or 0) or None
        with Progress(TextColumn(remote.name), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      console=Console(stderr=True)) as bar, \
                open(destination, "wb") as out:
            task = bar.add_task("download", total=total)
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                bar.update(task, advance=len(block))


def safe_extract(archive: str | os.PathLike, into: str | os.PathLike) -> list[str]:
    """Extract a zip after checking every member stays inside ``into``.

    Returns:
        the member names extracted.

    Raises:
        DownloadError: a member has an absolute path or climbs out with ``..``, or the zip is bad.
    """
    into = Path(into)
    try:
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
            for name in names:
                p = PurePosixPath(name)
                if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
                    raise DownloadError(f"{archive}: refusing unsafe member path {name!r}")
            z.extractall(into)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive} is not a valid zip: {exc}") from None
    return names


def _count_jpegs(folder: Path) -> int:
    return sum(1 for e in os.scandir(folder) if e.name.endswith(".jpg")) if folder.is_dir() else 0


def download_celeba(
    root: str | os.PathLike,
    *,
    files: Sequence[RemoteFile] = CELEBA_FILES,
    fetch: Fetch | None = None,
    expected_images: int = CELEBA_IMAGES,
    keep_archive: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Download, verify and unpack CelebA into ``root``.

    Args:
        root: destination folder (created).
        files: what to fetch (default: the official release).
        fetch: downloader (default :func:`http_fetch`); tests pass a local one.
        expected_images: images the zip must yield (skip extraction when already there).
        keep_archive: keep the verified zip (lets a rerun skip the download).
        log: where progress lines go.

    Returns:
        ``root``, ready for :func:`privattrib.data.load_celeba`.

    Raises:
        DownloadError: a digest does not match (the bad file is removed), or the zip is unsafe.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fetch = fetch or http_fetch
    for remote in files:
        dest = root / remote.name
        if remote.name.endswith(".zip") and _count_jpegs(root / remote.name[:-4]) >= expected_images:
            log(f"{remote.name[:-4]}/ already holds {expected_images} images; skipping")
            continue
        if dest.is_file() and md5_file(dest) == remote.md5:
            log(f"{remote.name}: present and verified")
        else:
            part = dest.with_name(dest.name + ".part")
            log(f"{remote.name}: downloading")
            try:
                fetch(remote, part)
                got = md5_file(part)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            if got != remote.md5:
                part.unlink(missing_ok=True)
                raise DownloadError(f"{remote.name}: MD5 {got} does not match the official {remote.md5}; removed it")
            os.replace(part, dest)
            log(f"{remote.name}: verified (MD5 {got})")
        if remote.name.endswith(".zip"):
            tmp = Path(tempfile.mkdtemp(dir=root, prefix=".extract-"))
            try:
                log(f"{remote.name}: extracting")
                safe_extract(dest, tmp)
                for item in tmp.iterdir():
                    target = root / item.name
                    if target.exists():
                        shutil.rmtree(target) if target.is_dir() else target.unlink()
                    os.replace(item, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if not keep_archive:
                dest.unlink()
    return root
