"""The ``privattrib`` command. Thin: every verb calls the library.

Each module here owns one group of verbs and adds them with ``register(app)``.
"""

from __future__ import annotations

import typer

from privattrib.cli import adversarial, attacks, attribution, data, experiments, gan, images, methods, train, web

app = typer.Typer(
    name="privattrib",
    help="Obfuscate images for privacy and measure whether attribution, re-identification "
    "and reconstruction still work.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


#: Distributions whose versions decide results (obfuscation, noise, training, metrics), then extras
_VERSIONED = ("torch", "numpy", "opencv-python-headless", "opencv-python", "opendp", "scikit-image", "scipy",
              "pillow", "opacus", "triton", "pytorch-triton", "ray", "dlib", "dlib-bin")


def _versions() -> list[str]:
    import platform
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    import privattrib

    lines = [f"privattrib {privattrib.__version__}", f"python {platform.python_version()} ({platform.platform()})"]
    for dist in _VERSIONED:
        try:
            lines.append(f"{dist} {dist_version(dist)}")
        except PackageNotFoundError:
            continue
    import torch

    if torch.cuda.is_available():
        lines.append(f"cuda {torch.version.cuda}: {torch.cuda.get_device_name(0)}")
    return lines


@app.callback(invoke_without_command=True)
def _main(
    show_version: bool = typer.Option(False, "--version", help="Print the versions and exit.", is_eager=True),
) -> None:
    if show_version:
        version()
        raise typer.Exit()


@app.command()
def version() -> None:
    """Print the versions of privattrib, Python and the libraries it runs on (those installed)."""
    for line in _versions():
        typer.echo(line)


for _module in (methods, images, data, gan, experiments, attacks, attribution, train, web, adversarial):
    _module.register(app)


def main() -> None:
    app()
