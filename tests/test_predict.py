"""Predictor API: exact output sizes, input kinds, parity with the model, TTA, backends, detection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fcnkit import create_model
from fcnkit.inference import Failure, Predictor
from fcnkit.inference.images import ImageReadError, read_rgb_array
from fcnkit.models.saved import save_model
from fcnkit.models.spec import with_names
from predict_fixtures import PALETTE, colour_fcn, scene

def rand_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return colour_fcn()


@pytest.fixture(scope="module")
def predictor(model) -> Predictor:
    return Predictor(model, channels_last=False, amp="off")


@pytest.mark.parametrize("h, w", [(1, 1), (33, 97), (1000, 17)])
def test_output_is_exactly_the_input_size(predictor, model, h, w) -> None:
    r = predictor.predict(rand_image(h, w), probabilities=True)
    assert r.mask.shape == (h, w) and r.mask.dtype == np.uint8
    assert r.probabilities.shape == (3, h, w) and r.probabilities.dtype == np.float16
    assert np.allclose(r.probabilities.astype(np.float32).sum(0), 1.0, atol=3e-3)
    assert r.overlay().size == (w, h) and r.colorized().size == (w, h)
    tiled = Predictor(model, tile=64, overlap=16, channels_last=False, amp="off").predict(rand_image(h, w))
    assert tiled.mask.shape == (h, w)


def test_probabilities_and_mask_match_the_model_itself(predictor, model) -> None:
    image = scene(45, 70, seed=3)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255  # (1, 3, H, W)
    with torch.no_grad():
        logits = model(model.spec.preprocessing(x))["seg"][0]  # (C, H, W)
    r = predictor.predict(image, probabilities=True)
    assert np.array_equal(r.mask, logits.argmax(0).numpy())
    assert np.abs(r.probabilities.astype(np.float32) - logits.softmax(0).numpy()).max() < 1e-3
    assert len(np.unique(r.mask)) >= 2  # random score layers: a real, non-constant mask


def test_every_input_kind_gives_the_same_mask(predictor, tmp_path) -> None:
    image = rand_image(29, 41, seed=4)
    Image.fromarray(image).save(tmp_path / "x.png")
    expected = predictor.predict(image).mask
    for kind in (tmp_path / "x.png", str(tmp_path / "x.png"), Image.fromarray(image),
                 torch.from_numpy(image).permute(2, 0, 1), image.astype(np.float32) / 255):
        assert np.array_equal(predictor.predict(kind).mask, expected), type(kind)
    gray = predictor.predict(image[:, :, 0])  # (H, W) grayscale becomes RGB
    assert gray.mask.shape == (29, 41)


def test_batch_of_same_size_images_equals_one_by_one(predictor) -> None:
    images = [rand_image(40, 56, seed=s) for s in range(3)] + [rand_image(31, 20, seed=9)]
    batch = predictor.predict_batch(images)
    for img, r in zip(images, batch):
        assert np.array_equal(r.mask, predictor.predict(img).mask)


def test_flip_tta_is_mirror_equivariant(model) -> None:
    """Averaging over {x, flip(x)} makes predict(flip(x)) == flip(predict(x)) exactly."""
    p = Predictor(model, flip=True, channels_last=False, amp="off")
    image = scene(37, 64, seed=5)
    a = p.predict(image, probabilities=True)
    b = p.predict(np.ascontiguousarray(image[:, ::-1]), probabilities=True)
    assert np.array_equal(b.mask, a.mask[:, ::-1])
    assert np.abs(b.probabilities.astype(np.float32) - a.probabilities[:, :, ::-1]).max() < 2e-3


def test_tta_averages_probabilities_of_the_views(model) -> None:
    image = scene(48, 64, seed=6)
    x = model.spec.preprocessing(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    with torch.no_grad():
        views = [model(x)["seg"], model(x.flip(-1))["seg"].flip(-1)]
        small = torch.nn.functional.interpolate(x, size=(24, 32), mode="bilinear", antialias=True)
        for v in (model(small)["seg"], model(small.flip(-1))["seg"].flip(-1)):
            views.append(torch.nn.functional.interpolate(v, size=(48, 64), mode="bilinear"))
    expected = torch.stack([v.softmax(1) for v in views]).mean(0)[0]  # (C, H, W)
    r = Predictor(model, scales=(1.0, 0.5), flip=True, channels_last=False, amp="off").predict(image, probabilities=True)
    assert np.abs(r.probabilities.astype(np.float32) - expected.numpy()).max() < 2e-3
    assert np.array_equal(r.mask, expected.argmax(0).numpy())
    assert Predictor(model, tta=True, channels_last=False, amp="off").scales == (0.75, 1.0, 1.25)


def test_checkpoint_path_gives_the_same_masks_and_its_palette(model, tmp_path) -> None:
    save_model(model, tmp_path / "m.pt", classes=["a", "b", "c"], palette=PALETTE)
    image = rand_image(50, 66, seed=7)
    from_path = Predictor(tmp_path / "m.pt", channels_last=False, amp="off").predict(image)
    assert np.array_equal(from_path.mask, Predictor(model, channels_last=False, amp="off").predict(image).mask)
    assert from_path.classes == ["a", "b", "c"]
    png = tmp_path / "mask.png"
    from_path.colorized().save(png)
    back = Image.open(png)
    assert back.mode == "P" and np.array_equal(np.asarray(back), from_path.mask)
    assert back.getpalette()[:9] == [v for c in PALETTE for v in c]
    overlay = np.asarray(from_path.overlay(alpha=1.0))  # alpha 1: pure class colours
    assert np.array_equal(overlay, np.asarray(PALETTE, dtype=np.uint8)[from_path.mask])


def test_any_callable_backend_gives_the_same_masks(model) -> None:
    """The exported-runtime seam: a callable from normalised NCHW to the outputs, with .spec/.meta."""

    class Runtime:  # what fcnkit.inference.runtime.open_model returns, minus the file
        def __init__(self) -> None:
            self.spec = with_names(model.spec, ["a", "b", "c"])
            self.meta = {"palette": PALETTE}

        def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            with torch.no_grad():
                return {"seg": torch.from_numpy(model(x)["seg"].numpy())}

    image = scene(300, 200, seed=8)
    a = Predictor(Runtime(), tile=128).predict(image)  # a callable runs as it is
    b = Predictor(model, tile=128, channels_last=False, amp="off").predict(image)
    assert np.array_equal(a.mask, b.mask) and a.classes == ["a", "b", "c"]


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_exported_file_gives_the_same_masks(model, tmp_path, fmt) -> None:
    """The exported-runtime seam (``fcnkit.inference.runtime.open_model``), whole and tiled."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        from fcnkit.export.onnx_export import export_onnx

        path = tmp_path / "m.onnx"
        export_onnx(model, path, verify=False)
    else:
        pytest.importorskip("openvino")
        from fcnkit.export.openvino_export import export_openvino

        path = tmp_path / "m.xml"
        export_openvino(model, path, verify=False)
    image = scene(300, 200, seed=10)
    torch_mask = Predictor(model, channels_last=False, amp="off").predict(image).mask  # fp32, as exported
    assert (Predictor(path).predict(image).mask == torch_mask).mean() >= 0.999
    tiled = Predictor(path, tile=128).predict(image)  # exported: runs as stored (fp32)
    assert tiled.plan is not None and (tiled.mask == torch_mask).mean() >= 0.995


