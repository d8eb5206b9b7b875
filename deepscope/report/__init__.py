"""The report: a section registry, the page writer and SVG export.

Public pieces for building a page of one's own: the blocks (``Text``, ``Table``, ``Figure``,
``Html``), :func:`render_page` (a self-contained HTML page), :func:`figure_to_svg` (a matplotlib
figure as inline SVG) and :class:`OutputUnit` (the files of one run written all together or not at
all; :func:`written_by_deepscope` says whether a file carries deepscope's marker).
"""

from deepscope._figures import new_figure
from deepscope.report._write import GENERATOR_META, OutputUnit, check_overwrite, written_by_deepscope
from deepscope.report.audit import audit
from deepscope.report.html import ReportPaths, write_report
from deepscope.report.page import render_page
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
from deepscope.report.svg import figure_to_svg

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
    "render_page",
    "OutputUnit",
    "GENERATOR_META",
    "check_overwrite",
    "written_by_deepscope",
    "write_report",
    "audit",
    "ReportPaths",
]
