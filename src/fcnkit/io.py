"""Writing files so that nothing is lost: temp file in the target folder, fsync, rename.

Every output fcnkit writes (models, exports, masks, JSON) goes through here, so an
interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import atexit
import errno
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


TEMP_TAG = ".fcnkit-tmp"  # our temp files: .NAME.RANDOM.PID@HOST.fcnkit-tmp[SUFFIX]
_TEMP_NAME = re.compile(r"^\..+\.(\d+)@(.+)" + re.escape(TEMP_TAG) + r"(\.\w+)?$")
_swept: set[Path] = set()
_live: set[Path] = set()  # temps this process made and has neither published nor discarded


@atexit.register
def _remove_live_temps() -> None:
    """An exception or Ctrl-C that struck between creating a temp and its ``try`` (or a
    writer that never got to clean up) still leaves no temp behind once the process exits."""
    for tmp in list(_live):
        if f".{os.getpid()}@" in tmp.name:  # not a forked child's copy of its parent's set
            discard_temp(tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, it is someone else's
        return True
    return True


def sweep_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temp files of ours that a killed process (``kill -9``, power cut) left in
    ``folder``: those written on this host by a process that no longer exists. Files of
    live processes, of other hosts (shared file systems) and of other tools are kept."""
    host, gone = socket.gethostname(), []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return gone
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if m and m.group(2) == host and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            try:
                os.unlink(entry.path)
                gone.append(Path(entry.path))
            except OSError:
                pass
    return gone


