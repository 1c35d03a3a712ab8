"""The web page's API (``privattrib serve``) through FastAPI's TestClient: happy path, every kind of
bad upload, bad parameters, pixels-only downloads, nothing on disk, and the same output as
``privattrib obfuscate``."""

from __future__ import annotations

import io
import json
import os
import socket
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the web extra is not installed (pip install 'privattrib[web]')")
pytest.importorskip("multipart", reason="python-multipart is not installed (pip install 'privattrib[web]')")
from fastapi.testclient import TestClient  # noqa: E402

from bad_files import SECRET, bomb_png, exif_with_secret, gradient_rgb, make_corpus  # noqa: E402
from privattrib.obfuscation import available_methods  # noqa: E402
from privattrib.obfuscation.regions import available_backends  # noqa: E402
from privattrib.web.app import LOOPBACK_HOSTS, create_app  # noqa: E402
from privattrib.web.service import ProtectService  # noqa: E402


def _chunks(png: bytes) -> list[bytes]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(png):
        n = int.from_bytes(png[pos:pos + 4], "big")
        kinds.append(png[pos + 4:pos + 8])
        pos += 12 + n
    return kinds


def _png_from_data_url(url: str) -> bytes:
    import base64

    head, b64 = url.split(",", 1)
    assert head == "data:image/png;base64"
    return base64.b64decode(b64)


def _jpeg(pixels: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=92, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(ProtectService(max_upload_bytes=300_000, max_pixels=2_000_000)))


def post(client, data: bytes | None, name="photo.jpg", path="/api/protect", **fields):
    """A multipart upload of ``data`` as ``name`` with form ``fields`` (method defaults to pixelate);
    ``data=None`` sends the form without its file field."""
    fields.setdefault("method", "pixelate")
    if data is None:
        return client.post(path, data=fields, files={"other": (None, "x")})
    return client.post(path, data=fields, files={"file": (name, data, "application/octet-stream")})


def test_page_and_form_come_from_the_registry(client):
    page = client.get("/")
    assert page.status_code == 200 and "privattrib" in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200 and client.get("/static/style.css").status_code == 200
    info = client.get("/api/info").json()
    from privattrib.obfuscation import get_method_class

    offered = [m for m in available_methods() if not get_method_class(m).reads_local_files]
    assert [m["name"] for m in info["methods"]] == offered and "adv" not in offered and "dp-pix" in offered
    dp = {p["name"]: p for p in next(m for m in info["methods"] if m["name"] == "dp-pix")["parameters"]}
    assert dp["epsilon"]["type"] == "number" and dp["epsilon"]["exclusive_minimum"] == 0
    assert dp["b"]["type"] == "integer" and dp["b"]["minimum"] == 1
    assert dp["noise"]["choices"] == ["fast", "secure"] and dp["noise"]["form_default"] == "secure"
    blur = {p["name"]: p for p in next(m for m in info["methods"] if m["name"] == "blur")["parameters"]}
    assert blur["k"]["odd"] and blur["sigma"]["optional"]
    assert info["limits"] == {"max_upload_bytes": 300_000, "max_pixels": 2_000_000}
    assert info["attribution"] is None and info["reid"] is None and info["keeps_uploads"] is False


