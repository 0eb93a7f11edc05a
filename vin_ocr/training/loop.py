"""The one training loop, on Accelerate, shared by every model family.

It knows nothing about a family beyond :class:`vin_ocr.models.base.ModelFamily`: ``collate`` makes
the batches, ``loss`` the scalar to minimise, ``predict`` the strings the VIN metric scores.
Under ``accelerate launch`` every process runs this same function; only the main process writes
files other than the per-process RNG state that ``Accelerator.save_state`` keeps.

Checkpoints (``run_dir/checkpoints/step_NNNNNN``) hold the model or adapter, the optimiser, the
scheduler, every process's RNG state, the best model so far (``best_model.safetensors``: its
trainable weights and buffers, the rest never changes) and ``trainer_state.json`` (step, best
step and scores, history, the size of every file). They are written under a hidden temporary name
and renamed when complete, so a folder with a final name is always whole; ``resume="auto"``
continues from the newest one whose files are intact (:func:`find_resume`), so a run killed at any
point after a checkpoint ends with the same model, best step and scores as an uninterrupted run.

The best model is the one with the highest validation exact match; ties go to the lower CER, and
a full tie keeps the earlier step (the baseline, step 0, included: ``FitResult.beat_baseline``
says whether any trained step did better).

``VIN_OCR_KILL_AFTER_STEP=N`` (fault-injection for tests) makes the process SIGKILL itself right
after step ``N`` (and its checkpoint, if one falls on it).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Sampler

from vin_ocr.training.checkpoints import (
    BEST_FILE,
    CHECKPOINTS,
    STATE_FILE,
    checkpoint_problem,
    complete_checkpoints,
    find_resume,
    latest_checkpoint,
    prune,
    save_checkpoint,
)
from vin_ocr.training.speed import AUTOCAST, autocast_dtype, channels_last_batch

if TYPE_CHECKING:
    from accelerate import Accelerator

    from vin_ocr.data import Sample
    from vin_ocr.models.base import ModelFamily

log = logging.getLogger(__name__)
__all__ = [
    "BEST_FILE",
    "CHECKPOINTS",
    "STATE_FILE",
    "FitResult",
    "LoopConfig",
    "autocast_dtype",
    "checkpoint_problem",
    "complete_checkpoints",
    "evaluate_model",
    "find_resume",
    "fit",
    "latest_checkpoint",
]  # fmt: skip

KILL_ENV = "VIN_OCR_KILL_AFTER_STEP"  # tests: SIGKILL this process after that step


@dataclass
class LoopConfig:
    """The loop's knobs; ``configs/training/*.yaml`` sets them (the training schema,
    :class:`vin_ocr.training.start.TrainingConf`, refuses unknown keys at start-up)."""

    max_steps: int = 300
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    eval_every: int = 100
    eval_batch_size: int = 32
    save_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    num_workers: int = 0
    seed: int = 0
    resume: str = "none"  # none | auto | PATH to a checkpoint folder
    stop_after: int | None = None  # stop (as if killed) after this step; tests and smoke runs
    #: training steps under ``torch.autocast`` in bf16 (weights, optimiser and evaluation stay
    #: in the model's dtype): "none" | "bf16" | "auto" (bf16 where it is fast: a CUDA device
    #: with bf16, a CPU with AMX; else none)
    autocast: str = "none"
    #: the model's 4-D weights and the batch's 4-D tensors in channels-last memory format (conv
    #: nets on CPU: oneDNN's fast path); the model is back in the default format after ``fit``
    channels_last: bool = False

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> LoopConfig:
        names = {f.name for f in cls.__dataclass_fields__.values()}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class FitResult:
    step: int
    best_step: int | None
    best_exact_match: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    last_loss: float | None = None
    samples_per_s: float | None = None
    stopped_early: bool = False
    #: the best model's trainable weights and buffers (load with ``strict=False``); None when
    #: nothing was evaluated
    best_weights: dict[str, torch.Tensor] | None = None
    best_cer: float | None = None

    @property
    def beat_baseline(self) -> bool | None:
        """Whether a trained step beat the untrained model on validation (None: no baseline)."""
        if not self.history or self.history[0]["step"] != 0:
            return None
        return bool(self.best_step)


class EpochSampler(Sampler[int]):
    """A permutation of ``range(n)`` fixed by ``(seed, epoch)``: the data position after a
    resume is a pure function of the step, in every process (Accelerate calls ``set_epoch``)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def _trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of what training can change: trainable parameters and buffers (the frozen
    weights never change, so these over the final model give back the model of that step)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    names |= {n for n, _ in model.named_buffers()}
    return {
        k: v.detach().to("cpu", copy=True).contiguous()
        for k, v in model.state_dict().items()
        if k in names
    }


