"""The one box drawer: rectangles with optional captions onto a PIL image.

Used by prediction overlays, evaluation reports and the demo, so boxes look the same
everywhere (line width grows with the image, captions sit inside the top-left corner).
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

Color = tuple[int, int, int]

# box colours by class: saturated, and none of them black, white or grey, so a box stands out on a
# photo and on a segmentation overlay alike (the first is the web page's box colour)
BOX_COLOURS: tuple[Color, ...] = ((255, 45, 85), (0, 200, 255), (255, 200, 0), (60, 220, 60), (200, 80, 255),
                                  (255, 120, 0), (0, 255, 170), (255, 0, 200))


def draw_boxes(img: Image.Image, boxes: Sequence[Sequence[float]], *, colors: Color | Sequence[Color] = (255, 0, 0),
               captions: Sequence[str] | None = None, width: int | None = None) -> Image.Image:
    """Draw XYXY ``boxes`` (pixels) onto ``img`` in place and return it. ``colors`` is one
    colour or one per box; ``captions`` one string per box."""
    draw = ImageDraw.Draw(img)
    width = width or max(1, round(min(img.size) / 300))
    per_box = isinstance(colors, Sequence) and len(colors) > 0 and not isinstance(colors[0], int)
    for i, box in enumerate(boxes):
        color = tuple(colors[i]) if per_box else tuple(colors)
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle([x0, y0, max(x0, x1), max(y0, y1)], outline=color, width=width)
        if captions:
            draw.text((x0 + 2, y0 + 1), captions[i], fill=color)
    return img


__all__ = ["BOX_COLOURS", "draw_boxes"]
