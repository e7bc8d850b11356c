"""Models and images for the prediction tests (test_predict*, test_serve, test_tiling, test_video, ...).

A pytest plugin (``pytest_plugins`` in conftest.py): its fixtures (``model_file``) come by
name; the helpers (``colour_fcn``, ``scene``, ``seg_spec``, ``PALETTE``) are imported as
functions and values.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcnkit import create_model
from fcnkit.heads import SEG
from fcnkit.models.saved import save_model
from fcnkit.models.spec import ModelSpec

PALETTE = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]


def colour_fcn() -> torch.nn.Module:
    """A real FCN-8s (VGG, width 1/16) whose weights make it segment by dominant colour.

    Every conv passes channels 0-2 through its centre tap (conv1_1 adds 3 so ReLUs keep
    them), the three score layers read them: the stride-8, 16 and 32 paths each vote
    for the locally dominant channel at their own scale, so the prediction depends on
    context up to the fc7 path's receptive field -- like a trained net, unlike a random
    one whose nearly constant deep features make the argmax float noise.
    """
    m = create_model("fcn8s", num_classes=3, width=1 / 16).eval()
    with torch.no_grad():
        for mod in m.encoder.modules():
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.zero_()
                mod.bias.zero_()
                k = mod.kernel_size[0] // 2
                for i in range(3):
                    mod.weight[i, i, k, k] = 1.0
        m.encoder.conv1_1.bias[:3] = 3.0
        for name in ("score_fr", "score_pool4", "score_pool3"):
            for i in range(3):
                getattr(m.decoder, name).weight[i, i] = 1.0
    return m


def seg_spec(num_classes: int, classes: Sequence[str] = ()) -> ModelSpec:
    """The spec of a stand-in segmentation model (a module or callable a test builds): it
    takes any input size and normalises like ImageNet models."""
    return ModelSpec(name="fcn8s", config={"num_classes": num_classes}, heads=frozenset({SEG}), pad_multiple=1,
                     classes=tuple(classes))


def scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour field (H, W, 3) uint8: regions whose dominant channel varies."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, h // 16 + 1, w // 16 + 1, generator=g)
    x = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0]  # (3, H, W)
    return (x.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """``colour_fcn`` saved with its class names and palette."""
    path = tmp_path_factory.mktemp("model") / "colour.pt"
    save_model(colour_fcn(), path, classes=["red", "green", "blue"], palette=PALETTE)
    return path
