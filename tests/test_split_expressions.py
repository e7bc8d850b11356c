"""Split expressions: unions of published splits and samples kept or dropped by file name."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnkit.config import load_config
from fcnkit.data import build_dataset
from fcnkit.data.splits import SplitSelection, parse_split

CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"


def _camvid_like(root: Path) -> Path:
    """A tiny SegNet-layout CamVid: train has sequences A and B, val has A."""
    for split, names in {"train": ["A_001", "A_002", "B_001"], "val": ["A_100", "C_001"]}.items():
        for d in (split, f"{split}annot"):
            (root / d).mkdir(parents=True)
        for i, name in enumerate(names):
            Image.fromarray(np.full((4, 6, 3), i, np.uint8)).save(root / split / f"{name}.png")
            Image.fromarray(np.full((4, 6), i % 11, np.uint8)).save(root / f"{split}annot" / f"{name}.png")
    return root


def stems(ds) -> list[str]:
    return [Path(f[0]).stem for f in ds.files]


def test_parse_split():
    e = parse_split("train+val@0006R0,!0006R0_1*")
    assert e.splits == ("train", "val") and e.keep == ("0006R0",) and e.drop == ("0006R0_1*",)
    assert parse_split("train").is_plain and not parse_split("train+val").is_plain
    assert e.selects("0006R0_0100") and not e.selects("0006R0_1000") and not e.selects("0016E5_0100")
    for bad, why in [("train+", "empty split name"), ("train@", "empty name pattern"), ("train@!", "empty name"),
                     ("train+train", "named twice"), ("", "split must be")]:
        with pytest.raises(ValueError, match=why):
            parse_split(bad)


def test_union_keep_and_drop_select_the_named_samples(tmp_path):
    root = _camvid_like(tmp_path / "camvid")
    spec = f"camvid:{root}"
    assert stems(build_dataset(spec, "train")) == ["A_001", "A_002", "B_001"]
    both = build_dataset(spec, "train+val")
    assert isinstance(both, SplitSelection) and len(both) == 5
    assert stems(both) == ["A_001", "A_002", "B_001", "A_100", "C_001"]
    assert stems(build_dataset(spec, "train@B")) == ["B_001"]
    assert stems(build_dataset(spec, "train+val@!A")) == ["B_001", "C_001"]
    assert stems(build_dataset(spec, "train+val@A_1*,B")) == ["B_001", "A_100"]
    # samples are the parts' own, transforms included
    image, target = both[3]
    assert int(image[0, 0, 0]) == 0 and both.num_classes == 11 and both.classes[0] == "Sky"
    with pytest.raises(ValueError, match=r"train@Z selects no samples \(3 in train\)"):
        build_dataset(spec, "train@Z")
    with pytest.raises(ValueError, match="CamVid split must be one of"):
        build_dataset(spec, "train+tset")


def test_a_recipe_trains_on_train_plus_val_in_one_line(tmp_path):
    cfg = load_config(None, ["train_split=train+val", "val_split=train@0006R0"])
    assert (cfg.train_split, cfg.val_split) == ("train+val", "train@0006R0")


@pytest.mark.skipif(not CAMVID.is_dir(), reason="real CamVid not at ../shared/data/camvid")
def test_camvid_sequences_are_disjoint_and_complete():
    spec = f"camvid:{CAMVID}"
    held = build_dataset(spec, "train@0006R0")
    rest = build_dataset(spec, "train+val@!0006R0")
    assert (len(held), len(rest), len(build_dataset(spec, "train+val"))) == (101, 367, 468)
    assert not set(stems(held)) & set(stems(rest))
    assert {s[:6] for s in stems(rest)} == {"0001TP", "0016E5"}
