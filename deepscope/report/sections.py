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
still written. Inside a section, each block is isolated the same way: a builder assembles its
section from :class:`Part` objects, each made by :func:`run_block`, so one failing analysis shows
its error in place and the section's other blocks stay (:meth:`Section.from_parts`). Builders
should honour ``context.budget`` ("quick" for the demo and tests, "full" for a real audit) to keep
their cost bounded.

Each family owns its section, in its own ``report_section.py``; the built-in sections are listed
explicitly, in render order, in :data:`SECTION_ORDER` (no package walk finds them), and
:func:`load_sections` imports exactly those modules.
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from deepscope.errors import invalid_parameter

__all__ = [
    "AuditContext",
    "Section",
    "SectionSpec",
    "SECTIONS",
    "SECTION_ORDER",
    "register_section",
    "load_sections",
    "ordered_sections",
    "Part",
    "run_block",
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
class Part:
    """One isolated piece of a section: its blocks, its entries for results.json, and a clause
    for the section's summary (empty when it adds none).

    ``cost`` says what the piece cost: :func:`run_block` sets ``block`` and ``seconds``; a builder may
    add ``passes`` (example passes, see :mod:`deepscope.report.cost`), its estimate, or ``declined``
    (the reason it did not run).
    """

    blocks: list[Block] = dataclasses.field(default_factory=list)
    results: dict[str, Any] = dataclasses.field(default_factory=dict)
    sentence: str = ""
    error: str | None = None
    exception: BaseException | None = dataclasses.field(default=None, repr=False, compare=False)
    cost: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)


def _describe(error: BaseException) -> str:
    message = str(error).strip()
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def run_block(label: str, build: Callable[[], Part]) -> Part:
    """Run one block builder; an exception becomes an error block instead of escaping.

    Args:
        label: what the block shows, in words (e.g. "PAC-Bayes certificate"); names the failure.
        build: a function of no arguments returning the block's :class:`Part`.

    Returns:
        ``build()``, or a Part holding one error box (``<label> failed: <Type>: <message>``) and
        ``error`` set; :meth:`Section.from_parts` records it under ``results["block_errors"]``.
        Either way ``cost`` holds the block's label and wall-clock seconds.
    """
    started = time.perf_counter()
    try:
        part = build()
        if not isinstance(part, Part):
            raise TypeError(f"the block builder returned {type(part).__name__}, expected a Part")
        seconds = time.perf_counter() - started
        return dataclasses.replace(part, cost={**part.cost, "block": label, "seconds": seconds})
    except Exception as error:  # noqa: BLE001 - one failing block must not blank its section
        seconds = time.perf_counter() - started
        message = _describe(error)
        box = (
            '<div class="error-box"><p><strong>'
            + html.escape(label)
            + " failed</strong>: "
            + html.escape(message)
            + "</p></div>"
        )
        return Part(
            blocks=[Html(box)],
            error=f"{label}: {message}",
            exception=error,
            cost={"block": label, "seconds": seconds, "error": message},
        )


@dataclasses.dataclass(frozen=True)
class Section:
    """What a section builder returns."""

    summary: str
    blocks: list[Block] = dataclasses.field(default_factory=list)
    results: dict[str, Any] = dataclasses.field(default_factory=dict)
    costs: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @classmethod
    def from_parts(cls, parts: Sequence[Part], summary: Callable[[list[str]], str]) -> Section:
        """Join isolated parts in order; ``summary`` turns the parts' clauses into the section's sentence.

        Results of the parts are merged (later keys win); failed parts are listed, in order, under
        ``results["block_errors"]`` (absent when every part succeeded, so a clean report keeps its shape).
        The parts' costs (those run by :func:`run_block`, or that carry one) are listed in ``costs``.
        When every part failed there is nothing left to show: the first part's exception is raised
        again, so the section fails as a whole (e.g. a model the Problem refused).
        """
        if parts and all(part.exception is not None for part in parts):
            raise parts[0].exception
        blocks: list[Block] = []
        results: dict[str, Any] = {}
        errors: list[str] = []
        for part in parts:
            blocks.extend(part.blocks)
            results.update(part.results)
            if part.error is not None:
                errors.append(part.error)
        if errors:
            results["block_errors"] = errors
        costs = [dict(part.cost) for part in parts if part.cost]
        return cls(
            summary=summary([part.sentence for part in parts if part.sentence]),
            blocks=blocks,
            results=results,
            costs=costs,
        )


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

# The built-in sections, in render order, each with the module that registers it (the family that
# owns it). A new section is added here and in its module; tests check the two agree.
SECTION_ORDER: tuple[tuple[str, str], ...] = (
    ("model_card", "deepscope.models.report_section"),
    ("training", "deepscope.dynamics.report_section"),
    ("generalization", "deepscope.generalization.report_section"),
    ("attribution", "deepscope.attribution.report_section"),
    ("expressivity", "deepscope.expressivity.report_section"),
    ("curvature", "deepscope.curvature.report_section"),
)


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


def load_sections() -> list[tuple[str, str]]:
    """Import the modules named in :data:`SECTION_ORDER`, so their sections are registered.

    Returns the modules that failed to import as ``(module, "ErrorType: message")`` pairs (empty
    when all imported); one broken module never stops the others.
    """
    failures: dict[str, str] = {}
    for _, module in SECTION_ORDER:
        if module in failures:
            continue
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - the report names it and writes the other sections
            failures[module] = _describe(error)
    return sorted(failures.items())


def ordered_sections() -> list[SectionSpec]:
    """Registered sections in render order."""
    return sorted(SECTIONS.values(), key=lambda spec: (spec.order, spec.key))
