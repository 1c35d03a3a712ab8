"""The CelebA download path, offline: checksums, resume, safe extraction (no network here)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from bad_files import gradient_rgb
from privattrib.data.download import (
    CELEBA_FILES,
    DownloadError,
    RemoteFile,
    download_celeba,
    drive_url,
    md5_file,
    safe_extract,
)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def mirror(tmp_path):
    """A local stand-in for the official files: a tiny img_align_celeba.zip and label files."""
    src = tmp_path / "mirror"
    (src / "img").mkdir(parents=True)
    for i in (1, 2, 3):
        Image.fromarray(gradient_rgb(218, 178, i)).save(src / "img" / f"{i:06d}.jpg")
    with zipfile.ZipFile(src / "img_align_celeba.zip", "w") as z:
        for i in (1, 2, 3):
            z.write(src / "img" / f"{i:06d}.jpg", f"img_align_celeba/{i:06d}.jpg")
    (src / "identity_CelebA.txt").write_text("000001.jpg 1\n000002.jpg 1\n000003.jpg 2\n000004.jpg 3\n")
    (src / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n000004.jpg 0\n")
    files = [RemoteFile(n, f"id-{n}", md5_file(src / n))
             for n in ("img_align_celeba.zip", "identity_CelebA.txt", "list_eval_partition.txt")]
    calls = []

    def fetch(remote: RemoteFile, dest: Path) -> None:
        calls.append(remote.name)
        dest.write_bytes((src / remote.name).read_bytes())

    return files, fetch, calls


def test_official_table_and_url():
    assert {f.name for f in CELEBA_FILES} >= {"img_align_celeba.zip", "identity_CelebA.txt", "list_eval_partition.txt"}
    assert all(len(f.md5) == 32 for f in CELEBA_FILES)
    assert "id=0B7EVK8r0v71pZjFTYXZWM3FlRnM" in drive_url(CELEBA_FILES[0].drive_id)


def test_download_verifies_extracts_and_resumes(mirror, tmp_path):
    files, fetch, calls = mirror
    root = tmp_path / "celeba"
    download_celeba(root, files=files, fetch=fetch, expected_images=3, log=lambda s: None)
    assert sorted(p.name for p in (root / "img_align_celeba").iterdir()) == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert not list(root.glob("*.part")) and not list(root.glob(".extract-*"))
    from privattrib.data import check_path

    report = check_path(root, workers=1)
    assert report["kind"] == "celeba" and report["images"] == 3 and report["labels_without_image"] == 1
    assert report["partitions"] == {"train": 1, "val": 1, "test": 1}
    calls.clear()
    download_celeba(root, files=files, fetch=fetch, expected_images=3, log=lambda s: None)
    assert calls == []  # everything present and verified: nothing fetched again


def test_checksum_mismatch_removes_the_file(mirror, tmp_path):
    files, fetch, _ = mirror
    wrong = [RemoteFile(f.name, f.drive_id, "0" * 32) if f.name == "identity_CelebA.txt" else f for f in files]
    root = tmp_path / "celeba"
    with pytest.raises(DownloadError, match="does not match"):
        download_celeba(root, files=wrong, fetch=fetch, expected_images=3, log=lambda s: None)
    assert not (root / "identity_CelebA.txt").exists() and not list(root.glob("*.part"))


def test_interrupted_download_leaves_no_file(mirror, tmp_path):
    files, _, _ = mirror

    def broken(remote, dest):
        dest.write_bytes(b"half")
        raise ConnectionError("network went away")

    with pytest.raises(ConnectionError):
        download_celeba(tmp_path / "c", files=files[1:], fetch=broken, log=lambda s: None)
    assert list((tmp_path / "c").iterdir()) == []


def test_unsafe_zip_is_refused(tmp_path):
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../escape.txt", "x")
    with pytest.raises(DownloadError, match="unsafe member"):
        safe_extract(bad, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
    (tmp_path / "notzip.zip").write_bytes(b"nope")
    with pytest.raises(DownloadError, match="not a valid zip"):
        safe_extract(tmp_path / "notzip.zip", tmp_path / "out")
