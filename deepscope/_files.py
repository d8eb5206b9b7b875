"""Checks shared by every reader of user files: only regular files are read.

A FIFO blocks the reader until someone writes to it, and a device such as ``/dev/zero`` never ends;
both would hang deepscope or fill its memory. ``os.stat`` (which follows symbolic links, so a link to
a regular file is fine) tells the kind of file without opening it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from deepscope.errors import DataError

__all__ = ["check_regular_file", "file_kind"]


def file_kind(mode: int) -> str:
    """A short name for the kind of a non-regular file (for error messages)."""
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    for test, name in kinds:
        if test(mode):
            return name
    return "a special file"


def check_regular_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a regular file (or a link to one); raise DataError otherwise.

    Args:
        path: the file to check (not opened).
        what: what the file should be, for the message ("Model file", "Data file").

    Raises:
        DataError: the path does not exist, or is a directory, FIFO, device or socket.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{what} '{path}' does not exist.") from None
    except OSError as error:
        raise DataError(f"Cannot read {what.lower()} '{path}': {error.strerror or error}.") from error
    if not stat.S_ISREG(mode):
        raise DataError(
            f"{what} '{path}' is not a regular file (it is {file_kind(mode)}); deepscope reads only regular files."
        )
    return path
