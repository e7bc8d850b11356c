"""Red-team cases for datasets and data tools (issue 25.9, 25.12): annotation file names never
lead a loader outside the dataset; class weights that would train nothing are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_data_fixtures import rng_image, save_png, voc_xml, write_voc_xml

from fcnkit.data.coco import COCODetection
from fcnkit.data.voc_xml import VOCDetection


def test_a_voc_filename_pointing_outside_the_dataset_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_voc_xml(root, n=3)
    secret = tmp_path / "outside.png"
    save_png(secret, rng_image(np.random.default_rng(0), 20, 30))
    for i, name in enumerate(["../../outside.png", str(secret)]):
        (root / "annotations" / f"img-{i}.xml").write_text(voc_xml(name, (20, 30), [("cat", (1, 1, 5, 5))]))
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = VOCDetection(root, "all")
    assert [Path(f[0]).name for f in ds.files] == ["img-2.png"]
    assert all("points outside" in p and "refused" in p for p in ds.problems) and len(ds.problems) == 2


def test_a_coco_file_name_pointing_outside_the_dataset_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    save_png(root / "images" / "a.png", rng_image(rng, 20, 30))
    save_png(tmp_path / "outside.png", rng_image(rng, 20, 30))
    images = [{"id": 1, "file_name": "a.png", "height": 20, "width": 30},
              {"id": 2, "file_name": "../../outside.png", "height": 20, "width": 30},
              {"id": 3, "file_name": "/etc/passwd", "height": 20, "width": 30}]
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": [],
                                                      "categories": [{"id": 1, "name": "x"}]}))
    with pytest.warns(UserWarning):
        ds = COCODetection(root, "all")
    assert [Path(f[0]).name for f in ds.files] == ["a.png"]
    assert sum("points outside" in p for p in ds.problems) == 2


def test_class_weights_that_would_train_nothing_are_refused_where_written_and_read(tmp_path: Path) -> None:
    """25.12: `data stats` on an all-ignore set wrote all-zero weights; training then said to lower the lr."""
    from PIL import Image

    from fcnkit.cli import main
    from fcnkit.losses import load_class_weights

    root = tmp_path / "folder"
    for d in ("images", "masks"):
        (root / d).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(np.full((8, 8), 255, np.uint8)).save(root / "masks" / f"{i}.png")
    (root / "classes.yaml").write_text("classes: [a, b]\n")
    out = tmp_path / "w.json"
    assert main(["data", "stats", f"folder:{root}", "--out", str(out)]) == 2
    assert not out.exists()
    out.write_text(json.dumps({"class_weights": [0.0, 0.0]}))
    with pytest.raises(ValueError, match="every class weight is 0"):
        load_class_weights(out, 2)
    out.write_text(json.dumps({"class_weights": [0.0, 1.5]}))  # an absent class may weigh 0
    assert load_class_weights(out, 2).tolist() == [0.0, 1.5]
