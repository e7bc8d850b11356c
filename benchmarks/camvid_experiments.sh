#!/usr/bin/env bash
# The CamVid experiments (pretrained EfficientNet-Lite first, then issue 9's from-scratch runs), one after the other, each resumable (re-running this
# script continues unfinished runs from their last.pt). Results: runs/<recipe>/.
#   bash benchmarks/camvid_experiments.sh [recipe ...]     (default: all, best first)
set -euo pipefail
cd "$(dirname "$0")/.."
recipes=("$@")
[ ${#recipes[@]} -gt 0 ] || recipes=(camvid_lite0 camvid_cmp_lite0_fcn32s camvid_cmp_lite0_fcn16s camvid_cmp_lite0_fcn8s
                                    camvid_cmp_lite0_fcn8s_scratch camvid_long camvid_best camvid_skip_fcn32s camvid_skip_fcn16s camvid_skip_fcn8s
                                    camvid_staged_fcn32s camvid_staged_fcn16s camvid_staged_fcn8s)
for r in "${recipes[@]}"; do
  out=runs/$r
  if [ -f "$out/DONE" ]; then
    echo "== $r: done"; continue
  fi
  echo "== $r: $(date -u +%H:%M:%S)"
  if [ -f "$out/last.pt" ]; then
    .venv/bin/fcnkit train --config "configs/$r.yaml" --resume --set progress=false
  else
    .venv/bin/fcnkit train --config "configs/$r.yaml" --set progress=false
  fi
  date -u +%FT%TZ > "$out/DONE"
done
