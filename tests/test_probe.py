"""Precision and layout by measurement: the probe picks the fastest, leaves the model as it was,
caches per machine and model, and never overrides an explicit setting."""

import json

import numpy as np
import pytest
import torch

import fcnkit
from fcnkit.engine import probe
from fcnkit.engine.probe import choose_run, probe_cache_path

CPU = torch.device("cpu")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FCNKIT_CACHE", str(tmp_path / "cache"))
    return probe_cache_path()


def tiny():
    return fcnkit.create_model("fcn8s", num_classes=3, encoder="resnet18")


def fake_times(times):
    """A _time_steps that reports ``times`` (label -> seconds) and counts its calls."""
    calls = []

    def timed(model, x, candidates, *, train, repeats, device):
        calls.append((tuple(x.shape), train))
        return {c: times[probe.RunChoice(*c, "").label] for c in candidates}
    return timed, calls


def test_the_fastest_candidate_wins_and_the_reason_names_the_others(cache, monkeypatch):
    monkeypatch.setattr(probe, "cpu_has_fast_bf16", lambda: True)
    timed, calls = fake_times({"fp32 channels_last": 3.6, "fp32 NCHW": 6.7, "bf16 channels_last": 2.17,
                               "bf16 NCHW": 2.19})
    monkeypatch.setattr(probe, "_time_steps", timed)
    said = []
    choice = choose_run(tiny(), device=CPU, shape=(8, 3, 64, 96), train=True, say=said.append)
    assert (choice.amp_dtype, choice.channels_last) == (torch.bfloat16, True)
    assert calls == [((8, 3, 64, 96), True)]
    assert said[0].startswith("precision and layout: bf16 channels_last: 2.17 s per training step vs bf16 NCHW 2.19 s")
    assert "fp32 NCHW 6.70 s" in said[0] and "measured (" in said[0]
    # the second time the same model and shape come from the cache, measured nothing
    again = choose_run(tiny(), device=CPU, shape=(8, 3, 64, 96), train=True, say=said.append)
    assert again.label == choice.label and len(calls) == 1 and "measured earlier" in said[1]
    # another input shape, or inference instead of training, is measured anew
    choose_run(tiny(), device=CPU, shape=(1, 3, 64, 96), train=False, say=None)
    assert calls[-1] == ((1, 3, 64, 96), False)
    assert len(json.loads(cache.read_text())) == 2


def test_explicit_settings_are_never_measured_and_no_bf16_without_bf16_units(cache, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("measured although nothing was left to choose")

    monkeypatch.setattr(probe, "_time_steps", refuse)
    c = choose_run(tiny(), device=CPU, shape=(1, 3, 32, 32), train=True, amp="bf16", channels_last=False)
    assert (c.amp_dtype, c.channels_last, c.reason) == (torch.bfloat16, False, "as configured")
    monkeypatch.setattr(probe, "cpu_has_fast_bf16", lambda: False)
    c = choose_run(tiny(), device=CPU, shape=(1, 3, 32, 32), train=False, channels_last=True)
    assert (c.amp_dtype, c.channels_last) == (None, True) and "no bf16" in c.reason
    timed, calls = fake_times({"fp32 channels_last": 2.0, "fp32 NCHW": 1.0})
    monkeypatch.setattr(probe, "_time_steps", timed)
    c = choose_run(tiny(), device=CPU, shape=(1, 3, 32, 32), train=False, say=None)
    assert (c.amp_dtype, c.channels_last) == (None, False) and len(calls) == 1
    assert not cache.exists() or all(rec["times"][0][0] == "fp32" for rec in json.loads(cache.read_text()).values())


def test_a_real_probe_leaves_weights_statistics_and_randomness_as_they_were(cache):
    model = tiny().train()  # batch norm: a forward in training mode would move its running statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(7)
    expected_draw = torch.rand(3)
    torch.manual_seed(7)
    choice = choose_run(model, device=CPU, shape=(2, 3, 32, 32), train=True, say=None)
    assert torch.equal(torch.rand(3), expected_draw)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters()) and model.training
    fmt = torch.channels_last if choice.channels_last else torch.contiguous_format
    assert model.encoder.layer1[0].conv1.weight.is_contiguous(memory_format=fmt)
    (record,) = json.loads(cache.read_text()).values()
    assert record["shape"] == [2, 3, 32, 32] and record["train"] is True and len(record["times"]) >= 2


