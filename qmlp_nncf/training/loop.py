"""The training loop: AdamW, warm-up + cosine (timm scheduler), label smoothing, optional EMA
(timm ``ModelEmaV3``), autocast (bf16 on CPUs that have it; bf16 or fp16 on GPUs), resumable
checkpoints, torchrun DDP on any data source (Fashion-MNIST or an ImageFolder, timm train transforms).

Under ``torchrun --nproc_per_node N [--nnodes M ...]`` each process takes ``batch_size / world``
images per step (same global batch) from a ``DistributedSampler``, gradients are averaged by
``DistributedDataParallel`` (NCCL on GPUs, one GPU per process; gloo on CPUs), and global rank 0
evaluates and writes checkpoints (``--resume`` needs ``<out>/last.pth`` readable by every process).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset

from ..checkpoint import (QUANTIZED_PROVENANCE, load_model, quantized_payload, read_checkpoint,
                          save_checkpoint)
from ..device import autocast_dtype, ddp_backend, default_workers, select_device
from ..evaluation import evaluate
from ..progress import bar
from ..sources import DataSource, ModelSource


@dataclass
class TrainConfig:
    model: str  # timm model name
    out: str  # run folder: last.pth (resumable) and model.pth (release)
    epochs: int = 12
    batch_size: int = 128  # global batch, split over DDP processes
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    ema_decay: float = 0.0  # 0 disables EMA; release weights are the EMA weights when enabled
    ema_warmup: bool = False  # timm EMA warm-up: decay 1 - (1 + step)^-2/3, capped at ema_decay
    seed: int = 0
    amp: str = "auto"  # auto | bf16 | fp16 (GPU) | off; auto: bf16 where supported (fp16 on older GPUs)
    data_dir: Optional[str] = None  # Fashion-MNIST IDX folder
    data: dict = field(default_factory=dict)  # DataSource.to_json(); {} = Fashion-MNIST
    model_kwargs: dict = field(default_factory=dict)  # timm kwargs of a model built from its name
    pretrained_file: Optional[str] = None  # timm weights to start from (instead of init_from)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    workers: int = -1  # DataLoader workers, -1 = auto
    train_subset: int = 0  # >0: train on the first N shuffled images (tests, smoke runs)
    test_subset: int = 0  # >0: evaluate on the first N test images
    init_from: Optional[str] = None  # checkpoint whose weights start the run (fine-tuning)
    grow_from: Optional[str] = None  # a shallower checkpoint of the same family: blocks stacked (models.depth)
    teacher: Optional[str | dict] = None  # float teacher (checkpoint path or ModelSource json): distillation
    distill_weight: float = 0.5  # loss = (1-w) * CE + w * T^2 * KL(student/T || teacher/T)
    distill_temperature: float = 2.0

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs, batch_size and lr must be positive")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be auto, bf16, fp16 or off, got {self.amp!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.grow_from and self.init_from:
            raise ValueError("grow_from and init_from both give the starting weights: choose one")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"distill_weight must be in [0, 1], got {self.distill_weight}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; valid: {sorted(names)}")
        return cls(**d)


def _distributed(device: torch.device) -> tuple[int, int]:
    """(global rank, world size); initialises the process group under torchrun (NCCL on GPUs, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(ddp_backend(device))
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _teacher(teacher) -> torch.nn.Module:
    if isinstance(teacher, dict):
        return ModelSource.from_json(teacher).load().model
    return ModelSource(checkpoint=teacher).load().model


def _distill_loss(logits, teacher_logits, t: float):
    return F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(teacher_logits / t, -1),
                    reduction="batchmean", log_target=True) * t * t


