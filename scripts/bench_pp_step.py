"""What each speed setting of the PP-OCR training step pays: real PP-OCRv6-small (its real
weights, full fine-tuning, CTC, synthetic line crops), one setting switched on at a time, timed as
CPU time of one thread (steady under other jobs' load, unlike wall time).

    python scripts/bench_pp_step.py                 # every variant, ~1 min each on 1 idle core
    python scripts/bench_pp_step.py variants=[fp32,cl_bf16] steps=4 record=false

Variants (each in its own process):

- ``fp32``: the plain step (what a ``transformers.Trainer`` runs on a CPU by default);
- ``bf16``: under ``torch.autocast`` in bf16, fp32 weights (the Trainer's ``bf16=True``);
- ``cl``: weights and batch in channels-last memory format, fp32;
- ``cl_bf16``: both (``configs/training/pp_ocr.yaml``: what vin-ocr's loop runs);
- ``cl_bf16_fused``: and AdamW ``fused=True`` (the others use torch's default AdamW);
- ``cl_bf16_compile``: and ``torch.compile`` (its compile time is in the warm-up column).
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

SECTION = "## PP-OCR training step, setting by setting (`scripts/bench_pp_step.py`)"
INTRO = (
    "CPU milliseconds of one thread per sample of a real PP-OCRv6-small full fine-tuning step "
    "(CTC, synthetic line crops, gradient clipping and AdamW included), one speed setting at a "
    "time (`scripts/bench_pp_step.py` says what each variant is); *warm-up s*: the wall time of "
    "the untimed first steps (torch.compile's compilation for the compiled variant)."
)
VARIANTS = ("fp32", "bf16", "cl", "cl_bf16", "cl_bf16_fused", "cl_bf16_compile")


@dataclass
class PPStepBench:
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    batch: int = 16  # configs/training/pp_ocr.yaml's
    warmup: int = 2  # untimed steps
    steps: int = 6  # timed steps
    threads: int = 1
    quick: bool = False  # fp32 and cl_bf16 only, batch 2, 1 + 1 steps (tests)
    record: bool = True
    out: str = ""
    variant: str = ""  # internal: run this one and print its JSON


def run_variant(o: PPStepBench, variant: str) -> dict[str, Any]:
    import bench_train as bt
    import torch

    from vin_ocr.data.synth import SynthDataset
    from vin_ocr.training.speed import channels_last_batch

    torch.set_num_threads(o.threads)
    hw = bt.hardware("sdpa")
    train_cfg = bt.training_cfg("pp_ocr", o.batch)
    synth = SynthDataset(o.batch * 2, seed=0, cfg={"kind": "line"})
    data = [synth.sample(i) for i in range(len(synth))]
    torch.manual_seed(0)
    family, net = bt.build("pp_ocr", "real", hw, train_cfg)
    batches = [family.collate(data[: o.batch]), family.collate(data[o.batch :])]
    cl, amp = variant.startswith("cl"), "bf16" in variant
    if cl:
        net = net.to(memory_format=torch.channels_last)
        batches = [channels_last_batch(b) for b in batches]
    params = [p for p in net.parameters() if p.requires_grad]
    fused = {"fused": True} if variant.endswith("fused") else {}
    optimiser = torch.optim.AdamW(params, lr=float(train_cfg.learning_rate), **fused)
    model = torch.compile(net) if variant.endswith("compile") else net
    net.train()
    losses: list[float] = []
    start, warmup_s, cpu = time.perf_counter(), 0.0, 0.0
    for i in range(o.warmup + o.steps):
        if i == o.warmup:
            warmup_s, cpu = time.perf_counter() - start, time.process_time()
        with torch.autocast("cpu", torch.bfloat16) if amp else contextlib.nullcontext():
            loss = family.loss(model, batches[i % 2])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, float(train_cfg.max_grad_norm))
        optimiser.step()
        optimiser.zero_grad()
        losses.append(float(loss))
    return {
        "variant": variant,
        "cpu_ms_per_sample": 1000 * (time.process_time() - cpu) / (o.steps * o.batch),
        "warmup_s": warmup_s,
        "losses": losses[:3],
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else list(argv)
    o = bench.parse_options(PPStepBench, argv, "bench_pp_step")
    if o.quick:
        o.variants, o.batch, o.warmup, o.steps = ["fp32", "cl_bf16"], 2, 1, 1
    if o.warmup < 1 or o.steps < 1:
        raise SystemExit("bench_pp_step: need warmup >= 1 and steps >= 1")
    unknown = sorted(set(o.variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"bench_pp_step: unknown variant(s) {unknown}; known: {VARIANTS}")
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
    base = next((r for r in results if r["variant"] == "fp32" and "failed" not in r), None)
    rows = []
    for r in results:
        if "failed" in r:
            rows.append([r["variant"], f"failed: {r['failed']}", "", "", ""])
            continue
        speed = f"{base['cpu_ms_per_sample'] / r['cpu_ms_per_sample']:.2f}" if base else "-"
        losses = ", ".join(f"{x:.2e}" for x in r["losses"])
        rows.append([r["variant"], f"{r['cpu_ms_per_sample']:.1f}", speed,
                     f"{r['warmup_s']:.1f}", losses])  # fmt: skip
    head = (
        f"- {bench.header(('torch', 'vin-ocr'))}: batch {o.batch}, {o.warmup} warm-up + "
        f"{o.steps} timed steps, {o.threads} thread(s){', quick' if o.quick else ''}."
    )
    headers = ["variant", "CPU ms / sample", "x fp32", "warm-up s", "loss, steps 1-3"]
    text = head + "\n\n" + bench.table(headers, rows, indent="  ")
    print(text)
    if o.record:
        bench.record(text, SECTION, o.out or bench.BENCHMARKS_MD, intro=INTRO)
    return results


if __name__ == "__main__":
    main()
