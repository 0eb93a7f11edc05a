"""What each piece of a VLM's LoRA step costs: one real-size LFM2-VL-450M training step (random
weights, LoRA, batch 2, synthetic line crops) with the pieces of vin-ocr's step switched on one by
one, timed as CPU seconds of one thread (steady under other jobs' load, unlike wall time).

    python scripts/bench_vlm_step.py                       # every variant, ~2 min each on 1 core
    python scripts/bench_vlm_step.py variants=[full,trim] steps=2 record=false

Variants (each in its own process, so that its peak RSS is its own):

- ``full``: what a plain Trainer computes: the processor's output as is (patches padded to
  ``max_image_tokens * 4``), ``model(**batch).loss`` over the whole sequence, fp32;
- ``trim``: the patch padding trimmed (:func:`vin_ocr.models.vlm.trim_patches`);
- ``trim_answer``: and the LM head only at answer positions (``family.loss``): vin-ocr's fp32 step;
- ``autocast``: that under bf16 autocast, fp32 weights;
- ``bf16``: bf16 base weights + autocast (``hardware.dtype=bf16``);
- ``tokens64``: ``trim_answer`` with ``min_image_tokens=32, max_image_tokens=64``.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vin_ocr import bench

SECTION = "## VLM training step, piece by piece (`scripts/bench_vlm_step.py`)"
INTRO = (
    "CPU seconds of one thread per LoRA training step of real-size LFM2-VL-450M (random weights, "
    "batch 2, synthetic line crops), the pieces of vin-ocr's step switched on one by one "
    "(`scripts/bench_vlm_step.py` says what each variant is); peak RSS of the process."
)
VARIANTS = ("full", "trim", "trim_answer", "autocast", "bf16", "tokens64")


@dataclass
class StepBench:
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    steps: int = 2  # timed steps after one warm-up step
    model: str = "lfm2_vl_450m"
    record: bool = True
    out: str = ""
    variant: str = ""  # internal: run this one and print its JSON


def run_variant(o: StepBench, variant: str) -> dict[str, Any]:
    import dataclasses
    from unittest import mock

    import bench_train as bt
    import torch

    from vin_ocr.data.synth import SynthDataset

    torch.set_num_threads(1)
    hw = bt.hardware("sdpa")
    if variant == "bf16":
        hw = dataclasses.replace(hw, dtype="bf16")
    train_cfg = bt.training_cfg("lfm2_vl", 2)
    synth = SynthDataset(2 * (o.steps + 1), seed=0, cfg={"kind": "line"})
    data = [synth.sample(i) for i in range(len(synth))]
    cfg_patch = {"min_image_tokens": 32, "max_image_tokens": 64} if variant == "tokens64" else {}
    with mock.patch.dict(bt.CARD, {"lfm2_vl": {**bt.CARD["lfm2_vl"], **cfg_patch}}):
        torch.manual_seed(0)
        family, net = bt.build(o.model, "real", hw, train_cfg, card=True)
    collate = bt.plain_collate(family) if variant == "full" else family.collate
    optimiser = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=2e-4)
    bench.reset_peak_memory("cpu")
    cpu, losses = [], []
    for i in range(o.steps + 1):
        batch = collate(data[2 * i : 2 * i + 2])
        start = time.process_time()
        amp = variant in ("autocast", "bf16")
        with torch.autocast("cpu", torch.bfloat16) if amp else contextlib.nullcontext():
            if variant in ("full", "trim"):
                from vin_ocr.models.vlm import to_model

                loss = net(**to_model(batch, net)).loss
            else:
                loss = family.loss(net, batch)
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        cpu.append(time.process_time() - start)
        losses.append(float(loss))
    tokens = int(batch["input_ids"].shape[1])
    return {
        "variant": variant,
        "cpu_s": sum(cpu[1:]) / o.steps,
        "peak_gib": bench.peak_memory_gib("cpu"),
        "sequence": tokens,
        "patches": int(batch["pixel_values"].shape[1]),
        "losses": losses,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else list(argv)
    o = bench.parse_options(StepBench, argv, "bench_vlm_step")
    unknown = sorted(set(o.variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"bench_vlm_step: unknown variant(s) {unknown}; known: {VARIANTS}")
    if o.variant:
        print(json.dumps(run_variant(o, o.variant)))
        return []
    results = []
    for variant in o.variants:
        args = [a for a in argv if not a.startswith("variant=")]
        proc = subprocess.run(
            [sys.executable, __file__, *args, f"variant={variant}"], capture_output=True, text=True
        )
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines() or [f"exit {proc.returncode}"]
            results.append({"variant": variant, "failed": last[-1]})
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    base = next((r for r in results if r["variant"] == "full" and "cpu_s" in r), None)
    rows = []
    for r in results:
        if "failed" in r:
            rows.append([r["variant"], f"failed: {r['failed']}", "", "", "", "", ""])
            continue
        speed = f"{base['cpu_s'] / r['cpu_s']:.2f}" if base else "-"
        rows.append([r["variant"], f"{r['cpu_s']:.2f}", speed, f"{r['peak_gib']:.2f}",
                     r["sequence"], r["patches"], f"{r['losses'][0]:.4f}"])  # fmt: skip
    head = (
        f"- {bench.header(('torch', 'transformers', 'peft', 'vin-ocr'))}: {o.model}, 1 warm-up + "
        f"{o.steps} timed steps, 1 thread."
    )
    headers = ["variant", "CPU s/step", "x full", "peak GiB", "sequence", "patches",
               "loss, step 1"]  # fmt: skip
    text = head + "\n\n" + bench.table(headers, rows, indent="  ")
    print(text)
    if o.record:
        bench.record(text, SECTION, o.out or bench.BENCHMARKS_MD, intro=INTRO)
    return results


if __name__ == "__main__":
    main()