def test_happy_path_dp_pix_honours_exif_orientation_and_downloads_pixels_only(client):
    # stored 40 x 56 with EXIF orientation 6 (rotate 90 degrees): a viewer shows 56 x 40
    data = _jpeg(gradient_rgb(40, 56, 4), exif=exif_with_secret(orientation=6).tobytes())
    assert SECRET.encode() in data
    r = post(client, data, "holiday.jpg", **{"method": "dp-pix", "param.epsilon": "0.5", "param.b": "8"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["input"]["exif_orientation"] == 6 and (body["input"]["height"], body["input"]["width"]) == (56, 40)
    # publishing defaults to the exact noise, and the seed stays secret
    assert body["method"]["spec"] == "dp-pix:b=8,m=16,epsilon=0.5,noise=secure" and body["method"]["seeded"] is False
    assert body["method"]["epsilon"] == 0.5 and body["method"]["privacy"].startswith("epsilon-DP")
    m = body["metrics"]
    assert 0 < m["psnr"] < 30 and -1 <= m["ssim"] < 0.9 and m["mse"] > 0 and m["identical"] is False
    assert body["attribution"] is None and body["reid"] is None and body["faces"] is None
    png = _png_from_data_url(body["images"]["protected"])
    assert _chunks(png) == [b"IHDR", b"IDAT", b"IEND"] and SECRET.encode() not in png
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (40, 56) and im.mode == "RGB" and not im.getexif() and not im.info
    assert body["download_name"] == "holiday-protected.png"
    assert r.headers["cache-control"] == "no-store"
    original = _png_from_data_url(body["images"]["original"])
    with Image.open(io.BytesIO(original)) as im:
        assert im.size == (40, 56)  # the preview is the oriented original


def test_png_endpoint_is_the_obfuscate_command_byte_for_byte(client, tmp_path):
    """The page and `privattrib obfuscate` share one code path: same seed, key and method, same bytes."""
    from typer.testing import CliRunner

    from privattrib.cli import app

    data = _jpeg(gradient_rgb(48, 64, 7))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(data)
    for method in ("dp-pix:b=8,m=1,epsilon=1", "blur:k=7", "svd-mp:k=2,epsilon=5"):
        result = CliRunner().invoke(app, ["obfuscate", str(tmp_path / "in" / "a.jpg"), "-o", str(tmp_path / "out"),
                                          "--method", method, "--seed", "11"])
        assert result.exit_code == 0, result.output
        r = post(client, data, "a.jpg", "/api/protect.png", method=method, seed="11")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        assert r.headers["content-disposition"] == 'attachment; filename="a-protected.png"'
        assert r.content == (tmp_path / "out" / "a.png").read_bytes(), method
    # without a seed the DP noise is the exact kind and differs between two uploads
    first = post(client, data, "a.jpg", "/api/protect.png", method="dp-pix:b=8,m=1,epsilon=1")
    second = post(client, data, "a.jpg", "/api/protect.png", method="dp-pix:b=8,m=1,epsilon=1")
    assert first.headers["x-privattrib-method"].endswith("noise=secure") and first.content != second.content


def test_every_file_of_the_bad_input_corpus_is_protected_or_refused_with_a_reason(client, tmp_path):
    expect = make_corpus(tmp_path / "corpus")
    seen = 0
    for rel, exp in expect.items():
        path = tmp_path / "corpus" / rel
        if path.is_symlink() or not path.is_file() or not os.access(path, os.R_OK):
            continue  # links, FIFOs and unreadable files cannot be uploaded: a browser sends bytes
        if exp.reason and exp.reason.startswith("not an image file"):
            continue  # left out of folders by their extension; an upload is judged by its content
        seen += 1
        r = post(client, path.read_bytes(), path.name, **{"method": "dp-pix", "param.b": "4", "param.m": "1"})
        if exp.ok:
            assert r.status_code == 200, (rel, r.text)
            h, w, _ = exp.shape
            assert (r.json()["input"]["height"], r.json()["input"]["width"]) == (h, w), rel
            assert SECRET.encode() not in _png_from_data_url(r.json()["images"]["protected"])
        else:
            assert r.status_code in (400, 413), (rel, r.status_code)
            assert exp.reason.split()[0] in r.json()["error"], (rel, r.json())
            assert r.json()["field"] == "file" and path.name in r.json()["error"]
    assert seen >= 15


def test_wrong_type_truncated_and_missing_fields_are_clear_4xx(client):
    text = post(client, b"name,score\nalice,3\n", "scores.csv")
    assert text.status_code == 400 and text.json() == {
        "error": "scores.csv: not an image (content is no recognised image format)", "field": "file"}
    jpeg = _jpeg(gradient_rgb(64, 64, 1))
    cut = post(client, jpeg[: len(jpeg) // 2], "cut.jpg")
    assert cut.status_code == 400 and "truncated" in cut.json()["error"]
    empty = post(client, b"", "empty.png")
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    no_file = post(client, None)
    assert no_file.status_code == 422 and no_file.json()["field"] == "file" and "no photo" in no_file.json()["error"]
    no_method = client.post("/api/protect", files={"file": ("a.jpg", jpeg, "image/jpeg")})
    assert no_method.status_code == 422 and no_method.json()["field"] == "method"
    not_multipart = client.post("/api/protect", json={"method": "blur"})
    assert not_multipart.status_code == 415 and "multipart" in not_multipart.json()["error"]
    two = client.post("/api/protect", data={"method": "blur"},
                      files=[("file", ("a.jpg", jpeg, "image/jpeg")), ("file", ("b.jpg", jpeg, "image/jpeg"))])
    assert two.status_code == 400 and "Too many files" in two.json()["error"]
    assert client.get("/nope").status_code == 404 and "error" in client.get("/nope").json()
    assert client.get("/api/protect").status_code == 405


def test_oversized_upload_and_decompression_bomb_are_refused(client):
    def noise_png(side: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(side).integers(0, 256, size=(side, side, 3), dtype=np.uint8)).save(
            buf, format="PNG")
        return buf.getvalue()

    big = noise_png(500)
    assert len(big) > 700_000  # refused from its Content-Length, before it is read
    r = post(client, big, "big.png")
    assert r.status_code == 413 and "over the limit of 293 KB" in r.json()["error"] and r.json()["field"] == "file"
    over = noise_png(330)
    assert 300_000 < len(over) < 400_000  # read, then refused by size
    r = post(client, over, "over.png")
    assert r.status_code == 413 and r.json()["error"] == "over.png: the file is 320 KB, over the limit of 293 KB"

    # a chunked upload (no Content-Length) is cut off as the bytes arrive
    boundary = "privattribboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"method\"\r\n\r\nblur\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + big + f"\r\n--{boundary}--\r\n".encode()
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
    r = client.post("/api/protect", content=chunks, headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413 and "limit" in r.json()["error"]

    bomb = post(client, bomb_png(60000, 60000), "bomb.png")
    assert bomb.status_code == 413 and "decompression bomb" in bomb.json()["error"] and "3600000000" in bomb.json()["error"]
    # under Pillow's own guard but over this server's pixel limit
    wide = post(client, bomb_png(2000, 1500), "wide.png")
    assert wide.status_code == 413 and "2,000,000" in wide.json()["error"]


@pytest.mark.parametrize("fields, field, fragment", [
    ({"method": "dp-pix", "param.epsilon": "0"}, "param.epsilon", "epsilon must be number > 0"),
    ({"method": "dp-pix", "param.epsilon": "-1"}, "param.epsilon", "> 0"),
    ({"method": "dp-pix", "param.epsilon": "nan"}, "param.epsilon", "epsilon"),
    ({"method": "dp-pix", "param.b": "0"}, "param.b", "b must be integer >= 1"),
    ({"method": "dp-pix", "param.m": "1.5"}, "param.m", "integer"),
    ({"method": "dp-pix", "param.noise": "quantum"}, "param.noise", "fast | secure"),
    ({"method": "blur", "param.k": "4"}, "param.k", "odd"),
    ({"method": "blur", "param.radius": "3"}, "param.radius", "no parameter 'radius'"),
    ({"method": "sharpen"}, "method", "unknown method"),
    ({"method": "dp-pix:epsilon=0"}, "method", "epsilon"),
    ({"method": "dp-pix:epsilon=1", "param.b": "4"}, "method", "not both"),
    ({"method": "svd-mp", "param.k": "50"}, "method", "k <= 40"),  # more than the 40 x 40 photo has
    ({"method": "svd-mp", "param.k": "65"}, "param.k", "over the page's limit of 64"),
    ({"method": "blur", "param.k": "1003"}, "param.k", "over the page's limit of 1001"),
    ({"method": "dp-blur:k=2001"}, "param.k", "over the page's limit of 1001"),
    ({"method": "pixelate", "seed": "-3"}, "seed", "2**64"),
    ({"method": "pixelate", "seed": "abc"}, "seed", "whole number"),
    ({"method": "pixelate", "faces": "maybe"}, "faces", "true or false"),
    ({"method": "pixelate", "faces": "true", "if_no_face": "keep"}, "if_no_face", "skip, whole"),
    ({"method": "pixelate", "faces": "true", "margin": "5"}, "margin", "[0, 2]"),
])
def test_bad_parameter_values_name_the_field(client, fields, field, fragment):
    r = post(client, _jpeg(gradient_rgb(40, 40, 2)), "a.jpg", **fields)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and fragment in r.json()["error"], r.json()


def test_the_form_states_the_page_limits(client):
    methods = {m["name"]: m for m in client.get("/api/info").json()["methods"]}
    k = {name: next(p for p in methods[name]["parameters"] if p["name"] == "k")["form_max"]
         for name in ("blur", "dp-blur", "svd-mp")}
    assert k == {"blur": 1001, "dp-blur": 1001, "svd-mp": 64}
    assert all(p["form_max"] is None for p in methods["dp-pix"]["parameters"])
    assert post(client, _jpeg(gradient_rgb(40, 40, 2)), "a.jpg", method="blur", **{"param.k": "1001"}).status_code == 200


@pytest.mark.skipif(not available_backends(), reason="no offline face detector installed")
def test_faces_only_without_a_face_publishes_nothing_unless_asked(client):
    data = _jpeg(gradient_rgb(80, 80, 3))
    r = post(client, data, "wall.jpg", method="blur", faces="true")
    assert r.status_code == 422 and r.json()["field"] == "faces" and "no face found" in r.json()["error"]
    whole = post(client, data, "wall.jpg", method="blur", faces="true", if_no_face="whole")
    assert whole.status_code == 200 and whole.json()["faces"]["found"] == 0
    assert whole.json()["status"] == "written (no face: whole image)"


def test_nothing_is_written_to_disk_unless_asked(tmp_path, monkeypatch):
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where a spooled upload would land
    client = TestClient(create_app(ProtectService()))
    noisy = np.random.default_rng(1).integers(0, 256, size=(700, 700, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format="PNG")
    assert len(buf.getvalue()) > 1_000_000  # over Starlette's 1 MB in-memory spool
    r = post(client, buf.getvalue(), "noise.png", method="pixelate")
    assert r.status_code == 200 and "kept_in" not in r.json()
    assert list(spool.iterdir()) == []

    keep = tmp_path / "kept"
    client = TestClient(create_app(ProtectService(keep_uploads=keep)))
    assert client.get("/api/info").json()["keeps_uploads"] is True
    r = post(client, buf.getvalue(), "../../etc/noise.png", method="pixelate")
    assert r.status_code == 200
    (folder,) = keep.iterdir()
    assert folder.name.endswith("-noise") and Path(r.json()["kept_in"]) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["original.png", "protected.png", "report.json"]
    assert (folder / "original.png").read_bytes() == buf.getvalue()
    assert json.loads((folder / "report.json").read_text())["method"]["spec"] == "pixelate:b=16"
    assert r.json()["download_name"] == "noise-protected.png"


def test_cross_origin_posts_and_foreign_hosts_are_refused():
    client = TestClient(create_app(ProtectService(), allowed_hosts=LOOPBACK_HOSTS), base_url="http://127.0.0.1:8000")
    data = _jpeg(gradient_rgb(32, 32, 1))
    files = {"file": ("a.jpg", data, "image/jpeg")}
    ok = client.post("/api/protect.png", data={"method": "blur"}, files=files,
                     headers={"origin": "http://127.0.0.1:8000"})
    assert ok.status_code == 200
    evil = client.post("/api/protect.png", data={"method": "blur"}, files=files,
                       headers={"origin": "https://evil.example"})
    assert evil.status_code == 403 and "cross-origin" in evil.json()["error"]
    rebound = client.get("/api/info", headers={"host": "attacker.example:8000"})
    assert rebound.status_code == 400 and "Host" in rebound.json()["error"]
    assert client.get("/api/info", headers={"host": "localhost:8000"}).status_code == 200


def test_the_host_names_the_page_answers_to():
    from privattrib.cli.web import allowed_hosts_for

    assert set(allowed_hosts_for("127.0.0.1", None)) == set(LOOPBACK_HOSTS)
    assert "box.lan" in allowed_hosts_for("127.0.0.1", ["Box.lan"])
    assert allowed_hosts_for("0.0.0.0", None) is None  # bound beyond this computer, nothing named: any Host
    assert allowed_hosts_for("0.0.0.0", [" "]) is None
    assert {"box.lan", "fe80::1"} <= set(allowed_hosts_for("0.0.0.0", ["box.lan:8000", "[fe80::1]:8000"]))
    lan = allowed_hosts_for("0.0.0.0", ["192.168.1.5", "box.lan"])
    assert {"192.168.1.5", "box.lan", "localhost"} <= set(lan)
    client = TestClient(create_app(ProtectService(), allowed_hosts=lan), base_url="http://box.lan:8000")
    assert client.get("/api/info").status_code == 200
    assert client.get("/api/info", headers={"host": "rebound.example:8000"}).status_code == 400


def test_attribution_before_and_after_with_the_models_scope():
    """The page's attribution path, with a small stand-in classifier (the demo model takes minutes to train)."""
    import torch

    from privattrib.attribution.inference import Attributor

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
    attributor = Attributor(model, class_names=["real", "dcgan", "sngan"], real_class="real", image_size=16,
                            in_channels=3, temperature=2.0, calibrated=True, scope="Knows real, dcgan and sngan only.",
                            source="test-model", device="cpu")
    client = TestClient(create_app(ProtectService(attributor=attributor)))
    assert client.get("/api/info").json()["attribution"]["scope"] == "Knows real, dcgan and sngan only."
    r = post(client, _jpeg(gradient_rgb(30, 50, 5)), "a.jpg", method="pixelate", **{"param.b": "10"})
    assert r.status_code == 200, r.text
    a = r.json()["attribution"]
    for side in ("before", "after"):
        probs = a[side]["probabilities"]
        assert set(probs) == {"real", "dcgan", "sngan"} and abs(sum(probs.values()) - 1) < 1e-6
        assert a[side]["predicted"] == max(probs, key=probs.get)
        assert a[side]["resized_from"] == [30, 50]  # the model's 16 x 16 input: the page says so
    assert a["before"]["probabilities"] != a["after"]["probabilities"]
    assert a["model"]["scope"] == "Knows real, dcgan and sngan only." and a["model"]["calibrated"] is True


def _write_gallery(root: Path, people: int = 6, per_person: int = 9, size: int = 48) -> np.ndarray:
    """Synthetic identities as an identity folder set; returns one extra (unseen) photo of person 2."""
    from privattrib.data import synthetic_faces

    faces = synthetic_faces(n_identities=people, per_identity=per_person + 1, size=size, seed=3)
    for i, (img, label) in enumerate(zip(faces.images, faces.labels)):
        if i % (per_person + 1) == per_person:
            continue  # the last photo of each person stays out of the gallery
        folder = root / faces.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.transpose(1, 2, 0)).save(folder / f"{i:03d}.png")
    return faces.images[2 * (per_person + 1) + per_person].transpose(1, 2, 0)


def test_reid_risk_against_a_gallery(tmp_path):
    from privattrib.attacks.gallery import IdentityGallery

    unseen = _write_gallery(tmp_path / "gallery")
    gallery = IdentityGallery.load(tmp_path / "gallery", size=32, epochs=6, cache_dir=tmp_path / "cache",
                                   progress=False, device="cpu")
    assert gallery.people == [f"synthetic-{i:03d}" for i in range(6)] and gallery.n_held_out == 6
    assert gallery.from_cache is False and 0 <= gallery.held_out_accuracy <= 1
    again = IdentityGallery.load(tmp_path / "gallery", size=32, epochs=6, cache_dir=tmp_path / "cache",
                                 progress=False, device="cpu")
    assert again.from_cache is True and again.held_out_accuracy == gallery.held_out_accuracy

    client = TestClient(create_app(ProtectService(gallery=gallery)))
    reid_info = client.get("/api/info").json()["reid"]
    assert reid_info["people"] == 6 and reid_info["root"] == "gallery"  # the folder's name, not its path
    assert str(tmp_path) not in client.get("/api/info").text
    # "none" leaves the photo as it is: it must be matched to the same person, at rank 1
    same = post(client, _png(unseen), "person2.png", method="none").json()["reid"]
    assert same["same_person"] is True and same["rank"] == 1 and same["chance"] == pytest.approx(1 / 6)
    assert same["original"]["person"] == same["protected"]["person"]
    assert "whole photo" in same["region"] and same["held_out_accuracy"] == gallery.held_out_accuracy
    r = post(client, _png(unseen), "person2.png", **{"method": "dp-pix", "param.b": "8", "param.epsilon": "0.1"})
    risk = r.json()["reid"]
    assert 1 <= risk["rank"] <= 6 and risk["same_person"] == (risk["rank"] == 1)
    assert risk["original"] == same["original"]  # the original's match does not depend on the method


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_serve_refuses_bad_options_before_starting(tmp_path):
    import re

    from typer.testing import CliRunner

    from privattrib.cli import app

    def run(*args) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["serve", *map(str, args)])
        return result.exit_code, " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())  # unwrap rich's panel

    code, out = run("--reid-gallery", tmp_path / "nope", "--port", 1)
    assert code == 2 and "nope is not a folder" in out
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, out = run("--port", port)
    assert code == 2 and f"port {port} on 127.0.0.1 is already in use" in out
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    code, out = run("--port", free, "--model", tmp_path / "model.pt")
    assert code == 2 and "model not found" in out
    code, out = run("--host", "0.0.0.0", "--port", free, "--model", tmp_path / "m.pt")
    assert code == 2 and "WARNING: listening on 0.0.0.0, not on this computer only" in out
    code, out = run("--port", free, "--device", "warp")  # refused before any model loads
    assert code == 2 and "'warp' is not a device" in out


def test_reid_compares_the_largest_protected_face_box_when_faces_were_protected():
    class Recorder:
        def risk(self, original, protected):
            self.shapes = (original.shape, protected.shape)
            self.same = np.array_equal(original, protected)
            return {"same_person": True}

    gallery = Recorder()
    service = ProtectService(gallery=gallery)
    img = gradient_rgb(60, 80, 2)
    out = img.copy()
    out[10:30, 40:70] = 0
    report = service._reid(img, out, np.array([[0, 0, 8, 8], [40, 10, 30, 20]]))
    assert gallery.shapes == ((20, 30, 3), (20, 30, 3)) and not gallery.same
    assert report["region"] == "the largest protected face box (30x20 at 40,10)"
    assert "whole photo" in service._reid(img, out, None)["region"] and gallery.shapes[0] == (60, 80, 3)


def test_an_unexpected_failure_is_a_json_message_without_a_traceback():
    class Broken(ProtectService):
        def protect(self, *args, **kwargs):
            raise RuntimeError("secret internal detail")

    client = TestClient(create_app(Broken()), raise_server_exceptions=False)
    r = post(client, _jpeg(gradient_rgb(32, 32, 1)), "a.jpg")
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert "RuntimeError" in r.json()["error"] and "server's log" in r.json()["error"]
    assert "Traceback" not in r.text and "secret internal detail" not in r.text


@pytest.mark.parametrize("fields", [
    {"method": "adv", "param.model": "/etc/passwd"},
    {"method": "adv:eps=4,model=/etc/passwd"},
    {"method": "adv-gen", "param.model": "~/.bashrc"},
])
def test_methods_that_name_server_files_are_refused_before_any_file_is_opened(client, fields, monkeypatch):
    import privattrib.obfuscation.adversarial as adversarial

    opened = []
    monkeypatch.setattr(adversarial, "load_surrogate", lambda *a, **k: opened.append(a))
    r = post(client, _jpeg(gradient_rgb(40, 40, 2)), "a.jpg", **fields)
    assert r.status_code == 422 and r.json()["field"] == "method" and "not offered on the page" in r.json()["error"]
    assert opened == [] and "passwd" not in r.json()["error"].replace(fields.get("method", ""), "")


def test_photos_past_the_waiting_limit_are_refused_with_503_not_queued():
    import threading
    import time

    service = ProtectService(max_waiting=0)  # one photo at work, none may wait
    client = TestClient(create_app(service))
    data = _jpeg(gradient_rgb(32, 32, 1))
    answers = []
    with service._lock:  # the photo at work holds the lock: the first request waits inside protect
        first = threading.Thread(target=lambda: answers.append(post(client, data, "a.jpg")))
        first.start()
        deadline = time.monotonic() + 30
        while service._admitted._value and time.monotonic() < deadline:
            time.sleep(0.01)
        busy = post(client, data, "b.jpg")
    first.join(60)
    assert busy.status_code == 503 and "busy" in busy.json()["error"] and busy.headers["retry-after"] == "5"
    assert answers[0].status_code == 200, answers[0].text
    assert post(client, data, "c.jpg").status_code == 200  # the slot was given back
    with pytest.raises(ValueError, match="max_waiting"):
        ProtectService(max_waiting=-1)


def test_the_page_names_model_files_never_server_directories():
    import torch

    from privattrib.attribution.inference import Attributor

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))
    attributor = Attributor(model, class_names=["real", "dcgan"], real_class="real", image_size=16, in_channels=3,
                            scope="Trained on /srv/private/celeba and ../shared/data/ffhq against dcgan "
                                  "(https://github.com/org/repo/runs).", source="/srv/private/exp/model.pt",
                            messages=["/srv/private/exp holds 2 clean model(s); using the one of seed 0"],
                            device="cpu")
    info = TestClient(create_app(ProtectService(attributor=attributor))).get("/api/info").json()["attribution"]
    assert info["source"] == "model.pt"
    assert info["scope"] == "Trained on celeba and ffhq against dcgan (https://github.com/org/repo/runs)."
    assert info["notes"] == ["exp holds 2 clean model(s); using the one of seed 0"]
    assert "/srv" not in json.dumps(info)


def test_exact_noise_that_would_take_minutes_is_refused_before_any_is_drawn():
    client = TestClient(create_app(ProtectService()))  # the default limits: 24 megapixels
    big = _jpeg(np.zeros((1800, 1800, 3), np.uint8))  # 1800 x 1800 x 3 at b = 1: 9.7 million draws
    r = post(client, big, "big.jpg", method="dp-pix", **{"param.b": "1"})
    assert r.status_code == 422 and r.json()["field"] == "param.b", r.text
    assert "9,720,000 exact noise draws" in r.json()["error"] and "larger b" in r.json()["error"]
    # the seeded (fast, float) noise costs no such time, and is not capped
    r = post(client, big, "big.jpg", path="/api/protect.png", method="dp-pix", seed="1", **{"param.b": "1"})
    assert r.status_code == 200, r.text
