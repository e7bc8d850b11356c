"""``fcnkit predict`` and ``fcnkit eval`` under torchrun: 2 gloo ranks on CPU give the same
files and metrics as one process, each output written once, the summary once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from conftest import data_dir
from fcnkit.cli import main
from predict_fixtures import scene


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "fcnkit", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _inputs(root: Path) -> Path:
    """7 images of different sizes (one in a sub-folder) and a truncated PNG."""
    (root / "sub").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(scene(24 + 4 * i, 40 + 2 * i, seed=i)).save(root / f"im{i}.png")
    Image.fromarray(scene(30, 30, seed=9)).save(root / "sub" / "deep.jpg", quality=95)
    good = (root / "im0.png").read_bytes()
    (root / "broken.png").write_bytes(good[: len(good) // 2])
    return root


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_ranks_write_each_output_once_and_byte_identical_to_one_process(model_file, tmp_path, capsys):
    inputs = _inputs(tmp_path / "in")
    one, two = tmp_path / "one", tmp_path / "two"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the 2 ranks on 2 cores: float sums in the same order
    try:
        assert main(["predict", str(model_file), str(inputs), "--out", str(one), "--workers", "0", "--probs"]) == 1
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    run = torchrun("predict", str(model_file), str(inputs), "--out", str(two), "--workers", "0", "--probs")
    assert run.returncode == 1, run.stderr[-3000:]  # the same exit code on both ranks: one input is broken
    # the summary is gathered to rank 0 and printed once; each input counted once (not once per rank)
    assert run.stdout.count("predicted ") == 1 and f"predicted 7 of 8 inputs by 2 processes -> {two}" in run.stdout
    assert run.stderr.count("broken.png:") == 1 and "1 input(s) skipped" in run.stderr
    files = _files(two)
    assert files == _files(one) and len(files) == 7 * 3  # mask, overlay, probabilities per image
    assert not [p for p in two.rglob(".*")]  # no temp files left

    # a killed job, started again: only what is missing is predicted, the rest is kept as it is
    for name in ("im1", "im4", "sub/deep"):
        for suffix in (".mask.png", ".overlay.jpg", ".probs.npy"):
            (two / f"{name}{suffix}").unlink()
    kept = {k: os.stat(two / k).st_mtime_ns for k in _files(two)}
    again = torchrun("predict", str(model_file), str(inputs), "--out", str(two), "--workers", "0", "--probs")
    assert again.returncode == 1, again.stderr[-3000:]
    assert "predicted 3 of 8 inputs by 2 processes, 4 already done (kept; --overwrite redoes them)" in again.stdout
    assert _files(two) == files and all(os.stat(two / k).st_mtime_ns == t for k, t in kept.items())


def test_two_ranks_evaluate_exactly_like_one_process_segmentation_and_detection(tmp_path, capsys):
    camvid, raccoon = data_dir("camvid"), data_dir("raccoon")
    for name, spec, n in (("camvid-fcn8s-lite0", f"camvid:{camvid}", "6"),
                          ("raccoon-fcn8s-det-lite0", f"voc_xml:{raccoon}", "8")):
        one, two = tmp_path / f"{name}-1", tmp_path / f"{name}-2"
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as each rank: then float sums, and so argmax ties, fall the same way
        try:
            assert main(["eval", name, "--data", spec, "--max-samples", n, "--workers", "0", "--out", str(one)]) == 0
        finally:
            torch.set_num_threads(threads)
        capsys.readouterr()
        run = torchrun("eval", name, "--data", spec, "--max-samples", n, "--workers", "0", "--out", str(two))
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stdout.count("wrote ") == 1  # only rank 0 reports
        a, b = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
        keys = ["mean_iu", "pixel_acc", "class_iu", "confusion_matrix"] if "camvid" in name else ["map", "map_50", "map_75"]
        assert all(k in a for k in keys) and {k: a[k] for k in keys} == {k: b[k] for k in keys}
        assert a["images"] == b["images"] == int(n)
        if "raccoon" in name:
            assert a["map_50"] > 0.3  # a real score, not an empty one that trivially agrees


def test_a_rank_failing_on_corrupt_data_does_not_hang_the_other(tmp_path):
    camvid = data_dir("camvid")
    root = tmp_path / "camvid"
    for split in ("val", "valannot"):
        (root / split).mkdir(parents=True)
        for p in sorted((camvid / split).glob("*.png"))[:4]:
            (root / split / p.name).symlink_to(p)
    victim = sorted((root / "val").glob("*.png"))[1]  # rank 1's first image
    victim.unlink()
    victim.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    run = torchrun("eval", "camvid-fcn8s-lite0", "--data", f"camvid:{root}", "--workers", "0",
                   "--out", str(tmp_path / "report"))
    assert run.returncode != 0 and victim.name in run.stderr
    assert not (tmp_path / "report" / "metrics.json").exists()
