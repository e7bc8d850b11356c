"""The foundation's commands: models, info, demo."""

import re

import pytest

from fcnkit.cli import main


def test_models_lists_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "fcn8s-atonce" in out and "mobilenet_v3_large" in out


def test_info_reports_flops_and_shape(capsys):
    assert main(["info", "fcn8s", "--size", "64x96", "--num-classes", "11", "--width", "0.0625"]) == 0
    out = capsys.readouterr().out
    assert "(1, 11, 64, 96)" in out
    gflops = float(re.search(r"GFLOPs\s+([\d.]+)", out).group(1))
    assert 0 < gflops < 1


def test_info_reference_costs_more_than_fast(capsys):
    flops = {}
    for geometry in ("fast", "reference"):
        main(["info", "fcn32s", "--size", "96x128", "--width", "0.0625", "--geometry", geometry])
        flops[geometry] = float(re.search(r"GFLOPs\s+([\d.]+)", capsys.readouterr().out).group(1))
    assert flops["reference"] > 1.5 * flops["fast"]  # pad 100 more than doubles a small image


def test_demo_blocks(capsys):
    assert main(["demo", "1x1"]) == 0
    out = capsys.readouterr().out
    diff = float(re.search(r"max \|difference\| = ([\d.e+-]+)", out).group(1))
    assert diff < 1e-5 and "(1, 5, 7, 11)" in out
    assert main(["demo", "transpose"]) == 0
    assert "interior row: [3.0, 3.0, 3.0, 3.0, 3.0, 3.0]" in capsys.readouterr().out


def test_bad_size_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["info", "fcn8s", "--size", "big"])
    assert e.value.code == 2
    assert "size must be HxW" in capsys.readouterr().err