def test_a_damaged_cache_is_measured_again(cache, monkeypatch):
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    timed, calls = fake_times({"fp32 channels_last": 1.0, "fp32 NCHW": 2.0, "bf16 channels_last": 3.0,
                               "bf16 NCHW": 4.0})
    monkeypatch.setattr(probe, "_time_steps", timed)
    c = choose_run(tiny(), device=CPU, shape=(1, 3, 32, 32), train=False, say=None)
    assert (c.amp_dtype, c.channels_last, len(calls)) == (None, True, 1)
    assert len(json.loads(cache.read_text())) == 1


def test_the_predictor_measures_on_its_first_image_and_exported_files_run_as_stored(cache, monkeypatch, tmp_path):
    from fcnkit.inference.predictor import Predictor

    monkeypatch.setattr(probe, "cpu_has_fast_bf16", lambda: True)
    timed, calls = fake_times({"fp32 channels_last": 2.0, "fp32 NCHW": 3.0, "bf16 channels_last": 9.0,
                               "bf16 NCHW": 1.0})
    monkeypatch.setattr(probe, "_time_steps", timed)
    image = np.zeros((40, 56, 3), np.uint8)
    p = Predictor(tiny(), progress=False)
    assert p.run_choice is None  # nothing measured before there is an input
    p.predict(image)
    p.predict(np.zeros((64, 64, 3), np.uint8))
    assert calls == [((1, 3, 40, 56), False)]  # once, at the first image's size, for inference
    assert (p.run_choice.label, p.backend.precision, p.backend.channels_last) == ("bf16 NCHW", "bf16", False)
    fixed = Predictor(tiny(), amp="off", channels_last=True, progress=False)
    fixed.predict(image)
    assert fixed.run_choice.reason == "as configured" and fixed.backend.precision == "fp32" and len(calls) == 1
    with pytest.raises(ValueError, match="amp must be"):
        Predictor(tiny(), amp="fp8")


def test_a_detector_is_probed_at_the_size_it_runs_at(cache, monkeypatch):
    from fcnkit.inference.predictor import Predictor

    timed, calls = fake_times({"fp32 channels_last": 2.0, "fp32 NCHW": 1.0})
    monkeypatch.setattr(probe, "_time_steps", timed)
    detector = fcnkit.create_model("fcn8s-det", det_classes=1, encoder="resnet18")
    detector.meta = {"max_size": 64}  # trained with the longer side at 64: larger photos are shrunk to it
    p = Predictor(detector, progress=False)
    p.predict(np.zeros((96, 128, 3), np.uint8))
    assert calls == [((1, 3, 48, 64), False)]


def fake_trial_times(monkeypatch, times):
    """StepTrial.record given ``times`` (label -> seconds of its warm-up step, then of its timed
    step) instead of the clock's; returns the labels of the steps recorded, in order."""
    labels, real = [], probe.StepTrial.record

    def record(self, seconds):
        label, timed = self.candidate.label, self.plan[len(self.steps)] in self.warm
        labels.append(label)
        real(self, times[label][timed])
    monkeypatch.setattr(probe.StepTrial, "record", record)
    return labels


def tiny_run(out, stop_after=None, resume=False, **kw):
    """A 3-epoch run (12 steps) of a 1/16-width VGG FCN on 4 synthetic street scenes."""
    from fcnkit.config import TrainConfig
    from fcnkit.data import train_transforms
    from fcnkit.data.synthetic import SyntheticStreets
    from fcnkit.engine import train
    from fcnkit.models import IMAGENET

    data = SyntheticStreets(4, size=(32, 48), seed=0, transforms=train_transforms(IMAGENET, crop_size=(32, 48)))
    cfg = TrainConfig(width=1 / 16, workers=0, progress=False, out_dir=str(out),
                      **{"epochs": 3, "crop_size": (32, 48), **kw})  # batches of one shape: a trial fits
    return train(cfg, train_set=data, stop_after=stop_after, resume=resume)


