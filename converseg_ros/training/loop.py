"""The training loop: data, forward/backward with fp32 master weights, logging, validation, checkpoints."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from converseg_ros.data.readers import read_dataset
from converseg_ros.data.samples import ReadResult, Sample
from converseg_ros.errors import DiskFullError
from converseg_ros.modeling.atomic import atomic_write_bytes, is_no_space, sweep_stale
from converseg_ros.modeling.build import ConverSegNet
from converseg_ros.training import checkpoint as ck
from converseg_ros.training import distributed
from converseg_ros.training.config import TrainConfig, config_yaml, load_config
from converseg_ros.training.data import Collator, StepBatches, TrainDataset
from converseg_ros.training.losses import batch_iou, segmentation_loss
from converseg_ros.training.model import autocast, autocast_dtype, build_training_model
from converseg_ros.training.schedule import build_optimizer, build_scheduler
from converseg_ros.training.validation import validate

log = logging.getLogger(__name__)
Hook = Callable[[dict], None]
METRICS_FILE = "metrics.jsonl"
VALIDATION_FILE = "validation.jsonl"


class _Forward(nn.Module):
    """Language prompts + decoder for a batch; the module DDP wraps (frozen parts carry no gradient)."""

    def __init__(self, net: ConverSegNet):
        super().__init__()
        self.net = net

    def forward(self, features, qwen_batch: dict[str, torch.Tensor]) -> torch.Tensor:
        sparse, dense = self.net.adapter(**qwen_batch)
        masks, _ = self.net.decode(features, sparse, dense)
        return masks[:, 0]


def _read_all(paths: list[str]) -> ReadResult:
    result = ReadResult([])
    for path in paths:
        result.extend(read_dataset(path))
    return result


def split_samples(cfg: TrainConfig) -> tuple[list[Sample], list[Sample], list[str]]:
    """Training and validation samples (explicit val sets, else a seeded hold-out) and read problems."""
    if not cfg.data.train:
        raise ValueError("no training data: pass --data (dataset.jsonl, items.json or a dataset folder)")
    train = _read_all(cfg.data.train)
    problems = list(train.problems)
    samples = train.samples
    if cfg.data.val:
        val_read = _read_all(cfg.data.val)
        problems += val_read.problems
        val = val_read.samples
    elif len(samples) >= 2 and cfg.data.val_fraction > 0:
        order = np.random.default_rng(cfg.seed).permutation(len(samples))
        n_val = max(1, int(cfg.data.val_fraction * len(samples)))
        val = [samples[i] for i in order[:n_val]]
        samples = [samples[i] for i in sorted(order[n_val:])]
    else:
        val = []
    if cfg.data.num_samples:
        samples = samples[: cfg.data.num_samples]
    if not samples:
        raise ValueError(f"no usable training samples in {cfg.data.train}: {problems[:5]}")
    return samples, val, problems


class Trainer:
    """One training run (single process, or one rank under torchrun)."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, hooks: list[Hook] | None = None):
        self.out = Path(cfg.out)
        self.hooks = list(hooks or [])
        self.rank, self.world = distributed.rank_and_world()
        self.resume_from = ck.latest_checkpoint(self.out) if resume else None
        if resume and self.resume_from is None:
            log.warning("--resume: no checkpoint in %s, starting from step 0", self.out)
        if self.resume_from is not None:
            saved = load_config(self.resume_from / ck.CONFIG_FILE)
            if saved.to_dict() != cfg.to_dict():
                log.warning("--resume: continuing with the configuration saved in %s", self.resume_from)
            cfg = saved
        self.cfg = cfg

    # -- set-up -------------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        rank_device = distributed.init(self.world)
        if rank_device is not None:
            cfg.model.device = str(rank_device)
        torch.manual_seed(cfg.seed)
        self.train_samples, self.val_samples, problems = split_samples(cfg)
        self.net = build_training_model(cfg.model)
        self.device = next(self.net.sam.parameters()).device
        self.amp = autocast_dtype(cfg.model, self.device)
        size = cfg.data.max_dim or self.net.image_size
        if size != self.net.image_size:
            raise ValueError(f"data.max_dim={size} but the model's SAM2 input is {self.net.image_size}")
        self.train_set = TrainDataset(self.train_samples, size, cfg.data, cfg.seed, train=True)
        self.val_set = TrainDataset(self.val_samples, size, cfg.data, cfg.seed, train=False)
        self.train_view = TrainDataset(self.train_samples, size, cfg.data, cfg.seed, train=False)
        self.optimizer = build_optimizer(self.net, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.steps, cfg.optim)
        self.trainable = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.step = 0
        if self.resume_from is not None:
            state = ck.read_state(self.resume_from)
            ck.load_trained(self.net, self.resume_from)
            self.optimizer.load_state_dict(state.optimizer)
            self.scheduler.load_state_dict(state.scheduler)
            ck.set_rng_state(state.rng)
            self.step = state.step
        self.forward = _Forward(self.net)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.forward, device_ids=ids)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            for folder in (self.out, self.out / ck.CHECKPOINTS, self.out / "panels"):
                sweep_stale(folder, exclusive=True)  # a run folder has one writer: leftovers are a killed run's
            atomic_write_bytes(self.out / "config.yaml", config_yaml(cfg).encode())
            if problems:
                report = self.out / "data_problems.txt"
                atomic_write_bytes(report, "\n".join(problems).encode() + b"\n")
                log.warning("%d dataset entries skipped (see %s)", len(problems), report)
            self._truncate_metrics()
            self.tb = SummaryWriter(str(self.out / "tb"), purge_step=self.step + 1 if self.step else None)
        log.info(  # every rank logs this line once; afterwards only rank 0 writes
            "training on %d samples (%d held out), %d trainable tensors, device %s, autocast %s",
            len(self.train_samples),
            len(self.val_samples),
            len(self.trainable),
            self.device,
            self.amp,
        )

    def _truncate_metrics(self) -> None:
        """Drop metric lines past the resumed step (and a line torn by a full disk or a kill), so the files
        read as one continuous curve."""
        for path in (self.out / METRICS_FILE, self.out / VALIDATION_FILE):
            if path.is_file():
                records = [_record(line) for line in path.read_text(errors="replace").splitlines()]
                keep = [line for line, record in records if record is not None and record["step"] <= self.step]
                atomic_write_bytes(path, "".join(line + "\n" for line in keep).encode())

    def _loader(self) -> DataLoader:
        sampler = StepBatches(
            len(self.train_set),
            self.cfg.batch_size,
            self.cfg.seed,
            self.step,
            self.cfg.steps,
            self.rank,
            self.world,
        )
        workers = self.cfg.data.workers
        if workers:  # the tokenizer was used before the fork; its thread pool must not be
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        return DataLoader(
            self.train_set,
            batch_sampler=sampler,
            collate_fn=Collator(self.net.inputs),
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            generator=torch.Generator().manual_seed(self.cfg.seed),
            worker_init_fn=_worker_init if workers else None,
        )

    # -- one step -------------------------------------------------------------------------------------
    def _train_step(self, batch: dict, total: int) -> dict:
        """One update on this rank's items; ``total``: usable items of the step over all ranks."""
        cfg = self.cfg
        local = len(batch["ids"])
        lr = self.scheduler.get_last_lr()[0]
        with torch.no_grad():
            features = self.net.encode_images(self.net.sam_transform(batch["sam_images"]))
        qwen = {k: v.to(self.device, non_blocking=True) for k, v in batch["qwen"].items()}
        targets = batch["targets"].to(self.device)
        with autocast(self.device, self.amp):
            logits = self.forward(features, qwen)
        terms = segmentation_loss(logits, targets, cfg.loss.bce, cfg.loss.dice)
        self.optimizer.zero_grad(set_to_none=True)
        (terms["loss"] * distributed.loss_scale(local, total, self.world)).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.optim.grad_clip)
        self._phase = "updated"
        self.optimizer.step()
        self.scheduler.step()
        record = {k: float(v.detach()) for k, v in terms.items()}
        iou = float(batch_iou(logits.detach(), targets).mean())
        record.update(lr=lr, grad_norm=float(grad_norm), iou=iou, batch=local)
        return distributed.global_means(record, ("loss", "bce", "dice", "iou"), local, total, self.world,
                                        self.device)

    # -- the run --------------------------------------------------------------------------------------
    def run(self) -> Path | None:
        """Train to ``cfg.steps``; returns the final checkpoint (rank 0) or None. A full disk stops the run
        with DiskFullError naming the folder and the checkpoint a ``--resume`` continues from."""
        try:
            return self._run()
        except Exception as exc:
            if not is_no_space(exc):
                raise
            raise DiskFullError(getattr(exc, "folder", self.out), self._kept()) from exc

    def _kept(self) -> str:
        """What a full disk leaves: the checkpoint --resume continues from."""
        last = ck.latest_checkpoint(self.out)
        stopped = f" (training stopped at step {getattr(self, 'step', 0)}); "
        if last is None:
            return stopped + "no checkpoint was written yet: free space, then start again"
        return stopped + f"the last checkpoint, {last.name}, is intact: free space, then run again with --resume"

    def _run(self) -> Path | None:
        self._setup()
        cfg = self.cfg
        last_saved = self.step
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=self.rank != 0,
            desc=cfg.name,
            unit="step",
            dynamic_ncols=True,
            mininterval=1.0,
        )
        reported: set[str] = set()
        rng_before = ck.rng_state()
        self._phase = "idle"
        try:
            for batch in self._loader():
                rng_before = ck.rng_state()
                self._phase = "forward"
                for item_id, error in batch["errors"]:
                    if item_id not in reported:  # once per item, not once per epoch
                        reported.add(item_id)
                        log.warning("skipped sample %s: %s", item_id, error)
                total, fewest = distributed.step_counts(len(batch["ids"]), self.world, self.device)
                if fewest > 0:
                    distributed.seed_step(cfg.seed, self.rank, self.step)
                    record = self._train_step(batch, total)
                else:  # every sample of a (local) batch failed: all ranks skip, the schedule stays aligned
                    if batch["ids"]:
                        log.warning("step %d skipped: another rank has no usable item", self.step + 1)
                    record = {"lr": self.scheduler.get_last_lr()[0], "batch": 0}
                    self._phase = "updated"
                    self.optimizer.zero_grad(set_to_none=True)
                    self.optimizer.step()  # no gradients: changes nothing, keeps the step order torch expects
                    self.scheduler.step()
                self.step += 1
                self._phase = "idle"
                record["step"] = self.step
                bar.update(1)
                if self.rank == 0:
                    self._log(record, bar)
                    if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                        self._save(ck.rng_state())
                        last_saved = self.step
                    if self.step % cfg.val_every == 0 or self.step == cfg.steps:
                        self._validate()
                for hook in self.hooks:
                    hook(record)
        except KeyboardInterrupt:
            if self._phase == "updated":  # weights changed but the step was not counted: not representable
                log.warning("interrupted during an optimizer update; resume from the last saved checkpoint")
            elif self.rank == 0 and self.step > last_saved:
                path = self._save(rng_before if self._phase == "forward" else ck.rng_state())
                log.warning("interrupted at step %d; saved %s (continue with --resume)", self.step, path)
            raise
        finally:
            bar.close()
            if self.rank == 0:
                try:
                    self.tb.close()
                except OSError as exc:  # a full disk: say so, without hiding what ended the run
                    log.warning("TensorBoard events in %s not all written: %s", self.out / "tb", exc)
            distributed.finish()
        return ck.latest_checkpoint(self.out) if self.rank == 0 else None

    def _log(self, record: dict, bar: tqdm) -> None:
        with open(self.out / METRICS_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if "loss" in record:
            bar.set_postfix(
                loss=f"{record['loss']:.4f}", iou=f"{record['iou']:.3f}", lr=f"{record['lr']:.2e}"
            )
        if self.step % self.cfg.log_every == 0 or self.step == 1:
            for key in ("loss", "bce", "dice", "iou", "lr", "grad_norm"):
                if key in record:
                    self.tb.add_scalar(f"train/{key}", record[key], self.step)

    def _validate(self) -> None:
        cfg = self.cfg
        panels = self.out / "panels"
        for name, dataset in (("val", self.val_set), ("train_subset", self.train_view)):
            if len(dataset) == 0:
                continue
            count = cfg.val_items if name == "val" else cfg.val_panels
            result = validate(
                self.net,
                dataset,
                count,
                self.amp,
                panels / f"{name}_step_{self.step:08d}.png",
                cfg.val_panels,
            )
            for key, value in result.items():
                self.tb.add_scalar(f"{name}/{key}", value, self.step)
            tqdm.write(
                f"[step {self.step}] {name}: "
                + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items())
            )
            with open(self.out / VALIDATION_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": self.step, "split": name, **result}) + "\n")

    def _save(self, rng: dict) -> Path:
        return ck.save_checkpoint(
            self.out,
            self.step,
            self.net,
            self.optimizer,
            self.scheduler,
            config_yaml(self.cfg),
            self.cfg.keep_last,
            rng,
        )


def _record(line: str) -> tuple[str, dict | None]:
    """A metrics line and its record (None for a torn or empty line)."""
    try:
        record = json.loads(line)
    except ValueError:
        return line, None
    return line, record if isinstance(record, dict) and isinstance(record.get("step"), int) else None


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
