"""Training from Python (issue 26.4): fcnkit.train(recipe, data=..., **overrides) -> Run, the CLI's engine."""

import json

import pytest
import torch
from test_data_fixtures import write_camvid

import fcnkit
from fcnkit.engine.run import Run


def test_train_from_python_fine_tunes_and_reports_where_and_how_well(tmp_path):
    write_camvid(tmp_path / "camvid", {"train": 3, "val": 2}, size=(32, 48))
    src = tmp_path / "start.pt"
    start = fcnkit.create_model("fcn8s", num_classes=11, encoder="vgg16", width=1 / 16)
    fcnkit.save(start, src)
    run = fcnkit.train("camvid_best", data=f"camvid:{tmp_path / 'camvid'}", encoder="vgg16", width=1 / 16,
                       epochs=2, batch_size=2, crop_size=(32, 48), workers=0, progress=False, init_from=str(src),
                       class_weights="auto", out_dir=str(tmp_path / "run"), amp="off")
    assert isinstance(run, Run) and run.status == "finished"
    assert run.best == tmp_path / "run" / "best.pt" and run.last.is_file()
    assert 0 <= run.best_metrics["mean_iu"] <= 1 and [r["epoch"] for r in run.history] == [1, 2]
    assert run.config.epochs == 2 and run.config.init_from == str(src)
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        assert run.model(x)["seg"].shape == (1, 11, 32, 48)
        torch.testing.assert_close(run.model(x), fcnkit.load(run.last)(x))  # the run's model is last.pt's
    # the same keyword checks as --set
    with pytest.raises(ValueError, match="unknown config key 'epoch'; did you mean epochs"):
        fcnkit.train("camvid_best", data=f"camvid:{tmp_path / 'camvid'}", epoch=2)
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["epoch"] == 2
