"""The ``privattrib`` command. Thin: every verb calls the library.

Each module here owns one group of verbs and adds them with ``register(app)``.
"""

from __future__ import annotations

import typer

from privattrib.cli import attacks, data, experiments, gan, images, methods

app = typer.Typer(
    name="privattrib",
    help="Obfuscate images for privacy and measure whether attribution, re-identification "
    "and reconstruction still work.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.command()
def version() -> None:
    """Print the versions of privattrib and the libraries it runs on."""
    import numpy
    import torch

    import privattrib

    typer.echo(f"privattrib {privattrib.__version__}, torch {torch.__version__}, numpy {numpy.__version__}")


for _module in (methods, images, data, gan, experiments, attacks):
    _module.register(app)


def main() -> None:
    app()
