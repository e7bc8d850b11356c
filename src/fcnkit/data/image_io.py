"""Reading images and label maps from disk, strictly.

Every dataset goes through these two functions so that the same file problems
(truncated file, decompression bomb, 16-bit or transparent image, colour label map)
produce the same clear error naming the file, wherever they are met.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors


class DataError(ValueError):
    """A problem with one file of a dataset; the message starts with the file's path."""


class ImageReadError(DataError):
    """An image could not be read; the message names the file (or upload) and why."""


class NotAnImage(ImageReadError):
    """The bytes are no image format PIL knows (as opposed to a broken or oversized image)."""


class TooManyPixels(ImageReadError):
    """The image's header declares more pixels than allowed (refused before decoding)."""


def unreadable_reason(path: str | Path) -> str | None:
    """Why ``path`` cannot be opened as a file -- ``"symbolic link loop"``, ``"broken symbolic
    link (to x.png)"``, ``"a folder, not a file"``, ``"Permission denied"`` -- or None if it
    can be. Scanners call it on every listed file so that one such file is reported as a
    problem of that file instead of stopping the scan."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop"
        if os.path.islink(path):
            try:
                return f"broken symbolic link (to {os.readlink(path)})"
            except OSError:
                return "broken symbolic link"
        return "no such file" if e.errno == errno.ENOENT else (e.strerror or str(e))
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "Permission denied"
    return None


_pil_limit = threading.Lock()  # Image.MAX_IMAGE_PIXELS is process-wide: one opener at a time changes it


def open_image(src: str | Path | bytes, *, name: str | None = None, max_pixels: int | None = None,
               missing: type[Exception] = ImageReadError) -> Image.Image:
    """Open and fully decode an image file or in-memory bytes (an upload), the one way every
    reader in fcnkit does. Errors are ``ImageReadError`` starting with ``name`` (default the
    path): a file that cannot be opened, bytes no image format knows (``NotAnImage``), a
    truncated or corrupt file, and more than ``max_pixels`` pixels -- checked from the header
    before anything is decoded, so a decompression bomb never allocates. ``max_pixels``
    None keeps PIL's limit (training data); prediction passes its own (a 10000^2 aerial
    photo is a legitimate input there). A file that does not exist raises ``missing``."""
    name = name or str(src)
    if not isinstance(src, bytes):
        reason = unreadable_reason(src)
        if reason is not None:
            raise (missing if reason == "no such file" else ImageReadError)(f"{name}: {reason}")
    limit = max_pixels or Image.MAX_IMAGE_PIXELS
    try:
        with _pil_limit, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            pil_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # ours, checked below, instead
            try:
                img = Image.open(io.BytesIO(src) if isinstance(src, bytes) else src)
            finally:
                Image.MAX_IMAGE_PIXELS = pil_limit
        w, h = img.size
        if limit and w * h > limit:
            img.close()
            raise TooManyPixels(f"{name}: refused, {w}x{h} image has more than {limit} pixels "
                                f"(decompression bomb guard)")
        img.load()  # decode now, so a truncated file fails here and not later
    except ImageReadError:
        raise
    except Image.UnidentifiedImageError:
        raise NotAnImage(f"{name}: not an image file (PIL cannot identify it)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{name}: corrupt or truncated image ({e})") from None
    return img


def _open(path: Path) -> Image.Image:
    """``open_image`` for dataset files, where a missing file is a FileNotFoundError."""
    return open_image(path, missing=FileNotFoundError)


def read_image_tensor(path: str | Path) -> tv_tensors.Image:
    """An RGB image as ``tv_tensors.Image`` uint8 (3, H, W).

    Grayscale and palette images are converted to RGB; RGBA is accepted only when
    fully opaque (transparent pixels have no defined colour); 16-bit and float
    images are rejected because scaling them to 8 bits is a choice the user must make.
    EXIF orientation is not applied: annotations refer to the stored pixel grid (as
    in torchvision's decoders).
    """
    path = Path(path)
    img = _open(path)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise DataError(f"{path}: {mode} ({'16-bit' if mode.startswith('I;16') else '32-bit'}) image is not "
                        f"supported as input; convert it to 8-bit RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            raise DataError(f"{path}: image has transparent pixels ({mode}); flatten it onto a background first")
        img = rgba
    if img.mode != "RGB":
        try:
            img = img.convert("RGB")
        except ValueError as e:
            raise DataError(f"{path}: cannot convert {mode} image to RGB ({e})") from None
    array = np.asarray(img, dtype=np.uint8)  # (H, W, 3)
    return tv_tensors.Image(torch.from_numpy(array.copy()).permute(2, 0, 1))  # (3, H, W)


def read_label_map(path: str | Path) -> np.ndarray:
    """A single-channel label image (class index per pixel) as int64 (H, W).

    8-bit grayscale, palette (the palette index is the class, as in VOC) and 16-bit
    grayscale are accepted; colour label maps must go through a palette mapping
    (see ``read_color_map``) and are rejected here with that advice.
    """
    path = Path(path)
    img = _open(path)
    if img.mode in ("L", "P", "I;16", "I;16B", "I;16L", "I"):
        return np.asarray(img).astype(np.int64)
    raise DataError(f"{path}: label map must be single-channel (class index per pixel), got mode "
                    f"{img.mode}; colour masks need a palette file")


def read_color_map(path: str | Path) -> np.ndarray:
    """A colour-coded label image as uint8 (H, W, 3) RGB."""
    path = Path(path)
    img = _open(path)
    if img.mode not in ("RGB", "RGBA", "P", "L"):
        raise DataError(f"{path}: colour label map must be 8-bit RGB, got mode {img.mode}")
    if img.mode == "RGBA" and img.getextrema()[3][0] < 255:
        raise DataError(f"{path}: colour label map has transparent pixels")
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def colors_to_labels(rgb: np.ndarray, palette: list[tuple[int, int, int]], *, path: str | Path,
                     ignore_index: int = 255, ignore_colors: tuple[tuple[int, int, int], ...] = ()) -> np.ndarray:
    """Map an (H, W, 3) colour mask to class indices (H, W) int64 through ``palette``.

    Colours in ``ignore_colors`` become ``ignore_index``; any other colour not in the
    palette is an error that names the file and the first unknown colours.
    """
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    lut: dict[int, int] = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(palette)}
    for r, g, b in ignore_colors:
        lut[(r << 16) | (g << 8) | b] = ignore_index
    colors, inverse = np.unique(code, return_inverse=True)
    unknown = [int(c) for c in colors if int(c) not in lut]
    if unknown:
        shown = ", ".join(f"({c >> 16},{(c >> 8) & 255},{c & 255})" for c in unknown[:5])
        raise DataError(f"{path}: {len(unknown)} colour(s) not in the palette: {shown}"
                        f"{' ...' if len(unknown) > 5 else ''}")
    mapped = np.array([lut[int(c)] for c in colors], dtype=np.int64)
    return mapped[inverse].reshape(code.shape)

