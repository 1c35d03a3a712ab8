"""``privattrib methods``: every obfuscation method, its parameters and defaults, privacy notion, paper."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    """Add this module's verbs to the main app."""

    @app.command("methods")
    def methods(
        as_json: bool = typer.Option(False, "--json", help="Print the listing as JSON instead of a table."),
    ) -> None:
        """List the obfuscation methods: parameters with defaults, privacy notion, paper."""
        from privattrib.obfuscation import describe_all

        rows = describe_all()
        if as_json:
            typer.echo(json.dumps(rows, indent=2, default=str))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title="privattrib obfuscation methods (spec: name:key=value,...)", show_lines=True)
        table.add_column("method", style="bold cyan", no_wrap=True)
        table.add_column("parameters (default; allowed)")
        table.add_column("privacy")
        table.add_column("what it does / paper")
        for row in rows:
            params = "\n".join(
                f"{p['name']}={'(required)' if p.get('required') else 'auto' if p['default'] is None else p['default']}"
                f"  ({p['allowed']})" for p in row["parameters"]
            ) or "-"
            what = row["summary"] + (f"\n[dim]{row['paper']}[/dim]" if row["paper"] else "")
            table.add_row(row["name"], params, row["privacy"], what)
        console = Console()
        console.print(table)
        console.print(
            "epsilon of dp-pix/dp-blur is epsilon-DP for images differing in at most m pixels; "
            "svd-mp's epsilon is d_X-privacy and is not comparable. Example: "
            "[bold]privattrib obfuscate photo.jpg -o out --method dp-pix:b=16,m=16,epsilon=0.5[/bold]"
        )