def temp_beside(path: str | Path, suffix: str = "") -> Path:
    """A new, empty, normally permissioned file in ``path``'s folder (so renaming it onto
    ``path`` is atomic), for writers that need a path rather than a file object: video
    encoders, memory-mapped arrays. The caller ends it with ``publish_temp`` or
    ``discard_temp``; one it never ends is deleted when the process exits.
    The first write into a folder (per process) also sweeps stale temps out of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent.resolve()
    if folder not in _swept:
        _swept.add(folder)
        sweep_stale_temps(folder)
    host = socket.gethostname()
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.{os.getpid()}@{host}{TEMP_TAG}{suffix}"
        _live.add(tmp)  # before it exists: no moment where it exists and nobody would remove it
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # 0666 & umask, as any new file
            return tmp
        except FileExistsError:  # a name of ours taken already (a dead process with our pid): draw again
            _live.discard(tmp)


def publish_temp(tmp: str | Path, path: str | Path) -> None:
    """Rename a finished temp from ``temp_beside`` onto ``path``, durably."""
    os.replace(tmp, path)
    _live.discard(Path(tmp))
    fsync_dir(Path(path).parent)


def discard_temp(tmp: str | Path) -> None:
    """Delete a temp from ``temp_beside`` that will not be published (failure, interrupt)."""
    Path(tmp).unlink(missing_ok=True)
    _live.discard(Path(tmp))


class DiskFull(RuntimeError):
    """No space left where a file was being written (the previous file is kept)."""


SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def _out_of_space(error: BaseException, folder: Path) -> bool:
    """Whether ``error`` means the disk is full: ENOSPC / EDQUOT, or torch.save's zip writer
    failing (``[enforce fail at inline_container.cc] unexpected pos``) on a full disk."""
    if isinstance(error, OSError):
        return error.errno in SPACE_ERRNOS
    if isinstance(error, RuntimeError) and "inline_container" in str(error):
        try:
            return shutil.disk_usage(folder).free < 64 * 2**20
        except OSError:
            return False
    return False


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a temp file next to ``path``, fsync, then rename over it.
    A full disk is ``DiskFull`` naming ``path``; the temp is removed and the old file kept."""
    tmp = temp_beside(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        publish_temp(tmp, path)
    except BaseException as e:
        discard_temp(tmp)
        if _out_of_space(e, Path(path).parent):
            raise DiskFull(f"{printable(path)}: no space left on device while writing it (nothing was replaced; "
                           f"free some space and go on, e.g. fcnkit train --resume)") from None
        raise


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


def printable(name: str | bytes | os.PathLike) -> str:
    """``name`` (a path, text or bytes) as text that any UTF-8 stream can print: bytes
    that are not UTF-8 (kept by Python as lone surrogates, e.g. a file named b'\\xff.png')
    become ``\\xff`` escapes instead of making ``print`` raise."""
    text = os.fsdecode(name) if isinstance(name, (bytes, os.PathLike)) else str(name)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that are not escaped bytes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _writable_folder(folder: Path, target: Path) -> None:
    """ValueError naming ``target`` unless ``folder`` is, or can be created as, a folder we
    may write in: its nearest existing ancestor must be a folder where a temp file can be
    made (a real probe, so read-only mounts and permissions are seen as they are)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{printable(target)}: cannot be written, {printable(existing)} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        if existing != folder:
            where = f"cannot create {printable(folder)} in {printable(existing)}"
        else:
            where = "cannot write in this folder" if folder == target else f"cannot write in {printable(folder)}"
        raise ValueError(f"{printable(target)}: {where} ({e.strerror or e})") from None


def check_output_file(path: str | Path, *, suffixes: tuple[str, ...] = (), what: str = "output") -> Path:
    """Refuse, before any work is spent on it, an output file that cannot be written:
    ``path`` is an existing folder, lacks one of ``suffixes`` (lower-case, with the dot),
    or its folder cannot be created or written in. ValueError naming the path (the CLI
    prints it and exits 2); returns ``Path(path)``. Nothing is created."""
    path = Path(path)
    ending = " or ".join(suffixes)
    if path.is_dir():
        raise ValueError(f"{printable(path)}: is a folder; the {what} must be a file name"
                         + (f" ending in {ending}" if suffixes else ""))
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{printable(path)}: the {what} must end in {ending}")
    _writable_folder(path.parent, path)
    return path


def check_output_dir(path: str | Path, *, what: str = "output folder") -> Path:
    """As ``check_output_file`` for an output folder: not an existing file, and creatable
    and writable. Returns ``Path(path)``; nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{printable(path)}: the {what} is an existing file, not a folder")
    _writable_folder(path, path)
    return path


class FolderInUse(RuntimeError):
    """Another live process holds the folder's lock."""


class FolderLock:
    """An exclusive lock on a folder (``.lock`` inside it, ``flock``): two trainings writing
    one run folder would interleave their metrics and overwrite each other's checkpoints.

    The operating system drops the lock when its process ends, however it ends, so a lock
    left by a crash or ``kill -9`` is simply free again; the file names the holder's PID,
    host and start time for the message the next process gets."""

    def __init__(self, folder: str | Path, *, what: str = "folder") -> None:
        import fcntl
        import time

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / ".lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self._fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(self._fd)
            raise FolderInUse(f"{printable(self.folder)}: the {what} is in use by {holder}; wait for it to end or "
                              f"choose another folder") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"PID {os.getpid()} on {socket.gethostname()}, since "
                            f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (harmless, rewritten next time)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


RUNS = Path("runs")  # default outputs go under the working directory's runs/, never beside a model


def cache_root() -> Path:
    """fcnkit's cache folder: ``$FCNKIT_CACHE``, else ``~/.cache/fcnkit`` (downloaded weights,
    measured precision choices, counted class weights), each kind in a sub-folder."""
    return Path(os.environ.get("FCNKIT_CACHE", Path.home() / ".cache" / "fcnkit"))


def next_run_dir(kind: str, root: str | Path = RUNS) -> Path:
    """``runs/<kind>/N`` for the first N counting from 1 that does not exist yet
    (``runs/predict/1``, then ``runs/predict/2``, ... as YOLO numbers its runs): where a
    command writes when it is given no output path. Nothing is created."""
    parent = Path(root) / kind
    n = 1
    while (parent / str(n)).exists():
        n += 1
    return parent / str(n)


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 class"``, ``"2 classes"``, ``"0 images"``: a count with its noun agreeing."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n:,} {plural_form or (noun + 'es' if noun.endswith(('s', 'x', 'ch', 'sh')) else noun + 's')}"


def brief(error: BaseException, limit: int = 160) -> str:
    """``"Type: first line of the message"``, at most ``limit`` characters: the reason to
    print after a file name, without a library's multi-paragraph advice."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return printable(text if len(text) <= limit else text[: limit - 3].rstrip() + "...")