def train(cfg: TrainConfig, resume: bool = False, log=print, model: Optional[torch.nn.Module] = None) -> dict:
    """Train ``cfg.model`` (or the given ``model``, e.g. an NNCF-quantized one for QAT); returns the
    release checkpoint's metadata (top1, epochs, time...)."""
    device = select_device(cfg.device)
    rank, world = _distributed(device)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {world} processes")
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    source = DataSource.from_json(cfg.data) if cfg.data else DataSource(data_dir=cfg.data_dir)

    init = read_checkpoint(cfg.init_from) if cfg.init_from else {}
    model_kwargs = init.get("model_kwargs", {})
    provenance = {k: init[k] for k in QUANTIZED_PROVENANCE if k in init} if "nncf_config" in init else {}
    provenance |= {k: init[k] for k in ("qmlp_surgery", "base", "base_source", "model_source") if k in init}
    if model is None:
        if cfg.init_from:
            model = load_model(cfg.init_from, arch=cfg.model)[0]
        else:
            model_kwargs = dict(cfg.model_kwargs)
            model = ModelSource(cfg.model, pretrained_file=cfg.pretrained_file, model_kwargs=model_kwargs).load().model
            if cfg.grow_from:
                from ..models import family_of_name
                from ..models.depth import grow_model

                grow_model(model, load_model(cfg.grow_from)[0], family_of_name(cfg.model))
    train_set = source.dataset("train", model, train_transform=True)
    test_set = source.dataset("val", model)
    if cfg.train_subset:
        train_set = Subset(train_set, torch.randperm(len(train_set), generator=torch.Generator().manual_seed(
            cfg.seed))[:cfg.train_subset].tolist())
    test_eval = Subset(test_set, range(min(cfg.test_subset, len(test_set)))) if cfg.test_subset else test_set
    model.to(device).train()
    teacher = _teacher(cfg.teacher).to(device).eval() if cfg.teacher else None
    ema = ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=cfg.ema_warmup) if cfg.ema_decay else None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    per_rank = cfg.batch_size // world
    if len(train_set) // world < per_rank:  # drop_last would leave no step at all
        raise ValueError(f"the train split has {len(train_set)} images, fewer than the batch size {cfg.batch_size}"
                         f"{f' over {world} processes' if world > 1 else ''}: lower --batch-size")
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = CosineLRScheduler(opt, t_initial=total, warmup_t=int(cfg.warmup_epochs * steps_per_epoch),
                              warmup_lr_init=cfg.lr * 0.01, lr_min=cfg.lr * 0.01, t_in_epochs=False)
    amp_dtype = autocast_dtype(device, cfg.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    workers = cfg.workers if cfg.workers >= 0 else default_workers(source.is_fashion_mnist, local_world)

    start_epoch, history, elapsed = 0, [], 0.0
    last = out / "last.pth"
    if resume and last.exists():
        ckpt = read_checkpoint(last)
        st = ckpt["train_state"]
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        if "scaler" in st:
            scaler.load_state_dict(st["scaler"])
        if ema is not None:
            ema.module.load_state_dict(st["ema"])
        start_epoch, history, elapsed = ckpt["epoch"], ckpt["history"], ckpt["train_time_s"]
        if rank == 0:
            log(f"resumed {last} at epoch {start_epoch}/{cfg.epochs}")

    ddp_ids = [device.index] if device.type == "cuda" else None
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ddp_ids) if world > 1 else model
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        torch.manual_seed(cfg.seed * 1000 + epoch * 10 + rank)  # augmentation RNG, reproducible on resume
        if world > 1:
            sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, seed=cfg.seed, drop_last=True)
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(train_set, generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        loader = DataLoader(train_set, batch_size=per_rank, sampler=sampler, num_workers=workers, drop_last=True,
                            pin_memory=device.type == "cuda", persistent_workers=False)
        steps = bar(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=rank != 0, mininterval=1.0)
        for i, (x, y) in enumerate(steps):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                logits = net(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                if teacher is not None:
                    with torch.no_grad():
                        t_logits = teacher(x)
                    loss = (1 - cfg.distill_weight) * loss + cfg.distill_weight * _distill_loss(
                        logits.float(), t_logits.float(), cfg.distill_temperature)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step_update(epoch * steps_per_epoch + i + 1)
            if ema is not None:
                ema.update(model, step=epoch * steps_per_epoch + i + 1)
            steps.set_postfix(loss=f"{loss.item():.3f}", lr=f"{opt.param_groups[0]['lr']:.2e}", refresh=False)
        elapsed += time.time() - t0
        if rank == 0:
            eval_model = ema.module if ema is not None else model
            metrics = evaluate(eval_model, test_eval)
            history.append({"epoch": epoch + 1, "top1": metrics["top1"], "time_s": round(elapsed, 1)})
            state = {"model": model.state_dict(), "optimizer": opt.state_dict()}
            if scaler.is_enabled():
                state["scaler"] = scaler.state_dict()
            if ema is not None:
                state["ema"] = ema.module.state_dict()
            save_checkpoint(last, _payload(cfg, model_kwargs, eval_model, train_set, test_set, history, elapsed,
                                            state, world, source) | provenance)
            log(f"epoch {epoch + 1}/{cfg.epochs}: test top-1 {metrics['top1']:.4f} "
                f"({elapsed:.0f} s so far)")
        if world > 1:
            dist.barrier()

    result = read_checkpoint(last) if rank == 0 else {}
    if rank == 0:
        result.pop("train_state")
        save_checkpoint(out / "model.pth", result)
        log(f"wrote {out / 'model.pth'}: top-1 {result['top1']:.4f} after {result['epoch']} epochs, "
            f"{result['train_time_s']:.0f} s")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {k: v for k, v in result.items() if k != "state_dict"}


def _cpu_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _payload(cfg, model_kwargs, eval_model, train_set, test_set, history, elapsed, train_state, world,
             source: DataSource) -> dict:
    base = train_set.dataset if isinstance(train_set, Subset) else train_set
    return {
        "state_dict": _cpu_state(eval_model),
        "arch": cfg.model,
        "model_kwargs": model_kwargs,
        "config": {k: v for k, v in asdict(cfg).items() if v is not None},
        "data": source.to_json(),
        "data_fingerprint": {"train": base.fingerprint, "test": test_set.fingerprint},
        "top1": history[-1]["top1"],
        "test_images": len(test_set) if not cfg.test_subset else min(cfg.test_subset, len(test_set)),
        "epoch": history[-1]["epoch"],
        "history": history,
        "train_time_s": round(elapsed, 1),
        "world_size": world,
        "params": sum(p.numel() for p in eval_model.parameters()),
        **quantized_payload(eval_model),
        "train_state": train_state,
    }
