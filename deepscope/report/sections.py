"""The report's section registry and the blocks a section is made of.

Each capability family registers a section builder::

    @register_section("curvature", title="Curvature", order=40)
    def curvature_section(context: AuditContext) -> Section:
        result = hessian_eigenvalues(context.problem, k=3)
        return Section(
            summary="The loss is sharpest along ...",          # one plain sentence
            blocks=[Text("..."), Table(result.rows()), Figure(figure_to_svg(result.plot()))],
            results={"hessian_eigenvalues": result.to_dict()},   # goes into results.json
        )

A builder that raises is rendered with its error by the report writer; the other sections are
still written. Builders should honour ``context.budget`` ("quick" for the demo and tests,
"full" for a real audit) to keep their cost bounded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from deepscope.errors import invalid_parameter

__all__ = [
    "AuditContext",
    "Section",
    "SectionSpec",
    "SECTIONS",
    "register_section",
    "Text",
    "Table",
    "Figure",
    "Html",
    "Block",
]


@dataclasses.dataclass(frozen=True)
class Text:
    """A paragraph of plain text (escaped when rendered)."""

    text: str


@dataclasses.dataclass(frozen=True)
class Table:
    """A table from a list of row dicts; ``columns`` fixes the order (default: first-seen)."""

    rows: list[dict[str, Any]]
    columns: list[str] | None = None
    caption: str = ""


@dataclasses.dataclass(frozen=True)
class Figure:
    """An inline SVG figure (from :func:`deepscope.report.svg.figure_to_svg`) with a caption."""

    svg: str
    caption: str = ""


@dataclasses.dataclass(frozen=True)
class Html:
    """Trusted HTML produced by deepscope itself (never user text)."""

    html: str


Block = Text | Table | Figure | Html


@dataclasses.dataclass(frozen=True)
class Section:
    """What a section builder returns."""

    summary: str
    blocks: list[Block] = dataclasses.field(default_factory=list)
    results: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class AuditContext:
    """Everything a section builder may use.

    Attributes:
        problem: the Problem being audited.
        dataset: the DatasetSplits, when the data came from ``deepscope.datasets`` or a file.
        history: the training history, when the model was trained by deepscope (else None).
        learning_rate: the training learning rate, when known (for edge-of-stability plots).
        budget: "quick" (demo, tests) or "full".
        seed: seed for every stochastic estimate in the report.
        model_name: a label for the model (architecture name or file name).
        cache: scratch space shared between sections (e.g. one Hessian spectrum reused).
    """

    problem: Any
    dataset: Any = None
    history: Any = None
    learning_rate: float | None = None
    budget: str = "quick"
    seed: int = 0
    model_name: str = "model"
    cache: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SectionSpec:
    """A registered section."""

    key: str
    title: str
    order: int
    builder: Callable[[AuditContext], Section]


SECTIONS: dict[str, SectionSpec] = {}


def register_section(
    key: str, *, title: str, order: int = 100
) -> Callable[[Callable[[AuditContext], Section]], Callable[[AuditContext], Section]]:
    """Register a section builder under ``key``; sections render in increasing ``order``."""
    if not isinstance(key, str) or not key.isidentifier():
        raise invalid_parameter("key", "register_section", "an identifier-like string", key)

    def decorate(builder: Callable[[AuditContext], Section]) -> Callable[[AuditContext], Section]:
        SECTIONS[key] = SectionSpec(key=key, title=title, order=order, builder=builder)
        return builder

    return decorate


def ordered_sections() -> list[SectionSpec]:
    """Registered sections in render order."""
    return sorted(SECTIONS.values(), key=lambda spec: (spec.order, spec.key))
