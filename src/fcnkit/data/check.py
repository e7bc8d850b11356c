"""Validate a dataset without touching it: every problem, with the file it concerns.

Reads every sample of every split through the same code training uses (so what
passes here loads in training), and collects counts, image sizes and a class
histogram (pixels for masks, boxes for detection, both for joint data) along the
way. Files are only opened for reading.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..heads import BOXES, SEG, task_name
from ..io import plural, printable
from ..progress import progress_bar
from .formats import FORMATS, parse_spec
from .image_io import DataError


@dataclass
class CheckReport:
    """What ``check_dataset`` found; ``errors`` is empty for a clean dataset."""

    root: Path
    format: str
    classes: list[str] = field(default_factory=list)
    ignore_index: int = 255
    heads: frozenset[str] = frozenset({SEG})
    counts: dict[str, int] = field(default_factory=dict)  # split -> samples that read cleanly
    listed: dict[str, int] = field(default_factory=dict)  # split -> samples listed
    sizes: Counter = field(default_factory=Counter)  # (H, W) -> images
    histogram: Counter = field(default_factory=Counter)  # class index (or ignore) -> pixels / boxes
    box_classes: list[str] = field(default_factory=list)  # joint data: the boxes' own classes
    box_histogram: Counter = field(default_factory=Counter)  # joint data: box class index -> boxes
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # advice that is not a problem (e.g. unnamed classes)

    @property
    def ok(self) -> bool:
        return not self.errors

    def format_text(self, max_errors: int = 50) -> str:
        """The report as text any UTF-8 stream can print (file names that are not UTF-8
        appear with ``\\xff`` escapes)."""
        lines = [f"dataset      {self.root} (format {self.format}, {task_name(self.heads)}, {plural(len(self.classes), 'class')})"]
        for split in self.listed:
            lines.append(f"split {split:<6} {plural(self.listed[split], 'sample')}, {self.counts.get(split, 0)} read "
                         f"cleanly")
        lines.append("image sizes  " + ", ".join(f"{w}x{h} (WxH): {n}" for (h, w), n in self.sizes.most_common(8))
                     + (f", ... {len(self.sizes) - 8} more sizes" if len(self.sizes) > 8 else ""))
        masks = SEG in self.heads
        lines += _histogram("pixels" if masks else "boxes", self.classes, self.histogram,
                            self.ignore_index if masks else None)
        if masks and BOXES in self.heads:
            lines += _histogram("boxes", self.box_classes, self.box_histogram, None)
        lines += [f"note: {n}" for n in self.notes]
        if self.errors:
            lines.append(f"{len(self.errors)} problem(s):")
            lines += [f"  {e}" for e in self.errors[:max_errors]]
            if len(self.errors) > max_errors:
                lines.append(f"  ... and {len(self.errors) - max_errors} more")
        else:
            lines.append("no problems found")
        return printable("\n".join(lines))


def _histogram(unit: str, classes: list[str], counts: Counter, ignore_index: int | None) -> list[str]:
    total = sum(counts.values()) or 1
    rows = list(enumerate(classes)) + ([(ignore_index, "(ignore)")] if ignore_index is not None else [])
    return [f"class {unit}:"] + [f"  {c:>3} {name:<20} {counts.get(c, 0):>12,} {100 * counts.get(c, 0) / total:6.2f}%"
                                 for c, name in rows]


def _identity(path: Path) -> Path:
    """The file ``path`` names, to spot one image listed twice: its resolved path, or, for a
    path that cannot be resolved (a symbolic link loop: its load reports it), the path itself."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python < 3.13 on a symlink loop
        return Path(os.path.abspath(path))


def check_dataset(spec: str | Path, *, fmt: str | None = None, splits: list[str] | None = None,
                  progress: bool = True) -> CheckReport:
    """Check every split of the dataset at ``spec`` (``FORMAT:PATH`` or ``PATH``)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown dataset format {fmt!r}; known: {', '.join(FORMATS)}")
        name, root = fmt, Path(str(spec).removeprefix(f"{fmt}:"))
    else:
        name, root = parse_spec(spec)
    report = CheckReport(root=root, format=name)
    splits = splits or FORMATS[name].splits(root)
    if not splits:
        report.errors.append(f"{root}: no splits found for format {name}")
    seen: dict[Path, str] = {}  # image -> first split listing it (an image in two splits leaks)
    for split in splits:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the problems are reported below instead
                ds = FORMATS[name].build(root, split, None)
        except (DataError, FileNotFoundError, ValueError, OSError) as e:
            report.errors.append(str(e))
            continue
        report.classes, report.ignore_index, report.heads = list(ds.classes), ds.ignore_index, ds.heads
        report.box_classes = list(ds.box_classes)
        if getattr(ds, "named", True) is False and not report.notes:
            report.notes.append(f"the classes are numbered class0..class{len(ds.classes) - 1} from the largest label "
                                f"found; name them, and mark labels that mean 'unlabelled' (ignore_values: "
                                f"[11] for CamVid's void), in {root / 'classes.yaml'} (docs/data.md)")
        report.errors += ds.problems
        report.listed[split] = len(ds)
        for image_path, _ in ds.files:
            key = _identity(Path(image_path))
            if key in seen and seen[key] != split:
                report.errors.append(f"{image_path}: in both the {seen[key]} and {split} splits")
            seen.setdefault(key, split)
        if len(ds) == 0:
            report.errors.append(f"{root}: split {split!r} is empty")
        clean = 0
        for i in progress_bar(range(len(ds)), desc=f"check {split}", unit="img", enabled=progress, leave=False):
            try:
                image, target = ds.load_raw(i)
            except (DataError, FileNotFoundError, OSError) as e:
                report.errors.append(str(e))
                continue
            clean += 1
            report.sizes[tuple(image.shape[-2:])] += 1
            if "mask" in target:
                values, counts = np.unique(target["mask"].numpy(), return_counts=True)
                report.histogram.update(dict(zip(values.tolist(), counts.tolist())))
                if SEG in report.heads and BOXES in report.heads:
                    report.box_histogram.update(target["labels"].tolist())
            else:
                report.histogram.update(target["labels"].tolist())
        report.counts[split] = clean
    return report
