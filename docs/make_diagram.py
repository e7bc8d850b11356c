"""Draw docs/architecture.png: the data's path through fcnkit's modules.

    .venv/bin/python docs/make_diagram.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

STAGES = [
    ("data/", "CamVid, VOC, Cityscapes,\nKITTI, folder, VOC-XML, COCO\nlists of specs (mixed)\nboxes from instance masks"),
    ("models/", "encoders -> taps\nFCN-32s/16s/8s, detector,\njoint model; registry\nmakes each ModelSpec"),
    ("losses/ metrics/", "CE, focal, Lovász;\nheatmap focal + L1;\nconfusion matrix, MaxF,\nCOCO mAP"),
    ("engine/", "tasks: collate, loss,\nbest metric; ONE loop\n(DDP, exact resume),\none scorer"),
    ("inference/", "open_model: .pt .safetensors\n.onnx .xml -> one runner\nPredictor, tiling, video,\noutputs, eval reports"),
    ("export/", "ONNX, OpenVINO (parity\non every output), int8,\nbf16, SVD, fold, optimize,\nbench: writes files"),
]


def main() -> None:
    fig, ax = plt.subplots(figsize=(15, 4.3))
    ax.set_xlim(0, len(STAGES) * 2.5)
    ax.set_ylim(-0.9, 3.4)
    ax.axis("off")
    for i, (title, body) in enumerate(STAGES):
        x = i * 2.5 + 0.05
        ax.add_patch(FancyBboxPatch((x, 0.3), 2.2, 2.6, boxstyle="round,pad=0.05", fc="#eef3fb", ec="#35598f"))
        ax.text(x + 1.1, 2.6, title, ha="center", va="center", fontsize=12, weight="bold", color="#1d3b66")
        ax.text(x + 1.1, 1.45, body, ha="center", va="center", fontsize=7.6)
        if i < len(STAGES) - 1:
            ax.annotate("", xy=(x + 2.45, 1.6), xytext=(x + 2.27, 1.6), arrowprops=dict(arrowstyle="->", lw=1.8))
    # the model contract travels with every model, file and runner from models/ onwards
    left, right = 2.5 + 0.05, len(STAGES) * 2.5 - 0.05
    ax.add_patch(FancyBboxPatch((left, -0.75), right - left, 0.55, boxstyle="round,pad=0.03", fc="#fff4dd",
                                ec="#a86b00"))
    ax.text((left + right) / 2, -0.47, "model.spec = runner.spec = ModelSpec(name, builder config, heads {seg, boxes}, "
            "class counts and names,\noutput stride, pad multiple, preprocessing);   every forward -> {\"seg\"} | "
            "{\"heatmap\", \"size\", \"offset\"} | both", ha="center", va="center", fontsize=8.6, color="#5a3900")
    ax.text(len(STAGES) * 1.25, 0.05, "cli/ (thin): fcnkit train | eval | predict | export | optimize | bench | data | "
            "weights | demo      base: io, draw, nn, heads, preprocessing, config",
            ha="center", fontsize=10, family="monospace")
    out = Path(__file__).with_name("architecture.png")
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(out)


if __name__ == "__main__":
    main()
