"""Images in for prediction: any of path / PIL / array, and file lists from folders and globs.

Files are decoded by the one ``data.image_io.open_image``, with a higher pixel limit than
training data's: a 10000x10000 aerial photo is a legitimate input here (PIL's
decompression-bomb guard would refuse it). The decoded image is held once, as
(H, W, 3) uint8, not copied into a float tensor: at 8000^2 a float copy is 768 MB,
the uint8 image 192 MB.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.image_io import ImageReadError, open_image, unreadable_reason

MAX_PIXELS = 1_000_000_000  # refuse more than 10^9 pixels (a 31623^2 image) unless asked
IMAGE_SUFFIXES = frozenset(".png .jpg .jpeg .bmp .tif .tiff .webp .ppm .pgm .gif".split())
VIDEO_SUFFIXES = frozenset(".mp4 .avi .mov .mkv .webm .m4v .mpg .mpeg".split())


def decode_image_bytes(data: bytes, *, max_pixels: int = MAX_PIXELS, source: str = "upload") -> np.ndarray:
    """Decode an uploaded image to RGB (H, W, 3) uint8, by the same rules as ``read_rgb_array``."""
    with open_image(data, name=source, max_pixels=max_pixels) as img:
        return to_rgb_array(img, source=source)


def read_rgb_array(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` to RGB (H, W, 3) uint8; raises ``ImageReadError`` naming the file.

    Grayscale/palette images become RGB; transparency is dropped (prediction looks at
    colours only); 16-bit and float images are refused since mapping them to 8 bits is
    the user's choice.
    """
    with open_image(path, max_pixels=max_pixels) as img:
        return to_rgb_array(img, source=str(path))


def to_rgb_array(image: Image.Image | np.ndarray | torch.Tensor, *, source: str = "image") -> np.ndarray:
    """PIL image, (H, W[, 3|4]) uint8 array or (3, H, W) uint8 tensor -> (H, W, 3) uint8.

    Float arrays are accepted in [0, 1] (as matplotlib and torchvision's ToTensor use).
    """
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            raise ImageReadError(f"{source}: {image.mode} image is not 8-bit; convert it to 8-bit RGB")
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.array(image, dtype=np.uint8)  # a writable copy (asarray would be read-only)
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ImageReadError(f"{source}: tensor image must be (3, H, W), got {tuple(image.shape)}")
        image = image.permute(1, 2, 0).cpu().numpy()  # (H, W, 3)
    if not isinstance(image, np.ndarray):
        raise ImageReadError(f"{source}: expected a path, PIL image, array or tensor, got {type(image).__name__}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)  # (H, W) gray -> (H, W, 3)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageReadError(f"{source}: array image must be (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    image = image[:, :, :3]
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise ImageReadError(f"{source}: array image must be uint8 or float in [0, 1], got {image.dtype}")
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageReadError(f"{source}: empty image {image.shape}")
    if not image.flags.writeable:  # torch cannot wrap read-only memory without a warning
        return image.copy()
    return np.ascontiguousarray(image)


@dataclass(frozen=True)
class InputFile:
    """One file to predict on; ``relative`` names it under ``--out`` (folder structure kept)."""

    path: Path
    relative: Path

    @property
    def is_video(self) -> bool:
        return self.path.suffix.lower() in VIDEO_SUFFIXES


def collect_inputs(specs: list[str]) -> tuple[list[InputFile], list[tuple[str, str]]]:
    """Expand files, folders (recursively, hidden files skipped) and globs.

    Returns the files in a stable order, and ``(spec, reason)`` for specs that
    matched nothing and for entries that cannot be read as files (a symbolic link loop,
    a broken link): those are skipped, the rest go on. Folder contents keep their
    relative paths so that ``a/x.png`` and ``b/x.png`` do not collide; files and globs
    use their name.
    """
    found: list[InputFile] = []
    missing: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(path: Path, relative: Path) -> None:
        reason = unreadable_reason(path)
        key = path.resolve() if reason is None else path.absolute()  # no resolving a symbolic link loop
        if key in seen:
            return
        seen.add(key)
        if reason is None:
            found.append(InputFile(path, relative))
        else:
            missing.append((str(path), reason))

    def listed(p: Path) -> bool:  # files, and links that should be files but are broken
        return p.is_file() or (p.is_symlink() and not p.is_dir())

    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if listed(p)
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not files:
                missing.append((spec, "folder contains no files"))
            for p in files:
                add(p, p.relative_to(path))
        elif listed(path):
            add(path, Path(path.name))
        elif glob.has_magic(spec):
            matches = sorted(Path(m) for m in glob.glob(spec, recursive=True) if listed(Path(m)))
            if not matches:
                missing.append((spec, "pattern matched no files"))
            for p in matches:
                add(p, Path(p.name))
        else:
            missing.append((spec, "no such file or folder"))
    return found, missing
