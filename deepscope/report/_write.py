"""All-or-nothing output: the files of one run (a *unit*) appear together or not at all.

``report.html`` + ``results.json`` are one unit, as are the files of ``deepscope train`` and of
``deepscope explain``. Renaming two files one after the other leaves a moment (a SIGKILL, a full
disk, a power cut) where the directory holds the new ``results.json`` next to the old
``report.html``. So the files are not renamed one by one; a generation is switched in one step:

    out/
      report.html   -> .deepscope/report/current/report.html     (relative symbolic links)
      results.json  -> .deepscope/report/current/results.json
      .deepscope/report/
        current     -> gen-<id>                                    (the one switch)
        gen-<id>/report.html, results.json                          (a complete, fsynced generation)
        lock                                                        (one writer at a time)

1. :meth:`OutputUnit.prepare` (before the work, which may take hours): create the directory,
   probe that it is writable (a full disk or a read-only directory is a one-line error now, not at
   the end), take the lock, and delete what a killed run left behind (everything in
   ``.deepscope/<unit>`` other than ``current``, its generation and the lock).
2. :meth:`OutputUnit.commit`: write every file into a fresh ``gen-<id>`` directory and fsync it.
   Files from an older deepscope (regular files, not links) are first copied into a generation of
   their own, ``current`` is pointed at it and each file is replaced by a link to the same bytes,
   so the visible pair never changes during this migration. Links for new names are created
   (they dangle, i.e. do not exist for a reader, until the switch). Then a new ``current`` link is
   renamed over the old one (``rename`` is atomic on POSIX), the directory is fsynced, and old
   generations and links to files the new generation lacks are deleted.

At every instant a reader therefore sees either the previous complete unit or the new complete
unit. A write error (``ENOSPC``, ``EROFS``, ``EACCES``) before the switch deletes the new generation
and raises :class:`~deepscope.errors.DeepscopeError`, leaving the previous unit as it was.
Links are relative, so the directory can be moved or copied with ``cp -r``. Two runs writing into
the same directory at once are refused (the lock), instead of mixing their files.

For the crash-consistency tests, ``DEEPSCOPE_TEST_KILL_AT=<step>`` makes the writer SIGKILL its own
process at a named step (``prepared``, ``staging``, ``staged``, ``migrated``, ``linked``, ``swapped``);
nothing else reads that variable.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from deepscope.errors import DeepscopeError

try:  # POSIX; elsewhere the lock is skipped (the unit is still switched atomically)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["OutputUnit", "STATE_DIR", "written_by_deepscope", "check_overwrite"]

STATE_DIR = ".deepscope"
GENERATOR_META = '<meta name="generator" content="deepscope">'
_KILL_VARIABLE = "DEEPSCOPE_TEST_KILL_AT"
Content = str | bytes | Callable[[Path], Any]


def _kill_point(step: str) -> None:
    """Crash-consistency tests: die here, as a SIGKILL or a power cut would, when asked to."""
    if os.environ.get(_KILL_VARIABLE) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_file(path: Path, content: Content) -> None:
    """Write one file of a generation: text, bytes, or ``writer(path)`` (which may also write siblings)."""
    if callable(content):
        content(path)
    else:
        data = content.encode("utf-8") if isinstance(content, str) else content
        with open(path, "wb") as handle:
            handle.write(data)


def _sync_tree(directory: Path) -> list[str]:
    """fsync every file of ``directory`` and the directory itself; return the file names."""
    names = sorted(entry.name for entry in os.scandir(directory) if entry.is_file(follow_symlinks=False))
    for name in names:
        os.chmod(directory / name, 0o644)
        descriptor = os.open(directory / name, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    _fsync_directory(directory)
    return names


# temporaries of the per-file writes of earlier versions: report/explain files and train's save_model
# (today's save_model names its temporaries .deepscope-tmp-* and removes its own stale ones)
_LEGACY_TEMPORARY = re.compile(
    r"^(\.(report\.html|results\.json|explain\.json|explain\.html|example-\d+\.svg)\.[a-z0-9_]{8}\.tmp"
    r"|(model|init)\.(safetensors|json)[a-z0-9_]{8}\.tmp)$"
)


def _remove_legacy_temporaries(out: Path) -> None:
    """Delete temporaries that a killed run of an earlier deepscope version left in ``out``."""
    for entry in os.scandir(out):
        if _LEGACY_TEMPORARY.match(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


class OutputUnit:
    """The files of one run in ``out``, switched in together (see the module docstring).

    Use as a context manager around the work, so the lock is released however the work ends::

        with OutputUnit(out, "report") as unit:      # probes, locks and cleans up first
            html, data = do_the_work()
            unit.commit({"report.html": html, "results.json": data})

    Args:
        out: the output directory (created if missing).
        unit: the unit's name (``"report"``, ``"train"``, ``"explain"``): its state lives in
            ``out/.deepscope/<unit>``, so units of different commands can share a directory.
    """

    def __init__(self, out: str | os.PathLike[str], unit: str) -> None:
        self.out = Path(out)
        self.unit = unit
        self.base = self.out / STATE_DIR / unit
        self._lock: int | None = None

    def __enter__(self) -> OutputUnit:
        self.prepare()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ before the work
    def prepare(self) -> None:
        """Create ``out``, check it is writable, take the lock and remove stale temporaries.

        Raises:
            DeepscopeError: ``out`` cannot be created or written (read-only, full, not a
                directory), or another deepscope run is writing the same unit there.
        """
        if self.out.exists() and not self.out.is_dir():
            raise DeepscopeError(f"The output path '{self.out}' exists and is not a directory; choose another --out.")
        with self._errors("prepare"):
            self.base.mkdir(parents=True, exist_ok=True)
            self._lock = os.open(self.base / "lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.close()
                raise DeepscopeError(
                    f"Another deepscope run is writing its {self.unit} into '{self.out}' right now; wait for it "
                    "to finish or choose another --out."
                ) from None
            probe = self.base / f"probe-{uuid.uuid4().hex}"
            try:
                _write_file(probe, b"deepscope write probe\n")
                _sync_tree(self.base)
            finally:
                with contextlib.suppress(OSError):
                    probe.unlink()
            self._clean()
            _remove_legacy_temporaries(self.out)
        _kill_point("prepared")

    def close(self) -> None:
        """Release the lock (also done by the context manager)."""
        if self._lock is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock)
            self._lock = None

    # ------------------------------------------------------------------ after the work
    def commit(self, files: Mapping[str, Content]) -> dict[str, Path]:
        """Write ``files`` (name -> text, bytes or ``writer(path)``) as the new generation and switch to it.

        A writer may write sibling files too (``save_model`` writes ``model.json`` next to
        ``model.safetensors``): every file in the generation becomes part of the unit.

        Returns:
            The visible path of each file of the unit (``out/<name>``), by name.

        Raises:
            DeepscopeError: a write failed (full disk, read-only); the previous unit is intact.
        """
        if self._lock is None:
            self.prepare()
        generation = self.base / f"gen-{uuid.uuid4().hex}"
        with self._errors("write", cleanup=generation):
            generation.mkdir()
            for count, (name, content) in enumerate(files.items()):
                _write_file(generation / name, content)
                if count == 0:
                    _kill_point("staging")
            names = _sync_tree(generation)
            _kill_point("staged")
            self._migrate(names)
            for name in names:
                self._link(name)
            _fsync_directory(self.out)
            _kill_point("linked")
            switch = self.base / f"current-{uuid.uuid4().hex}"
            os.symlink(generation.name, switch)
            os.replace(switch, self.base / "current")  # the one atomic step
            _fsync_directory(self.base)
        _kill_point("swapped")
        with contextlib.suppress(OSError):  # leftovers are removed by the next run if this fails
            self._clean()
            self._drop_dangling_links()
        return {name: self.out / name for name in names}

    # ------------------------------------------------------------------ helpers
    def _target(self, name: str) -> str:
        return f"{STATE_DIR}/{self.unit}/current/{name}"

    def _current(self) -> str | None:
        try:
            return os.readlink(self.base / "current")
        except OSError:
            return None

    def _clean(self) -> None:
        """Delete everything in the unit's folder but the lock, ``current`` and the generation it names."""
        keep = {"lock", "current", self._current()}
        for entry in os.scandir(self.base):
            if entry.name in keep:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)

    def _drop_dangling_links(self) -> None:
        prefix = f"{STATE_DIR}/{self.unit}/current/"
        for entry in os.scandir(self.out):
            if entry.is_symlink() and os.readlink(entry.path).startswith(prefix) and not os.path.exists(entry.path):
                os.unlink(entry.path)

    def _link(self, name: str) -> None:
        path, target = self.out / name, self._target(name)
        if path.is_symlink() and os.readlink(path) == target:
            return
        temporary = self.base / f"link-{uuid.uuid4().hex}"
        os.symlink(target, temporary)
        os.replace(temporary, path)

    def _migrate(self, names: list[str]) -> None:
        """Turn regular files of this unit (an older deepscope, or overwrite) into links, keeping their bytes."""
        regular = [n for n in names if (self.out / n).exists() and not (self.out / n).is_symlink()]
        if not regular:
            return
        visible = [n for n in names if (self.out / n).exists()]
        prefix = f"{STATE_DIR}/{self.unit}/current/"
        for entry in os.scandir(self.out):  # files of the current generation that the new one lacks
            if entry.is_symlink() and os.readlink(entry.path).startswith(prefix) and os.path.exists(entry.path):
                visible.append(entry.name)
        legacy = self.base / f"gen-{uuid.uuid4().hex}"
        legacy.mkdir()
        for name in dict.fromkeys(visible):
            shutil.copyfile(self.out / name, legacy / name)
        _sync_tree(legacy)
        switch = self.base / f"current-{uuid.uuid4().hex}"
        os.symlink(legacy.name, switch)
        os.replace(switch, self.base / "current")  # same bytes as what is visible now
        _fsync_directory(self.base)
        for count, name in enumerate(regular):
            self._link(name)  # each link shows the same bytes as the file it replaces
            if count == 0:
                _kill_point("migrated")

    @contextlib.contextmanager
    def _errors(self, stage: str, cleanup: Path | None = None) -> Iterator[None]:
        """Turn an OSError into one clear DeepscopeError, removing a half-written generation."""
        try:
            yield
        except OSError as error:
            if cleanup is not None:
                shutil.rmtree(cleanup, ignore_errors=True)
            reason = {
                errno.ENOSPC: "the disk is full",
                errno.EDQUOT: "the disk quota is exceeded",
                errno.EROFS: "the file system is read-only",
                errno.EACCES: "permission denied",
                errno.EPERM: "permission denied",
            }.get(error.errno, error.strerror or str(error))
            outcome = "nothing was computed" if stage == "prepare" else "the previous files were kept"
            where = f" ({error.filename})" if error.filename else ""
            raise DeepscopeError(
                f"Cannot write the {self.unit} into '{self.out}': {reason}{where}; {outcome}. "
                "Free space, fix the permissions or choose another --out."
            ) from error


def written_by_deepscope(path: Path) -> bool:
    """Whether ``path`` (followed if a link) carries deepscope's generator marker (HTML meta or JSON key)."""
    try:
        if path.suffix == ".html":
            with path.open("r", encoding="utf-8", errors="replace") as handle:
                return GENERATOR_META in handle.read(4096)
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("generator") == "deepscope"


def check_overwrite(out: Path, targets: tuple[Path, ...], overwrite: bool) -> None:
    """Refuse to replace files in ``out`` that deepscope did not write, unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise DeepscopeError(f"The output path '{out}' exists and is not a directory; choose another --out.")
    for path in targets:
        if path.is_dir():
            raise DeepscopeError(f"'{path}' is a directory; cannot write the report there. Choose another --out.")
        if path.exists() and not overwrite and not written_by_deepscope(path):
            raise DeepscopeError(
                f"'{path}' exists and was not written by deepscope; pass overwrite=True (CLI: --overwrite) "
                "to replace it, or choose another output directory."
            )
