"""Writing files so that nothing is lost: temp file in the target folder, fsync, rename.

Every output fcnkit writes (models, exports, masks, JSON) goes through here, so an
interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def publish_mode(fd: int) -> None:
    """Give a temp file (mkstemp makes it 0600) the permissions a normal new file would get."""
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)


def temp_beside(path: str | Path, suffix: str = ".tmp") -> Path:
    """A new, empty, normally permissioned file in ``path``'s folder (so renaming it onto
    ``path`` is atomic), for writers that need a path rather than a file object: video
    encoders, memory-mapped arrays. The caller renames it into place or deletes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    publish_mode(fd)
    os.close(fd)
    return Path(tmp)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a temp file next to ``path``, fsync, then rename over it."""
    tmp = temp_beside(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(Path(path).parent)


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable: without it a power cut can forget the new name."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. platforms that cannot open folders; the rename itself is done
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))
