"""``privattrib serve``: the local web page (upload a photo, protect it, see what still leaks)."""

from __future__ import annotations

import errno
import ipaddress
import socket
from pathlib import Path
from typing import Optional, Sequence

import typer

from privattrib.cli.options import device_option


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(host: str, extra: Sequence[str] | None) -> tuple[str, ...] | None:
    """The Host header names the page answers to: the loopback names and the bound address, and the
    ``--allowed-host`` names; None (any) only when bound beyond this computer without such names."""
    from privattrib.web.app import LOOPBACK_HOSTS

    extra = named_hosts(extra)
    if not _is_loopback(host) and not extra:
        return None
    return tuple(dict.fromkeys((*LOOPBACK_HOSTS, host.strip("[]").lower(), *extra)))


def named_hosts(names: Sequence[str] | None) -> tuple[str, ...]:
    """``--allowed-host`` values as the page compares them: lower case, without a port or IPv6
    brackets (``Box.lan:8000`` -> ``box.lan``); blank ones dropped."""
    from urllib.parse import urlsplit

    return tuple(h for h in (urlsplit("//" + n.strip()).hostname for n in (names or ()) if n.strip()) if h)


def _check_port_free(host: str, port: int) -> None:
    """Fail now, before minutes of model loading, when the address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise typer.BadParameter(f"port {port} on {host} is already in use; choose another with --port",
                                         param_hint="--port") from None
            raise typer.BadParameter(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                                     param_hint="--host") from None


def register(app: typer.Typer) -> None:
    """Add this module's verbs to the main app."""

    @app.command("serve")
    def serve(
        host: str = typer.Option("127.0.0.1", help="Address to listen on. The default reaches this computer only; "
                                 "anything else makes the page reachable from other machines (a loud warning says so)."),
        port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
        model: Optional[str] = typer.Option(None, "--model", help="Attribution model: a checkpoint of "
                                            "`privattrib train-attributor` or `privattrib run`, an experiment OUTDIR, "
                                            "or 'demo'. Default: none (no attribution shown)."),
        reid_gallery: Optional[Path] = typer.Option(None, "--reid-gallery", help="Identity gallery: one sub-folder of "
                                                    "photos per person. An identity classifier is trained on it (cached) "
                                                    "to say whether a protected photo is still recognised."),
        reid_size: int = typer.Option(64, min=16, max=256, help="Side of the gallery classifier's input (pixels)."),
        reid_epochs: Optional[int] = typer.Option(None, min=1, help="Training epochs of the gallery classifier "
                                                  "(default: the re-identification attack's, 40)."),
        keep_uploads: Optional[Path] = typer.Option(None, "--keep-uploads", help="Keep every upload (as sent, "
                                                    "metadata included), its protected PNG and the report in this "
                                                    "folder. Default: nothing is kept."),
        max_upload_mb: float = typer.Option(30.0, min=0.01, help="Largest upload accepted (MB)."),
        max_megapixels: float = typer.Option(24.0, min=0.0001, help="Largest image accepted (megapixels)."),
        max_waiting: int = typer.Option(4, min=0, help="Photos that may wait while one is protected; more are "
                                        "refused (503, 'busy') instead of held in memory."),
        allowed_host: Optional[list[str]] = typer.Option(None, "--allowed-host", help="A name the page may be "
                                                         "reached by (repeatable), e.g. this machine's LAN name "
                                                         "or address with --host 0.0.0.0; requests naming any "
                                                         "other Host are refused (DNS rebinding)."),
        device: str = device_option(help="where the models run"),
    ) -> None:
        """Serve the web page on this computer: upload a photo, pick a method and its parameters, see
        both images, PSNR/SSIM, attribution before and after, and the re-identification risk;
        download the protected PNG (pixels only)."""
        try:
            import fastapi  # noqa: F401
            import multipart  # noqa: F401  (python-multipart)
            import uvicorn
        except ImportError as exc:
            typer.echo(f"privattrib serve needs the web extra ({exc.name} is missing): pip install 'privattrib[web]'",
                       err=True)
            raise typer.Exit(2)
        from rich.console import Console

        console = Console(stderr=True)
        loopback = _is_loopback(host)
        if not loopback:
            console.print(
                f"[bold red]WARNING: listening on {host}, not on this computer only.[/bold red] Anyone who can reach "
                f"this address on port {port} can use the page: upload photos to this machine, use its CPU, and "
                "see what it answers. There is no login and no encryption (plain HTTP). Use the default "
                "--host 127.0.0.1 unless you mean it.")
            if not named_hosts(allowed_host):
                console.print("[yellow]Any Host header is accepted: give the names the page is reached by with "
                              "--allowed-host NAME so that a web page elsewhere cannot rebind a name of its own to "
                              "this address.[/yellow]")
        if reid_gallery is not None and not reid_gallery.is_dir():
            raise typer.BadParameter(f"{reid_gallery} is not a folder (one sub-folder of photos per person)",
                                     param_hint="--reid-gallery")
        if keep_uploads is not None:
            if keep_uploads.exists() and not keep_uploads.is_dir():
                raise typer.BadParameter(f"{keep_uploads} exists and is not a folder", param_hint="--keep-uploads")
            keep_uploads.mkdir(parents=True, exist_ok=True)
            console.print(f"[yellow]Keeping every upload, metadata included, in {keep_uploads}[/yellow]")
        _check_port_free(host, port)

        from privattrib.attribution.inference import AttributorError
        from privattrib.web.app import create_app
        from privattrib.web.service import build_service

        try:
            service = build_service(model=model, reid_gallery=reid_gallery, reid_size=reid_size,
                                    reid_epochs=reid_epochs, device=device, progress=True,
                                    max_upload_bytes=int(max_upload_mb * 2**20),
                                    max_pixels=int(max_megapixels * 1e6), keep_uploads=keep_uploads,
                                    max_waiting=max_waiting)
        except AttributorError as exc:
            raise typer.BadParameter(str(exc), param_hint="--model") from None
        except (ValueError, FileNotFoundError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--reid-gallery" if reid_gallery else "--model") from None
        if service.attributor is not None:
            for note in service.attributor.messages:
                console.print(f"[dim]model: {note}[/dim]")
        if service.gallery is not None:
            g = service.gallery
            held_out = ("none held out (nobody has two photos)" if g.held_out_accuracy is None
                        else f"{g.held_out_accuracy:.1%}")
            console.print(f"identity gallery: {len(g.people)} people, held-out accuracy {held_out} "
                          f"(chance {g.chance:.1%})"
                          + (" [dim](model from the cache)[/dim]" if g.from_cache else ""))
        service.warm_up()
        app_ = create_app(service, allowed_hosts=allowed_hosts_for(host, allowed_host))
        shown = f"[{host}]" if ":" in host else host
        console.print(f"[bold green]privattrib page: http://{shown}:{port}/[/bold green]  (Ctrl+C to stop)")
        uvicorn.run(app_, host=host.strip("[]"), port=port, log_level="warning", access_log=False)
