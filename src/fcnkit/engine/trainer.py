"""The training loop: config in, checkpoints and metrics out; never loses work.

``train(cfg)`` builds the model from the registry and the data from
``fcnkit.data``, then iterates: forward under autocast, loss in fp32, backward,
step, per-iteration lr schedule. One loop for every task: the model's ``Task``
(``fcnkit.engine.tasks``: segmentation, detection or joint) supplies the collate,
the loss and the metric that picks ``best.pt``. It validates every ``val_every``
epochs with the same code as ``fcnkit eval``, keeps ``best.pt`` (by the task's
metric: val mean IU, mAP, or their mean for joint models) and
``last.pt`` (atomic writes), and resumes bit-identically from ``last.pt``:
model, optimiser, scheduler, scaler, counters and every rank's RNG states are
restored, and data order / augmentation depend only on (seed, epoch, index)
(``fcnkit.engine.sampling``). SIGINT/SIGTERM finish the current step, save and
return; a non-finite loss stops before the bad update reaches the weights.
"""

from __future__ import annotations

import math
import os
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import v2
from timm.utils import ModelEmaV3
from tqdm import tqdm

from ..config import TrainConfig, absolute_inputs, from_dict
from ..data.stats import class_weights_of
from ..io import FolderLock, cache_root, check_output_dir
from ..data import FORMATS, build_dataset, eval_transforms, train_transforms
from ..data.mixed import box_classes_of, dataset_heads
from ..data.mosaic import Mosaic
from ..losses import SegmentationLoss, load_class_weights
from ..models import create_model
from ..models.registry import model_heads
from ..models.spec import with_names
from ..progress import progress_bar
from . import distributed as D
from .checkpoint import init_from, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .evaluate import evaluate
from .tasks import Task, task_for, to_device
from .optim import build_optimizer, build_scheduler, warmup_for
from .runlog import RunLog, write_run_info
from .probe import DTYPES, RunChoice, StepTrial, cached_choice, choose_run, cpu_candidates, dtype_named, fixed_choice
from .runtime import autocast, cpu_model, memory_format, resolve_amp, resolve_device
from .sampling import EpochSampler, SeededSamples, ShardSampler, ignore_stop_signals_in_worker


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was left untouched."""


@dataclass
class Progress:
    """Counters saved in every checkpoint (plain data)."""

    epoch: int = 0  # epochs completed
    epoch_iteration: int = 0  # iterations done in the current epoch
    iteration: int = 0  # iterations done in total
    best_metric: float = -1.0  # the task's best_key (mean IU, mAP or their mean)
    best_epoch: int = 0
    loss_sum: float = 0.0  # over the current epoch's iterations so far
    loss_count: int = 0
    images: int = 0
    seconds: float = 0.0  # training time of the current epoch so far
    elapsed: float = 0.0  # training + validation time of all completed epochs (the budget spent)
    trial: dict | None = None  # precision and layout on trial (StepTrial.state): a resumed run goes on with it
    run_choice: list | None = None  # [amp, channels_last, cpu, threads]: a resumed run on the same CPU keeps it


class StopSignal:
    """SIGINT/SIGTERM set a flag the loop checks after each step (a second Ctrl-C aborts)."""

    def __init__(self, say=print) -> None:
        self.signum: int | None = None
        self.say = say
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        self.say(f"\n{signal.Signals(signum).name} received: finishing this step, saving last.pt, then stopping "
                 f"(Ctrl-C again to abort without saving)")

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


def _dataset_info(ds: Dataset) -> dict[str, Any]:
    """What the model and its files take from the training data: class names, palette,
    ignore index, and which labels it has (``heads``; box class names)."""
    base = ds.dataset if isinstance(ds, Subset) else ds
    try:
        classes = list(base.classes)
    except AttributeError:
        raise ValueError(f"{type(base).__name__} has no 'classes'; fcnkit datasets expose classes, palette "
                         f"and ignore_index") from None
    palette = [list(map(int, c)) for c in getattr(base, "palette", [])] or None
    return {"classes": classes, "palette": palette, "ignore_index": int(getattr(base, "ignore_index", 255)),
            "heads": dataset_heads(base), "box_classes": box_classes_of(base)}


def _check_data(cfg: TrainConfig) -> None:
    """Say what to do when the data is not given or not where the recipe says: shipped
    recipes name the fcnkit repository's ../shared/data, which a pip install does not have."""
    if cfg.data is None:
        raise ValueError("no training data: the recipe has no data: entry and no --data was given "
                         "(e.g. --data camvid:/path/to/CamVid, or any FORMAT:PATH of fcnkit data check)")
    for spec in cfg.data if isinstance(cfg.data, tuple) else (cfg.data,):
        fmt, sep, rest = str(spec).partition(":")
        path = Path(rest if sep and fmt in FORMATS else spec)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such dataset (data: {spec}); recipes name the data where they were "
                                    f"written: give yours with --data {fmt if sep and fmt in FORMATS else 'FORMAT'}:PATH")


