"""The web page in a real browser: ``privattrib serve`` as a subprocess, driven in headless Chromium
through Playwright (Debian's Chromium; Playwright's own browser download is not used).

Skipped with a reason where playwright or Chromium is absent (``.ci/run`` installs Chromium).
``PRIVATTRIB_CHROMIUM`` names another Chromium binary. ``PRIVATTRIB_SCREENSHOT_DIR`` makes the
synthetic-face test write its screenshot there (``scripts/readme_screenshot.sh`` makes the
README's), and ``PRIVATTRIB_SCREENSHOT_MODEL=demo`` starts that page with the demo model.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium() -> str | None:
    named = os.environ.get("PRIVATTRIB_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("fastapi", reason="the web extra is not installed (pip install 'privattrib[web]')")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    path = _chromium()
    if path is None:
        pytest.skip("Chromium not found (apt-get install chromium, or set PRIVATTRIB_CHROMIUM); .ci/run installs it")
    with sync_api.sync_playwright() as p:
        try:
            chromium = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        except Exception as exc:  # noqa: BLE001 - a browser that cannot start here is a missing tool, not a bug
            pytest.skip(f"Chromium at {path} does not start headless here: {str(exc).splitlines()[0]}")
        yield chromium
        chromium.close()


@contextlib.contextmanager
def serve(workdir: Path, *options: str, ready_within: float = 120.0):
    """``privattrib serve`` on a free port as a real subprocess; yields the page's URL."""
    import privattrib

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    src = str(Path(privattrib.__file__).resolve().parents[1])  # this checkout's code, not an installed copy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
           "PRIVATTRIB_CACHE": os.environ.get("PRIVATTRIB_TEST_CACHE", str(workdir / "cache")),
           "OMP_NUM_THREADS": "1"}
    log_path = workdir / f"serve-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "privattrib", "serve", "--port", str(port), *options],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + ready_within
        while True:
            if proc.poll() is not None:
                pytest.fail(f"privattrib serve exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(url + "api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"privattrib serve did not answer within {ready_within:.0f} s:\n{log_path.read_text()}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("serve")) as url:
        yield url


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1360, "height": 1000}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("#method option[value='dp-pix']", state="attached")
    return page, errors


def _protect(page, photo: Path, method: str, **params: str) -> None:
    page.set_input_files("#file", str(photo))
    page.select_option("#method", method)
    for name, value in params.items():
        page.fill(f"#param-{name}", value)
    page.click("#submit")
    page.wait_for_function("() => !document.getElementById('result').hidden && "
                           "!document.getElementById('result').classList.contains('stale') || "
                           "!document.getElementById('error').hidden", timeout=120_000)


def _check_download(page, size: tuple[int, int]) -> bytes:
    with page.expect_download() as info:
        page.click("#download")
    data = Path(info.value.path()).read_bytes()
    pos, chunks = 8, []
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        chunks.append(data[pos + 4:pos + 8])
        pos += 12 + n
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and chunks == [b"IHDR", b"IDAT", b"IEND"]  # no eXIf, tEXt, iCCP...
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == size and not im.getexif() and not im.info
    assert info.value.suggested_filename.endswith("-protected.png")
    return data


def test_celeba_face_with_dp_pix_at_epsilon_half(browser, plain_server, celeba_root, tmp_path):
    from bad_files import SECRET, exif_with_secret

    face = sorted((celeba_root / "img_align_celeba").glob("*.jpg"))[0]
    # the face as a phone would send it: stored sideways with orientation 6, GPS and a description
    photo = tmp_path / "phone-face.jpg"
    with Image.open(face) as im:
        im.transpose(Image.Transpose.ROTATE_90).save(photo, quality=95, exif=exif_with_secret(orientation=6).tobytes())
    assert SECRET.encode() in photo.read_bytes()
    page, errors = _open(browser, plain_server)
    _protect(page, photo, "dp-pix", epsilon="0.5")
    assert page.is_hidden("#error"), page.inner_text("#error")
    assert page.get_attribute("#img-protected", "src").startswith("data:image/png;base64,")
    shown = page.evaluate("() => [document.getElementById('img-protected').naturalWidth,"
                          " document.getElementById('img-protected').naturalHeight]")
    assert shown == [178, 218]  # upright again: the EXIF orientation was honoured
    assert "dp-pix:b=16,m=16,epsilon=0.5,noise=secure" in page.inner_text("#cap-protected")
    assert "PSNR" in page.inner_text("#card-utility") and "No attribution model" in page.inner_text("#card-attribution")
    assert "No identity gallery" in page.inner_text("#card-reid")
    download = _check_download(page, (178, 218))
    assert SECRET.encode() not in download and b"Exif" not in download
    page.screenshot(path=str(tmp_path / "celeba.png"), full_page=True)  # a CelebA face: never committed
    assert errors == []
    page.close()


def test_bad_file_and_bad_epsilon_get_a_message_on_the_page(browser, plain_server, tmp_path):
    page, errors = _open(browser, plain_server)
    text = tmp_path / "holiday.jpg"
    text.write_text("not a photo at all\n")
    _protect(page, text, "dp-pix")
    assert page.is_visible("#error") and "holiday.jpg: not an image" in page.inner_text("#error")
    assert "invalid" in page.get_attribute("#drop", "class")
    assert page.is_hidden("#result")
    good = tmp_path / "grey.png"
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))).save(good)
    _protect(page, good, "dp-pix", epsilon="0")
    assert "epsilon must be number > 0" in page.inner_text("#error")
    assert "invalid" in page.get_attribute("#param-epsilon", "class")
    page.screenshot(path=str(tmp_path / "bad-epsilon.png"), full_page=True)
    assert errors == []
    page.close()


def _synthetic_gallery(root: Path) -> Path:
    """Eight synthetic people (procedurally drawn, not real) as an identity folder set; returns a
    photo of person 3 that is not in the gallery."""
    from privattrib.data import synthetic_faces

    faces = synthetic_faces(n_identities=8, per_identity=9, size=160, seed=7)
    for i, (img, label) in enumerate(zip(faces.images, faces.labels)):
        if i % 9 == 8:
            continue
        folder = root / faces.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.transpose(1, 2, 0)).save(folder / f"{i:03d}.png")
    photo = root.parent / "synthetic-person-3.png"
    Image.fromarray(faces.images[3 * 9 + 8].transpose(1, 2, 0)).save(photo)
    return photo


def test_synthetic_face_with_a_gallery_makes_the_readme_screenshot(browser, tmp_path):
    photo = _synthetic_gallery(tmp_path / "gallery")
    options = ["--reid-gallery", str(tmp_path / "gallery"), "--reid-size", "32", "--reid-epochs", "15"]
    model = os.environ.get("PRIVATTRIB_SCREENSHOT_MODEL")
    if model:
        options += ["--model", model]
    with serve(tmp_path, *options, ready_within=1800 if model else 180) as url:
        page, errors = _open(browser, url)
        page.set_viewport_size({"width": 1360, "height": 900})
        _protect(page, photo, "dp-pix", b="8", m="1", epsilon="0.5")
        assert page.is_hidden("#error"), page.inner_text("#error")
        reid = page.inner_text("#card-reid")
        assert "8 people" in reid and ("Still re-identified" in reid or "Not matched" in reid)
        assert "synthetic-003" in reid  # the original is matched to its own person
        if model:
            assert "Scope:" in page.inner_text("#card-attribution")
        _check_download(page, (160, 160))
        out = Path(os.environ.get("PRIVATTRIB_SCREENSHOT_DIR") or tmp_path)
        out.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out / "serve-page.png"), full_page=True)
        assert errors == []
        page.close()
