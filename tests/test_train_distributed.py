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


TRIAL_SCRIPT = textwrap.dedent('''
    import os, sys
    import torch
    from fcnkit.config import TrainConfig
    from fcnkit.data import train_transforms
    from fcnkit.data.synthetic import SyntheticStreets
    from fcnkit.engine import probe, train, trainer
    from fcnkit.models import IMAGENET

    out, rank = sys.argv[1], int(os.environ["RANK"])
    os.environ["FCNKIT_CACHE"] = f"{out}/cache"  # measured afresh, whatever other tests cached
    probe.cpu_has_fast_bf16 = lambda: True  # four candidates on any CPU
    # each rank's clock disagrees: alone, rank 1 would drop both fp32 paths after their warm-ups
    times = [{"fp32 channels_last": 1.2, "fp32 NCHW": 1.0, "bf16 channels_last": 1.25, "bf16 NCHW": 1.25},
             {"fp32 channels_last": 9.0, "fp32 NCHW": 9.0, "bf16 channels_last": 1.0, "bf16 NCHW": 1.5}][rank]
    record, steps = probe.StepTrial.record, []
    def fake(self, seconds):
        steps.append(self.candidate.label)
        record(self, times[self.candidate.label])
    probe.StepTrial.record = fake
    settled, chosen = trainer._Trainer._settled, []
    def spy(self, choice):
        chosen.append(choice.label)
        settled(self, choice)
    trainer._Trainer._settled = spy
    tr = SyntheticStreets(4, size=(32, 48), seed=0, transforms=train_transforms(IMAGENET, crop_size=(32, 48)))
    cfg = TrainConfig(width=1 / 16, workers=0, progress=False, epochs=5, crop_size=(32, 48), out_dir=out)
    model = train(cfg, train_set=tr)["model"]
    torch.save({"weights": model.state_dict(), "steps": steps, "chosen": chosen}, f"{out}/rank{rank}.pt")
''')


def test_ranks_share_one_trial_and_rank_0s_clock_decides(tmp_path):
    out = torchrun_two_cpu_ranks(TRIAL_SCRIPT, tmp_path)
    r0, r1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    assert r0["steps"] == r1["steps"] == 2 * ["fp32 channels_last", "fp32 NCHW", "bf16 channels_last", "bf16 NCHW"]
    assert r0["chosen"] == r1["chosen"] == ["fp32 NCHW"]  # rank 0's fastest (rank 1's clock says bf16 channels_last)
    assert all(torch.equal(r0["weights"][k], r1["weights"][k]) for k in r0["weights"])
    why = json.loads((out / "environment.json").read_text())["run_choice"]
    assert why.startswith("1.00 s per training step vs fp32 channels_last 1.20 s")