TRIAL_TIMES = {"fp32 channels_last": (2.2, 2.0), "fp32 NCHW": (1.9, 1.6), "bf16 channels_last": (1.5, 1.0),
               "bf16 NCHW": (2.3,)}


def test_training_puts_precision_and_layout_on_trial_over_its_own_first_steps(cache, monkeypatch, tmp_path):
    monkeypatch.setattr(probe, "cpu_has_fast_bf16", lambda: True)
    steps = fake_trial_times(monkeypatch, TRIAL_TIMES)
    run = tiny_run(tmp_path / "a")
    assert run["iteration"] == 12  # the trial's steps are the run's first steps, not steps on top
    assert steps == ["fp32 channels_last", "fp32 NCHW", "bf16 channels_last", "bf16 NCHW",  # warm-ups
                     "fp32 channels_last", "fp32 NCHW", "bf16 channels_last"]
    # bf16 NCHW's warm-up took 1.53x the best (over TRIAL_DROPPED 1.3): no timed step; fp32 channels_last's took
    # 1.47x, but it went first, so its warm-up also paid the run's first step (allowed 1.3 x 1.2): timed
    why = json.loads((tmp_path / "a" / "environment.json").read_text())["run_choice"]
    # the 7 steps took 2.2+1.9+1.5+2.3+2+1.6+1 = 12.5 s; knowing the answer, a 1.5 s warm-up and 6 steps of 1 s: 5 s more
    assert why.startswith("1.00 s per training step vs fp32 NCHW 1.60 s, fp32 channels_last 2.00 s, bf16 NCHW "
                          "2.30 s, measured on the run's first 7 steps (5.00 s more than a run that knew the answer)")
    conv = next(p for p in run["model"].parameters() if p.dim() == 4)
    env = json.loads((tmp_path / "a" / "environment.json").read_text())
    assert conv.is_contiguous(memory_format=torch.channels_last) and env["amp"] == "torch.bfloat16"
    (record,) = json.loads(cache.read_text()).values()
    assert sorted(record["times"]) == [["bf16", False, 2.3], ["bf16", True, 1.0], ["fp32", False, 1.6],
                                       ["fp32", True, 2.0]]
    # the next run of this model at this size on this machine: the cached answer, no trial
    steps.clear()
    tiny_run(tmp_path / "b")
    assert steps == []
    why = json.loads((tmp_path / "b" / "environment.json").read_text())["run_choice"]
    assert why.startswith("1.00 s per training step vs") and "measured earlier on this machine" in why
    # an explicit setting is never put on trial
    steps.clear()
    tiny_run(tmp_path / "c", amp="off", channels_last=False)
    assert steps == [] and json.loads((tmp_path / "c" / "environment.json").read_text())["run_choice"] == "as configured"


def test_a_first_candidate_far_slower_than_the_best_is_dropped_after_its_warm_up_too(cache):
    """As with ResNet-18 on a Xeon with AMX (fp32 3.00 s, bf16 1.31 s per warm-up step): the first step's
    allowance does not keep a candidate twice as slow in the race."""
    trial = probe.StepTrial([(None, True), (torch.bfloat16, True)], (8, 3, 32, 48))
    for seconds in (3.0, 1.3):  # the warm-ups: fp32 2.3x the best, over 1.3 x 1.2
        trial.record(seconds)
    assert not trial.done and trial.candidate.amp_dtype == torch.bfloat16  # only bf16 has a timed step
    trial.record(1.1)
    assert trial.done and trial.times == {(None, True): 3.0, (torch.bfloat16, True): 1.1}
    assert trial.excess == pytest.approx(3.0 + 1.3 + 1.1 - 1.3 - 2 * 1.1)  # fp32's one step beyond bf16's pace
    assert trial.result(tiny(), use_cache=False).label == "bf16 channels_last"


