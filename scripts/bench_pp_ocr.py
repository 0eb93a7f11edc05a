"""Measure the pp_ocr family on this CPU: training throughput, zero-shot exact match, VIN heads.

    python scripts/bench_pp_ocr.py                          # everything (about 10-15 minutes)
    python scripts/bench_pp_ocr.py tasks=[throughput] threads=1
    python scripts/bench_pp_ocr.py tasks=[heads] steps=150 heads=[vin,masked] out=heads.json
    python scripts/bench_pp_ocr.py quick=true               # the tiny model, a few steps (tests)

Options are ``key=value`` (OmegaConf dot-list, checked against :class:`Bench`; a typo fails
naming the key). Data: synthetic VIN line crops from :mod:`vin_ocr.data.synth` (training seed
``seed``, evaluation seed ``seed + 1``, so no image is shared). Prints one JSON object per task and,
with ``out=``, writes them all to a JSON file. Figures are recorded by hand in docs/pp_ocr.md.

- ``throughput``: full fine-tuning steps (forward, CTC loss, backward, AdamW) per second at each
  batch size, median over ``timed_steps`` after 2 warm-up steps, head ``heads[0]``; and
  recognition of single crops.
- ``zeroshot``: exact match (whole VIN right) of the converted RapidOCR model, VIN head (equal,
  at initialisation, to masking the pretrained head), on ``eval_n`` crops, per look.
- ``heads``: for each head (``vin``: new 34-class head from the pretrained rows; ``masked``: the
  pretrained 18,710-class head with its logits sliced), ``steps`` steps of AdamW (warm-up then
  cosine) at ``batch``, then exact match on the evaluation crops.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vin_ocr import bench
from vin_ocr.data.synth import SynthDataset
from vin_ocr.models.pp_ocr import PPOCRFamily


@dataclass
class Bench:
    tasks: list[str] = field(default_factory=lambda: ["throughput", "zeroshot", "heads"])
    threads: int = 2
    seed: int = 0
    batch_sizes: list[int] = field(default_factory=lambda: [16, 32])
    timed_steps: int = 5
    eval_n: int = 200
    heads: list[str] = field(default_factory=lambda: ["vin", "masked"])
    steps: int = 150
    batch: int = 16
    lr: float = 5e-4
    warmup: int = 10
    freeze_batch_norm: bool = True
    max_width: int = 320
    out: str = ""
    quick: bool = False  # the tiny random model, batch 2, a few steps and crops (tests)


def exact_match(family: PPOCRFamily, model: torch.nn.Module, data: SynthDataset) -> dict[str, Any]:
    images, truth, looks = [], [], []
    for i in range(len(data)):
        image, vin, meta = data[i]
        images.append(image)
        truth.append(vin)
        looks.append(meta["look"])
    start = time.perf_counter()
    predicted = family.predict(model, images)
    seconds = time.perf_counter() - start
    right = [p == t for p, t in zip(predicted, truth, strict=True)]
    by_look = {
        look: round(sum(r for r, lk in zip(right, looks, strict=True) if lk == look)
                    / looks.count(look), 3)
        for look in sorted(set(looks))
    }  # fmt: skip
    errors = [(t, p) for p, t in zip(predicted, truth, strict=True) if p != t][:5]
    return {
        "exact_match": round(sum(right) / len(right), 4),
        "n": len(right),
        "by_look": by_look,
        "examples_wrong": errors,
        "predict_s_per_crop": round(seconds / len(right), 4),
    }


def _family(o: Bench, head: str) -> PPOCRFamily:
    cfg = {"head": head, "freeze_batch_norm": o.freeze_batch_norm, "max_width": o.max_width}
    return PPOCRFamily({**cfg, "tiny": o.quick})


def batches(data: SynthDataset, family: PPOCRFamily, size: int, start: int, count: int):
    for b in range(count):
        samples = [data.sample((start + b * size + i) % len(data)) for i in range(size)]
        yield family.collate(samples)


def throughput(o: Bench) -> dict[str, Any]:
    head = o.heads[0]
    family = _family(o, head)
    model, _ = family.build(None, None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=o.lr)
    data = SynthDataset(100_000, seed=o.seed, cfg={"kind": "line"})
    result: dict[str, Any] = {"task": "throughput", "head": head, "max_width": o.max_width}
    model.train()
    for size in o.batch_sizes:
        times, widths = [], []
        for i, batch in enumerate(batches(data, family, size, 0, o.timed_steps + 2)):
            start = time.perf_counter()
            loss = family.loss(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if i >= 2:
                times.append(time.perf_counter() - start)
                widths.append(batch["pixel_values"].shape[-1])
        step = statistics.median(times)
        result[f"batch{size}"] = {
            "s_per_step": round(step, 3),
            "samples_per_s": round(size / step, 1),
            "mean_width": round(statistics.mean(widths)),
        }
    images = [data[i][0] for i in range(20)]
    family.predict(model, images[:2])
    start = time.perf_counter()
    for image in images:
        family.predict(model, [image])
    result["predict_s_per_crop_batch1"] = round((time.perf_counter() - start) / len(images), 4)
    return result


def zeroshot(o: Bench) -> dict[str, Any]:
    family = _family(o, "vin")
    model, _ = family.build(None, None)
    evaluation = SynthDataset(o.eval_n, seed=o.seed + 1, cfg={"kind": "line"})
    return {"task": "zeroshot", "max_width": o.max_width, **exact_match(family, model, evaluation)}


def train_head(o: Bench, head: str) -> dict[str, Any]:
    torch.manual_seed(o.seed)
    family = _family(o, head)
    model, _ = family.build(None, None)
    evaluation = SynthDataset(o.eval_n, seed=o.seed + 1, cfg={"kind": "line"})
    before = exact_match(family, model, evaluation)["exact_match"]
    data = SynthDataset(o.steps * o.batch, seed=o.seed, cfg={"kind": "line"})
    optimizer = torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=0.01)

    def schedule(step: int) -> float:
        if step < o.warmup:
            return (step + 1) / o.warmup
        progress = (step - o.warmup) / max(1, o.steps - o.warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    losses = []
    start = time.perf_counter()
    for batch in batches(data, family, o.batch, 0, o.steps):
        loss = family.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    train_s = time.perf_counter() - start
    after = exact_match(family, model, evaluation)
    tail = max(1, len(losses) // 10)
    return {
        "task": "heads",
        "head": head,
        "steps": o.steps,
        "batch": o.batch,
        "lr": o.lr,
        "max_width": o.max_width,
        "freeze_batch_norm": o.freeze_batch_norm,
        "train_s": round(train_s, 1),
        "loss_first": round(losses[0], 3),
        "loss_last10pct": round(sum(losses[-tail:]) / tail, 4),
        "exact_match_before": before,
        **after,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    o = bench.parse_options(Bench, argv, "bench_pp_ocr")
    if o.quick:
        o.batch_sizes, o.timed_steps, o.eval_n, o.steps, o.batch, o.warmup = [2], 1, 4, 2, 2, 1
    torch.set_num_threads(o.threads)
    env = {
        "machine": bench.header(("torch", "transformers", "vin-ocr")),
        "threads": o.threads,
        "cores": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 1),
    }
    results: list[dict[str, Any]] = []
    for task in o.tasks:
        if task == "heads":
            runs = [train_head(o, head) for head in o.heads]
        elif task in ("throughput", "zeroshot"):
            runs = [{"throughput": throughput, "zeroshot": zeroshot}[task](o)]
        else:
            raise SystemExit(f"bench_pp_ocr: unknown task {task!r}")
        for run in runs:
            run["env"] = {**env, "load_avg_1min_end": round(os.getloadavg()[0], 1)}
            print(json.dumps(run), flush=True)
            results.append(run)
    if o.out:
        Path(o.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
