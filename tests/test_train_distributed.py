"""DDP on CPU: two gloo processes launched by torchrun train a tiny FCN; their weights
agree, only rank 0 writes, and the all-reduced validation equals single-process scoring."""

import json
import textwrap

import torch
from conftest import torchrun_two_cpu_ranks

from fcnkit.models.saved import read_record

SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch
    import torch.distributed as dist
    from fcnkit.config import TrainConfig
    from fcnkit.data import eval_transforms, pad_collate, train_transforms
    from fcnkit.data.synthetic import SyntheticStreets
    from fcnkit.engine import evaluate, train
    from fcnkit.models import IMAGENET

    def dist_rank():
        return int(os.environ["RANK"])


    out = sys.argv[1]
    tf = train_transforms(IMAGENET, crop_size=(32, 48), scale_range=(0.75, 1.25))
    tr = SyntheticStreets(4, size=(32, 48), seed=0, transforms=tf)
    va = SyntheticStreets(3, size=(32, 48), seed=50, transforms=eval_transforms(IMAGENET))  # odd: uneven shards
    cfg = TrainConfig(width=1 / 16, workers=0, progress=False, epochs=2, lr=0.05, out_dir=out, amp="off",
                      channels_last=True)
    result = train(cfg, train_set=tr, val_set=va)
    rank = dist_rank()
    model = result.pop("model")
    torch.save(model.state_dict(), f"{out}/rank{rank}.pt")
    if rank == 0:  # the same weights scored in one process, for comparison with the reduced metrics
        loader = torch.utils.data.DataLoader(va, batch_size=1, collate_fn=pad_collate)
        single = evaluate(model, loader, amp_dtype=None, channels_last=True).metrics
        json.dump({"ddp": result["metrics"], "single": single, "iteration": result["iteration"]},
                  open(f"{out}/result.json", "w"))
''')


def test_two_cpu_processes_train_in_lockstep(tmp_path):
    out = torchrun_two_cpu_ranks(SCRIPT, tmp_path)
    w0, w1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    last = read_record(out / "last.pt")
    assert all(torch.equal(last["model"][k], w0[k]) for k in w0)
    # 4 images over 2 ranks at batch 1: 2 iterations per epoch, 2 epochs
    assert last["progress"]["iteration"] == 4 and len(last["rng"]) == 2
    assert not torch.equal(last["rng"][0]["torch"], last["rng"][1]["torch"])  # per-rank dropout streams
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2  # written once, by rank 0
    res = json.loads((out / "result.json").read_text())
    assert res["ddp"]["pixels"] == res["single"]["pixels"] == 3 * 32 * 48  # every val pixel exactly once
    assert res["ddp"]["mean_iu"] == res["single"]["mean_iu"]
    assert json.dumps(res["ddp"]["class_iu"]) == json.dumps(res["single"]["class_iu"])  # NaN-safe
