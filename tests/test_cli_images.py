"""``privattrib obfuscate`` and ``privattrib metrics`` on generated files and real CelebA photos."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bad_files import SECRET, bad_names, good_names, gradient_rgb, make_corpus
from privattrib.cli import app
from privattrib.data import load_image
from privattrib.obfuscation import make
from privattrib.obfuscation.regions import available_backends

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _chunks(data: bytes) -> set[bytes]:
    pos, kinds = 8, set()
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        kinds.add(data[pos + 4 : pos + 8])
        pos += 12 + n
    return kinds


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / "photos"
    (src / "trip").mkdir(parents=True)
    Image.fromarray(gradient_rgb(40, 48, 1)).save(src / "a.jpg", quality=95)
    Image.fromarray(gradient_rgb(40, 48, 2)).save(src / "trip" / "b.png")
    Image.fromarray(gradient_rgb(40, 48, 3)[:, :, 0]).save(src / "trip" / "grey.png")
    return src


def test_obfuscate_publishes_dp_with_exact_noise_unless_a_seed_asks_for_reproducibility(photos, tmp_path):
    report = tmp_path / "report.csv"
    result = run("obfuscate", photos / "a.jpg", "-o", tmp_path / "out", "--method", "dp-pix:b=8,m=1,epsilon=1",
                 "--report", report)
    assert result.exit_code == 0, result.output
    assert "with dp-pix:b=8,m=1,epsilon=1,noise=secure" in result.output and "Mironov" not in result.output
    assert "dp-pix:b=8,m=1,epsilon=1,noise=secure" in report.read_text()  # the report names the method too
    seeded = run("obfuscate", photos / "a.jpg", "-o", tmp_path / "seeded", "--method", "dp-pix:b=8", "--seed", "1")
    assert seeded.exit_code == 0 and "noise=fast" in seeded.output and "Mironov" in seeded.output
    explicit = run("obfuscate", photos / "a.jpg", "-o", tmp_path / "explicit", "--method", "dp-pix:b=8,noise=fast")
    assert explicit.exit_code == 0 and "noise=fast" in explicit.output


def test_metrics_says_why_nothing_was_measured_and_refuses_an_unwritable_csv(photos, tmp_path):
    small = tmp_path / "small.png"
    Image.fromarray(gradient_rgb(20, 24, 1)).save(small)
    result = run("metrics", photos / "a.jpg", small)
    assert result.exit_code == 1
    assert "none of the 1 matching pair(s) could be measured" in result.output and "nan" not in result.output
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = run("metrics", photos / "a.jpg", photos / "a.jpg", "--csv", blocked / "x.csv")
    assert result.exit_code == 2 and "cannot be written" in result.output and "Traceback" not in result.output


def test_obfuscate_folder_mirrors_paths_and_matches_the_library(photos, tmp_path):
    out = tmp_path / "out"
    result = run("obfuscate", photos, "-o", out, "--method", "dp-pix:b=8,m=16,epsilon=1", "--seed", "3")
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["a.png", "trip/b.png", "trip/grey.png"]
    # Noise key = relative path of the input: the library gives the same bytes.
    ob = make("dp-pix:b=8,m=16,epsilon=1")
    expected = ob(load_image(photos / "trip" / "b.png"), seed=3, keys=["trip/b.png"])
    assert np.array_equal(load_image(out / "trip" / "b.png"), expected)
    assert load_image(out / "trip" / "grey.png").shape == (40, 48, 1)  # grey stays grey
    # Rerun: same seed, same bytes (reproducible); other seed, other noise.
    again = tmp_path / "again"
    assert run("obfuscate", photos, "-o", again, "--method", "dp-pix:b=8,m=16,epsilon=1", "--seed", "3").exit_code == 0
    assert (again / "a.png").read_bytes() == (out / "a.png").read_bytes()


def test_outputs_carry_pixels_only(tmp_path):
    corpus = tmp_path / "corpus"
    make_corpus(corpus)
    out = tmp_path / "out"
    result = run("obfuscate", corpus / "metadata.png", corpus / "exif_rotated.jpg", corpus / "rgba.png",
                 "-o", out, "--method", "pixelate:b=4", "--seed", "0")
    assert result.exit_code == 0, result.output
    for name in ("metadata.png", "exif_rotated.png", "rgba.png"):
        data = (out / name).read_bytes()
        assert _chunks(data) == {b"IHDR", b"IDAT", b"IEND"}, name
        assert SECRET.encode() not in data and b"Exif" not in data and b"xmp" not in data.lower()
        assert Image.open(out / name).mode in ("RGB", "L")  # no alpha channel
    # EXIF orientation applied before obfuscating: the output has the displayed shape.
    assert load_image(out / "exif_rotated.png").shape == (40, 30, 3)


def test_bad_files_are_named_and_make_the_exit_status_non_zero(tmp_path):
    corpus = tmp_path / "corpus"
    expect = make_corpus(corpus)
    out = tmp_path / "out"
    result = run("obfuscate", corpus, "-o", out, "--method", "blur:k=3", "--seed", "0")
    assert result.exit_code == 1
    # files that are not images by name (notes.txt, face.pgm.bad, hidden files) are ignored, not failures
    not_images = [n for n in bad_names(expect) if expect[n].reason == "not an image file"]
    assert len(not_images) == 2
    for name in bad_names(expect):
        if name in not_images:
            assert f"skipped {corpus / name}" not in result.output and Path(name).name in result.output, name
        else:
            assert f"skipped {corpus / name}" in result.output, name
    assert f"ignored {len(not_images)} entries" in result.output
    written = {p.relative_to(out).with_suffix("").as_posix() for p in out.rglob("*.png")}
    stems = [Path(n).with_suffix("").as_posix() for n in good_names(expect)]
    # good.jpg/good.png, grey.png/grey.pgm, pic.webp/pic.bmp would land on one PNG: both refused.
    clashing = {s for s in stems if stems.count(s) > 1}
    assert clashing == {"good", "grey", "pic"}
    assert written == set(stems) - clashing
    assert result.output.count("also maps to") == 6
    strict = run("obfuscate", corpus, "-o", tmp_path / "strict", "--method", "blur:k=3", "--strict")
    assert strict.exit_code == 1 and "bad file" in strict.output


def test_hidden_and_non_image_files_do_not_fail_a_folder(photos, tmp_path):
    # a real photo folder holds .DS_Store, Thumbs.db, sidecar files: not bad images
    folder = tmp_path / "album"
    shutil.copytree(photos, folder)
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "IMG_0001.xmp").write_text("<x:xmpmeta/>")
    out, report = tmp_path / "out", tmp_path / "report.csv"
    result = run("obfuscate", folder, "-o", out, "--method", "pixelate:b=4", "--seed", "0", "--report", report)
    assert result.exit_code == 0, result.output
    assert "ignored 3 entries" in result.output and "skipped" not in result.output.replace("0 skipped", "")
    statuses = {Path(r["input"]).name: r["status"] for r in csv.DictReader(report.open())}
    assert statuses[".DS_Store"].startswith("ignored:") and statuses["Thumbs.db"].startswith("ignored:")
    # named explicitly, a non-image file is still a bad input
    explicit = run("obfuscate", folder / "Thumbs.db", "-o", tmp_path / "o2", "--method", "pixelate:b=4")
    assert explicit.exit_code == 1 and "skipped" in explicit.output


def test_never_overwrites_an_input(photos, tmp_path):
    inside = run("obfuscate", photos, "-o", photos / "out", "--method", "pixelate:b=4")
    assert inside.exit_code == 2 and "inside the input folder" in inside.output
    same = run("obfuscate", photos, "-o", photos, "--method", "pixelate:b=4")
    assert same.exit_code == 2
    png = photos / "trip" / "b.png"
    before = png.read_bytes()
    onto = run("obfuscate", png, "-o", photos / "trip", "--method", "pixelate:b=4")
    assert onto.exit_code == 2 and "replace an original" in onto.output
    # An output path that is a symlink to the input is refused too.
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "b.png").symlink_to(png)
    via = run("obfuscate", png, "-o", tmp_path / "linked", "--method", "pixelate:b=4")
    assert via.exit_code == 2 and "would overwrite the input" in via.output
    assert png.read_bytes() == before
    # Two inputs that would land on one output are both refused, nothing is clobbered.
    Image.fromarray(gradient_rgb(8, 8)).save(photos / "a.png")
    clash = run("obfuscate", photos, "-o", tmp_path / "o2", "--method", "pixelate:b=4")
    assert clash.exit_code == 1 and "also maps to a.png" in clash.output
    assert not (tmp_path / "o2" / "a.png").exists()


def test_bad_arguments(photos, tmp_path):
    assert run("obfuscate", photos, "-o", tmp_path / "o", "--method", "pixelate:b=0").exit_code == 2
    assert run("obfuscate", photos, "-o", tmp_path / "o", "--method", "nope").exit_code == 2
    assert run("obfuscate", photos, "-o", tmp_path / "o", "--method", "blur:k=3", "--box", "1,2,3").exit_code == 2
    assert run("obfuscate", photos, "-o", tmp_path / "o", "--method", "blur:k=3", "--faces", "--box", "0,0,4,4").exit_code == 2
    assert run("obfuscate", tmp_path / "missing", "-o", tmp_path / "o", "--method", "blur:k=3").exit_code == 2
    margin = run("obfuscate", photos, "-o", tmp_path / "o", "--method", "blur:k=3", "--faces", "--margin", "5")
    assert margin.exit_code == 2 and "margin" in margin.output and not (tmp_path / "o").exists()
    too_big = run("obfuscate", photos, "-o", tmp_path / "o", "--method", "dp-pix:b=8", "--seed", str(2**64))
    assert too_big.exit_code == 2 and "2**64" in too_big.output


def test_box_obfuscates_inside_only(photos, tmp_path):
    out = tmp_path / "out"
    result = run("obfuscate", photos / "trip" / "b.png", "-o", out, "--method", "pixelate:b=4", "--box", "8,4,16,12")
    assert result.exit_code == 0, result.output
    a, b = load_image(photos / "trip" / "b.png"), load_image(out / "b.png")
    changed = (a != b).any(axis=2)
    assert changed[4:16, 8:24].any() and not changed[:4].any() and not changed[:, :8].any()
    assert not changed[16:].any() and not changed[:, 24:].any()
    outside = run("obfuscate", photos / "trip" / "b.png", "-o", tmp_path / "o3", "--method", "pixelate:b=4", "--box", "500,500,4,4")
    assert outside.exit_code == 1 and "outside" in outside.output


def test_metrics_matches_by_relative_path(photos, tmp_path):
    out = tmp_path / "out"
    assert run("obfuscate", photos, "-o", out, "--method", "pixelate:b=8", "--seed", "0").exit_code == 0
    (photos / "extra.png").write_bytes((out / "a.png").read_bytes())
    result = run("metrics", photos, out, "--csv", tmp_path / "m.csv")
    assert result.exit_code == 0, result.output
    assert "1 only in" in result.output
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert [r["file"] for r in rows] == ["a", "trip/b", "trip/grey", "MEAN"]
    from privattrib import metrics as m

    x, y = load_image(photos / "trip" / "b.png"), load_image(out / "trip" / "b.png")
    assert float(rows[1]["mse"]) == pytest.approx(float(m.mse(x, y)))
    assert float(rows[1]["ssim"]) == pytest.approx(float(m.ssim(x, y)))
    assert float(rows[3]["psnr"]) == pytest.approx(np.mean([float(r["psnr"]) for r in rows[:3]]))
    same = run("metrics", photos / "trip" / "b.png", photos / "trip" / "b.png")
    assert same.exit_code == 0 and "inf" in same.output
    assert run("metrics", photos, tmp_path / "empty_missing").exit_code == 2


@pytest.mark.shared_data
@pytest.mark.skipif(not available_backends(), reason="no offline face detector installed (OpenCV 5 ships no Haar cascade; pip install dlib-bin)")
def test_faces_on_real_celeba(celeba_root, tmp_path):
    src = tmp_path / "celeba"
    src.mkdir()
    names = sorted(p.name for p in (celeba_root / "img_align_celeba").iterdir())[:20]
    for n in names:
        shutil.copy(celeba_root / "img_align_celeba" / n, src / n)
    out = tmp_path / "out"
    result = run("obfuscate", src, "-o", out, "--method", "pixelate:b=8", "--faces", "--seed", "0",
                 "--if-no-face", "whole", "--report", tmp_path / "r.csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    found = [int(r["faces"]) for r in rows]
    assert len(found) == 20 and sum(f >= 1 for f in found) >= 16  # the detector finds most aligned faces
    assert "faces per image" in result.output and f"{names[0]}: " in result.output
    for r in rows:
        if int(r["faces"]) == 1:
            a, b = load_image(r["input"]), load_image(r["output"])
            changed = (a != b).any(axis=2)
            ys, xs = np.nonzero(changed)
            # Only the face region changed, and it sits in the middle of the aligned crop.
            assert 0 < changed.mean() < 0.8
            assert 40 < ys.mean() < 170 and 50 < xs.mean() < 130
            break


def test_a_file_the_method_or_the_output_cannot_take_is_named_and_skipped(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(gradient_rgb(3, 40, 1)).save(src / "a_thin.png")  # 3 rows: svd-mp k=4 cannot run
    Image.fromarray(gradient_rgb(40, 40, 2)).save(src / "b_ok.png")
    out = tmp_path / "out"
    result = run("obfuscate", src, "-o", out, "--method", "svd-mp:k=4", "--seed", "0")
    assert result.exit_code == 1, result.output
    assert f"skipped {src / 'a_thin.png'}" in result.output and "k <= 3" in result.output
    assert (out / "b_ok.png").exists() and not (out / "a_thin.png").exists()
    # An output path taken by a folder: that file is named, the others are still written.
    (tmp_path / "out2" / "a_thin.png").mkdir(parents=True)
    taken = run("obfuscate", src, "-o", tmp_path / "out2", "--method", "pixelate:b=4")
    assert taken.exit_code == 1 and f"skipped {src / 'a_thin.png'}" in taken.output, taken.output
    assert (tmp_path / "out2" / "b_ok.png").is_file()
    # metrics: a pair too small for SSIM's 11 x 11 window is named and skipped, the rest measured.
    small = run("metrics", src, out)
    assert small.exit_code == 0, small.output
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    Image.fromarray(gradient_rgb(8, 8, 3)).save(tiny / "t.png")
    Image.fromarray(gradient_rgb(40, 40, 2)).save(tiny / "b_ok.png")
    both = run("metrics", tiny, tiny)
    assert both.exit_code == 0 and "skipped" in both.output and "11 x 11" in both.output, both.output
    assert "1 of 2 matched image(s) measured" in both.output


def test_never_replaces_an_original_beside_or_above_the_inputs(photos, tmp_path):
    # a.jpg -> a.png: with OUTDIR = the input file's own folder, the output would replace the
    # original photo a.png that sits beside it (not an input of this run, still someone's original).
    original = gradient_rgb(40, 48, 9)
    Image.fromarray(original).save(photos / "a.png")
    before = (photos / "a.png").read_bytes()
    beside = run("obfuscate", photos / "a.jpg", "-o", photos, "--method", "pixelate:b=4")
    assert beside.exit_code == 2 and "original" in beside.output, beside.output
    assert (photos / "a.png").read_bytes() == before
    # A folder written into one of its parents: trip/b.png -> photos/b.png would replace photos' own b.png.
    Image.fromarray(original).save(photos / "b.png")
    before_b = (photos / "b.png").read_bytes()
    above = run("obfuscate", photos / "trip", "-o", photos, "--method", "pixelate:b=4")
    assert above.exit_code == 2 and "original" in above.output, above.output
    assert (photos / "b.png").read_bytes() == before_b
    # An output folder beside or below the inputs is fine.
    assert run("obfuscate", photos / "a.jpg", "-o", photos / "public", "--method", "pixelate:b=4").exit_code == 0
