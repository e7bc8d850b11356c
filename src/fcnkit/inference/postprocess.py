"""From class indices to pictures and files: palette PNGs, overlays, boxes, atomic writes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..draw import BOX_COLOURS, draw_boxes
from ..io import atomic_write
from ..data.base import default_palette

Palette = Sequence[Sequence[int]]
JPEG_MAX_SIDE = 65500  # libjpeg refuses an image wider or taller than this


def palette_for(meta: dict, num_classes: int) -> list[tuple[int, int, int]]:
    """The model's saved palette, extended with the VOC colour map for any missing classes."""
    saved = [tuple(int(v) for v in c) for c in (meta.get("palette") or [])]
    return saved + default_palette(num_classes)[len(saved):]


def colorize(mask: np.ndarray, palette: Palette) -> Image.Image:
    """(H, W) class indices -> mode "P" image whose pixel values are the class indices.

    Saved as PNG it is both the label map (read back as indices) and a coloured picture.
    Classes beyond 255 cannot be stored in a palette image: use ``save_mask`` (16-bit).
    """
    if mask.max(initial=0) > 255:
        raise ValueError("a palette PNG holds at most 256 classes; save the mask as 16-bit instead")
    img = Image.fromarray(mask.astype(np.uint8, copy=False), mode="P")
    flat = [v for c in list(palette)[:256] for v in c]
    img.putpalette(flat + [0] * (768 - len(flat)))
    return img


def color_mask(mask: np.ndarray, palette: Palette) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 colours (unknown indices black)."""
    lut = np.zeros((max(int(mask.max(initial=0)) + 1, len(palette)), 3), dtype=np.uint8)
    lut[:len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    return lut[mask]


def overlay(image: np.ndarray, mask: np.ndarray | None, palette: Palette, *, alpha: float = 0.5,
            rows: int = 256) -> Image.Image:
    """Blend class colours over the image (``alpha`` = colour weight), in bands of ``rows``
    so a huge image needs no float copy of itself."""
    out = np.empty_like(image)
    for r in range(0, image.shape[0], rows):
        img = image[r:r + rows].astype(np.float32)
        if mask is None:
            out[r:r + rows] = image[r:r + rows]
            continue
        col = color_mask(mask[r:r + rows], palette).astype(np.float32)
        out[r:r + rows] = (img * (1 - alpha) + col * alpha + 0.5).astype(np.uint8)
    return Image.fromarray(out)


def draw_detections(img: Image.Image, detections: Sequence[dict], names: Sequence[str] | None = None) -> Image.Image:
    """Draw ``{"box": [x0, y0, x1, y1], "label": int, "score": float}`` boxes onto ``img``,
    coloured by class from ``BOX_COLOURS`` (not the mask palette, whose first colour may be
    black, and whose colours a joint model's boxes would share with its mask), captioned
    "name score"."""
    labels = [int(d["label"]) for d in detections]
    colors = [BOX_COLOURS[k % len(BOX_COLOURS)] for k in labels]
    captions = [f"{names[k] if names and k < len(names) else k} {d['score']:.2f}" for k, d in zip(labels, detections)]
    return draw_boxes(img, [d["box"] for d in detections], colors=colors, captions=captions)


def save_mask(mask: np.ndarray, palette: Palette, path: str | Path) -> None:
    """Class-index PNG: palette image for <= 256 classes, else 16-bit grayscale."""
    if mask.max(initial=0) > 255:
        img = Image.fromarray(mask.astype(np.uint16), mode="I;16")
    else:
        img = colorize(mask, palette)
    atomic_write(path, lambda f: img.save(f, format="PNG"))


def fit_jpeg(img: Image.Image) -> Image.Image:
    """``img``, or for a side beyond JPEG's ``JPEG_MAX_SIDE`` pixels (a 70000x2 strip) a copy
    scaled down to fit, aspect ratio kept and at least one pixel a side: an overlay is for
    looking at; the mask keeps every pixel."""
    w, h = img.size
    if max(w, h) <= JPEG_MAX_SIDE:
        return img
    scale = JPEG_MAX_SIDE / max(w, h)
    return img.resize((max(1, min(JPEG_MAX_SIDE, round(w * scale))), max(1, min(JPEG_MAX_SIDE, round(h * scale)))),
                      Image.Resampling.BILINEAR)


def save_image(img: Image.Image, path: str | Path) -> None:
    """PNG, or JPEG (quality 90) for a ``.jpg``/``.jpeg`` path, atomically; an image too large
    for JPEG is scaled to fit (``fit_jpeg``)."""
    if Path(path).suffix.lower() in (".jpg", ".jpeg"):
        img = fit_jpeg(img)
        atomic_write(path, lambda f: img.save(f, format="JPEG", quality=90))
    else:
        atomic_write(path, lambda f: img.save(f, format="PNG"))