def test_detection_model_boxes_and_overlay() -> None:
    torch.manual_seed(0)
    joint = create_model("fcn8s_joint", num_classes=3, det_classes=2, width=1 / 16).eval()
    with torch.no_grad():  # one confident centre for class 1 in cell (5, 7) of the stride-4 map
        joint.head.heatmap[2].bias.fill_(-10.0)
        joint.head.heatmap[2].weight.zero_()
    p = Predictor(joint, channels_last=False, amp="off")
    original = p._outputs

    def with_peak(x):
        out = {k: v.clone() for k, v in original(x).items()}  # (inference tensors are read-only)
        out["heatmap"][:, 1, 5, 7] = 10.0
        out["size"][:, :, 5, 7] = torch.tensor([4.0, 2.0]).log()  # log (w, h) in cells: 16 x 8 pixels
        out["offset"][:, :, 5, 7] = 0.5
        return out

    p._outputs = with_peak
    r = p.predict(rand_image(61, 83))
    assert r.mask.shape == (61, 83)
    assert len(r.detections) == 1
    det = r.detections[0]
    assert det["label"] == 1 and det["score"] > 0.99
    assert det["box"] == [(7.5 - 2) * 4, (5.5 - 1) * 4, (7.5 + 2) * 4, (5.5 + 1) * 4]
    with_boxes = np.asarray(r.overlay())
    r.detections = []
    assert (with_boxes != np.asarray(r.overlay())).any()  # the box is drawn
    with pytest.raises(ValueError, match="detection"):
        Predictor(joint, tile=64)
    with pytest.raises(ValueError, match="horizontal flip only"):
        Predictor(joint, tta=True)
    detector = create_model("fcn8s_det", det_classes=1, width=1 / 16).eval()
    with torch.no_grad():  # a centre score that differs with the view: the flip is averaged, not ignored
        detector.head.heatmap[2].weight.normal_(0, 1.0)
    image = rand_image(64, 96, seed=3)
    plain = Predictor(detector, channels_last=False, amp="off", conf=0.0)
    flipped = Predictor(detector, flip=True, channels_last=False, amp="off", conf=0.0)
    a, b = plain.predict(image).detections, flipped.predict(image).detections
    assert a and b and [d["score"] for d in a] != [d["score"] for d in b]
    mirrored = flipped.predict(np.ascontiguousarray(image[:, ::-1])).detections  # 96 = 3 x 32: no padding
    assert sorted(round(d["score"], 4) for d in mirrored) == sorted(round(d["score"], 4) for d in b)


