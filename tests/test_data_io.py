"""Bad input: odd image modes, truncated files, decompression bombs, all naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnkit.data.image_io import DataError, colors_to_labels, read_image_tensor, read_label_map


def _rgb(h: int = 6, w: int = 5) -> np.ndarray:
    return np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)


def test_rgb_reads_exactly(tmp_path: Path) -> None:
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    image = read_image_tensor(tmp_path / "a.png")
    assert image.shape == (3, 6, 5) and image.dtype == torch.uint8
    assert torch.equal(image.permute(1, 2, 0), torch.from_numpy(_rgb()))


def test_grayscale_and_palette_are_converted_to_rgb(tmp_path: Path) -> None:
    grey = np.arange(30, dtype=np.uint8).reshape(6, 5)
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    image = read_image_tensor(tmp_path / "g.png")
    assert image.shape == (3, 6, 5) and all(torch.equal(image[c], torch.from_numpy(grey)) for c in range(3))
    p = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    p.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    p.save(tmp_path / "p.png")
    image = read_image_tensor(tmp_path / "p.png")
    assert image[:, 0, 1].tolist() == [200, 100, 50] and image[:, 0, 0].tolist() == [10, 20, 30]


def test_rgba_opaque_converted_transparent_rejected(tmp_path: Path) -> None:
    rgba = np.dstack([_rgb(), np.full((6, 5), 255, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "opaque.png")
    assert torch.equal(read_image_tensor(tmp_path / "opaque.png").permute(1, 2, 0), torch.from_numpy(_rgb()))
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "holes.png")
    with pytest.raises(DataError, match=r"holes.png: image has transparent pixels"):
        read_image_tensor(tmp_path / "holes.png")


def test_16_bit_image_rejected_but_16_bit_labels_read(tmp_path: Path) -> None:
    deep = (np.arange(30, dtype=np.uint16).reshape(6, 5) * 1000)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    with pytest.raises(DataError, match=r"deep.png: .*16-bit.* not supported"):
        read_image_tensor(tmp_path / "deep.png")
    labels = read_label_map(tmp_path / "deep.png")
    assert labels.dtype == np.int64 and np.array_equal(labels, deep.astype(np.int64))


def test_truncated_image_reported(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"t.png: corrupt or truncated image"):
        read_image_tensor(tmp_path / "t.png")
    (tmp_path / "junk.jpg").write_bytes(b"definitely not a jpeg")
    with pytest.raises(DataError, match=r"junk.jpg: not an image file"):
        read_image_tensor(tmp_path / "junk.jpg")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image_tensor(tmp_path / "nope.png")


def test_decompression_bomb_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # 2000 px: PIL would only warn
    with pytest.raises(DataError, match=r"bomb.png: refused, 50x40 image has more than 1500 pixels \(decompression bomb guard\)"):
        read_image_tensor(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 900)  # > 2x the limit: PIL raises itself
    with pytest.raises(DataError, match=r"bomb.png: refused, 50x40 image has more than 900 pixels"):
        read_label_map(tmp_path / "bomb.png")


def test_colors_to_labels_maps_and_reports_unknown() -> None:
    rgb = np.array([[[0, 0, 0], [255, 0, 255]], [[255, 0, 0], [255, 0, 255]]], np.uint8)
    labels = colors_to_labels(rgb, [(255, 0, 0), (255, 0, 255)], path="x.png", ignore_colors=((0, 0, 0),))
    assert labels.tolist() == [[255, 1], [0, 1]]
    with pytest.raises(DataError, match=r"x.png: 1 colour\(s\) not in the palette: \(0,0,0\)"):
        colors_to_labels(rgb, [(255, 0, 0), (255, 0, 255)], path="x.png")