def _subset(ds: Dataset, n: int | None) -> Dataset:
    return ds if n is None or n >= len(ds) else Subset(ds, range(n))


class _Transformed(Dataset):
    """A dataset read as stored, transformed on access: the transforms need the model's
    preprocessing, and the model's size needs the data's classes, so the data is read
    first and given its transforms once the model exists (not built a second time)."""

    def __init__(self, dataset: Dataset, transforms: Callable) -> None:
        self.dataset, self.transforms = dataset, transforms

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.transforms(*self.dataset[index])


@dataclass
class _Data:
    """The training and validation sets, each read once: as given, or built from ``cfg.data``
    as stored (``raw_*``: the model's transforms are still to be added)."""

    train: Dataset
    val: Dataset | None
    raw_train: bool
    raw_val: bool
    info: dict[str, Any]  # _dataset_info of the training set


RUN_FILES = ("best.pt", "metrics.jsonl")  # what a run folder holds besides last.pt


def _resume_path(cfg: TrainConfig, resume: str | Path | bool | None) -> Path | None:
    out = Path(cfg.out_dir)
    if resume is None or resume is False:
        if (out / "last.pt").exists():
            raise ValueError(f"{out} already holds a training run (last.pt); resume it with --resume or choose "
                             f"another out_dir (--set out_dir=...)")
        held = [name for name in RUN_FILES if (out / name).exists()]
        if held:  # a run whose last.pt is gone: a fresh start would overwrite best.pt and truncate its metrics
            raise ValueError(f"{out} already holds a training run ({', '.join(held)}) but no last.pt to resume "
                             f"from; choose another out_dir (--set out_dir=...) or move those files away")
        return None
    path = out / "last.pt" if resume is True else Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    return path