def _read_texts(
    family: ModelFamily, model: torch.nn.Module, images: list[Any], samples: list[Sample]
) -> list[str]:
    """What the engine would answer: line crops read as crops, photos (``crop: false``, or a
    ``box``) through the family's scene reading, un-flagged images decided per image
    (:mod:`vin_ocr.layout`) where the family reads scenes."""
    from vin_ocr.models.base import Reads
    from vin_ocr.models.registry import supports

    if not supports(family, Reads):
        return list(family.predict(model, images))
    from vin_ocr.layout import sample_flag

    reads: Any = family  # a Reads family
    return [r.text for r in reads.read(model, images, [sample_flag(s) for s in samples])]


def evaluate_model(
    family: ModelFamily,
    model: torch.nn.Module,
    samples: Sequence[Sample],
    batch_size: int,
    accelerator: Accelerator | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Predict every sample (sharded over processes, gathered) and score with the VIN metric.

    Returns the metric summary (on every process) and the raw predictions in sample order.
    """
    from vin_ocr.evaluation.metric import VinMetric

    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    idx = list(range(len(samples)))[rank::world]
    # every process runs the same number of batches (sharded models need all ranks in a forward)
    per_proc = math.ceil(len(samples) / world)
    idx += [idx[-1] if idx else 0] * (per_proc - len(idx))
    was_training = model.training
    model.eval()
    preds: list[tuple[int, str, float]] = []
    with torch.no_grad():
        for i in range(0, len(idx), batch_size):
            chunk = idx[i : i + batch_size]
            images = [samples[j].load_image() for j in chunk]
            t0 = time.perf_counter()
            out = _read_texts(family, model, images, [samples[j] for j in chunk])
            dt = (time.perf_counter() - t0) / max(len(chunk), 1)
            preds += [(j, p, dt) for j, p in zip(chunk, out, strict=True)]
    model.train(was_training)
    if accelerator is not None and world > 1:
        from accelerate.utils import gather_object

        preds = gather_object(preds)
    by_index = {j: (p, dt) for j, p, dt in preds}
    metric = VinMetric()
    ordered: list[str] = []
    for j, s in enumerate(samples):
        p, dt = by_index[j]
        metric.update(s.vin, p, latency_s=dt)
        ordered.append(p)
    return metric.summary(), ordered


def fit(
    family: ModelFamily,
    model: torch.nn.Module,
    train_data: Sequence[Sample],
    val_data: Sequence[Sample],
    cfg: LoopConfig,
    run_dir: Path,
    accelerator: Accelerator,
    save_best: Callable[[torch.nn.Module, Path], None] | None = None,
    on_log: Callable[[dict[str, Any], int], None] | None = None,
) -> FitResult:
    """Train ``model`` for ``cfg.max_steps`` optimiser steps; evaluate before and every
    ``cfg.eval_every`` steps; keep the best model (exact match, then CER) in memory and in each
    checkpoint (``FitResult.best_weights``); ``save_best`` is called when it changes."""
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    run_dir = Path(run_dir)
    main = accelerator.is_main_process
    if cfg.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable()  # type: ignore[operator]
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameter: check the LoRA/freeze settings")
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.max_steps)
    if cfg.autocast not in AUTOCAST:
        raise ValueError(f"training.autocast={cfg.autocast!r}; known: {', '.join(AUTOCAST)}")
    model, optimizer = accelerator.prepare(model, optimizer)
    # the schedule is defined in optimiser steps whatever the process count: step it ourselves
    accelerator.register_for_checkpointing(scheduler)

    step, history = 0, []
    best: tuple[float, float, int] | None = None  # (exact match, CER, step)
    best_weights: dict[str, torch.Tensor] | None = None
    resumed_loss: float | None = None
    resume_from = find_resume(run_dir, cfg.resume)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        state = json.loads((resume_from / STATE_FILE).read_text())
        step, history = state["step"], state["history"]
        resumed_loss = state.get("last_loss")
        if state.get("best_step") is not None:
            cer = state.get("best_cer")
            best = (state["best_exact_match"], math.inf if cer is None else cer, state["best_step"])
        if (resume_from / BEST_FILE).is_file():
            from safetensors.torch import load_file

            best_weights = load_file(str(resume_from / BEST_FILE))
        elif best is not None and main:
            log.warning("%s has no %s: the final model is the last step's", resume_from, BEST_FILE)
        if main:
            log.info("resumed from %s at step %d", resume_from, step)

    def do_eval(at: int) -> None:
        nonlocal best, best_weights
        if not val_data:
            return
        summary, _ = evaluate_model(
            family, accelerator.unwrap_model(model), val_data, cfg.eval_batch_size, accelerator
        )
        row = {"step": at, **{k: summary[k] for k in ("exact_match", "char_accuracy", "cer")}}
        history.append(row)
        if on_log and main:
            on_log({f"val/{k}": v for k, v in row.items() if k != "step"}, at)
        score = (summary["exact_match"], -summary["cer"])
        if best is None or score > (best[0], -best[1]):
            best = (summary["exact_match"], summary["cer"], at)
            best_weights = _trained_state(accelerator.unwrap_model(model))
            if save_best is not None and main:
                save_best(accelerator.unwrap_model(model), run_dir / "best")
        accelerator.wait_for_everyone()

    if step == 0:
        do_eval(0)  # the baseline before any training

    collate = family.collate
    loader: Any = DataLoader(
        train_data,  # type: ignore[arg-type]
        batch_size=cfg.batch_size,
        sampler=EpochSampler(len(train_data), cfg.seed),
        collate_fn=collate,
        num_workers=cfg.num_workers,
        drop_last=True,
    )
    loader = accelerator.prepare(loader)
    per_epoch = len(loader)
    if per_epoch == 0:
        raise ValueError(
            f"{len(train_data)} training samples make no full batch of {cfg.batch_size} "
            f"on {accelerator.num_processes} process(es)"
        )

    model.train()
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    autocast = autocast_dtype(cfg.autocast, accelerator.device.type)
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not main, desc="train", unit="step")
    micro = step * cfg.gradient_accumulation_steps
    last_loss, seen, t_start, stopped = resumed_loss, 0, time.perf_counter(), False
    running: list[float] = []
    while step < cfg.max_steps and not stopped:
        epoch, offset = divmod(micro, per_epoch)
        loader.set_epoch(epoch)
        for batch in accelerator.skip_first_batches(loader, offset) if offset else loader:
            micro += 1
            if cfg.channels_last:
                batch = channels_last_batch(batch)
            with accelerator.accumulate(model):
                with torch.autocast(accelerator.device.type, autocast, enabled=bool(autocast)):
                    loss = family.loss(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            running.append(loss.detach().float().item())
            seen += cfg.batch_size * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            step += 1
            last_loss = sum(running) / len(running)
            running.clear()
            rate = seen / max(time.perf_counter() - t_start, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}", samples_s=f"{rate:.1f}")
            if on_log and main and step % cfg.log_every == 0:
                lr = scheduler.get_last_lr()[0]
                on_log({"train/loss": last_loss, "train/samples_per_s": rate, "lr": lr}, step)
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps:
                do_eval(step)
            done = step >= cfg.max_steps
            if done:
                do_eval(step)
            if (cfg.save_every and step % cfg.save_every == 0) or done:
                state = {
                    "step": step,
                    "history": history,
                    "best_exact_match": best[0] if best else None,
                    "best_cer": best[1] if best else None,
                    "best_step": best[2] if best else None,
                    "last_loss": last_loss,
                    "loop": asdict(cfg),
                }
                save_checkpoint(accelerator, run_dir, step, state, best_weights)
                if main:
                    prune(run_dir, cfg.keep_checkpoints)
            if os.environ.get(KILL_ENV) == str(step):
                os.kill(os.getpid(), signal.SIGKILL)  # fault injection (tests): as kill -9
            if done or (cfg.stop_after is not None and step >= cfg.stop_after):
                stopped = not done
                break
        else:
            micro = (epoch + 1) * per_epoch  # a whole epoch consumed
    bar.close()
    if cfg.channels_last:
        model.to(memory_format=torch.contiguous_format)
    elapsed = time.perf_counter() - t_start
    return FitResult(
        step=step,
        best_step=best[2] if best else None,
        best_exact_match=best[0] if best else None,
        history=history,
        last_loss=last_loss,
        samples_per_s=seen / elapsed if seen else None,
        stopped_early=stopped,
        best_weights=best_weights,
        best_cer=best[1] if best else None,
    )
