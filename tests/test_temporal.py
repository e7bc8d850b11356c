"""Video results per frame, flicker from known masks, and the temporal filter (issue 27.1-2)."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from fcnkit.cli import main
from fcnkit.extras import installed
from fcnkit.inference import Predictor
from fcnkit.inference.temporal import TemporalFilter
from fcnkit.metrics.temporal import FlickerMeter
from fcnkit.models.saved import save_model
from predict_fixtures import PALETTE, colour_fcn, scene, seg_spec


def test_flicker_from_known_masks() -> None:
    """T = [[2, 1], [0, 5]] over two frame pairs: 1 of 8 pixels changed; class 0 holds 2 of the
    3 pixels it has in either frame (flicker 1/3), class 1 holds 5 of 6 (1/6)."""
    a = np.array([[0, 0], [1, 1]])
    b = np.array([[0, 1], [1, 1]])
    meter = FlickerMeter(2)
    for m in (a, b, b):
        meter.update(m)
    s = meter.scores()
    assert s["pairs"] == 2 and s["flicker"] == pytest.approx(1 / 8)
    assert s["class_flicker"] == pytest.approx([1 / 3, 1 / 6])
    assert meter.transitions.tolist() == [[2, 1], [0, 5]]


def test_flicker_skips_ignored_pixels_clip_boundaries_and_unseen_classes() -> None:
    meter = FlickerMeter(3)
    meter.update(np.array([[0, 255]]))
    meter.update(np.array([[1, 0]]))  # the 255 pixel is left out: one pixel, changed
    meter.reset()
    meter.update(np.array([[2, 2]]))  # a new clip: not compared with [[1, 0]]
    meter.update(np.array([[2, 2]]))
    s = meter.scores()
    assert s["pairs"] == 2 and s["flicker"] == pytest.approx(1 / 3)
    assert s["class_flicker"][:2] == pytest.approx([1.0, 1.0]) and s["class_flicker"][2] == 0.0
    assert math.isnan(FlickerMeter(2).scores()["flicker"])
    with pytest.raises(ValueError, match="frame size changed"):
        meter.update(np.zeros((2, 2), dtype=int))


def test_filter_keeps_a_one_frame_flip_out_where_the_picture_held_still() -> None:
    f = TemporalFilter(momentum=0.5, gate=0.1)
    frame = np.full((1, 2, 3), 100, dtype=np.uint8)
    first = np.array([[[0.9, 0.9]], [[0.1, 0.1]]], dtype=np.float32)  # (C=2, H=1, W=2)
    assert np.array_equal(f(first, frame), first)
    moved = frame.copy()
    moved[0, 1] = 200  # the second pixel's colour changed by 100/255 > gate
    flip = np.array([[[0.2, 0.2]], [[0.8, 0.8]]], dtype=np.float32)
    out = f(flip, moved)
    assert out[:, 0, 0] == pytest.approx([0.55, 0.45])  # still: (1 - 0.5) * 0.2 + 0.5 * 0.9
    assert out[:, 0, 1] == pytest.approx([0.2, 0.8])  # changed: the current frame alone
    assert f(flip[:, :, :1], frame[:, :1])[:, 0, 0] == pytest.approx([0.2, 0.8])  # new size: starts afresh
    for bad in ({"momentum": 1.0}, {"momentum": -0.1}, {"momentum": float("nan")}, {"gate": 0.0}):
        with pytest.raises(ValueError, match="momentum|gate"):
            TemporalFilter(**bad)


def _moving_street(shift: int, h: int = 64, w: int = 96) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two frames of a textured scene panning ``shift`` pixels right, and (C=2) probabilities
    that move with it: class 1 on columns 30-49 of the first frame."""
    rng = np.random.default_rng(1)
    texture = rng.integers(0, 256, (h // 4, w // 4 + 4, 3)).astype(np.uint8)
    scene_ = np.asarray(Image.fromarray(texture).resize(((w + 16), h), Image.Resampling.BICUBIC))
    frames = [np.ascontiguousarray(scene_[:, 8 - d:8 - d + w]) for d in (0, shift)]
    probs = []
    for d in (0, shift):
        p1 = np.full((h, w), 0.1, dtype=np.float32)
        p1[:, 30 + d:50 + d] = 0.9
        probs.append(np.stack([1 - p1, p1]))
    return frames, probs


def test_flow_keeps_the_average_on_a_panning_scene_where_averaging_in_place_drags() -> None:
    pytest.importorskip("cv2")
    frames, probs = _moving_street(shift=4)
    truth = probs[1].argmax(0)
    for flow in (False, True):
        f = TemporalFilter(momentum=0.8, gate=1.0, flow=flow)  # gate 1: never restart, only the warp helps
        f(probs[0], frames[0])
        mask = f(probs[1], frames[1]).argmax(0)
        wrong = (mask != truth)[:, 8:-8]  # away from the borders, where the past leaves the frame
        if flow:
            assert wrong.mean() < 0.01
        else:  # the 4 columns the stripe moved into keep the old class, and the 4 it left keep the stripe
            assert wrong.sum() == 2 * 4 * 64
    assert repr(f) == "TemporalFilter(momentum=0.8, gate=1, flow=True)"


def test_flow_without_opencv_is_refused_with_the_extra(monkeypatch) -> None:
    import fcnkit.extras

    monkeypatch.setattr(fcnkit.extras, "installed", lambda m: m != "cv2")
    with pytest.raises(RuntimeError, match=r"cv2.*fcnkit\[video\]"):
        TemporalFilter(0.5, flow=True)
    assert TemporalFilter(0.5).flow is False  # without flow OpenCV is not needed


av = pytest.importorskip("av")


def noisy_clip(path, frames: int = 10, h: int = 48, w: int = 64, rate: int = 8) -> None:
    """One still scene with fresh noise in every frame, losslessly coded: what flickers is the model."""
    rng = np.random.default_rng(0)
    base = scene(h, w, seed=3).astype(np.int16)
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=rate)
        s.height, s.width, s.pix_fmt = h, w, "rgb24" if "rgb24" in _formats(s) else "bgr0"
        for _ in range(frames):
            img = np.clip(base + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


def _formats(stream) -> set[str]:
    return {f.name for f in (stream.codec_context.codec.video_formats or [])}


def test_video_writes_a_mask_and_a_json_line_per_frame(tmp_path) -> None:
    model = tmp_path / "m.pt"
    save_model(colour_fcn(), model, classes=["red", "green", "blue"], palette=PALETTE)
    noisy_clip(tmp_path / "clip.mkv", frames=6)
    assert main(["predict", str(model), str(tmp_path / "clip.mkv"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    masks = sorted((tmp_path / "out" / "clip.frames").glob("*.png"))
    assert [m.name for m in masks] == [f"{i:06d}_{i * 125:08d}ms.png" for i in range(6)]  # 8 fps
    lines = [json.loads(t) for t in (tmp_path / "out" / "clip.frames.jsonl").read_text().splitlines()]
    assert [ln["frame"] for ln in lines] == list(range(6)) and lines[1]["time"] == pytest.approx(0.125)
    assert lines[0]["changed"] is None and all(0 <= ln["changed"] <= 1 for ln in lines[1:])
    predictor = Predictor(model, progress=False)
    with av.open(str(tmp_path / "clip.mkv")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    for frame, mask_png, line in zip(frames, masks, lines):
        mask = np.asarray(Image.open(mask_png))
        assert np.array_equal(mask, predictor.predict(frame).mask)
        shares = np.bincount(mask.ravel(), minlength=3) / mask.size
        assert [line["shares"][k] for k in ("red", "green", "blue")] == pytest.approx(shares, abs=1e-6)
    pngs = [np.asarray(Image.open(m)) for m in masks]
    assert lines[2]["changed"] == pytest.approx(float((pngs[1] != pngs[2]).mean()), abs=1e-6)
    assert not list((tmp_path / "out").glob("*.partial")) and not list((tmp_path / "out").glob(".*"))


def test_smoothing_cuts_flicker_on_a_noisy_still_scene(tmp_path) -> None:
    from fcnkit.inference.video import predict_video

    noisy_clip(tmp_path / "clip.mkv", frames=12)
    predictor = Predictor(colour_fcn(), progress=False)
    raw = predict_video(predictor, tmp_path / "clip.mkv", tmp_path / "raw.mp4", frames_dir=tmp_path / "raw")
    smooth = predict_video(predictor, tmp_path / "clip.mkv", tmp_path / "smooth.mp4", frames_dir=tmp_path / "s",
                           smooth=TemporalFilter(0.7, gate=0.2))
    assert raw.frames == smooth.frames == 12 and raw.rate == Fraction(8)
    assert raw.flicker["flicker"] > 0.002  # the noise does flip pixels near colour boundaries
    assert smooth.flicker["flicker"] < 0.5 * raw.flicker["flicker"]
    if installed("cv2"):  # a still scene: the flow is ~0 and the warped average works as well
        flowed = predict_video(predictor, tmp_path / "clip.mkv", tmp_path / "flow.mp4",
                               smooth=TemporalFilter(0.7, gate=0.2, flow=True))
        assert flowed.flicker["flicker"] < 0.5 * raw.flicker["flicker"]
    meter = FlickerMeter(3)  # the reported flicker is that of the written masks
    for png in sorted((tmp_path / "s").glob("*.png")):
        meter.update(np.asarray(Image.open(png)))
    assert meter.scores()["flicker"] == pytest.approx(smooth.flicker["flicker"])


def test_bad_smoothing_is_refused_before_any_work(tmp_path, capsys) -> None:
    model = tmp_path / "m.pt"
    save_model(colour_fcn(), model, palette=PALETTE)
    noisy_clip(tmp_path / "clip.mkv", frames=2)
    code = main(["predict", str(model), str(tmp_path / "clip.mkv"), "--out", str(tmp_path / "out"),
                 "--smooth", "1.5"])
    assert code == 2 and "momentum must be in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    if installed("cv2"):
        code = main(["predict", str(model), str(tmp_path / "clip.mkv"), "--out", str(tmp_path / "out"),
                     "--smooth", "0.8", "--gate", "0.2", "--flow"])
        assert code == 0 and len((tmp_path / "out" / "clip.frames.jsonl").read_text().splitlines()) == 2


def test_evaluate_measures_flicker_of_predictions_and_ground_truth_in_frame_order() -> None:
    import torch
    from torchvision import tv_tensors

    from fcnkit.data.collate import pad_collate
    from fcnkit.engine.evaluate import evaluate

    class ChannelsAsLogits(torch.nn.Module):  # predicts the largest image channel: a known model
        def __init__(self) -> None:
            super().__init__()
            self.spec = seg_spec(3)

        def forward(self, x):
            return {"seg": x * 10.0}

    g = torch.Generator().manual_seed(0)
    frames = [(tv_tensors.Image(torch.rand(3, 5, 7, generator=g)),
               {"mask": tv_tensors.Mask(torch.randint(0, 3, (5, 7), generator=g))}) for _ in range(5)]
    frames.append((tv_tensors.Image(torch.rand(3, 4, 4, generator=g)), {"mask": tv_tensors.Mask(torch.zeros(4, 4).long())}))
    loader = torch.utils.data.DataLoader(frames, batch_size=1, collate_fn=pad_collate)
    metrics = evaluate(ChannelsAsLogits(), loader, flicker=True).metrics
    pred, truth = FlickerMeter(3), FlickerMeter(3)
    for image, target in frames[:5]:  # the last frame's new size starts a new clip: no pair
        pred.update(image.argmax(0))
        truth.update(target["mask"])
    assert pred.pairs == 4 and metrics["flicker"] == pytest.approx(pred.scores()["flicker"])
    assert metrics["gt_flicker"] == pytest.approx(truth.scores()["flicker"])
    assert metrics["class_flicker"] == pytest.approx(pred.scores()["class_flicker"], nan_ok=True)
    assert 0.3 < metrics["gt_flicker"] < 1  # random masks: most pixels change
    assert "flicker" not in evaluate(ChannelsAsLogits(), loader).metrics


def test_an_interrupted_video_resumes_where_it_stopped(tmp_path) -> None:
    """27.1: Ctrl-C after 4 of 12 frames; the rerun computes only the 8 left and its outputs
    equal those of an uninterrupted run."""
    from fcnkit.inference.video import predict_video

    noisy_clip(tmp_path / "clip.mkv", frames=12)
    whole = predict_video(Predictor(colour_fcn(), progress=False), tmp_path / "clip.mkv", tmp_path / "whole.mp4",
                          frames_dir=tmp_path / "whole", frames_json=tmp_path / "whole.jsonl", batch_size=2)
    predictor = Predictor(colour_fcn(), progress=False)
    run, seen = predictor.predict_batch, []

    def interrupted(images, **kw):
        if len(seen) >= 4:
            raise KeyboardInterrupt
        seen.extend(images)
        return run(images, **kw)

    predictor.predict_batch = interrupted
    args = dict(frames_dir=tmp_path / "f", frames_json=tmp_path / "f.jsonl", batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        predict_video(predictor, tmp_path / "clip.mkv", tmp_path / "o.mp4", **args)
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "f").exists()  # nothing under a final name
    assert len(list((tmp_path / "f.partial").glob("*.png"))) == 4
    seen.clear()
    predictor.predict_batch = lambda images, **kw: (seen.extend(images), run(images, **kw))[1]
    again = predict_video(predictor, tmp_path / "clip.mkv", tmp_path / "o.mp4", **args)
    assert len(seen) == 8 and again.frames == 12 and not (tmp_path / "f.partial").exists()
    for a, b in zip(sorted((tmp_path / "whole").glob("*.png")), sorted((tmp_path / "f").glob("*.png"))):
        assert a.name == b.name and np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    assert (tmp_path / "f.jsonl").read_text() == (tmp_path / "whole.jsonl").read_text()
    assert again.flicker == whole.flicker and not (tmp_path / "f" / "resume.json").exists()
