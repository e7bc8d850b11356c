"""Several datasets as one training set: what MultiNet trains its joint model on.

``build_dataset(["camvid:...", "voc_xml:..."], split)`` concatenates the datasets;
each sample keeps exactly the labels its own dataset has (a CamVid frame its mask, a
raccoon photo its boxes), and the collate/loss use only the labels a sample carries.
The class lists must agree across datasets of the same kind, since one head scores
them all.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import ConcatDataset, Dataset

from ..heads import BOXES, SEG, task_name
from .base import IGNORE_INDEX


def dataset_heads(ds: Dataset) -> frozenset[str]:
    """What a dataset's samples are labelled with; a dataset of one's own kind that declares no
    ``heads`` has masks (what every dataset had before heads)."""
    return ds.heads if hasattr(ds, "heads") else frozenset({SEG})


def has_masks(ds: Dataset) -> bool:
    """Segmentation datasets, and joint ones (masks and boxes in every sample, ``coco_joint``)."""
    return SEG in dataset_heads(ds)


def has_boxes(ds: Dataset) -> bool:
    """Detection and joint datasets, segmentation datasets that derive boxes from instance masks included."""
    return BOXES in dataset_heads(ds)


def box_classes_of(ds: Dataset) -> list[str]:
    """The names of the box classes: a detection dataset's ``classes``, else its ``box_classes``."""
    heads = dataset_heads(ds)
    if SEG not in heads:
        return list(ds.classes)
    return list(ds.box_classes) if BOXES in heads else []


class MixedDataset(ConcatDataset):
    """``datasets`` end to end, with the class metadata of the mixture.

    ``classes``: the segmentation classes when any dataset has masks, else the box
    classes (as on a ``DetectionDataset``); ``box_classes``: the detection classes;
    ``heads``: ``SEG`` and/or ``BOXES``, the labels present in the mixture.
    """

    def __init__(self, datasets: Sequence[Dataset], names: Sequence[str] | None = None) -> None:
        super().__init__(list(datasets))
        names = list(names or [type(d).__name__ for d in datasets])
        seg = [(n, d) for n, d in zip(names, datasets) if has_masks(d)]
        det = [(n, d) for n, d in zip(names, datasets) if has_boxes(d)]
        if not seg and not det:
            raise ValueError(f"{', '.join(names)}: none of these datasets has masks or boxes")
        self.box_classes = _agree("box classes", [(n, box_classes_of(d)) for n, d in det]) if det else []
        if seg:
            self.classes = _agree("segmentation classes", [(n, list(d.classes)) for n, d in seg])
            self.palette = list(getattr(seg[0][1], "palette", []) or [])
            self.ignore_index = int(getattr(seg[0][1], "ignore_index", IGNORE_INDEX))
        else:
            self.classes, self.palette, self.ignore_index = list(self.box_classes), [], IGNORE_INDEX
        self.heads = frozenset(({SEG} if seg else set()) | ({BOXES} if det else set()))
        self.names = names

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: {len(d)}" for n, d in zip(self.names, self.datasets))
        return f"MixedDataset({task_name(self.heads)}; {parts})"


def _agree(what: str, named: list[tuple[str, list[str]]]) -> list[str]:
    first_name, first = named[0]
    for name, classes in named[1:]:
        if classes != first:
            raise ValueError(f"{name} and {first_name} have different {what} ({classes} vs {first}); one head "
                             f"cannot learn both: relabel one dataset")
    return first


__all__ = ["MixedDataset", "box_classes_of", "dataset_heads", "has_boxes", "has_masks"]
