"""How much of the shared encoder's gradient is detection's in a joint model: the measurement
behind the joint recipe's ``det_loss_weight``.

Runs the joint recipe's first ``--steps`` training steps (its data, crops and collate,
fp32) from a checkpoint's weights (``--init``, e.g. a trained joint model) or from the
ImageNet encoder, and prints per step the gradient norm of the box losses and of the mask
loss, over all parameters and over the encoder alone, then the median encoder ratio.
The steps (the trainer's own, after an extra forward pass for the measurement) update a
throw-away copy in ``--out``; the checkpoint is not touched.

    .venv/bin/python benchmarks/joint_gradients.py --init runs/joint_camvid_raccoon_lite0/last.pt
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile

import torch
from torch import nn

from fcnkit.detection import joint_loss
from fcnkit.engine import trainer
from fcnkit.engine.run import train_run
from fcnkit.engine.tasks import to_device


def grad_norm(loss: torch.Tensor, params: list[nn.Parameter]) -> float:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="joint_camvid_raccoon_lite0")
    ap.add_argument("--init", default=None, help="checkpoint whose weights to start from (default: the recipe's)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--out", default=None, help="scratch run folder (default: a temporary one)")
    args = ap.parse_args()
    ratios: list[float] = []
    steps = itertools.count(1)
    train_step = trainer._Trainer.step

    def step(self, images, targets):  # the two losses' gradients measured, then the trainer's own step
        images, targets = images.to(self.device), to_device(targets, self.device)
        parts = joint_loss(self.net(images), targets, seg_loss=self.criterion)
        everything = [p for p in self.model.parameters() if p.requires_grad]
        encoder = [p for n, p in self.model.named_parameters() if n.startswith("encoder") and p.requires_grad]
        norms = {k: (grad_norm(parts[k], everything), grad_norm(parts[k], encoder)) for k in ("det", "seg") if k in parts}
        line = "  ".join(f"{k}: loss {float(parts[k]):.3f} grad {a:.2f} (encoder {e:.3f})" for k, (a, e) in norms.items())
        print(f"step {next(steps)}: {int(targets['has_boxes'].sum())} box / {int(targets['has_mask'].sum())} "
              f"mask images  {line}", flush=True)
        if len(norms) == 2 and norms["seg"][1] > 0:
            ratios.append(norms["det"][1] / norms["seg"][1])
        return train_step(self, images, targets)

    trainer._Trainer.step = step
    with tempfile.TemporaryDirectory() as scratch:
        extra = {"init_from": args.init} if args.init else {}
        train_run(args.recipe, out_dir=args.out or scratch, amp="off", channels_last=False, workers=0,
                  val_every=10**6, stop_after=args.steps, **extra)
    if ratios:
        print(f"encoder gradient, box losses / mask loss: median {statistics.median(ratios):.1f}x over "
              f"{len(ratios)} steps with both (before det_loss_weight)")


if __name__ == "__main__":
    main()
