"""Static layering checks: lower layers never import higher ones (see shared/design/ARCHITECTURE.md).

The report sits above the families; figures are built below the results, in
``deepscope/_figures.py``, and only exported by ``report/svg.py``. These tests read the source
with :mod:`ast` (nothing is imported), so an import hidden inside a function body counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "deepscope"

# Lower layers: the core modules at the package top (errors, results, guard, problem, registry, io,
# the private helpers, _figures) and the data and models packages. models/report_section.py (the
# model card, which the models family owns) is report code like every family's report_section.py:
# nothing below imports it (deepscope.models does not), only the report's SECTION_ORDER names it.
LOWER_LAYERS = sorted(
    [path for path in PACKAGE.glob("*.py") if path.name not in {"__init__.py", "__main__.py"}]
    + list((PACKAGE / "data").rglob("*.py"))
    + [path for path in (PACKAGE / "models").rglob("*.py") if path.name != "report_section.py"]
)

FAMILIES = ("attribution", "generalization", "curvature", "dynamics", "expressivity")

# A family's report section is report code and may import report/; nothing else in a family may.
# Files allowed an exception to the rule above (none today; add one only with a reason).
PENDING: set[str] = set()


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth, with relative imports made absolute."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def imports_report(path: Path) -> list[str]:
    return sorted(
        name for name in imported_modules(path) if name == "deepscope.report" or name.startswith("deepscope.report.")
    )


def test_the_checker_sees_absolute_relative_and_nested_imports(tmp_path, monkeypatch):
    fake = tmp_path / "deepscope" / "models"
    fake.mkdir(parents=True)
    source = fake / "thing.py"
    source.write_text(
        "def plot():\n    from deepscope.report.svg import new_figure\n"
        "from ..report import sections\nimport deepscope.report.html\nfrom . import mlp\n"
    )
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path / "deepscope")
    assert imports_report(source) == [
        "deepscope.report",
        "deepscope.report.html",
        "deepscope.report.sections",
        "deepscope.report.svg",
        "deepscope.report.svg.new_figure",
    ]


def test_lower_layers_are_found():
    names = {path.relative_to(PACKAGE).as_posix() for path in LOWER_LAYERS}
    assert {"results.py", "errors.py", "_figures.py", "models/history.py", "models/summary.py"} <= names


@pytest.mark.parametrize("path", LOWER_LAYERS, ids=lambda path: path.relative_to(PACKAGE).as_posix())
def test_lower_layers_never_import_the_report(path):
    assert imports_report(path) == [], f"{path.relative_to(PACKAGE)} imports the report layer"


def test_no_lower_layer_imports_the_model_card_section():
    importers = [
        p.relative_to(PACKAGE).as_posix()
        for p in LOWER_LAYERS
        if "deepscope.models.report_section" in imported_modules(p)
    ]
    assert importers == []


def test_lower_layers_never_import_the_families_or_the_cli():
    upper = tuple(f"deepscope.{name}" for name in (*FAMILIES, "report", "sweep", "experiments", "cli"))
    offenders = {}
    for path in LOWER_LAYERS:
        bad = sorted(n for n in imported_modules(path) if n in upper or n.startswith(tuple(u + "." for u in upper)))
        if bad:
            offenders[path.relative_to(PACKAGE).as_posix()] = bad
    assert offenders == {}


def test_families_import_the_report_only_from_their_report_section():
    offenders = {}
    for family in FAMILIES:
        for path in sorted((PACKAGE / family).rglob("*.py")):
            relative = path.relative_to(PACKAGE).as_posix()
            # a family's report section, or a private helper of it (``_report_*.py``), builds report blocks
            if path.name == "report_section.py" or path.name.startswith("_report_") or relative in PENDING:
                continue
            if imports_report(path):
                offenders[relative] = imports_report(path)
    assert offenders == {}


def test_report_helpers_are_used_only_by_their_report_section():
    """A ``_report_*.py`` helper may import the report layer because only its family's report section uses it."""
    offenders = {}
    for helper in sorted(h for family in FAMILIES for h in (PACKAGE / family).rglob("_report_*.py")):
        module = "deepscope." + helper.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        for path in sorted(PACKAGE.rglob("*.py")):
            if path == helper or path == helper.with_name("report_section.py"):
                continue
            if any(name == module or name.startswith(module + ".") for name in imported_modules(path)):
                offenders.setdefault(module, []).append(path.relative_to(PACKAGE).as_posix())
    assert offenders == {}


def test_figures_module_touches_no_global_matplotlib_state():
    names = imported_modules(PACKAGE / "_figures.py") | imported_modules(PACKAGE / "report" / "svg.py")
    assert "matplotlib.pyplot" not in names
    for path in (PACKAGE / "_figures.py", PACKAGE / "report" / "svg.py"):
        calls = [
            node
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "use"
        ]
        assert calls == [], f"{path.name} calls matplotlib.use"


# CLI files allowed private report imports (none today).
CLI_PENDING: set[str] = set()


def private_report_imports(path: Path) -> list[str]:
    """``deepscope.report`` names ``path`` imports through a private module or under a private name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deepscope.report"):
            private_module = any(part.startswith("_") for part in node.module.split("."))
            found.extend(
                f"{node.module}.{alias.name}" for alias in node.names if private_module or alias.name.startswith("_")
            )
    return found


def test_the_cli_uses_only_the_reports_public_names():
    offenders = {}
    for path in sorted((PACKAGE / "cli").rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative not in CLI_PENDING and private_report_imports(path):
            offenders[relative] = private_report_imports(path)
    assert offenders == {}


# Packages or functions exempt from the typing rule (none today).
PROBLEM_PENDING: set[str] = set()
PROBLEM_PENDING_FUNCTIONS: set[str] = set()


def test_every_problem_parameter_is_typed_as_problem():
    untyped = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in PROBLEM_PENDING:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            arguments = node.args
            for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
                annotation = ast.unparse(argument.annotation) if argument.annotation else None
                where = f"{relative.as_posix()}:{node.name}"
                if argument.arg == "problem" and annotation != "Problem" and where not in PROBLEM_PENDING_FUNCTIONS:
                    untyped.append(f"{where} ({annotation})")
    assert untyped == []
