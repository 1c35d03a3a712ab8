"""``privattrib data check | build | download``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bad_files import bad_names, good_names, make_corpus
from privattrib.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_check_json_on_the_bad_corpus(tmp_path):
    expect = make_corpus(tmp_path / "corpus")
    result = run("data", "check", tmp_path / "corpus", "--json", "--workers", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["kind"] == "folder" and report["images"] == len(good_names(expect))
    assert report["classes"] == ["corpus"]
    reasons = {s["path"].split("corpus/", 1)[1]: s["reason"] for s in report["skipped"]}
    for name in bad_names(expect):
        assert expect[name].reason in reasons[name], name
    assert run("data", "check", tmp_path / "corpus", "--strict", "--workers", "1").exit_code == 1
    human = run("data", "check", tmp_path / "corpus", "--workers", "1")
    assert "usable images" in human.output and "decompression" in human.output


def test_build_and_bad_arguments(tmp_path):
    make_corpus(tmp_path / "corpus")
    result = run("data", "build", tmp_path / "corpus", "--size", "16", "--cache-dir", tmp_path / "c", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "3 x 16 x 16 uint8" in result.output and "skipped" in result.output
    strict = run("data", "build", tmp_path / "corpus", "--size", "16", "--cache-dir", tmp_path / "c2", "--strict")
    assert strict.exit_code == 1 and "error (--strict)" in strict.output
    assert run("data", "build", tmp_path / "nope", "--size", "16").exit_code == 2
    assert run("data", "check", tmp_path / "corpus", "--kind", "zip").exit_code == 2


def test_download_reports_failure_cleanly(tmp_path, monkeypatch):
    from privattrib.data import download

    def offline(remote, dest):
        raise download.DownloadError("cannot reach Google Drive (offline test)")

    monkeypatch.setattr(download, "http_fetch", offline)
    result = run("data", "download", "celeba", tmp_path / "celeba")
    assert result.exit_code == 1 and "cannot reach Google Drive" in result.output


@pytest.mark.shared_data
def test_check_yaleb_json(yaleb_root):
    result = run("data", "check", yaleb_root, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["kind"], report["identities"], report["images"]) == ("identities", 38, 2414)
    assert len(report["classes"]) == 38
    skipped = {s["path"].rsplit("/", 1)[1] for s in report["skipped"]}
    assert "yaleB11_P00A+050E-40.pgm.bad" in skipped and "yaleB01_P00.info" in skipped
    assert "yaleB11_P00_Ambient.pgm" in skipped


def test_check_fails_when_nothing_is_usable(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not a png")
    result = run("data", "check", folder, "--workers", "1")
    assert result.exit_code == 1 and "no usable image" in result.output
