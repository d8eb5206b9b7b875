"""The report: a section registry, the page writer and SVG export.

The built-in sections are listed, in order, in :data:`SECTION_ORDER`, each owned by its family's
``report_section.py``; a section is assembled from isolated blocks (:func:`run_block` returns a
:class:`Part`; :meth:`Section.from_parts` joins them), so one failing analysis shows its error and
the rest of its section stays.

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
    SECTION_ORDER,
    SECTIONS,
    AuditContext,
    Figure,
    Html,
    Part,
    Section,
    Table,
    Text,
    register_section,
    run_block,
)
from deepscope.report.svg import figure_to_svg

__all__ = [
    "SECTIONS",
    "SECTION_ORDER",
    "AuditContext",
    "Section",
    "Text",
    "Table",
    "Figure",
    "Html",
    "register_section",
    "Part",
    "run_block",
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
