"""The training loop on tiny nets: exact resume, interruption, NaN stop, checkpoints, staging, CLI.

Everything runs on 32x48 synthetic street scenes with a 1/16-width VGG FCN (dropout on,
shuffling and random augmentation on), so each run takes a fraction of a second.
"""

import dataclasses
import json
import os
import signal

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from fcnkit.config import TrainConfig, load_recipe
from fcnkit.data import eval_transforms, train_transforms
from fcnkit.data.synthetic import SyntheticStreets, generate_street_scene
from fcnkit.engine import TrainingDiverged, init_from, train
from fcnkit.models import IMAGENET, create_model
from fcnkit.models.saved import load_model, read_record, save_model


def _sets(n_train=4, n_val=2):
    tf = train_transforms(IMAGENET, crop_size=(32, 48), scale_range=(0.75, 1.25), color_jitter=(0.2, 0.2, 0.2, 0.0))
    return (SyntheticStreets(n_train, size=(32, 48), seed=0, transforms=tf),
            SyntheticStreets(n_val, size=(32, 48), seed=50, transforms=eval_transforms(IMAGENET)))


def _cfg(out, **kw):
    base = dict(width=1 / 16, workers=0, progress=False, lr=0.05, momentum=0.9, epochs=1, out_dir=str(out))
    return TrainConfig(**{**base, **kw})


def _weights(path):
    return read_record(path)["model"]


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Interrupting(torch.utils.data.Dataset):
    """Sends SIGINT to this process when sample number ``at`` is fetched (workers=0)."""

    def __init__(self, dataset, at):
        self.dataset, self.at, self.calls = dataset, at, 0
        self.classes, self.palette, self.ignore_index = dataset.classes, dataset.palette, dataset.ignore_index

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return self.dataset[i]


class Poisoned(torch.utils.data.Dataset):
    """Returns NaN images once ``poison`` is set."""

    def __init__(self, dataset):
        self.dataset, self.poison = dataset, False
        self.classes, self.palette, self.ignore_index = dataset.classes, dataset.palette, dataset.ignore_index

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        image, target = self.dataset[i]
        return (torch.full_like(image, float("nan")) if self.poison else image), target


