"""Tables, plots and the self-contained HTML report of an experiment directory.

    from privattrib.report import build_report
    build_report("runs/demo")          # -> runs/demo/report.html
"""

from __future__ import annotations

__all__ = ["build_report", "summarise", "summary_rich_table"]


def __getattr__(name):  # matplotlib is imported only when a report is built
    if name == "build_report":
        from privattrib.report.html import build_report

        return build_report
    if name in ("summarise", "summary_rich_table", "summary_html", "clean_reference"):
        from privattrib.report import tables

        return getattr(tables, name)
    raise AttributeError(name)
