"""The report: a section registry, an HTML template and inline-SVG helpers."""

from deepscope.report.audit import audit
from deepscope.report.html import ReportPaths, write_report
from deepscope.report.sections import (
    SECTIONS,
    AuditContext,
    Figure,
    Html,
    Section,
    Table,
    Text,
    register_section,
)
from deepscope.report.svg import figure_to_svg, new_figure

__all__ = [
    "SECTIONS",
    "AuditContext",
    "Section",
    "Text",
    "Table",
    "Figure",
    "Html",
    "register_section",
    "figure_to_svg",
    "new_figure",
    "write_report",
    "audit",
    "ReportPaths",
]
