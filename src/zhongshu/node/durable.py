"""Replace a small file so that after a crash or power loss it holds the old bytes or the new ones."""

from __future__ import annotations

import os
from pathlib import Path


def save_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file, fsync it, rename it over ``path``, then fsync the
    directory so the rename itself is on disk before this returns."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
