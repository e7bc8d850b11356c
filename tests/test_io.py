"""fcnkit.io: atomic writes leave nothing half-written, and what a killed writer left is swept."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fcnkit.io import TEMP_TAG, atomic_write, atomic_write_text, sweep_stale_temps

WRITER = textwrap.dedent("""
    import sys, time
    from fcnkit.io import atomic_write

    def write(f):
        f.write(b"x" * 1000)
        f.flush()
        print("writing", flush=True)
        time.sleep(60)

    atomic_write(sys.argv[1], write)
""")


def _start_writer(target: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if TEMP_TAG in p.name)


def test_kill_9_during_a_write_leaves_a_temp_that_the_next_write_sweeps(tmp_path):
    live = _start_writer(tmp_path / "other.pt")  # still writing: its temp must survive
    killed = _start_writer(tmp_path / "last.pt")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    try:
        left = _temps(tmp_path)
        assert len(left) == 2 and not (tmp_path / "last.pt").exists()
        foreign = [tmp_path / ".notes.txt.abc.tmp",  # someone else's naming
                   tmp_path / f".last.pt.abc.{killed.pid}@not-{socket.gethostname()}{TEMP_TAG}"]  # another host
        for f in foreign:
            f.write_bytes(b"keep")
        # a new process's first write into the folder sweeps the dead writer's temp only
        sweep = "import sys; from fcnkit.io import atomic_write_text; atomic_write_text(sys.argv[1], 'ok')"
        subprocess.run([sys.executable, "-c", sweep, str(tmp_path / "last.pt")], check=True)
        assert (tmp_path / "last.pt").read_text() == "ok"
        after = _temps(tmp_path)
        assert after == sorted([next(n for n in left if f".{live.pid}@" in n), foreign[1].name])
        assert all(f.read_bytes() == b"keep" for f in foreign)
    finally:
        live.kill()
        live.wait()
    assert sweep_stale_temps(tmp_path) == [tmp_path / next(n for n in left if f".{live.pid}@" in n)]


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")

    def broken(f):
        f.write(b"half")
        raise OSError("disk full")

    try:
        atomic_write(target, broken)
    except OSError:
        pass
    assert target.read_text() == "old" and _temps(tmp_path) == []
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_interrupt_between_creating_a_temp_and_its_cleanup_leaves_nothing_at_exit(tmp_path):
    """Ctrl-C can strike after the temp exists and before any ``try`` guards it (CI saw one
    left behind by ``fcnkit predict``): the process's exit still removes it, and only its own."""
    code = textwrap.dedent("""
        import sys
        from fcnkit.io import temp_beside
        kept = temp_beside(sys.argv[1])           # a temp a writer made ...
        print(kept, flush=True)
        raise KeyboardInterrupt                    # ... and never reached its cleanup
    """)
    foreign = tmp_path / f".x.abc.{os.getpid()}@{socket.gethostname()}{TEMP_TAG}"  # a live process's
    foreign.write_bytes(b"keep")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "mask.png")], capture_output=True, text=True)
    assert run.returncode == -signal.SIGINT and "KeyboardInterrupt" in run.stderr  # as Python dies of Ctrl-C
    made = Path(run.stdout.strip())
    assert made.parent == tmp_path and TEMP_TAG in made.name and not made.exists()
    assert _temps(tmp_path) == [foreign.name]


def test_temp_files_get_the_permissions_of_a_new_file(tmp_path):
    from fcnkit.io import discard_temp, publish_temp, temp_beside

    tmp = temp_beside(tmp_path / "model.onnx", suffix=".onnx")
    assert tmp.name.endswith(TEMP_TAG + ".onnx") and oct(tmp.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    publish_temp(tmp, tmp_path / "model.onnx")
    discard_temp(tmp)  # after publishing: a no-op, the published file stays
    assert (tmp_path / "model.onnx").exists() and _temps(tmp_path) == []


def test_a_full_disk_is_said_in_one_line_and_the_old_file_is_kept(tmp_path, monkeypatch):
    """Issue 25.6: a checkpoint on a full disk printed torch's `[enforce fail at inline_container.cc:672]
    unexpected pos`; now DiskFull names the file, and the previous file survives."""
    import errno
    import shutil
    from collections import namedtuple

    import torch

    from fcnkit.io import DiskFull, atomic_write, atomic_write_text
    from fcnkit.models.saved import atomic_save

    target = tmp_path / "last.pt"
    atomic_save({"step": 1}, target)
    before = target.read_bytes()

    def zip_writer_fails(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 123 vs 45")

    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(torch, "save", zip_writer_fails)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**9, 10**9, 0))
    with pytest.raises(DiskFull, match=r"last\.pt: no space left on device while writing it"):
        atomic_save({"step": 2}, target)
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]

    def enospc(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull, match="metrics.json: no space left"):
        atomic_write(tmp_path / "metrics.json", enospc)
    # other failures stay what they are
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**12, 0, 10**12))
    with pytest.raises(RuntimeError, match="unexpected pos"):
        atomic_save({"step": 3}, target)
    atomic_write_text(tmp_path / "ok.txt", "fine")
