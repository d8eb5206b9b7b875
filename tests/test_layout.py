"""The layout rules: tests mirror the package file for file, and no source file outgrows ~400 lines.

``deepscope/x/y.py`` is tested in ``tests/x/test_y.py`` (a private ``_y.py`` in ``test__y.py`` or
``test_y.py``). A source file over :data:`MAX_LINES` lines is split along its concerns.
Exceptions are listed below, each with its reason; an exception that no longer applies fails too,
so the lists only shrink.
"""

from __future__ import annotations

from pathlib import Path

import deepscope

PACKAGE = Path(deepscope.__file__).parent
TESTS = Path(__file__).parent
MAX_LINES = 450  # ARCHITECTURE.md: "about 400 lines at most"; 450 leaves room for a docstring

# Files that need no mirrored test file of their own, with the reason.
NO_MIRROR = {
    "__init__.py": "a package's public surface: re-exports tested through the modules they come from",
    "__main__.py": "`python -m deepscope` calls the CLI's main(), tested in tests/cli/test__app.py",
}

# Source files still waiting for their mirrored test file (issue 14, item 7): their behaviour is
# tested elsewhere today (the file named); each entry leaves this list when its mirror is written.
PENDING: dict[str, str] = {}

# Source files allowed over MAX_LINES, with the reason (none today).
LONG: dict[str, str] = {}


def _sources() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def _mirrors(source: Path) -> list[Path]:
    """The test files that count as the mirror of ``source``."""
    relative = source.relative_to(PACKAGE)
    folder = TESTS.joinpath(*relative.parts[:-1])
    names = [f"test_{relative.name}"]
    if relative.name.startswith("_"):
        names.append(f"test_{relative.name.lstrip('_')}")
    return [folder / name for name in names]


def _key(source: Path) -> str:
    return source.relative_to(PACKAGE.parent).as_posix()


def test_every_source_file_has_its_mirrored_test_file():
    missing = [
        _key(source)
        for source in _sources()
        if source.name not in NO_MIRROR and _key(source) not in PENDING
        if not any(mirror.exists() for mirror in _mirrors(source))
    ]
    assert missing == [], "source files without tests/<same path>/test_<name>.py: " + ", ".join(missing)


def test_the_pending_list_only_shrinks():
    stale = [key for key in PENDING if not (PACKAGE.parent / key).exists()]
    stale += [key for key in PENDING if any(m.exists() for m in _mirrors(PACKAGE.parent / key))]
    assert stale == [], f"remove from PENDING (mirrored now, or gone): {stale}"


def test_no_source_file_exceeds_the_line_limit():
    long = {
        _key(source): count
        for source in _sources()
        if (count := len(source.read_text(encoding="utf-8").splitlines())) > MAX_LINES and _key(source) not in LONG
    }
    assert long == {}, f"split these along their concerns (over {MAX_LINES} lines): {long}"
    stale = [key for key in LONG if len((PACKAGE.parent / key).read_text(encoding="utf-8").splitlines()) <= MAX_LINES]
    assert stale == [], f"remove from LONG (short enough now): {stale}"


def test_the_mirror_rule_itself():
    """A private module may be mirrored with or without its underscore; a public one only one way."""
    private, public = PACKAGE / "sweep" / "_checkers.py", PACKAGE / "sweep" / "spec.py"
    assert [m.name for m in _mirrors(private)] == ["test__checkers.py", "test_checkers.py"]
    assert [m.relative_to(TESTS).as_posix() for m in _mirrors(public)] == ["sweep/test_spec.py"]
