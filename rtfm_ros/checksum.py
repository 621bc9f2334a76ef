"""File checksums and safe opening, shared by every on-disk format that refuses corrupt files.

Every reader opens its files through :func:`open_regular`, so a FIFO, device or socket given
where a file is expected is refused at once instead of blocking the caller forever (reading a
FIFO waits for a writer) or reading an endless device.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO


class SpecialFileError(OSError):
    """A path that exists but is not a regular file (FIFO, device, socket, directory)."""


def file_kind(mode: int) -> str:
    """A readable name for a file type (for error messages)."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | Path) -> BinaryIO:
    """Open ``path`` for binary reading, refusing anything but a regular file without blocking.

    O_NONBLOCK makes opening a FIFO return at once; the type is then checked on the open
    descriptor, so a file swapped for a FIFO between a check and the open is refused too.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SpecialFileError(f"{path} is {file_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a regular file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