def test_predict_many_reports_bad_files_and_keeps_going(predictor, tmp_path) -> None:
    for i, (h, w) in enumerate([(20, 30), (20, 30), (25, 19)]):
        Image.fromarray(rand_image(h, w, seed=i)).save(tmp_path / f"{i}.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (tmp_path / "notes.txt").write_text("not an image")
    paths = [tmp_path / "0.png", tmp_path / "bad.jpg", tmp_path / "1.png", tmp_path / "notes.txt",
             tmp_path / "2.png"]
    results = list(predictor.predict_many(paths, batch_size=2, num_workers=1, progress=False))
    assert [type(r) for r in results] == [type(results[0]), Failure, type(results[0]), Failure, type(results[0])]
    assert results[1].path == tmp_path / "bad.jpg" and "corrupt" in results[1].reason
    assert results[3].path == tmp_path / "notes.txt" and "not an image" in results[3].reason
    assert [r.mask.shape for r in results[::2]] == [(20, 30), (20, 30), (25, 19)]
    assert np.array_equal(results[2].mask, predictor.predict(tmp_path / "1.png").mask)


def test_read_image_errors_name_the_file(tmp_path) -> None:
    (tmp_path / "t.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ImageReadError, match="t.png"):
        read_rgb_array(tmp_path / "t.png")
    with pytest.raises(ImageReadError, match="no such file"):
        read_rgb_array(tmp_path / "missing.png")
    Image.fromarray(rand_image(30, 40)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="more than 1000 pixels"):
        read_rgb_array(tmp_path / "big.png", max_pixels=1000)
    rgba = Image.fromarray(np.dstack([rand_image(5, 6), np.full((5, 6), 9, np.uint8)]), "RGBA")
    rgba.save(tmp_path / "a.png")
    assert read_rgb_array(tmp_path / "a.png").shape == (5, 6, 3)


def test_large_images_are_not_refused_by_pils_bomb_guard(tmp_path, monkeypatch) -> None:
    """PIL refuses images over 2x its MAX_IMAGE_PIXELS (~179 Mpixel); prediction has its own limit."""
    Image.fromarray(rand_image(30, 40)).save(tmp_path / "x.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # make 1200 pixels a "bomb" for PIL
    with pytest.raises(Image.DecompressionBombError):
        Image.open(tmp_path / "x.png")
    assert read_rgb_array(tmp_path / "x.png").shape == (30, 40, 3)
    assert Image.MAX_IMAGE_PIXELS == 100  # PIL's setting is restored afterwards
