"""Only regular files are read: directories, FIFOs and devices are refused by name."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from deepscope._files import check_regular_file, file_kind
from deepscope.errors import DataError


def test_a_regular_file_and_a_link_to_one_pass(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"x")
    assert check_regular_file(path, "Model file") == path
    link = tmp_path / "link.pt"
    link.symlink_to(path)
    assert check_regular_file(link, "Model file") == link


def test_missing_and_directories_are_data_errors(tmp_path):
    with pytest.raises(DataError, match=r"^Model file '.*nope' does not exist\.$"):
        check_regular_file(tmp_path / "nope", "Model file")
    with pytest.raises(DataError, match="is not a regular file \\(it is a directory\\)"):
        check_regular_file(tmp_path, "Data file")


@pytest.mark.skipif(not hasattr(os, "mkfifo") or sys.platform == "win32", reason="FIFOs are POSIX")
def test_a_fifo_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="a FIFO \\(named pipe\\)"):
        check_regular_file(fifo, "Data file")  # opening it would block forever


def test_file_kinds_are_named():
    assert file_kind(stat.S_IFDIR) == "a directory"
    assert file_kind(stat.S_IFCHR) == "a character device"
    assert file_kind(stat.S_IFSOCK) == "a socket"
    assert file_kind(0) == "a special file"
