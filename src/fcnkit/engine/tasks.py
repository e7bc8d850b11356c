"""What segmentation, detection and joint models differ in, as data for the one loop.

The trainer and the evaluator take a model's ``Task`` (looked up from its spec's
heads, ``task_for(spec.heads)``) and ask it how to build the model from the data's
classes, how to collate a batch, what the loss is and which validation metric picks
``best.pt``. Everything else asks the spec (``BOXES in spec.heads``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..data import pad_collate
from ..heads import BOXES, SEG, SEG_OUTPUT, heads_of, task_name
from ..models.spec import spec_of
from ..detection import DetectionCollate, joint_loss


@dataclass(frozen=True)
class Task:
    """``heads``: what the model predicts (``SEG``: ``"seg"`` class logits; ``BOXES``: the
    heatmap/size/offset maps); ``best_key``: the metric (higher is better) that decides
    ``best.pt``."""

    heads: frozenset[str]
    best_key: str

    @property
    def name(self) -> str:
        return task_name(self.heads)

    @property
    def segments(self) -> bool:
        return SEG in self.heads

    @property
    def detects(self) -> bool:
        return BOXES in self.heads

    def model_kwargs(self, info: dict[str, Any]) -> dict[str, int]:
        """Builder arguments for the class counts of the data (``classes`` / ``box_classes``)."""
        kw = {}
        if self.segments:
            if self.detects and SEG not in info["heads"]:
                raise ValueError(f"the {self.name} model needs data with masks as well as boxes; this data has "
                                 f"only boxes (give data: a list, e.g. [camvid:PATH, voc_xml:PATH])")
            kw["num_classes"] = len(info["classes"])
        if self.detects:
            if not info.get("box_classes"):
                raise ValueError(f"the {self.name} model needs data with boxes (a detection dataset, or a list "
                                 f"of datasets that includes one); this data has none")
            kw["det_classes"] = len(info["box_classes"])
        return kw

    def collate(self, model: nn.Module, ignore_index: int) -> Callable:
        """Batches with padded masks; for detecting models also rendered box targets
        (``heatmap``/``size``/``offset``/``reg_mask``) and ``has_mask``/``has_boxes`` flags."""
        if self.detects:
            spec = spec_of(model)
            return DetectionCollate(num_classes=spec.det_classes, stride=spec.output_stride,
                                    ignore_index=ignore_index)
        return partial(pad_collate, ignore_index=ignore_index)

    def loss(self, outputs: dict[str, Tensor], targets: dict[str, Any],
             seg_loss: Callable[[Tensor, Tensor], Tensor], det_weight: float = 1.0) -> dict[str, Tensor]:
        """``{"total": ..., parts...}`` in fp32. For detecting models each term sees only the
        samples labelled for it (``fcnkit.detection.joint_loss``), and every output enters
        the graph (times 0 when unlabelled), so a batch without masks still reaches every
        parameter: DDP needs that, and a batch with no labels at all makes a zero step.
        ``det_weight`` scales the box losses in ``"total"`` (joint models)."""
        if not self.detects:
            loss = seg_loss(outputs[SEG_OUTPUT], targets["mask"])
            return {"total": loss, "seg": loss}
        parts = joint_loss(outputs, targets, seg_loss=seg_loss if self.segments else None, det_weight=det_weight)
        parts["total"] = parts["total"] + sum(v.float().sum() for v in outputs.values()) * 0.0
        return parts


SEGMENTATION = Task(frozenset({SEG}), best_key="mean_iu")
DETECTION = Task(frozenset({BOXES}), best_key="map")
JOINT = Task(frozenset({SEG, BOXES}), best_key="score")  # mean of mean IU and mAP
TASKS = {t.heads: t for t in (SEGMENTATION, DETECTION, JOINT)}


def task_for(heads: frozenset[str]) -> Task:
    """The task of a model with these heads (``spec.heads``)."""
    return TASKS[heads_of(heads)]


def task_of(model: nn.Module) -> Task:
    """The task of a model (through DDP and ``torch.compile`` wrappers)."""
    return task_for(spec_of(model).heads)


def to_device(targets: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of a collated target dict on ``device``; per-image lists stay where they are."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in targets.items()}


__all__ = ["DETECTION", "JOINT", "SEGMENTATION", "TASKS", "Task", "task_for", "task_of", "to_device"]
