"""Check the preflight's memory estimate against real peak memory of a few CPU training steps.

    .venv/bin/python scripts/bench_preflight.py                  # every case, a process each
    .venv/bin/python scripts/bench_preflight.py cases=[ppocr_full_b4,lfm2vl450m_lora_b2]
    .venv/bin/python scripts/bench_preflight.py case=CASE        # one case, one JSON line
    .venv/bin/python scripts/bench_preflight.py quick=true       # the tiny case only (tests)

Each case builds a model with random weights from its real config class, runs a few AdamW
training steps in fp32 on CPU, and reports the process's peak RSS next to the estimate
``vin_ocr.hardware.estimate`` gives for the same model, method, batch and image size. Peak RSS is
the whole process (Python, torch, transformers included), the same thing the estimate's total
covers. Options are ``key=value`` (:class:`PreflightBench`). Results go into docs/hardware.md by
hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from vin_ocr import bench

CASES = {
    # name: (model, method, batch, image_size, max_length)
    "ppocr_full_b8": ("pp_ocr", "full", 8, 320, 0),
    "ppocr_full_b16": ("pp_ocr", "full", 16, 320, 0),
    "tiny_lfm2vl_full_b4": ("tiny_lfm2_vl", "full", 4, 256, 64),
    "lfm2vl450m_lora_b2": ("lfm2_vl_450m", "lora", 2, 256, 64),
    "lfm2vl450m_lora_b4_512": ("lfm2_vl_450m", "lora", 4, 512, 64),
    "lfm2vl450m_full_b2": ("lfm2_vl_450m", "full", 2, 256, 64),
    # Held out: not used to fit ACTIVATION_FACTOR / MEASURED_ACTIVATION_FACTOR.
    "ppocr_full_b4": ("pp_ocr", "full", 4, 320, 0),
    "lfm2vl450m_lora_b2_384": ("lfm2_vl_450m", "lora", 2, 384, 64),
}
STEPS = 2  # the second step runs with the AdamW state already allocated


@dataclass
class PreflightBench:
    cases: list[str] = field(default_factory=lambda: list(CASES))
    case: str = ""  # run this one case in this process and print its JSON
    isolate: bool = True  # each case in its own process (its own peak RSS)
    quick: bool = False  # the tiny case only (tests)


def _tiny_lfm2_vl_config() -> Any:
    from vin_ocr.models.lfm2_vl import tiny_config

    return tiny_config(vocab_size=100, image_token_id=5)


def _lfm2_vl_batch(config: Any, batch: int, image_size: int, max_length: int) -> dict[str, Any]:
    import torch

    side = image_size // 16
    patches = side * side
    image_tokens = patches // config.downsample_factor**2
    text = torch.randint(0, config.text_config.vocab_size, (batch, max_length))
    text[text == config.image_token_id] = 0
    image = torch.full((batch, image_tokens), config.image_token_id)
    input_ids = torch.cat([image, text], dim=1)
    labels = torch.cat([torch.full_like(image, -100), text], dim=1)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "pixel_values": torch.randn(batch, patches, 3 * 16 * 16),
        "spatial_shapes": torch.tensor([[side, side]] * batch),
        "pixel_attention_mask": torch.ones(batch, patches, dtype=torch.bool),
    }


def run_case(name: str) -> dict[str, Any]:
    import torch

    from vin_ocr.hardware import TrainingSpec, estimate, load_model_cfg, model_spec, resolve
    from vin_ocr.models.lfm2_vl import lfm2_vl_config, lfm2_vl_spec

    model_name, method, batch, image_size, max_length = CASES[name]
    torch.manual_seed(0)
    bench.reset_peak_memory()
    hw = resolve({"device": "cpu", "dtype": "fp32", "attn_implementation": "sdpa"})
    if model_name == "pp_ocr":
        import transformers

        spec = model_spec(load_model_cfg("pp_ocr"))
        model = transformers.PPOCRV6SmallRecForTextRecognition(transformers.PPOCRV6SmallRecConfig())
        inputs = {"pixel_values": torch.randn(batch, 3, 48, image_size)}

        def loss_fn(out: Any) -> Any:
            return out.last_hidden_state.float().log_softmax(-1).mean()

    else:
        from transformers import Lfm2VlForConditionalGeneration

        if model_name == "tiny_lfm2_vl":
            config = _tiny_lfm2_vl_config()
            spec = lfm2_vl_spec("tiny", "tiny", config, source="bench")
        else:
            spec = model_spec(load_model_cfg(model_name))
            config = lfm2_vl_config(spec.checkpoint)
        model = Lfm2VlForConditionalGeneration(config)
        inputs = _lfm2_vl_batch(config, batch, image_size, max_length)

        def loss_fn(out: Any) -> Any:
            return out.loss

    training = TrainingSpec(
        method=method, batch_size=batch, image_size=image_size, max_length=max(max_length, 1)
    )
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=training.lora_r, target_modules="all-linear"))
    model.config.use_cache = False
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    start = time.perf_counter()
    for _ in range(STEPS):
        loss = loss_fn(model(**inputs))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = (time.perf_counter() - start) / STEPS
    peak_gib = bench.peak_memory_gib()
    est = estimate(spec, training, hw, ways_out=False)
    return {
        "case": name,
        "params": spec.params,
        "trainable": sum(p.numel() for p in params),
        "estimated_trainable": est.trainable,
        "estimate_gib": round(est.total_gb, 3),
        "estimate_activations_gib": round(est.activations_gb, 3),
        "measured_peak_rss_gib": round(peak_gib, 3),
        "error_pct": round(100 * (est.total_gb - peak_gib) / peak_gib, 1),
        "seconds_per_step": round(seconds, 2),
    }


def _isolated(name: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, f"case={name}"], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        return {"case": name, "failed": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    o = bench.parse_options(PreflightBench, argv, "bench_preflight")
    if o.case:
        print(json.dumps(run_case(o.case)))
        return []
    names = ["tiny_lfm2vl_full_b4"] if o.quick else o.cases
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        raise SystemExit(f"bench_preflight: unknown case(s) {unknown}; known: {', '.join(CASES)}")
    print(bench.header(("torch", "transformers", "peft", "vin-ocr")))
    print("| case | params | trainable | estimate GiB | peak RSS GiB | error | s/step |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    results = []
    for name in names:
        r = _isolated(name) if o.isolate else run_case(name)
        results.append(r)
        if "failed" in r:
            print(f"| {name} | failed: {r['failed']} |||||")
            continue
        print(
            f"| {name} | {r['params']:,} | {r['trainable']:,} | {r['estimate_gib']:.2f} | "
            f"{r['measured_peak_rss_gib']:.2f} | {r['error_pct']:+.0f}% | {r['seconds_per_step']} |"
        )
    return results


if __name__ == "__main__":
    main()