def test_four_steps_equal_two_plus_resume_plus_two(tmp_path):
    tr, va = _sets()
    a = train(_cfg(tmp_path / "a"), train_set=tr, val_set=va)
    assert (a["status"], a["iteration"]) == ("finished", 4)

    cfg_b = _cfg(tmp_path / "b")
    b1 = train(cfg_b, train_set=tr, val_set=va, stop_after=2)
    assert (b1["status"], b1["iteration"]) == ("paused", 2)
    mid = read_record(tmp_path / "b" / "last.pt")["progress"]
    assert (mid["epoch"], mid["epoch_iteration"], mid["iteration"]) == (0, 2, 2)
    b2 = train(cfg_b, train_set=tr, val_set=va, resume=True)
    assert (b2["status"], b2["iteration"]) == ("finished", 4)
    assert (tmp_path / "b" / "environment.json").is_file() and (tmp_path / "b" / "environment-resume-2.json").is_file()

    ra, rb = read_record(tmp_path / "a" / "last.pt"), read_record(tmp_path / "b" / "last.pt")
    assert _same(ra["model"], rb["model"])
    mom_a = [s["momentum_buffer"] for s in ra["optimizer"]["state"].values()]
    mom_b = [s["momentum_buffer"] for s in rb["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(mom_a, mom_b)) and len(mom_a) > 0
    assert a["metrics"] == b2["metrics"]
    # the comparison has teeth: another seed (data order, augmentation, dropout) gives other weights
    train(_cfg(tmp_path / "c", seed=1), train_set=tr, val_set=va)
    assert not _same(ra["model"], _weights(tmp_path / "c" / "last.pt"))


def test_sigint_finishes_the_step_saves_and_resume_with_workers_matches(tmp_path):
    tr, va = _sets()
    cfg = _cfg(tmp_path / "a", epochs=2, batch_size=2, val_batch_size=2)  # 2 iterations per epoch
    train(cfg, train_set=tr, val_set=va)

    cfg_b = dataclasses.replace(cfg, out_dir=str(tmp_path / "b"))
    before = signal.getsignal(signal.SIGINT)  # default, or SIG_IGN when launched in the background
    # sample 3 is fetched for step 2 (the last of epoch 1): that step completes, then we stop
    first = train(cfg_b, train_set=Interrupting(tr, at=3), val_set=va)
    assert (first["status"], first["iteration"], first["epoch"]) == ("interrupted", 2, 1)
    assert read_record(tmp_path / "b" / "last.pt")["progress"]["iteration"] == 2
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    # resume in 2 DataLoader worker processes: augmentation is seeded per sample, so identical
    second = train(dataclasses.replace(cfg_b, workers=2), train_set=tr, val_set=va, resume=True)
    assert (second["status"], second["iteration"]) == ("finished", 4)
    assert _same(_weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt"))
    rows_a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows_b] == [1, 2]
    assert [r["val_mean_iu"] for r in rows_a] == [r["val_mean_iu"] for r in rows_b]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    tr, va = _sets(n_train=2)
    data = Poisoned(tr)
    cfg = _cfg(tmp_path)
    train(cfg, train_set=data, val_set=va)
    good = (tmp_path / "last.pt").read_bytes()
    data.poison = True
    with pytest.raises(TrainingDiverged, match=r"loss is nan at epoch 2, iteration 3 .*last good checkpoint"):
        train(dataclasses.replace(cfg, epochs=2), train_set=data, val_set=va, resume=True)
    assert (tmp_path / "last.pt").read_bytes() == good
    assert all(torch.isfinite(v.float()).all() for v in _weights(tmp_path / "last.pt").values())


def test_non_finite_weights_are_never_saved_or_called_good(tmp_path):
    tr, va = _sets(n_train=2)
    cfg = _cfg(tmp_path / "b")
    train(cfg, train_set=tr, val_set=va)
    good = (tmp_path / "b" / "last.pt").read_bytes(), (tmp_path / "b" / "best.pt").read_bytes()
    # weights gone non-finite while the loss stays finite: a bias of -inf before a ReLU gives zeros
    # downstream and a zero gradient (what an overflowing update leaves behind, made deterministic)
    record = read_record(tmp_path / "b" / "last.pt")
    bias = next(k for k in record["model"] if k.endswith(".bias"))
    record["model"][bias][0] = -float("inf")
    torch.save(record, tmp_path / "b" / "broken.pt")
    with pytest.raises(TrainingDiverged, match=r"not finite after iteration 4 .*last good checkpoint .*last.pt is kept"):
        train(dataclasses.replace(cfg, epochs=2), train_set=tr, val_set=va, resume=tmp_path / "b" / "broken.pt")
    assert ((tmp_path / "b" / "last.pt").read_bytes(), (tmp_path / "b" / "best.pt").read_bytes()) == good
    # the same weights as a starting point: nothing is written at all
    with pytest.raises(TrainingDiverged, match=r"not finite after iteration 2 .*no checkpoint had been written yet"):
        train(_cfg(tmp_path / "a", init_from=str(tmp_path / "b" / "broken.pt")), train_set=tr, val_set=va)
    assert not (tmp_path / "a" / "last.pt").exists() and not (tmp_path / "a" / "best.pt").exists()


def test_a_run_folder_without_last_pt_is_not_silently_reused(tmp_path):
    tr, va = _sets(n_train=2)
    cfg = _cfg(tmp_path)
    train(cfg, train_set=tr, val_set=va)
    (tmp_path / "last.pt").unlink()  # e.g. deleted to save space, or lost
    best, metrics = (tmp_path / "best.pt").read_bytes(), (tmp_path / "metrics.jsonl").read_bytes()
    with pytest.raises(ValueError, match=r"already holds a training run \(best.pt, metrics.jsonl\) but no last.pt"):
        train(cfg, train_set=tr, val_set=va)
    assert (tmp_path / "best.pt").read_bytes() == best and (tmp_path / "metrics.jsonl").read_bytes() == metrics
    (tmp_path / "best.pt").unlink()
    with pytest.raises(ValueError, match=r"already holds a training run \(metrics.jsonl\)"):
        train(cfg, train_set=tr, val_set=va)


def test_run_directory_and_checkpoint_contents(tmp_path, capsys):
    tr, va = _sets(n_train=2)
    cfg = _cfg(tmp_path, epochs=2, loss="focal", amp="off", channels_last=False, log_every=3,
               data="camvid:relative/camvid")  # (the sets are given; data is only recorded)
    result = train(cfg, train_set=tr, val_set=va)
    out = capsys.readouterr().out
    assert "it 3/4  epoch 2" in out and "ETA" in out and out.count("val pixel acc") == 2
    for name in ("last.pt", "best.pt", "config.yaml", "environment.json", "metrics.jsonl", "metrics.csv",
                 "curves.png"):
        assert (tmp_path / name).is_file(), name
    # saved with absolute input paths: the file names the data exactly and loads the same anywhere
    data = cfg.data.partition(':')[2]
    assert load_recipe(tmp_path / "config.yaml") == dataclasses.replace(cfg, data=f"camvid:{os.path.abspath(data)}")
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["packages"]["torch"] == torch.__version__.split("+")[0] or env["packages"]["torch"] == torch.__version__
    assert "git_revision" in env and env["amp"] == "None"
    last = read_record(tmp_path / "last.pt")  # weights_only=True
    assert {"optimizer", "scheduler", "scaler", "progress", "rng", "train_config", "spec", "meta"} <= last.keys()
    assert last["spec"]["classes"] == SyntheticStreets.classes and last["meta"]["ignore_index"] == 255
    assert last["progress"]["iteration"] == 4 and last["progress"]["epoch"] == 2
    assert len(last["rng"]) == 1 and {"python", "numpy", "torch"} <= last["rng"][0].keys()
    best = read_record(tmp_path / "best.pt")
    assert "optimizer" not in best
    assert best["meta"]["val_metrics"]["mean_iu"] == pytest.approx(result["best_metric"])
    model = load_model(tmp_path / "best.pt")
    assert list(model.spec.classes) == SyntheticStreets.classes and model.spec.num_classes == 7
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,iteration,lr,train_loss") and len(lines) == 3
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["elapsed_seconds"] > rows[0]["elapsed_seconds"] > 0
    assert set(rows[0]["val_class_iu"]) == set(SyntheticStreets.classes)
    # TensorBoard: the same numbers, per iteration and per epoch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [1, 2, 3, 4] and all(0 < e.value < 10 for e in losses)  # every iteration
    miou = events.Scalars("epoch/val_mean_iu")
    assert [e.step for e in miou] == [1, 2]
    assert [e.value for e in miou] == pytest.approx([r["val_mean_iu"] for r in rows])
    with pytest.raises(ValueError, match="already holds a training run"):
        train(cfg, train_set=tr, val_set=va)


def test_metrics_csv_columns_come_from_the_rows_and_a_resumed_run_keeps_its_header(tmp_path):
    """Issue 24: the CSV listed only segmentation metrics; now whatever a row measured gets a
    column, and a resumed run keeps the header it has (new keys are appended)."""
    from fcnkit.engine.runlog import RunLog

    log = RunLog(tmp_path)
    log.epoch({"epoch": 1, "iteration": 2, "train_loss": 1.0, "val_map": 0.25, "val_class_iu": {"a": 0.5}})
    log.close()
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["epoch,iteration,train_loss,val_map", "1,2,1.0,0.25"]
    (tmp_path / "metrics.csv").write_text("epoch,val_map,iteration,train_loss\n1,0.25,2,1.0\n")  # an older order
    log = RunLog(tmp_path)
    log.epoch({"epoch": 2, "iteration": 4, "train_loss": 0.5, "val_map": 0.5, "val_map_50": 0.75})
    log.close()
    assert (tmp_path / "metrics.csv").read_text().splitlines() == [
        "epoch,val_map,iteration,train_loss,val_map_50", "1,0.25,2,1.0,", "2,0.5,4,0.5,0.75"]


def test_init_from_loads_matching_tensors_by_name_for_staged_training(tmp_path):
    torch.manual_seed(0)
    m32 = create_model("fcn32s", num_classes=3, width=1 / 16)
    with torch.no_grad():
        for p in m32.parameters():
            p.add_(torch.randn_like(p))  # "trained": nothing left at its init value
    save_model(m32, tmp_path / "fcn32s.pt")
    m16 = create_model("fcn16s", num_classes=3, width=1 / 16)
    report = init_from(m16, tmp_path / "fcn32s.pt")
    sd32, sd16 = m32.state_dict(), m16.state_dict()
    assert torch.equal(sd16["conv1_1.weight"], sd32["conv1_1.weight"])
    assert torch.equal(sd16["score_fr.weight"], sd32["score_fr.weight"])
    assert sd16["score_pool4.weight"].abs().sum() == 0  # new skip starts at zero, as in the paper
    assert "upscore.weight" in report["skipped"] and "score_pool4.weight" in report["new"]
    assert "upscore2.weight" in report["new"]
    with pytest.raises(ValueError, match="no tensor matches"):
        init_from(torch.nn.Linear(2, 2), tmp_path / "fcn32s.pt")


def _camvid_folder(root, n_train=3, n_val=2):
    """A tiny CamVid in the SegNet layout (images 32x48, labels 0..6 and void 11)."""
    for split, n, seed in (("train", n_train, 0), ("val", n_val, 100)):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            s = generate_street_scene(seed + i, (32, 48))
            mask = s["mask"].copy()
            mask[:2] = 11  # void
            Image.fromarray(s["image"]).save(root / split / f"f{i}.png")
            Image.fromarray(mask.astype(np.uint8)).save(root / f"{split}annot" / f"f{i}.png")
    return root


def test_cli_train_resume_and_eval_reproduces_validation(tmp_path, capsys, monkeypatch):
    from fcnkit.cli import main

    data = _camvid_folder(tmp_path / "camvid")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({"data": f"camvid:{data}", "width": 0.0625, "epochs": 2, "workers": 0,
                                      "progress": False, "crop_size": [32, 48], "hflip": True,
                                      "out_dir": str(tmp_path / "run")}))
    assert main(["train", "--config", str(recipe), "--set", "lr=0.02", "--stop-after", "2"]) == 0
    # resume from the checkpoint alone: its saved config is used
    assert main(["train", "--resume", str(tmp_path / "run" / "last.pt")]) == 0
    out = capsys.readouterr().out
    assert "resumed at epoch 1, iteration 2" in out and "val pixel acc" in out
    assert read_record(tmp_path / "run" / "last.pt")["progress"]["iteration"] == 6
    best = read_record(tmp_path / "run" / "best.pt")

    monkeypatch.chdir(tmp_path)  # the report goes to ./runs/eval/1 by default
    assert main(["eval", str(tmp_path / "run" / "best.pt"), "--data", f"camvid:{data}", "--workers", "0"]) == 0
    report = json.loads((tmp_path / "runs" / "eval" / "1" / "metrics.json").read_text())
    assert report["mean_iu"] == pytest.approx(best["meta"]["val_metrics"]["mean_iu"], abs=1e-12)
    assert report["pixels"] == 2 * 30 * 48  # void rows excluded
    assert len(report["class_iu"]) == 11
    for png in ("confusion.png", "class_iou.png"):
        assert Image.open(tmp_path / "runs" / "eval" / "1" / png).size[0] > 100
    assert "mean IU" in capsys.readouterr().out

    assert main(["train", "--config", str(recipe), "--set", "epochs=zero"]) == 2
    assert "epochs must be int" in capsys.readouterr().err


def test_resume_from_another_folder_finds_the_data_and_goes_on_in_the_run_folder(tmp_path, capsys, monkeypatch):
    """Relative paths in a run's config are the working folder's at the time: the checkpoint
    records the data absolutely and the run goes on where its checkpoint is."""
    from fcnkit.cli import main

    _camvid_folder(tmp_path / "start" / "camvid")
    monkeypatch.chdir(tmp_path / "start")
    assert main(["train", "--data", "camvid:camvid", "--set", "out_dir=run", "--set", "width=0.0625",
                 "--set", "epochs=2", "--set", "workers=0", "--set", "progress=false",
                 "--set", "crop_size=[32, 48]", "--stop-after", "2"]) == 0
    saved = read_record(tmp_path / "start" / "run" / "last.pt")["train_config"]
    assert saved["data"] == f"camvid:{tmp_path / 'start' / 'camvid'}" and saved["out_dir"] == "run"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["train", "--resume", "../start/run/last.pt"]) == 0
    out = capsys.readouterr().out
    assert "resumed at epoch 1, iteration 2" in out and "changed config" not in out
    assert read_record(tmp_path / "start" / "run" / "last.pt")["progress"]["iteration"] == 6  # 3 per epoch
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_sigterm_to_the_process_group_finishes_the_step_saves_exits_130_and_resumes_exactly(tmp_path):
    """systemd, Slurm's scancel and ``kill -- -PGID`` signal the loader workers too: they
    must not die under the trainer, which finishes the step, saves and exits 130."""
    import subprocess
    import sys

    data = _camvid_folder(tmp_path / "camvid")
    recipe = tmp_path / "long.yaml"
    recipe.write_text(yaml.safe_dump({"data": f"camvid:{data}", "width": 0.0625, "epochs": 10000, "workers": 2,
                                      "progress": False, "log_every": 1, "out_dir": str(tmp_path / "run")}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "fcnkit", "train", "--config", str(recipe)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)  # its own process group, as under systemd or Slurm
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("  it "):  # training is under way, the workers are up
            os.killpg(proc.pid, signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=120)
    out = "".join(seen) + rest
    assert proc.returncode == 130, out
    assert "SIGTERM received" in out and "interrupted at iteration" in out and "Traceback" not in out
    k = read_record(tmp_path / "run" / "last.pt")["progress"]["iteration"]
    assert k >= 1 and f"interrupted at iteration {k}" in out
    # resume one more step; an uninterrupted run paused at the same iteration has the same weights
    run = lambda *a: subprocess.run([*cmd, *a], capture_output=True, text=True, env=env, timeout=120)
    resumed = run("--resume", "--stop-after", "1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    straight = run("--set", f"out_dir={tmp_path / 'straight'}", "--stop-after", str(k + 1))
    assert straight.returncode == 0, straight.stdout + straight.stderr
    assert read_record(tmp_path / "straight" / "last.pt")["progress"]["iteration"] == k + 1
    assert _same(_weights(tmp_path / "run" / "last.pt"), _weights(tmp_path / "straight" / "last.pt"))


def test_bn_momentum_override_for_training_from_scratch(tmp_path):
    tr, _ = _sets(n_train=2)
    cfg = _cfg(tmp_path, encoder="mobilenet_v3_large", width=0.25, batch_size=2, bn_momentum=0.1)
    model = train(cfg, train_set=tr)["model"]
    momenta = {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta == {0.1}
    fresh = create_model("fcn8s", num_classes=7, encoder="mobilenet_v3_large", width=0.25)
    assert {m.momentum for m in fresh.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.01}


def test_weight_ema_is_what_is_validated_and_saved_and_resumes_exactly(tmp_path):
    tr, va = _sets()
    fixed = dict(amp="off", channels_last=False)  # two runs compared bit for bit: no precision on trial
    a = train(_cfg(tmp_path / "a", ema_decay=0.9, epochs=2, **fixed), train_set=tr, val_set=va)
    rec = read_record(tmp_path / "a" / "last.pt")
    raw, avg = rec["train_model"], rec["model"]
    assert raw.keys() == avg.keys()
    assert any(not torch.equal(raw[k], avg[k]) for k in raw if raw[k].is_floating_point())
    # eval and predict load "model": the averaged weights, whose validation the run reported
    model = load_model(tmp_path / "a" / "last.pt")
    assert _same(model.state_dict(), avg) and a["model"].state_dict().keys() == avg.keys()
    assert _same({k: v.cpu() for k, v in a["model"].state_dict().items()}, avg)
    # paused and resumed, the raw and the averaged weights both match the uninterrupted run
    cfg_b = _cfg(tmp_path / "b", ema_decay=0.9, epochs=2, **fixed)
    train(cfg_b, train_set=tr, val_set=va, stop_after=3)
    b = train(cfg_b, train_set=tr, val_set=va, resume=True)
    rb = read_record(tmp_path / "b" / "last.pt")
    assert _same(rb["model"], avg) and _same(rb["train_model"], raw)
    assert a["metrics"] == b["metrics"]
    # without EMA a checkpoint holds one set of weights
    train(_cfg(tmp_path / "c"), train_set=tr, val_set=va)
    assert "train_model" not in read_record(tmp_path / "c" / "last.pt")


def test_a_second_training_into_a_running_runs_folder_is_refused_naming_the_first(tmp_path):
    """Issue 25.2: two trainings in one out_dir used to interleave metrics.jsonl and overwrite
    each other's last.pt. The first holds the folder; the second is refused before it writes."""
    import subprocess
    import sys
    import time

    from fcnkit.io import FolderInUse, FolderLock

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from fcnkit.io import FolderLock; "
                               f"FolderLock({str(out)!r}); print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        tr, va = _sets()
        with pytest.raises(FolderInUse, match=rf"in use by PID {holder.pid} on "):
            train(_cfg(out), train_set=tr, val_set=va)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing of the second run was written
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    # killed (as by kill -9): the lock is free again, and a run finishes and releases it
    assert train(_cfg(out), train_set=tr, val_set=va)["status"] == "finished"
    FolderLock(out).release()
    # an out_dir that is a file is refused before any work
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is an existing file"):
        train(_cfg(tmp_path / "file"), train_set=tr, val_set=va)


def test_warm_up_is_clamped_to_a_fifth_of_a_short_run_and_said(tmp_path, capsys):
    """Issue 26.5: a recipe's 45 warm-up steps left a 4-step run at lr ~0 (it trained nothing)."""
    from fcnkit.engine.optim import warmup_for

    assert (warmup_for(45, 4), warmup_for(45, 100), warmup_for(45, 396)) == (0, 20, 45)
    tr, va = _sets()
    train(_cfg(tmp_path / "a", warmup_iters=45, schedule="fixed"), train_set=tr, val_set=va)
    assert "warm-up shortened from 45 to 0 iterations" in capsys.readouterr().out
    row = json.loads((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["lr"] == pytest.approx(0.05)  # the full lr, not 0.05 * (0.001 + 4/45)


def test_training_without_validation_data_says_so_at_start_and_end(tmp_path, capsys):
    """Issue 25.11: an empty val split trained silently with no validation and no best.pt."""
    tr, va = _sets()
    empty = torch.utils.data.Subset(va, [])
    result = train(_cfg(tmp_path), train_set=tr, val_set=empty)
    out = capsys.readouterr().out
    assert "warning: no validation data" in out and "finished without validation" in out
    assert result["validated"] is False and not (tmp_path / "best.pt").exists() and (tmp_path / "last.pt").exists()


def test_resuming_with_another_encoder_says_what_to_do_not_a_key_dump(tmp_path):
    """Issue 25.14: --resume with another encoder printed torch's state-dict key dump."""
    tr, va = _sets()
    cfg = _cfg(tmp_path)
    train(cfg, train_set=tr, val_set=va, stop_after=1)
    with pytest.raises(ValueError) as e:
        train(dataclasses.replace(cfg, encoder="resnet18", width=1.0), train_set=tr, val_set=va, resume=True)
    message = str(e.value)
    assert "do not fit the model this config builds" in message and "init_from=" in message
    assert "Missing key(s)" not in message and len(message) < 400


def test_no_data_or_data_not_where_the_recipe_says_tells_what_to_give(tmp_path):
    """Issue 26.2: a shipped recipe without --data said `.../venv/lib/shared/data/camvid: CamVid folder
    not found`; the default config named a path that exists only in a development checkout."""
    assert TrainConfig().data is None
    with pytest.raises(ValueError, match="no training data.*--data camvid:/path/to/CamVid"):
        train(_cfg(tmp_path / "a"))
    with pytest.raises(FileNotFoundError, match=r"nowhere/camvid: no such dataset .* --data camvid:PATH"):
        train(_cfg(tmp_path / "b", data=str(f"camvid:{tmp_path / 'nowhere' / 'camvid'}")))


def test_class_weights_auto_are_counted_on_the_training_data_once(tmp_path, capsys, monkeypatch):
    """Issue 26.3: a recipe's fixed 11-class weights file cannot fit a 12-class dataset; `auto` counts
    median-frequency weights on whatever data is trained, once (cached by the file list)."""
    from test_data_fixtures import write_camvid

    from fcnkit.data import build_dataset
    from fcnkit.data.stats import class_statistics

    monkeypatch.setenv("FCNKIT_CACHE", str(tmp_path / "cache"))
    write_camvid(tmp_path / "camvid", {"train": 3, "val": 1}, size=(32, 48))
    spec = f"camvid:{tmp_path / 'camvid'}"
    cfg = _cfg(tmp_path / "a", data=spec, class_weights="auto", class_weight_power=0.5, crop_size=(32, 48))
    first = train(cfg)
    assert "class weights: median frequency on the training data, counted over 3 images" in capsys.readouterr().out
    expected = torch.tensor(class_statistics(build_dataset(spec, "train"), progress=False)["class_weights"]) ** 0.5
    train(dataclasses.replace(cfg, out_dir=str(tmp_path / "b")))
    assert "class weights: median frequency on the training data, cached" in capsys.readouterr().out
    assert first["status"] == "finished" and expected.min() > 0
    (cache,) = (tmp_path / "cache" / "class_weights").glob("*.json")
    assert torch.allclose(torch.tensor(json.loads(cache.read_text())["class_weights"]) ** 0.5, expected)
