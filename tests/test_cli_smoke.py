from typer.testing import CliRunner

from privattrib.cli import app


def test_help_lists_the_command():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "privattrib" in result.output.lower() or "obfuscate" in result.output.lower()
