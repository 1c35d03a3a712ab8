"""Tables, plots and the self-contained HTML report of an experiment directory.

    from privattrib.report import build_report
    build_report("runs/demo")          # -> runs/demo/report.html
"""

from __future__ import annotations

from privattrib.common import lazy_exports

# matplotlib is imported only when a report is built
_EXPORTS = {
    "build_report": "privattrib.report.html",
    **{name: "privattrib.report.tables"
       for name in ("summarise", "summary_rich_table", "summary_html", "clean_reference")},
}
__all__ = ["build_report", "summarise", "summary_rich_table"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
