#!/usr/bin/env bash
# Reproduce the shipped camvid-fcn8s-lite0 from a clean checkout (issue 22's protocol), resumable:
# re-running continues an unfinished run from its last.pt.
#   1. the recipe was chosen by the study (train-only runs scored on held-out 0006R0 and val):
#        .venv/bin/python benchmarks/camvid_study.py long sqrt_mf zoom ...   (benchmarks/results/camvid.md)
#   2. the release fit: that recipe on train + val (468 frames), configs/camvid_release.yaml
#   3. the fp16 safetensors file that ships, and its figures (fcnkit eval, with and without TTA)
#   bash benchmarks/release_models.sh [DATA]      (DATA default ../shared/data/camvid)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/camvid}
out=runs/camvid_release
if [ ! -f "$out/DONE" ]; then
  resume=(); [ -f "$out/last.pt" ] && resume=(--resume)
  .venv/bin/fcnkit train --config camvid_release --data "camvid:$data" --set out_dir=$out progress=false "${resume[@]}"
  date -u +%FT%TZ > "$out/DONE"
fi
.venv/bin/fcnkit export "$out/last.pt" --format safetensors --out "$out/camvid_fcn8s_lite0.safetensors" --overwrite
.venv/bin/fcnkit eval "$out/camvid_fcn8s_lite0.safetensors" --data "camvid:$data" --split val --out "$out/eval_val" --quiet
.venv/bin/fcnkit eval "$out/camvid_fcn8s_lite0.safetensors" --data "camvid:$data" --split val --tta --out "$out/eval_val_tta" --quiet
echo "copy $out/camvid_fcn8s_lite0.safetensors to src/fcnkit/weights/ and update its entry (sha256, size) in src/fcnkit/models/zoo.py"
