from typer.testing import CliRunner

from privattrib.cli import app


def test_help_lists_the_command():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "privattrib" in result.output.lower() or "obfuscate" in result.output.lower()


def test_atomic_write_gives_the_umask_mode_not_owner_only(tmp_path):
    import os
    import stat

    from privattrib.common import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "results.csv", "a,b\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "results.csv").stat().st_mode) == 0o644
    assert (tmp_path / "results.csv").read_text() == "a,b\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temp file left


def test_version_names_python_and_the_libraries_that_decide_results():
    for args in (["version"], ["--version"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        for name in ("privattrib", "python", "torch", "numpy", "opendp", "scikit-image"):
            assert name in result.output