def train(cfg: TrainConfig, *, train_set: Dataset | None = None, val_set: Dataset | None = None,
          resume: str | Path | bool | None = None, stop_after: int | None = None) -> dict[str, Any]:
    """Train per ``cfg``; returns a summary dict (status, iteration, best/last val metrics, and
    the trained ``model`` itself).

    ``train_set`` / ``val_set`` replace ``cfg.data`` (they must already apply the model's
    preprocessing). ``resume`` = True (``out_dir/last.pt``) or a checkpoint path.
    ``stop_after`` = at most this many iterations in this call, then save and return
    (status "paused"); the run continues with ``resume``.
    Under ``torchrun`` this is one rank of a DDP job.
    """
    device = resolve_device(cfg.device, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    dist = D.init_distributed(device.type)
    lock = None
    try:
        if dist.is_main:  # one run per folder: a second one would interleave metrics and overwrite checkpoints
            lock = FolderLock(check_output_dir(cfg.out_dir, what="run folder (out_dir)"), what="run folder")
        return _Trainer(cfg, device, dist, train_set, val_set, resume).run(stop_after)
    finally:
        if lock is not None:
            lock.release()
        D.cleanup()


class _Trainer:
    """One training run, set up in named steps (each dataset read once, the model sized by
    its classes, then the loaders and the optimisation around it) and run by ``run``."""

    def __init__(self, cfg: TrainConfig, device: torch.device, dist: D.DistInfo, train_set: Dataset | None,
                 val_set: Dataset | None, resume: str | Path | bool | None) -> None:
        self.cfg, self.device, self.dist, self.out = cfg, device, dist, Path(cfg.out_dir)
        resume_path = _resume_path(cfg, resume)
        self.checkpoint = load_checkpoint(resume_path) if resume_path else None
        if self.checkpoint is not None:
            self._report_config_changes(cfg)
        self._seed_process()
        self.task: Task = task_for(model_heads(cfg.model))
        data = self._read_data(train_set, val_set)
        self.model = self._build_model(data.info)
        self.train_set, self.val_set = self._add_transforms(data)
        self._wrap_model()
        self._build_optimisation(data)
        self._build_loaders(data.info["ignore_index"])
        self.meta = {"palette": data.info["palette"], "ignore_index": data.info["ignore_index"]}
        if cfg.max_size:
            self.meta["max_size"] = cfg.max_size  # eval and predict resize the same way
        self.progress = Progress()
        if self.checkpoint is not None:
            self._restore(self.checkpoint, resume_path)
        self.log = RunLog(self.out, enabled=dist.is_main)
        self.log.truncate_after(self.progress.epoch)
        self.resumed_at = self.progress.iteration if resume_path else None

    # --- set-up steps, in order ---------------------------------------------------
    def _seed_process(self) -> None:
        """Threads and this rank's python / numpy / torch seeds, before the model's init draws."""
        cfg, rank = self.cfg, self.dist.rank
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        random.seed(cfg.seed + rank)
        np.random.seed((cfg.seed + rank) % 2**32)
        torch.manual_seed(cfg.seed + rank)

    def _read_data(self, train_set: Dataset | None, val_set: Dataset | None) -> _Data:
        """The given sets as they are; the others built from ``cfg.data`` once, as stored."""
        cfg = self.cfg
        if train_set is not None:
            return _Data(train_set, val_set, raw_train=False, raw_val=False, info=_dataset_info(train_set))
        _check_data(cfg)
        train = build_dataset(cfg.data, cfg.train_split)
        raw_val = val_set is None
        val = build_dataset(cfg.data, cfg.val_split) if raw_val else val_set
        return _Data(train, val, raw_train=True, raw_val=raw_val, info=_dataset_info(train))

    def _build_model(self, info: dict[str, Any]) -> nn.Module:
        """The registry's model sized for the data's classes, its spec naming them, with the
        recipe's BN momentum and ``init_from`` weights (a resumed run's come from its checkpoint)."""
        cfg, task = self.cfg, self.task
        extra = {"learnable_upsampling": cfg.learnable_upsampling} if task.segments else {}
        if task.detects and cfg.output_stride:
            extra["output_stride"] = cfg.output_stride
        model = create_model(cfg.model, encoder=cfg.encoder, encoder_weights=cfg.encoder_weights,
                             geometry=cfg.geometry, width=cfg.width, **task.model_kwargs(info), **extra)
        model.spec = with_names(model.spec, info["classes"] if task.segments else None,
                                info["box_classes"] if task.detects else None)
        if cfg.bn_momentum is not None:
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.momentum = cfg.bn_momentum
        if cfg.init_from and self.checkpoint is None:
            report = init_from(model, cfg.init_from)
            self.say(f"init_from {cfg.init_from}: {len(report['loaded'])} tensors loaded; new (kept at init): "
                     f"{_short(report['new'])}; not used: {_short(report['skipped'])}")
        return model.to(self.device)

    def _add_transforms(self, data: _Data) -> tuple[Dataset, Dataset | None]:
        """The sets the loaders read: the model's transforms on those read as stored (training
        augmentation, or evaluation's), then cut to ``max_train_samples`` / ``max_val_samples``."""
        cfg, preprocessing = self.cfg, self.model.spec.preprocessing
        fit = [v2.Resize(size=None, max_size=cfg.max_size)] if cfg.max_size else []  # longer side; boxes follow
        train, val = data.train, data.val
        if data.raw_train:
            cj, ignore_index = cfg.color_jitter, data.info["ignore_index"]
            if cfg.mosaic:  # tiles of photos already fitted to max_size, then the usual augmentation
                train = Mosaic(_Transformed(train, v2.Compose(fit)) if fit else train, cfg.crop_size,
                               cfg.mosaic, ignore_index=ignore_index)
            train = _Transformed(train, v2.Compose([*([] if cfg.mosaic else fit), train_transforms(
                preprocessing, crop_size=cfg.crop_size, scale_range=cfg.scale_range, hflip=cfg.hflip,
                color_jitter=(cj, cj, cj, 0.0) if cj else None, ignore_index=ignore_index)]))
        if data.raw_val:
            val = _Transformed(val, v2.Compose([*fit, eval_transforms(preprocessing)]))
        train = _subset(train, cfg.max_train_samples)
        if len(train) == 0:
            raise ValueError(f"{cfg.data} ({cfg.train_split}): the training set is empty")
        return train, _subset(val, cfg.max_val_samples) if val is not None else None

    def _wrap_model(self) -> None:
        """What runs the steps (DDP, ``torch.compile``) and what is kept (the weights' moving
        average with ``ema_decay``: validated and saved as "model"; the raw weights resume
        training). Precision and layout are measured on the first batch (``_settle_run``)."""
        cfg, device = self.cfg, self.device
        self.run_choice: RunChoice | None = None
        self.trial: StepTrial | None = None  # precision and layout on trial over the first steps
        self.amp_dtype = resolve_amp(cfg.amp, device) if device.type == "cuda" else None
        self.channels_last = bool(cfg.channels_last)
        self.mf = memory_format(self.channels_last)
        net: nn.Module = self.model
        if self.dist.enabled:
            net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        self.net = torch.compile(net) if cfg.compile else net
        self.ema = ModelEmaV3(self.model, decay=cfg.ema_decay, use_warmup=True) if cfg.ema_decay else None
        self.kept = self.ema.module if self.ema is not None else self.model

    def _build_optimisation(self, data: _Data) -> None:
        """Loss (class weights counted on the training data as stored when it was read here),
        optimiser and grad scaler; the scheduler follows once the run's length is known."""
        cfg = self.cfg
        weights = self._class_weights(data.train if data.raw_train else self.train_set, len(data.info["classes"]))
        self.criterion = SegmentationLoss(cfg.loss, ignore_index=data.info["ignore_index"],
                                          reduction=cfg.loss_reduction, class_weights=weights,
                                          focal_gamma=cfg.focal_gamma, ohem_fraction=cfg.ohem_fraction).to(self.device)
        self.optimizer = build_optimizer(self.model, cfg)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def _build_loaders(self, ignore_index: int) -> None:
        """The seeded training loader (order and augmentation a function of seed, epoch and
        index), the run's length in iterations, its lr schedule and the sharded val loader."""
        cfg, dist = self.cfg, self.dist
        drop_last = cfg.batch_size > 1  # a trailing batch of 1 upsets batch norm
        self.sampler = EpochSampler(self.train_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                    seed=cfg.seed)
        loader_kw = dict(num_workers=cfg.workers, collate_fn=self.task.collate(self.model, ignore_index),
                         pin_memory=self.device.type == "cuda", worker_init_fn=ignore_stop_signals_in_worker,
                         persistent_workers=cfg.workers > 0,
                         generator=torch.Generator())  # own generator: loaders never draw from torch's RNG
        self.loader = DataLoader(SeededSamples(self.train_set, cfg.seed), batch_size=cfg.batch_size,
                                 sampler=self.sampler, drop_last=drop_last, **loader_kw)
        per_rank = self.sampler.num_samples
        self.iters_per_epoch = per_rank // cfg.batch_size if drop_last else math.ceil(per_rank / cfg.batch_size)
        if self.iters_per_epoch == 0:
            raise ValueError(f"batch_size {cfg.batch_size} is larger than the {per_rank} training samples per "
                             f"process; lower batch_size")
        self.total_iters = cfg.max_iters or cfg.epochs * self.iters_per_epoch
        self.num_epochs = math.ceil(self.total_iters / self.iters_per_epoch)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.total_iters)
        warmup = warmup_for(cfg.warmup_iters, self.total_iters)
        if warmup < cfg.warmup_iters:
            self.say(f"warm-up shortened from {cfg.warmup_iters} to {warmup} iterations: a run of "
                     f"{self.total_iters} would otherwise spend most of its steps at a tiny lr")
        self.val_loader = None
        if self.val_set is not None and len(self.val_set) > 0:
            self.val_loader = DataLoader(self.val_set, batch_size=cfg.val_batch_size,
                                         sampler=ShardSampler(len(self.val_set), num_replicas=dist.world_size,
                                                              rank=dist.rank), **loader_kw)
        else:  # said at the start, not discovered at the end
            self.say(f"warning: no validation data ({cfg.data} {cfg.val_split!r} is empty): nothing is scored "
                     f"and no best.pt is written; last.pt is the model")

    # --- helpers ------------------------------------------------------------------
    def _class_weights(self, data: Dataset, num_classes: int) -> torch.Tensor | None:
        """None, a weights file's, or (``auto``) median-frequency weights counted on ``data``
        (cached per file list), each raised to ``class_weight_power``."""
        cfg = self.cfg
        if not cfg.class_weights:
            return None
        if cfg.class_weights == "auto":
            counted, where = class_weights_of(data, cache_dir=cache_root() / "class_weights")
            weights = torch.tensor(counted, dtype=torch.float32)
            self.say(f"class weights: median frequency on the training data, {where}")
        else:
            weights = load_class_weights(cfg.class_weights, num_classes)
        return weights ** cfg.class_weight_power  # ** 0.5: a milder balance

    def _settle_run(self, shape: tuple[int, ...]) -> None:
        """bf16 or fp32, channels_last or not, for this model on this machine, at the first batch.
        Rank 0 decides (ranks on different CPUs would otherwise plan differently); every rank follows."""
        plan = self._plan_run(tuple(shape)) if self.dist.is_main else None
        kind, value = D.gather_objects(plan)[0]
        if kind == "trial":
            self._start_trial(value)
        elif kind == "probe":  # collective: rank 0 measures, every rank gets its answer
            self._settled(choose_run(self.model, device=self.device, shape=tuple(shape), train=True,
                                     amp=self.cfg.amp, channels_last=self.cfg.channels_last, say=None))
        else:
            self._settled(value)

    def _plan_run(self, shape: tuple[int, ...]) -> tuple[str, Any]:
        """("choice", RunChoice) known without timing: an explicit setting or CUDA's rule, the
        choice this run made before it was resumed (same CPU and threads), or this machine's
        cache; else ("trial", StepTrial) over the run's own first steps (a run resumed
        mid-trial goes on with its own), or ("probe", None) before training when the batches
        may differ in shape (no ``crop_size``) or the model is compiled (a trial would
        recompile for every candidate)."""
        cfg, p = self.cfg, self.progress
        fixed = fixed_choice(self.device, cfg.amp, cfg.channels_last)
        if fixed is not None:
            return "choice", fixed
        candidates = cpu_candidates(cfg.amp, cfg.channels_last)
        trial_fits = cfg.crop_size is not None and not cfg.compile
        saved = StepTrial.from_state(p.trial) if p.trial and trial_fits else None
        if saved is not None and set(saved.plan) == set(candidates) and saved.shape == shape:
            saved.resumed = True
            return "trial", saved
        if p.run_choice:
            amp, cl, cpu, threads = p.run_choice
            dtype = dtype_named(amp)
            if (dtype, cl) in candidates and (cpu, threads) == (cpu_model(), torch.get_num_threads()):
                return "choice", RunChoice(dtype, cl, "chosen by this run before it was resumed, on this CPU")
        cached = cached_choice(self.model, shape=shape, train=True, candidates=candidates)
        if cached is not None:
            return "choice", cached
        return ("trial", StepTrial(candidates, shape)) if trial_fits else ("probe", None)

    def _start_trial(self, trial: StepTrial) -> None:
        self.trial = trial
        labels = ", ".join(dict.fromkeys(RunChoice(d, cl, "").label for d, cl in trial.plan))
        what = "goes on" if trial.steps else f"over the first steps ({labels}; each a warm-up and a timed step)"
        self.say(f"precision and layout: on trial {what}")
        self._write_run_info(f"on trial: {labels}")

    def _settled(self, choice: RunChoice) -> None:
        """Train in ``choice`` from now on; say so, keep it for a resumed run, write the run's record."""
        self.run_choice = choice
        self.use(choice)
        self.progress.run_choice = [DTYPES[choice.amp_dtype], choice.channels_last, cpu_model(),
                                    torch.get_num_threads()]
        self.say(f"precision and layout: {choice.label}: {choice.reason}")
        self._write_run_info(choice.reason)

    def _write_run_info(self, run_choice: str) -> None:
        if self.dist.is_main:
            write_run_info(self.out, self.cfg, device=str(self.device), amp=str(self.amp_dtype),
                           world_size=self.dist.world_size, channels_last=self.channels_last,
                           run_choice=run_choice, threads=torch.get_num_threads(), resumed_at=self.resumed_at)

    def use(self, choice: RunChoice) -> None:
        """Train from now on in ``choice``'s precision and layout (the weights and their average)."""
        self.amp_dtype, self.channels_last = choice.amp_dtype, choice.channels_last
        self.mf = memory_format(self.channels_last)
        self.model.to(memory_format=self.mf)
        self.kept.to(memory_format=self.mf)  # the averaged copy, when there is one
        for state in self.optimizer.state.values():  # moments in the weights' layout: no mixed-stride updates
            for k, v in state.items():
                if torch.is_tensor(v) and v.dim() == 4:
                    state[k] = v.contiguous(memory_format=self.mf)

    def say(self, msg: str) -> None:
        if self.dist.is_main:
            tqdm.write(msg)

    def _report_config_changes(self, cfg: TrainConfig) -> None:
        # both with absolute input paths: the same data named from another folder is no change;
        # out_dir is where the run goes on (said in the "run dir" line), not a change of recipe
        old = absolute_inputs(from_dict(self.checkpoint["train_config"], source="checkpoint train_config"))
        changed = {k: (old[k], v) for k, v in absolute_inputs(cfg).items() if old.get(k) != v and k != "out_dir"}
        if changed and self.dist.is_main:
            tqdm.write("resuming with changed config: " + ", ".join(f"{k}: {a!r} -> {b!r}"
                                                                   for k, (a, b) in changed.items()))

    def _restore(self, rec: dict, path: Path) -> None:
        try:
            self.model.load_state_dict(rec.get("train_model", rec["model"]))
            if self.ema is not None:
                self.ema.module.load_state_dict(rec["model"])
        except RuntimeError:  # the config differences were said above; torch's key dump adds nothing
            raise ValueError(f"{path}: its weights do not fit the model this config builds (see the changed config "
                             f"above); resume with the run's own model settings, or start a new run from it with "
                             f"--set init_from={path}") from None
        self.optimizer.load_state_dict(rec["optimizer"])
        if "scheduler" in rec:
            self.scheduler.load_state_dict(rec["scheduler"])
        if rec.get("scaler"):
            self.scaler.load_state_dict(rec["scaler"])
        saved = dict(rec["progress"])
        if "best_mean_iu" in saved:  # checkpoints before the task-generic trainer (2026-12)
            saved["best_metric"] = saved.pop("best_mean_iu")
        self.progress = Progress(**saved)
        rngs = rec.get("rng") or []
        if len(rngs) == self.dist.world_size:
            set_rng_state(rngs[self.dist.rank])
        else:
            self.say(f"checkpoint has RNG states for {len(rngs)} process(es), this run has "
                     f"{self.dist.world_size}: data order is restored, dropout randomness is reseeded")
            torch.manual_seed(self.cfg.seed + self.dist.rank + self.progress.iteration)
        self.say(f"resumed at epoch {self.progress.epoch + 1}, iteration {self.progress.iteration} "
                 f"(best val {metric_label(self.task.best_key)} so far {100 * max(self.progress.best_metric, 0):.1f})")

    def check_finite_weights(self) -> None:
        """Refuse to save non-finite weights: a checkpoint is only ever a good one (a huge lr
        can make the weights inf while that step's loss was still finite)."""
        bad = torch.stack([(~torch.isfinite(t)).any() for t in self.model.state_dict().values()
                           if t.is_floating_point()]).any().float().reshape(1)
        D.all_reduce_sum(bad)
        if bad.item() > 0:
            raise TrainingDiverged(f"the weights are not finite after iteration {self.progress.iteration} "
                                   f"(lr {self._lr():.3g}); nothing saved, {self._kept()}. Lower lr or set grad_clip.")

    def save_last(self) -> None:
        self.check_finite_weights()
        self.progress.trial = self.trial.state() if self.trial is not None else None  # a resumed run goes on with it
        D.sync_buffers(self.model)  # collectives: every rank gets here
        D.sync_buffers(self.kept)
        rngs = D.gather_objects(rng_state())
        if self.dist.is_main:
            save_checkpoint(self.out / "last.pt", self.kept, meta=self.meta, optimizer=self.optimizer,
                            scheduler=self.scheduler, scaler=self.scaler, progress=asdict(self.progress),
                            rng=rngs, train_config=absolute_inputs(self.cfg),
                            train_model=self.model if self.ema is not None else None)
        D.barrier()

    def _eta(self) -> str:
        """Time left for the remaining iterations at this epoch's pace (validation not included)."""
        p = self.progress
        if not p.loss_count:
            return "?"
        left = (self.total_iters - p.iteration) * p.seconds / p.loss_count
        return f"{left / 3600:.1f} h" if left >= 3600 else f"{left / 60:.0f} min"

    def _kept(self) -> str:
        """What a divergence leaves: every saved checkpoint passed check_finite_weights."""
        last = self.out / "last.pt"
        return f"the last good checkpoint {last} is kept" if last.exists() else "no checkpoint had been written yet"

    def _lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    # --- one step -----------------------------------------------------------------
    def step(self, images: torch.Tensor, targets: dict[str, Any]) -> float:
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.mf)
        targets = to_device(targets, self.device)
        with autocast(self.device, self.amp_dtype):
            outputs = self.net(images)  # {output name: map}, as the spec lists them
        loss = self.task.loss(outputs, targets, self.criterion, self.cfg.det_loss_weight)["total"]  # fp32
        # agree across ranks on the loss and on whether it is finite, before any update
        stats = torch.stack([loss.detach().float(), (~torch.isfinite(loss.detach())).float()])
        D.all_reduce_sum(stats)
        if stats[1] > 0:
            where = f"epoch {self.progress.epoch + 1}, iteration {self.progress.iteration + 1}"
            raise TrainingDiverged(f"loss is {loss.item()} at {where} (lr {self._lr():.3g}); stopped before "
                                   f"updating the weights, {self._kept()}. Lower lr, set grad_clip, or check the data.")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model, step=self.progress.iteration + 1)
        return float(stats[0]) / self.dist.world_size

    def _step_or_trial(self, images: torch.Tensor, targets: dict[str, Any]) -> float:
        """A training step; while precision and layout are on trial, in the trial's next
        candidate and timed (the step's float loss has waited for the step to finish)."""
        trial = self.trial
        if trial is None:
            return self.step(images, targets)
        self.use(trial.candidate)
        t0 = time.perf_counter()
        loss = self.step(images, targets)
        trial.record(time.perf_counter() - t0)
        if trial.done or self.progress.iteration + 1 >= self.total_iters:  # a run shorter than its trial settles too
            self.trial = None
            self._settled(trial.result(self.model))
        return loss

    # --- the loop -----------------------------------------------------------------
    def run(self, stop_after: int | None) -> dict[str, Any]:
        cfg, p = self.cfg, self.progress
        self.say(f"training {cfg.model} ({cfg.encoder}, width {cfg.width}, {cfg.geometry} geometry) on "
                 f"{len(self.train_set)} images, {self.iters_per_epoch} iterations/epoch x {self.num_epochs} epochs "
                 f"= {self.total_iters} iterations; device {self.device}, {self.dist.world_size} process(es); "
                 f"run dir {self.out}")
        try:
            with StopSignal(self.say) as stop:
                status, last_metrics = self._train(stop, stop_after)
        finally:
            self.log.close()
        if status != "finished":
            self.say(f"{status} at iteration {p.iteration}: saved {self.out / 'last.pt'}; continue with --resume")
        elif self.val_loader is None:
            self.say(f"finished without validation (no {self.cfg.val_split!r} data): {self.out / 'last.pt'} is the "
                     f"model, no best.pt")
        return {"status": status, "epoch": p.epoch, "iteration": p.iteration, "best_metric": p.best_metric,
                "best_key": self.task.best_key, "best_epoch": p.best_epoch, "metrics": last_metrics,
                "out_dir": str(self.out), "model": self.kept, "validated": self.val_loader is not None}

    def _train(self, stop: StopSignal, stop_after: int | None) -> tuple[str, dict | None]:
        """Epoch after epoch until the run is done ("finished") or halted; each epoch ends with
        ``end_epoch``, a halted one with ``last.pt``. Returns the status and the last val metrics."""
        p = self.progress
        pause_at = None if stop_after is None else p.iteration + stop_after
        status, last_metrics = "finished", None
        while status == "finished" and p.iteration < self.total_iters:
            status = self._train_epoch(stop, pause_at) or status
            if self._epoch_over():
                last_metrics = self.end_epoch()
            else:
                self.save_last()
        return status, last_metrics

    def _train_epoch(self, stop: StopSignal, pause_at: int | None) -> str | None:
        """Steps from where the epoch stands until it (or the run) is over or the run must halt;
        returns the halt ("interrupted" or "paused"), if any. A bar on a terminal; elsewhere
        nothing, and a line every ``log_every`` iterations instead."""
        p = self.progress
        self.sampler.set_epoch(p.epoch)
        self.sampler.start = p.epoch_iteration * self.cfg.batch_size
        bar = progress_bar(total=self.iters_per_epoch, initial=p.epoch_iteration, leave=False, lines=False,
                           desc=f"epoch {p.epoch + 1}/{self.num_epochs}",
                           enabled=self.cfg.progress and self.dist.is_main)
        halt = None
        t0 = time.perf_counter()
        for images, targets in self.loader:
            if self.run_choice is None and self.trial is None:
                self._settle_run(images.shape)
                t0 = time.perf_counter()  # reading the cache (or a compiled run's probe) is not training time
            loss = self._step_or_trial(images, targets)
            self._count_step(loss, images.shape[0], time.perf_counter() - t0, bar)
            halt = self._halt(stop, pause_at)
            if halt is None and self._checkpoint_due():
                self.save_last()
            if halt or self._epoch_over():
                break
            t0 = time.perf_counter()
        bar.close()
        return halt

    def _count_step(self, loss: float, batch: int, seconds: float, bar: Any) -> None:
        """The step in the counters, the bar, TensorBoard and (every ``log_every``) a line."""
        cfg, p = self.cfg, self.progress
        p.iteration += 1
        p.epoch_iteration += 1
        p.loss_sum += loss
        p.loss_count += 1
        p.images += batch * self.dist.world_size
        p.seconds += seconds
        bar.update(1)
        bar.set_postfix(loss=f"{p.loss_sum / p.loss_count:.4g}", lr=f"{self._lr():.3g}",
                        img_s=f"{p.images / max(p.seconds, 1e-9):.2f}")
        self.log.scalar("train/loss", loss, p.iteration)
        if bar.disable and cfg.log_every and p.iteration % cfg.log_every == 0:
            self.say(f"  it {p.iteration}/{self.total_iters}  epoch {p.epoch + 1}  loss "
                     f"{p.loss_sum / p.loss_count:.4f}  lr {self._lr():.3g}  "
                     f"{p.images / max(p.seconds, 1e-9):.2f} img/s  ETA {self._eta()}")

    def _halt(self, stop: StopSignal, pause_at: int | None) -> str | None:
        """Whether to stop after this step: "interrupted" when any rank got SIGINT/SIGTERM (the
        ranks agree), "paused" when this call's ``stop_after`` iterations are done."""
        flag = torch.tensor([float(stop.signum is not None)], device=self.device)  # nccl: on device
        D.all_reduce_sum(flag)
        if flag.item() > 0:
            return "interrupted"
        if pause_at is not None and self.progress.iteration >= pause_at:
            return "paused"
        return None

    def _checkpoint_due(self) -> bool:
        """A mid-epoch ``last.pt`` every ``checkpoint_every`` iterations (the epoch's end saves anyway)."""
        p, every = self.progress, self.cfg.checkpoint_every
        return bool(every) and p.iteration % every == 0 and p.epoch_iteration < self.iters_per_epoch

    def _epoch_over(self) -> bool:
        p = self.progress
        return p.epoch_iteration >= self.iters_per_epoch or p.iteration >= self.total_iters

    def end_epoch(self) -> dict | None:
        """Validate (when due), keep ``best.pt``, save ``last.pt``, log the epoch's row and line."""
        p = self.progress
        epoch = p.epoch + 1  # 1-based for people
        row = {"epoch": epoch, "iteration": p.iteration, "lr": self._lr(),
               "train_loss": p.loss_sum / max(p.loss_count, 1), "images_per_s": p.images / max(p.seconds, 1e-9),
               "epoch_seconds": p.seconds}
        t_val = time.perf_counter()
        self.check_finite_weights()  # never validate, or keep as best.pt, inf/NaN weights
        D.sync_buffers(self.model)  # every rank validates (and best.pt keeps) rank 0's model
        D.sync_buffers(self.kept)
        metrics = self._validate(epoch)
        row["val_seconds"] = time.perf_counter() - t_val
        p.elapsed += p.seconds + row["val_seconds"]
        row["elapsed_seconds"] = p.elapsed
        if metrics is not None:
            row.update({f"val_{k}": v for k, v in metrics.items() if isinstance(v, float)})
            if "class_iu" in metrics:
                row["val_class_iu"] = dict(zip(self.model.spec.classes, metrics["class_iu"]))
        eta = self._eta()
        p.epoch += 1
        p.epoch_iteration = 0
        p.loss_sum, p.loss_count, p.images, p.seconds = 0.0, 0, 0, 0.0
        self.save_last()
        self.log.epoch(row)
        line = (f"epoch {epoch}/{self.num_epochs}  it {p.iteration}  loss {row['train_loss']:.4f}  "
                f"{row['images_per_s']:.2f} img/s  {row['epoch_seconds']:.0f}s  ETA {eta}")
        if metrics is not None:
            line += (f"  | val {describe(metrics)}  (best {metric_label(self.task.best_key)} "
                     f"{100 * p.best_metric:.1f} @ epoch {p.best_epoch})")
        self.say(line)
        return metrics

    def _validate(self, epoch: int) -> dict | None:
        """The kept model's val metrics every ``val_every`` epochs and at the end (None when not
        due or without val data); a new best by the task's metric is written to ``best.pt``."""
        cfg, p = self.cfg, self.progress
        if self.val_loader is None or not (epoch % cfg.val_every == 0 or p.iteration >= self.total_iters):
            return None
        metrics = evaluate(self.kept, self.val_loader, device=self.device, amp_dtype=self.amp_dtype,
                           channels_last=self.channels_last, progress=cfg.progress and self.dist.is_main,
                           desc=f"val {epoch}").metrics
        score = metrics.get(self.task.best_key, math.nan)
        if score == score and score > p.best_metric:  # NaN (nothing to score) never wins
            p.best_metric, p.best_epoch = score, epoch
            if self.dist.is_main:
                save_checkpoint(self.out / "best.pt", self.kept, meta={**self.meta, "epoch": epoch,
                                                                      "iteration": p.iteration,
                                                                      "val_metrics": metrics},
                                train_config=absolute_inputs(cfg))
        return metrics


METRIC_LABELS = {"pixel_acc": "pixel acc", "mean_acc": "mean acc", "mean_iu": "mean IU", "fw_iu": "fw IU",
                 "map": "mAP", "map_50": "AP50", "map_75": "AP75", "score": "score (mean of mean IU and mAP)"}


def metric_label(key: str) -> str:
    return METRIC_LABELS.get(key, key)


def describe(metrics: dict) -> str:
    """One line of the metrics a person reads first, for whichever the task measured, in
    percent with one decimal as ``fcnkit eval`` prints them (metrics.jsonl keeps fractions)."""
    keys = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu", "map", "map_50", "map_75")
    return "  ".join(f"{METRIC_LABELS[k]} {100 * metrics[k]:.1f}" for k in keys if k in metrics)


def _short(names: list[str], n: int = 6) -> str:
    return "none" if not names else ", ".join(names[:n]) + (f" (+{len(names) - n})" if len(names) > n else "")


__all__ = ["Progress", "StopSignal", "TrainingDiverged", "train"]
