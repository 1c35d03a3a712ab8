"""`privattrib demo` end to end (minutes: integration). Real components, built-in data only."""

from __future__ import annotations

import pytest

from privattrib.experiments import load_builtin_spec, read_csv, validate_spec


@pytest.mark.integration
def test_demo_runs_every_method_and_writes_the_report(tmp_path):
    from typer.testing import CliRunner

    from privattrib.cli import app

    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "-o", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "report" in res.output and str(out / "report.html") in res.output.replace("\n", "")
    spec = validate_spec(load_builtin_spec("demo"))
    rows = read_csv(out / "results.csv")
    assert len(rows) == len(spec.cells())
    assert {r["method"] for r in rows} == {"none", "pixelate", "blur", "dp-pix", "dp-blur", "svd-mp"}
    assert {r["scenario"] for r in rows} == {"clean-train", "obfuscated-train", "fine-tune"}
    clean = next(r for r in rows if r["spec"] == "none")
    assert clean["accuracy"] > 2 * clean["chance"], "the clean classifier should separate the sources"
    # a second call resumes: nothing to do
    again = CliRunner().invoke(app, ["demo", "-o", str(out), "--no-progress"])
    assert again.exit_code == 0 and "0 cells run" in again.output
