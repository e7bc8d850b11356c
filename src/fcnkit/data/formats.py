"""Dataset formats by name, auto-detection from a folder's layout, and ``build_dataset``.

A dataset spec is ``FORMAT:PATH`` (e.g. ``camvid:/data/CamVid``) or just ``PATH``,
in which case the format is recognised from the folder's layout.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Dataset


def _is_camvid(root: Path) -> bool:
    return any((root / f"{s}annot").is_dir() for s in ("train", "val", "test"))


def _camvid(root: Path, split: str, transforms: Callable | None) -> Dataset:
    from .camvid import CamVid

    return CamVid(root, split, transforms)


# name -> (does this folder look like it?, builder(root, split, transforms)); detection
# is tried in this order, most specific layouts first
FORMATS: dict[str, tuple[Callable[[Path], bool], Callable[[Path, str, Callable | None], Dataset]]] = {
    "camvid": (_is_camvid, _camvid),
}


def detect_format(root: str | Path) -> str:
    """The format name whose layout ``root`` matches; ValueError naming what was looked for."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: dataset path not found")
    for name, (looks_like, _) in FORMATS.items():
        if looks_like(root):
            return name
    raise ValueError(f"{root}: cannot recognise the dataset layout; pass the format explicitly "
                     f"as FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}")


def parse_spec(spec: str | Path) -> tuple[str, Path]:
    """``'camvid:/data/x'`` -> ``('camvid', Path('/data/x'))``; a bare path is auto-detected."""
    text = str(spec)
    name, sep, rest = text.partition(":")
    if sep and name in FORMATS:
        return name, Path(rest)
    if sep and len(name) > 1 and not Path(text).exists():  # 'C:\\data' stays a path
        raise ValueError(f"unknown dataset format {name!r} in {text!r}; known: {', '.join(FORMATS)}")
    return detect_format(text), Path(text)


def build_dataset(spec: str | Path, split: str = "train", transforms: Callable | None = None) -> Dataset:
    """A dataset from ``FORMAT:PATH`` or ``PATH`` (format auto-detected)."""
    name, root = parse_spec(spec)
    return FORMATS[name][1](root, split, transforms)
