"""Config (recipes, --set typing, errors), optimiser groups and lr schedules, recipes in configs/."""

import dataclasses
from pathlib import Path

import pytest
import yaml
import torch

from fcnkit.config import TrainConfig, from_dict, list_recipes, load_config, load_recipe, recipes_dir, save_config
from fcnkit.engine.optim import build_optimizer, build_scheduler, lr_factor, param_groups
from fcnkit.models import create_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_frozen():
    cfg = TrainConfig()
    with pytest.raises(Exception):
        cfg.lr = 1.0  # type: ignore[misc]


def test_recipe_then_set_overrides_with_types(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 1e-10\nmomentum: 0.99\nbatch_size: 1\ncrop_size: [64, 96]\nhflip: true\n")
    cfg = load_config(recipe, ["epochs=3", "lr=2e-3", "crop_size=32x48", "init_from=null", "width=1",
                               "class_weights=stats.json"])
    assert cfg.lr == 2e-3 and isinstance(cfg.lr, float)
    assert cfg.momentum == 0.99 and cfg.epochs == 3 and cfg.hflip is True
    assert cfg.crop_size == (32, 48) and cfg.width == 1.0 and isinstance(cfg.width, float)
    assert cfg.class_weights == "stats.json" and cfg.init_from is None
    # YAML 1.1 reads "1e-10" as a string; the float field still gets a float
    assert load_recipe(recipe).lr == 1e-10


def test_bad_config_errors_name_the_source_and_key(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("learning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown config key 'learning_rate'"):
        load_recipe(recipe)
    recipe.write_text("epochs: two\n")
    with pytest.raises(ValueError, match=r"bad.yaml: epochs: epochs must be int, not 'two'"):
        load_recipe(recipe)
    recipe.write_text("- a list\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        load_recipe(recipe)
    with pytest.raises(ValueError, match="did you mean batch_size"):
        load_config(None, ["bach_size=2"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["epochs"])
    with pytest.raises(ValueError, match="optimizer must be one of"):
        load_config(None, ["optimizer=adam"])
    with pytest.raises(ValueError, match="crop_size must be a list of 2"):
        load_config(None, ["crop_size=5"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_recipe(tmp_path / "nope.yaml")


@pytest.mark.parametrize("override, message", [
    ("lr=.inf", "lr must be a finite number, not inf"), ("lr=.nan", "lr must be a finite number, not nan"),
    ("momentum=.inf", "momentum must be a finite number"), ("betas=[0.9, .nan]", "betas must be a finite number"),
    ("lr=0", "lr must be > 0, not 0.0"), ("weight_decay=-1e-4", "weight_decay must be >= 0, not -0.0001"),
    ("momentum=1.5", "momentum must be >= 0 and <= 1, not 1.5"), ("grad_clip=0", "grad_clip must be > 0 or null"),
    ("betas=[0.9, 1.0]", r"betas must be in \[0, 1\)"), ("width=0", "width must be > 0"),
    ("warmup_factor=2", "warmup_factor must be > 0 and <= 1"), ("det_loss_weight=0", "det_loss_weight must be > 0"),
])
def test_numbers_are_validated_non_finite_included(tmp_path, override, message):
    with pytest.raises(ValueError, match=f"--set: {message}"):
        load_config(None, [override])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(override.replace("=", ": ", 1) + "\n")
    with pytest.raises(ValueError, match=f"r.yaml: {message}"):
        load_recipe(recipe)


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["data=camvid:../shared/data/camvid", "crop_size=[8, 16]", "scale_range=[0.5, 2]", "lr=0.5"])
    save_config(cfg, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["data"] == f"camvid:{Path.cwd().parent}/shared/data/camvid"
    assert load_recipe(tmp_path / "config.yaml") == dataclasses.replace(cfg, data=f"camvid:{Path.cwd().parent}/shared/data/camvid")
    assert from_dict(cfg.to_dict()) == cfg


def test_recipe_paths_are_relative_to_the_recipe_from_any_working_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "recipes"
    folder.mkdir(parents=True)
    (folder / "w.json").write_text("{}")
    (folder / "r.yaml").write_text("data: [camvid:../data/camvid, ../data/raccoon, /abs/voc]\nclass_weights: w.json\n"
                                   "encoder_weights: imagenet\ninit_from: runs/a/best.pt\nout_dir: runs/b\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_recipe("project/recipes/r.yaml")
    data = tmp_path / "project" / "data"
    assert cfg.data == (f"camvid:{data}/camvid", f"{data}/raccoon", "/abs/voc")
    assert cfg.class_weights == str(folder / "w.json") and cfg.encoder_weights == "imagenet"
    assert (cfg.init_from, cfg.out_dir) == ("runs/a/best.pt", "runs/b")  # runs live in the working folder
    monkeypatch.chdir(folder)
    assert load_recipe("r.yaml") == cfg
    # --set and --data are typed in the working folder: taken as they are
    assert load_config("r.yaml", ["data=camvid:x"]).data == "camvid:x"


def test_shipped_recipes_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_recipe("camvid_best")
    assert cfg == load_recipe(CONFIGS / "camvid_best.yaml") == load_recipe("camvid_best.yaml")
    assert Path(cfg.class_weights).is_file() and Path(cfg.class_weights).parent == recipes_dir()
    assert cfg.data == f"camvid:{CONFIGS.parents[1] / 'shared/data/camvid'}"  # the repo's sibling data
    assert "camvid_best" in list_recipes() and len(list_recipes()) == len(list(CONFIGS.glob("*.yaml")))
    with pytest.raises(FileNotFoundError, match=r"camvid_bset: no such recipe file or shipped recipe; did you mean "
                                                r"camvid_best"):
        load_recipe("camvid_bset")


def test_cli_train_takes_a_recipe_by_name_and_data_from_the_command_line(tmp_path, monkeypatch, capsys):
    from fcnkit.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", "raccoon_det_lite0", "--data", "voc_xml:mine", "--set", "epochs=1",
                 "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["data"], printed["epochs"], printed["model"]) == ("voc_xml:mine", 1, "fcn8s-det")
    assert main(["train", "--list-recipes"]) == 0
    assert capsys.readouterr().out.split() == list_recipes()


def test_the_wheel_ships_the_recipes(tmp_path):
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(root)], check=True, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob("fcnkit-*.whl"))).namelist()
    shipped = {n.removeprefix("fcnkit/recipes/") for n in names if n.startswith("fcnkit/recipes/")}
    assert shipped == {p.name for p in CONFIGS.iterdir()} and "camvid_median_freq.json" in shipped


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(path):
    cfg = load_recipe(path)
    assert cfg.out_dir.startswith("runs/"), "recipes write to their own run folder"


def test_reference_recipe_matches_the_paper():
    cfg = load_recipe(CONFIGS / "camvid_fcn32s_reference.yaml")
    assert (cfg.optimizer, cfg.momentum, cfg.batch_size, cfg.loss_reduction) == ("sgd", 0.99, 1, "sum")
    assert (cfg.lr, cfg.schedule, cfg.weight_decay, cfg.bias_lr_mult, cfg.bias_decay) == (
        1e-10, "fixed", 5e-4, 2.0, False)
    assert load_recipe(CONFIGS / "camvid_fcn16s_reference.yaml").lr == 1e-12
    assert load_recipe(CONFIGS / "camvid_fcn8s_reference.yaml").lr == 1e-14
    assert load_recipe(CONFIGS / "camvid_fcn16s_reference.yaml").init_from.endswith("best.pt")


def test_reference_param_groups_biases_twice_lr_without_decay():
    model = create_model("fcn8s", num_classes=3, width=1 / 16)
    cfg = load_config(None, ["lr=1e-10", "weight_decay=5e-4", "bias_lr_mult=2", "momentum=0.99"])
    opt = build_optimizer(model, cfg)
    weights, biases = opt.param_groups
    assert (weights["lr"], weights["weight_decay"]) == (1e-10, 5e-4)
    assert (biases["lr"], biases["weight_decay"]) == (2e-10, 0.0)
    assert all(p.ndim > 1 for p in weights["params"]) and all(p.ndim == 1 for p in biases["params"])
    # the fixed bilinear upsampling kernels are not optimised
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in opt.param_groups for p in g["params"]} == trainable
    assert len(trainable) < len(list(model.parameters()))
    assert opt.defaults["momentum"] == 0.99


def test_adamw_and_norm_params_follow_bias_rules():
    model = create_model("fcn8s", num_classes=3, encoder="mobilenet_v3_large", width=0.25)
    cfg = load_config(None, ["optimizer=adamw", "bias_decay=true"])
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[1]["weight_decay"] == cfg.weight_decay
    bn_weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    group1 = {id(p) for p in param_groups(model, cfg)[1]["params"]}
    assert bn_weights and all(id(w) in group1 for w in bn_weights)


def test_encoder_lr_mult_gives_the_encoder_its_own_groups():
    model = create_model("fcn8s", num_classes=3, encoder="mobilenet_v3_large", width=0.25, learnable_upsampling=True)
    cfg = load_config(None, ["optimizer=adamw", "lr=1e-3", "encoder_lr_mult=0.1", "bias_lr_mult=2"])
    groups = param_groups(model, cfg)
    enc = {id(p) for p in model.encoder.parameters()}
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in groups}
    assert sorted(by_lr) == pytest.approx(sorted([1e-3, 2e-3, 1e-4, 2e-4]))
    assert by_lr[1e-3] | by_lr[2e-3] == {id(p) for p in model.decoder.parameters() if p.requires_grad}
    enc_groups = [ids for lr, ids in by_lr.items() if lr < 5e-4]
    assert set().union(*enc_groups) == enc
    assert groups[0]["lr"] == 1e-3 and all(id(p) not in enc for p in groups[0]["params"])  # the logged lr
    with pytest.raises(ValueError, match="encoder_lr_mult"):
        load_config(None, ["encoder_lr_mult=-1"])


def test_lr_schedules():
    assert lr_factor(50, total=100, schedule="fixed") == 1.0
    assert lr_factor(50, total=100, schedule="poly", power=0.9) == pytest.approx(0.5 ** 0.9)
    assert lr_factor(100, total=100, schedule="poly") == 0.0
    assert lr_factor(50, total=100, schedule="cosine") == pytest.approx(0.5)
    # linear warm-up from warmup_factor to 1 over 10 iterations, times the decay
    assert lr_factor(0, total=100, schedule="fixed", warmup_iters=10, warmup_factor=0.1) == pytest.approx(0.1)
    assert lr_factor(5, total=100, schedule="fixed", warmup_iters=10, warmup_factor=0.1) == pytest.approx(0.55)
    assert lr_factor(10, total=100, schedule="poly", warmup_iters=10) == pytest.approx(0.9 ** 0.9)
    model = torch.nn.Linear(2, 2)
    cfg = load_config(None, ["lr=1.0", "schedule=poly", "poly_power=1.0", "bias_lr_mult=2"])
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_iters=4)
    lrs = []
    for _ in range(4):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert lrs == [[1.0, 2.0], [0.75, 1.5], [0.5, 1.0], [0.25, 0.5]]
