"""Property test: train transforms keep image, mask and boxes aligned.

A rectangle is painted bright in the image, as class 1 in the mask and as a box;
after random scale / crop / flip the three must still describe the same rectangle.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F
from torchvision import tv_tensors

from fcnkit.data import train_transforms
from fcnkit.preprocessing import Preprocessing

IDENTITY = Preprocessing("RGB", 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


@st.composite
def scenes(draw):
    h, w = draw(st.integers(8, 48)), draw(st.integers(8, 48))
    # >= 4 px so that at scale 0.5 the rectangle still exists for nearest sampling
    # (thinner lines vanish from a nearest-resized mask but leave grey in a bilinear image)
    x1, y1 = draw(st.integers(0, w - 4)), draw(st.integers(0, h - 4))
    x2, y2 = draw(st.integers(x1 + 4, w)), draw(st.integers(y1 + 4, h))
    crop = (draw(st.integers(4, 64)), draw(st.integers(4, 64)))
    lo = draw(st.floats(0.5, 2.0))
    hi = draw(st.floats(lo, 2.0))
    return h, w, (x1, y1, x2, y2), crop, (lo, hi), draw(st.integers(0, 2**31 - 1))


def _erode(region: torch.Tensor, r: int) -> torch.Tensor:
    """Pixels whose (2r+1)^2 neighbourhood lies entirely inside ``region`` (beyond the
    crop counts as outside: the blur there came from pixels the crop cut away)."""
    padded = F.pad(region.float()[None, None], (r, r, r, r), value=0.0)
    return -F.max_pool2d(-padded, 2 * r + 1, 1)[0, 0] > 0.5


@settings(max_examples=80, deadline=None)
@given(scenes())
def test_train_transforms_keep_image_mask_boxes_aligned(scene) -> None:
    h, w, (x1, y1, x2, y2), crop, scale_range, seed = scene
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    image[:, y1:y2, x1:x2] = 255
    mask = torch.zeros(h, w, dtype=torch.int64)
    mask[y1:y2, x1:x2] = 1
    boxes = tv_tensors.BoundingBoxes([[x1, y1, x2, y2]], format="XYXY", canvas_size=(h, w))
    torch.manual_seed(seed)
    t = train_transforms(IDENTITY, crop_size=crop, scale_range=scale_range, hflip=True, color_jitter=None)
    out_image, target = t(tv_tensors.Image(image), {"mask": tv_tensors.Mask(mask), "boxes": boxes,
                                                    "labels": torch.tensor([1])})
    out_mask, out_boxes = target["mask"], target["boxes"]
    assert out_image.shape == (3, *crop) and out_mask.shape == crop
    assert len(out_boxes) == len(target["labels"]) <= 1

    # padding: ignore in the mask, zero in the image
    assert (out_image[:, out_mask == 255] == 0).all()
    # image and mask agree away from edges (bilinear blurs 1-2 px, nearest does not)
    inside, outside = out_mask == 1, out_mask == 0
    assert (out_image[0][_erode(inside, 2)] > 0.5).all()
    assert (out_image[0][_erode(outside, 2)] < 0.5).all()

    # box and mask describe the same rectangle (nearest rounding: within 1 px)
    if inside.any():
        ys, xs = torch.nonzero(inside, as_tuple=True)
        extent = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        if len(out_boxes):
            assert torch.allclose(out_boxes[0].float(), extent, atol=1.0 + 1e-4), (out_boxes, extent)
        else:  # dropped as degenerate: then the painted region is a sliver
            assert min(extent[2] - extent[0], extent[3] - extent[1]) <= 2
    elif len(out_boxes):  # box kept but no mask pixel: it must be thinner than a pixel
        b = out_boxes[0]
        assert min(b[2] - b[0], b[3] - b[1]) < 1.0 + 1e-4