def test_a_run_paused_mid_trial_goes_on_with_its_trial_and_matches_the_uninterrupted_run(monkeypatch, tmp_path):
    from fcnkit.models.saved import read_record

    monkeypatch.setattr(probe, "cpu_has_fast_bf16", lambda: True)
    steps = fake_trial_times(monkeypatch, TRIAL_TIMES)
    monkeypatch.setenv("FCNKIT_CACHE", str(tmp_path / "cache_a"))  # each run measures, as on a new machine
    straight = tiny_run(tmp_path / "a")

    def same_weights(run):
        assert run["iteration"] == straight["iteration"] == 12
        for (name, a), b in zip(straight["model"].state_dict().items(), run["model"].state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)

    # paused after the warm-ups and one timed step: the resumed process goes on with the same trial
    monkeypatch.setenv("FCNKIT_CACHE", str(tmp_path / "cache_b"))
    assert tiny_run(tmp_path / "b", stop_after=5)["status"] == "paused"
    assert len(read_record(tmp_path / "b" / "last.pt")["progress"]["trial"]["steps"]) == 5
    steps.clear()
    same_weights(tiny_run(tmp_path / "b", resume=True))
    assert steps == ["fp32 NCHW", "bf16 channels_last"]  # the two timed steps left
    why = json.loads((tmp_path / "b" / "environment-resume-5.json").read_text())["run_choice"]
    assert "resumed mid-trial, so it is not cached" in why  # two processes' clocks: serves the run, not the next
    assert not (tmp_path / "cache_b" / "probe.json").exists()
    # paused after the trial, resumed where the cache is gone: the run keeps its own choice, no second trial
    monkeypatch.setenv("FCNKIT_CACHE", str(tmp_path / "cache_c"))
    tiny_run(tmp_path / "c", stop_after=9)
    (tmp_path / "cache_c" / "probe.json").unlink()
    steps.clear()
    same_weights(tiny_run(tmp_path / "c", resume=True))
    why = json.loads((tmp_path / "c" / "environment-resume-9.json").read_text())["run_choice"]
    assert steps == [] and why == "chosen by this run before it was resumed, on this CPU"


def test_a_run_shorter_than_its_trial_settles_on_what_it_measured_and_caches_nothing(cache, monkeypatch, tmp_path):
    monkeypatch.setattr(probe, "cpu_has_fast_bf16", lambda: True)
    steps = fake_trial_times(monkeypatch, TRIAL_TIMES)
    tiny_run(tmp_path / "a", epochs=1)  # 4 steps: the warm-ups only
    assert len(steps) == 4 and not cache.exists()
    env = json.loads((tmp_path / "a" / "environment.json").read_text())
    assert env["run_choice"].startswith("1.50 s per training step vs fp32 NCHW 1.90 s, fp32 channels_last 2.20 s, "
                                        "bf16 NCHW 2.30 s")
    assert "the run ended before the trial did" in env["run_choice"] and env["amp"] == "torch.bfloat16"


def test_batches_of_varying_shape_are_probed_before_training_not_put_on_trial(cache, monkeypatch, tmp_path):
    monkeypatch.setattr(probe, "cpu_has_fast_bf16", lambda: True)
    steps = fake_trial_times(monkeypatch, TRIAL_TIMES)
    timed, calls = fake_times({"fp32 channels_last": 2.0, "fp32 NCHW": 1.0, "bf16 channels_last": 3.0,
                               "bf16 NCHW": 4.0})
    monkeypatch.setattr(probe, "_time_steps", timed)
    # without a crop a batch has its images' shape, so the trial's steps could differ in size: the probe times
    # every candidate on the first batch's shape instead
    tiny_run(tmp_path / "a", crop_size=None)
    assert steps == [] and calls == [((1, 3, 32, 48), True)]
    assert json.loads((tmp_path / "a" / "environment.json").read_text())["run_choice"].startswith("1.00 s per training")
