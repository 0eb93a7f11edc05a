"""Training throughput and peak memory per model family, through vin-ocr's own loop and through a
plain ``transformers.Trainer`` on the same model, batch and data, measured in the same run.

    python scripts/bench_train.py                           # what `make bench` runs
    python scripts/bench_train.py models=[lfm2_vl_450m] sizes=[real] batch=2 max_real_params=1e9
    python scripts/bench_train.py quick=true record=false   # seconds: tiny models, 2 steps

Options are ``key=value`` (:class:`TrainBench`; a typo fails naming the key). Each case (model x
size x attention) runs in its own process (``isolate=true``) so that its peak memory is its own:

- ``tiny``: the tiny random model of the real architecture (``model.tiny=true``);
- ``real``: the real-size architecture. PP-OCR is the real pretrained model (offline, from the
  rapidocr wheel); the VLMs get random weights from their published configs
  (:mod:`vin_ocr.hardware.catalog`) with the offline character tokenizer. A real-size case is
  skipped, with the reason, when the preflight estimate does not fit this machine, or on a CPU
  when the model has more than ``max_real_params`` parameters (LFM2-VL-450M takes about a minute
  per LoRA step on 2 cores).

The method is the family's default (PP-OCR: full fine-tuning, ``configs/training/pp_ocr.yaml``;
the VLMs: LoRA, ``configs/training/lora.yaml``); learning rate, weight decay and gradient clipping
come from the same file for both runners. The ``batch * (warmup + steps)`` synthetic line crops
are rendered once, before timing, and both runners collate them in the main process
(``num_workers=0``), so the figure is the training step, not the renderer
(``scripts/bench_synth.py``). samples/s is over the ``steps`` optimiser steps after ``warmup``.
On CUDA every case runs in bf16 with sdpa and again with flash-attention 2 (when a real
``flash_attn`` is installed and the model supports it); peak memory is then the peak allocated
CUDA memory, on CPU the peak RSS of the whole process (Python and torch included).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vin_ocr import bench

SECTION = "## Training throughput (`scripts/bench_train.py`)"
INTRO = (
    "samples/s over the timed optimiser steps, through vin-ocr's loop (`vin_ocr.training.loop.fit`,"
    " Accelerate) and a plain `transformers.Trainer` on the same model, batch and data, in the "
    "same run; *loop / Trainer* > 1 means the loop is faster. Random weights for the real-size "
    "VLMs (speed does not depend on the values)."
)
FAMILY_METHOD = {"pp_ocr": "pp_ocr", "lfm2_vl": "lora", "deepseek_ocr2": "lora"}


@dataclass
class TrainBench:
    models: list[str] = field(
        default_factory=lambda: ["pp_ocr", "lfm2_vl_450m", "lfm2_5_vl", "deepseek_ocr"]
    )
    sizes: list[str] = field(default_factory=lambda: ["tiny", "real"])
    batch: int = 8
    warmup: int = 2  # untimed optimiser steps first (at least 1)
    steps: int = 5  # timed optimiser steps
    trainer: bool = True  # also run the plain transformers.Trainer baseline
    max_real_params: float = 1e8  # CPU only: real-size models above this are skipped (too slow)
    threads: int = 0  # torch threads; 0: torch's default (every core)
    isolate: bool = True  # each case in its own process
    quick: bool = False  # tiny models, batch 2, 1 + 2 steps (tests)
    record: bool = True
    out: str = ""  # the Markdown file to append to; "" = docs/benchmarks.md
    seed: int = 0
    loop_dtype: str = "auto"  # the loop's precision: auto = what a run resolves (hardware.dtype)
    same: bool = True  # VLMs: also the loop at the Trainer's settings when the defaults differ
    cpu_bf16: bool = True  # VLMs on a CPU with AMX: also both runners in bf16
    check: int = 2  # VLMs: batches on which the loop's loss is checked against the model's own
    case: str = ""  # internal: run the one case MODEL:SIZE:ATTN and print its JSON


def options(argv: list[str]) -> TrainBench:
    o = bench.parse_options(TrainBench, argv, "bench_train")
    if o.quick:
        o.sizes, o.batch, o.warmup, o.steps = ["tiny"], 2, 1, 2
    if o.warmup < 1 or o.steps < 1:
        raise SystemExit("bench_train: need warmup >= 1 and steps >= 1")
    if o.loop_dtype not in ("auto", "fp32", "bf16", "fp16"):
        raise SystemExit(f"bench_train: loop_dtype={o.loop_dtype!r}; known: auto, fp32, bf16, fp16")
    unknown = sorted(set(o.sizes) - {"tiny", "real"})
    if unknown:
        raise SystemExit(f"bench_train: unknown size(s) {unknown}; known: tiny, real")
    return o


# -- cases ---------------------------------------------------------------------------------------


def hardware(attn: str) -> Any:
    """CPU: fp32 + sdpa; CUDA: bf16 + ``attn``."""
    from vin_ocr.hardware import resolve

    return resolve({"device": "auto", "dtype": "auto", "attn_implementation": attn})


def attentions(model: str) -> list[str]:
    """sdpa, plus flash-attention 2 on CUDA when it is installed and the model has it."""
    import torch

    from vin_ocr.hardware import attn_support, detect_flash_attn, load_model_cfg

    if not torch.cuda.is_available() or model == "pp_ocr":
        return ["sdpa"]
    flash = detect_flash_attn().status == "real"
    if flash and attn_support(load_model_cfg(model)).flash_attention_2:
        return ["sdpa", "flash_attention_2"]
    return ["sdpa"]


def cases(o: TrainBench) -> list[str]:
    """``MODEL:SIZE:ATTN`` keys; tiny models once per family (``lfm2_vl_450m`` and ``lfm2_5_vl``
    share one tiny architecture)."""
    from vin_ocr.hardware import load_model_cfg

    keys, tiny_families = [], set()
    for model in o.models:
        family = load_model_cfg(model).family
        for size in o.sizes:
            if size == "tiny":
                if family in tiny_families:
                    continue
                tiny_families.add(family)
            keys += [f"{model}:{size}:{attn}" for attn in attentions(model)]
    return keys


def training_cfg(family: str, batch: int) -> Any:
    """The family's default training config (``configs/training/*.yaml``) at ``batch``."""
    from omegaconf import OmegaConf

    import vin_ocr

    cfg = OmegaConf.load(
        vin_ocr.CONFIG_DIR / "training" / f"{FAMILY_METHOD.get(family, 'lora')}.yaml"
    )
    cfg.batch_size = batch
    return cfg


def skip_reason(model_cfg: Any, train_cfg: Any, hw: Any, max_real_params: float) -> str | None:
    """Why a real-size case should not run here (None: it runs)."""
    from vin_ocr.hardware import TrainingSpec, estimate, model_spec

    spec = model_spec(model_cfg)
    est = estimate(spec, TrainingSpec.from_cfg(train_cfg), hw, ways_out=False)
    if not est.ok:
        why = "; ".join(est.blockers) or f"{est.total_gb:.1f} GiB of {est.available_gb:.1f}"
        return f"preflight: {est.verdict} ({why})"
    if hw.device == "cpu" and spec.params > max_real_params:
        return (
            f"{spec.params / 1e6:,.0f} M parameters > max_real_params={max_real_params:.0e} "
            "on CPU (minutes per step); raise max_real_params to run it"
        )
    return None


def real_size_vlm(model_cfg: Any, processor: Any, hw: Any) -> Any:
    """The real-size architecture of a VLM with random weights, its token ids set to those of the
    offline ``processor``'s tokenizer."""
    import torch

    from vin_ocr.models.registry import facts

    tok = processor.tokenizer
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(hw.dtype, torch.float32)
    # CPU: drawn in fp32 then cast, so that a bf16 run has the fp32 run's weights (rounded)
    cast, dtype = (dtype, torch.float32) if hw.device == "cpu" else (dtype, dtype)
    real = facts(model_cfg.family).real_config
    if real is not None:  # the family builds its published config with this tokenizer's ids
        cls_, config_ = real(model_cfg, tok)
        with torch.device(hw.device):
            return cls_._from_config(
                config_, attn_implementation=hw.attn_implementation, dtype=dtype
            ).to(cast)
    if model_cfg.family == "lfm2_vl":
        from transformers import Lfm2VlForConditionalGeneration as cls

        from vin_ocr.models.lfm2_vl import attn_implementation_map, lfm2_vl_config

        config = lfm2_vl_config(model_cfg.checkpoint)
        attn: Any = attn_implementation_map(hw.attn_implementation)
    else:
        from transformers import DeepseekOcr2ForConditionalGeneration as cls

        from vin_ocr.models.deepseek_ocr import deepseek_ocr2_config

        config = deepseek_ocr2_config()
        attn = "sdpa" if hw.attn_implementation == "flash_attention_2" else hw.attn_implementation
    config.image_token_id = tok.convert_tokens_to_ids("<image>")
    for key in ("pad", "bos", "eos"):
        setattr(config.text_config, f"{key}_token_id", getattr(tok, f"{key}_token_id"))
    with torch.device(hw.device):
        model = cls._from_config(config, attn_implementation=attn, dtype=dtype).to(cast)
    for key in ("pad", "bos", "eos"):
        setattr(model.generation_config, f"{key}_token_id", getattr(tok, f"{key}_token_id"))
    return model


#: The model cards' processor settings: what a user's own Trainer script gets (the baselines).
CARD = {
    "lfm2_vl": {"min_image_tokens": 64, "max_image_tokens": 256},
    "deepseek_ocr2": {"base_size": 1024, "image_size": 768, "crop_mode": True},
}


@dataclass(frozen=True)
class Runner:
    """One measured way of training a case.

    ``trainer``: a plain ``transformers.Trainer`` as a user writes it: the model card's processor
    settings, the processor's output as is, the model's own loss over the whole sequence (PP-OCR,
    which has none: the family's CTC loss), weights in the run's dtype; ``loop``: vin-ocr's
    default path (its processor settings, the run's dtype: ``hardware.dtype=auto``);
    ``loop_same``: the loop at the Trainer's processor settings (only the loop's structural
    gains), when the model config's differ from the card's. On a CPU with AMX (or with
    ``loop_dtype=bf16``) also ``loop_bf16`` (``hardware.dtype=bf16``: bf16 weights, autocast) and
    ``trainer_bf16`` (the Trainer with ``bf16=True``: autocast over fp32 weights)."""

    name: str
    dtype: str  # weights
    card: bool = False  # the model card's processor settings (else the model config's)
    amp: bool = False  # Trainer: bf16=True


def runners(o: TrainBench, model: str, hw: Any) -> list[Runner]:
    from vin_ocr.hardware import detect, load_model_cfg

    cfg = load_model_cfg(model)
    loop_dtype = hw.dtype if o.loop_dtype == "auto" else o.loop_dtype
    amp = hw.dtype in ("bf16", "fp16")
    if cfg.family not in CARD:  # PP-OCR: no processor settings, no model-own loss
        out = [Runner("loop", loop_dtype), Runner("trainer", hw.dtype, amp=amp)]
        if _autocasts(training_cfg(cfg.family, o.batch), hw) and not amp:
            out.append(Runner("trainer_bf16", hw.dtype, amp=True))  # as the loop's autocast
        return out
    out = [Runner("trainer", hw.dtype, card=True, amp=amp)]
    differs = any(cfg.get(k) != v for k, v in CARD[cfg.family].items())
    if o.same and differs:
        out.append(Runner("loop_same", hw.dtype, card=True))
    out.append(Runner("loop", loop_dtype))
    cpu_bf16 = o.cpu_bf16 and hw.device == "cpu" and loop_dtype != "bf16" and detect().cpu_amx
    if cpu_bf16 or (loop_dtype == "bf16" and hw.dtype != "bf16"):
        out.append(Runner("trainer_bf16", hw.dtype, card=True, amp=True))
    if cpu_bf16:
        out.append(Runner("loop_bf16", "bf16"))
    return out


def _autocasts(train_cfg: Any, hw: Any) -> bool:
    """Whether the loop runs ``train_cfg``'s steps under bf16 autocast on ``hw`` (PP-OCR)."""
    from vin_ocr.training.loop import autocast_dtype

    return autocast_dtype(str(train_cfg.get("autocast", "none")), hw.device) is not None


def build(model: str, size: str, hw: Any, train_cfg: Any, card: bool = False) -> tuple[Any, Any]:
    """(family, model ready to train: LoRA applied for the VLMs); ``card``: the model card's
    processor settings instead of the model config's."""
    from vin_ocr.hardware import load_model_cfg
    from vin_ocr.models.registry import get_family

    cfg = load_model_cfg(model)
    if card:
        for key, value in CARD.get(cfg.family, {}).items():
            cfg[key] = value
    if "do_image_splitting" in cfg:
        cfg.do_image_splitting = False  # VIN crops are small; tiles would differ tiny vs real
    if "tiny" in cfg:
        cfg.tiny = size == "tiny" or cfg.family != "pp_ocr"  # VLM processors come from tiny
    family = get_family(cfg.family, cfg)
    net, processor = family.build(cfg, hw)
    if size == "real" and cfg.family != "pp_ocr":
        del net
        net = real_size_vlm(cfg, processor, hw)
    if train_cfg.method == "lora":
        from vin_ocr.models.lora import apply_lora

        net = apply_lora(net, family.lora_settings(train_cfg.get("lora"), cfg.get("lora") or {}))
    return family, net


def plain_collate(family: Any) -> Any:
    """The family's batch as a user's collator makes it: the processor's output as is (vin-ocr
    trims LFM2-VL's patch padding, :func:`vin_ocr.models.vlm.trim_patches`), prompt + answer,
    the answer labelled."""
    from unittest import mock

    def collate(samples: list) -> dict[str, Any]:
        with mock.patch("vin_ocr.models.lfm2_vl.trim_patches", lambda batch: batch):
            return family.collate(samples)

    return collate


def run_loop(
    family: Any, net: Any, data: list, o: TrainBench, hw: Any, train_cfg: Any,
    losses: list[float] | None = None,
) -> float:  # fmt: skip
    """samples/s of ``fit`` over the timed steps (stamps from its per-step log callback); the
    per-step losses go to ``losses``."""
    from accelerate import Accelerator
    from omegaconf import OmegaConf

    from vin_ocr.training.hf_finetune import MIXED_PRECISION
    from vin_ocr.training.loop import LoopConfig, fit

    cfg = LoopConfig.from_mapping(OmegaConf.to_container(train_cfg, resolve=True))  # type: ignore[arg-type]
    total = o.warmup + o.steps
    cfg.max_steps, cfg.stop_after = total + 1, total  # stop before the final checkpoint
    cfg.batch_size, cfg.gradient_accumulation_steps, cfg.warmup_steps = o.batch, 1, 0
    cfg.eval_every, cfg.save_every, cfg.log_every, cfg.num_workers = 0, 0, 1, 0
    cfg.seed = o.seed
    accelerator = Accelerator(
        cpu=hw.device == "cpu", mixed_precision=MIXED_PRECISION.get(hw.dtype, "no")
    )
    stamps: list[float] = []

    def on_log(values: dict[str, float], _step: int) -> None:
        stamps.append(time.perf_counter())
        if losses is not None:
            losses.append(values["train/loss"])

    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        fit(family, net, data, [], cfg, Path(tmp), accelerator, on_log=on_log)
    return _rate(stamps, o)


def run_trainer(
    family: Any, net: Any, data: list, o: TrainBench, hw: Any, train_cfg: Any,
    losses: list[float] | None = None, amp: bool | None = None,
) -> float:  # fmt: skip
    """samples/s of a plain ``transformers.Trainer`` over the timed steps, on the loop's batches
    in the loop's order: the VLMs with the model's own loss and the processor's output as is,
    PP-OCR (no loss of its own) with the family's; ``amp``: ``bf16=True`` (default: the
    hardware's dtype is bf16)."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from vin_ocr.training.loop import EpochSampler

    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            stamps.append(time.perf_counter())

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if losses is not None and logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    class FamilyLossTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
            loss = family.loss(model, inputs)
            return (loss, None) if return_outputs else loss

    vlm = hasattr(family, "_prompts")
    ordered = [data[i] for i in EpochSampler(len(data), o.seed)]  # the loop's first epoch
    amp = hw.dtype == "bf16" if amp is None else amp
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=o.batch,
            max_steps=o.warmup + o.steps,
            learning_rate=float(train_cfg.learning_rate),
            weight_decay=float(train_cfg.weight_decay),
            max_grad_norm=float(train_cfg.max_grad_norm),
            lr_scheduler_type="cosine",
            optim="adamw_torch",  # the loop's torch.optim.AdamW
            use_cpu=hw.device == "cpu",
            bf16=amp,
            fp16=hw.dtype == "fp16",
            dataloader_num_workers=0,
            dataloader_drop_last=True,
            remove_unused_columns=False,
            train_sampling_strategy="sequential",  # over `ordered`: the loop's batches
            save_strategy="no",
            logging_strategy="steps",
            logging_steps=1,
            report_to="none",
            disable_tqdm=True,
            seed=o.seed,
        )
        trainer = (Trainer if vlm else FamilyLossTrainer)(
            model=net, args=args, train_dataset=ordered,
            data_collator=plain_collate(family) if vlm else family.collate, callbacks=[Stamp()],
        )  # fmt: skip
        trainer.train()
    return _rate(stamps, o)


def _rate(stamps: list[float], o: TrainBench) -> float:
    if len(stamps) < o.warmup + o.steps:
        raise RuntimeError(f"{len(stamps)} steps ran, {o.warmup + o.steps} expected")
    return o.steps * o.batch / (stamps[o.warmup + o.steps - 1] - stamps[o.warmup - 1])


def loss_check(family: Any, net: Any, data: list, o: TrainBench) -> float:
    """Largest |vin-ocr's loss - the model's own full-sequence loss| over the first ``check``
    batches, same weights and settings, dropout off (the loop's answer-only head and trimmed
    patches against what the Trainer computes)."""
    import torch

    from vin_ocr.models.vlm import to_model

    was_training = net.training
    net.eval()
    worst = 0.0
    with torch.no_grad():
        for i in range(min(o.check, len(data) // o.batch)):
            samples = data[i * o.batch : (i + 1) * o.batch]
            theirs = net(**to_model(plain_collate(family)(samples), net)).loss
            ours = family.loss(net, family.collate(samples))
            worst = max(worst, abs(float(ours) - float(theirs)))
    net.train(was_training)
    return worst


def run_case(o: TrainBench, key: str) -> dict[str, Any]:
    """Measure one case ``MODEL:SIZE:ATTN`` (every runner) or ``MODEL:SIZE:ATTN:RUNNER`` (that
    one): ``{"case", "params", "trainable", RUNNER: {samples_per_s, peak_gib, losses, dtype,
    image_tokens}, ...}`` (``loss_check``: the largest loss difference, VLMs), or ``{"case",
    "skipped": reason}``."""
    import dataclasses

    import torch

    from vin_ocr.data.synth import SynthDataset
    from vin_ocr.hardware import load_model_cfg

    model, size, attn, *only = key.split(":")
    hw = hardware(attn)
    model_cfg = load_model_cfg(model)
    train_cfg = training_cfg(model_cfg.family, o.batch)
    out: dict[str, Any] = {"case": ":".join((model, size, attn)), "device": hw.device}
    out.update(dtype=hw.dtype, attn=attn, method=train_cfg.method)
    synth = SynthDataset(o.batch * (o.warmup + o.steps), seed=o.seed, cfg={"kind": "line"})
    data = [synth.sample(i) for i in range(len(synth))]  # rendered once, outside the timing
    for runner in runners(o, model, hw):
        if (only and runner.name != only[0]) or (
            runner.name.startswith("trainer") and not o.trainer
        ):
            continue
        gc.collect()
        run_hw = dataclasses.replace(hw, dtype=runner.dtype)
        torch.manual_seed(o.seed)
        family, net = build(model, size, run_hw, train_cfg, card=runner.card)
        if runner.name == "trainer" and o.check and hasattr(family, "_prompts"):
            out["loss_check"] = loss_check(family, net, data, o)
        out["params"] = sum(p.numel() for p in net.parameters())
        out["trainable"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
        tokens = image_tokens(family, data[: o.batch])
        gc.collect()
        bench.reset_peak_memory(hw.device)
        losses: list[float] = []
        if runner.name.startswith("trainer"):
            rate = run_trainer(family, net, data, o, run_hw, train_cfg, losses, runner.amp)
        else:
            rate = run_loop(family, net, data, o, run_hw, train_cfg, losses)
        out[runner.name] = {
            "samples_per_s": rate, "peak_gib": bench.peak_memory_gib(hw.device),
            "losses": losses, "dtype": "bf16 autocast" if runner.amp and runner.dtype == "fp32"
            else runner.dtype + (" + autocast" if runner.dtype == "bf16" else ""),
            "image_tokens": tokens,
        }  # fmt: skip
        if runner.name.startswith("loop") and _autocasts(train_cfg, run_hw):
            out[runner.name]["dtype"] += " + bf16 autocast"  # PP-OCR's training config
        if runner.name.startswith("loop") and train_cfg.get("channels_last"):
            out[runner.name]["dtype"] += ", channels-last"
        del family, net
    return out


def image_tokens(family: Any, samples: list) -> int | None:
    """Image placeholder tokens in the first sample's prompt (VLMs), else None."""
    proc = getattr(family, "processor", None)
    if not hasattr(family, "_prompts") or proc is None:
        return None
    ids = family.collate(samples)["input_ids"][0]
    return int((ids == proc.tokenizer.convert_tokens_to_ids(proc.image_token)).sum())


def skipped(o: TrainBench, key: str) -> dict[str, Any] | None:
    """The result of a real-size case that should not run here (with the reason), else None."""
    from vin_ocr.hardware import load_model_cfg

    model, size, attn = key.split(":")[:3]
    if size != "real":
        return None
    hw = hardware(attn)
    model_cfg = load_model_cfg(model)
    train_cfg = training_cfg(model_cfg.family, o.batch)
    reason = skip_reason(model_cfg, train_cfg, hw, o.max_real_params)
    if reason is None:
        return None
    return {"case": key, "device": hw.device, "method": train_cfg.method, "skipped": reason}


def run_isolated(key: str, argv: list[str], o: TrainBench) -> dict[str, Any]:
    """Each runner of ``run_case`` in its own child process (its own peak memory; all memory
    returned after), merged into one result."""
    model, _, attn = key.split(":")
    args = [a for a in argv if not a.startswith("case=")]
    merged: dict[str, Any] = {}
    for runner in runners(o, model, hardware(attn)):
        if runner.name.startswith("trainer") and not o.trainer:
            continue
        proc = subprocess.run(
            [sys.executable, __file__, *args, f"case={key}:{runner.name}"],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines() or [f"exit {proc.returncode}"]
            return {"case": key, "failed": f"{runner.name}: {lines[-1]}"}
        merged.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return merged


def safe_case(o: TrainBench, key: str) -> dict[str, Any]:
    try:
        return run_case(o, key)
    except Exception as err:  # one failing case must not lose the others' figures
        traceback.print_exc()
        return {"case": key, "failed": f"{type(err).__name__}: {err}".splitlines()[0]}


# -- report --------------------------------------------------------------------------------------


RUNNER_NAMES = {
    "trainer": "HF Trainer",
    "loop_same": "loop, Trainer's settings",
    "loop": "loop (default)",
    "trainer_bf16": "HF Trainer, bf16=True",
    "loop_bf16": "loop, hardware.dtype=bf16",
}


def entry(results: list[dict[str, Any]], o: TrainBench) -> str:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    peak = "peak allocated CUDA memory" if device == "cuda" else "peak RSS of the process"
    rows = []
    for r in results:
        model, size, _ = r["case"].split(":")[:3]
        if "skipped" in r or "failed" in r:
            why = f"skipped: {r['skipped']}" if "skipped" in r else f"failed: {r['failed']}"
            rows.append([model, size, why, *[""] * 8])
            continue
        base = r.get("trainer")
        params = (
            f"{r['params'] / 1e6:,.2f} M ({r['method']}, {r['trainable'] / 1e6:,.2f} M trained)"
        )
        if "loss_check" in r:
            params += f"; loss vs model's own: {r['loss_check']:.1e}"
        for name in (n for n in RUNNER_NAMES if n in r):
            m = r[name]
            precision = m.get("dtype", r["dtype"])
            if r["device"] == "cuda":
                precision += f", {r['attn']}"
            rows.append([
                model, size, params, RUNNER_NAMES[name], precision,
                "-" if m.get("image_tokens") is None else str(m["image_tokens"]),
                f"{m['samples_per_s']:.3g}", f"{m['peak_gib']:.2f}",
                f"{m['samples_per_s'] / base['samples_per_s']:.2f}" if base else "-",
                f"{m['peak_gib'] / base['peak_gib']:.2f}" if base else "-",
                _loss_gap(m.get("losses"), base.get("losses") if base else None),
            ])  # fmt: skip
            params = ""
    head = (
        f"- {bench.header(('torch', 'transformers', 'accelerate', 'peft', 'vin-ocr'))}: "
        f"batch {o.batch}, {o.warmup} warm-up + {o.steps} timed steps, memory = {peak}"
        f"{', quick' if o.quick else ''}."
    )
    headers = ["model", "size", "parameters", "runner", "precision", "image tokens", "samples/s",
               "peak GiB", "x Trainer samples/s", "x Trainer GiB",
               "loss - Trainer's (step 1; max of the first 3)"]  # fmt: skip
    return head + "\n\n" + bench.table(headers, rows, indent="  ", left=5)


def _loss_gap(losses: list[float] | None, base: list[float] | None) -> str:
    if not losses or not base:
        return "-"
    gaps = [abs(a - b) for a, b in zip(losses[:3], base[:3], strict=False)]
    return f"{gaps[0]:.1e}; {max(gaps):.1e}"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else list(argv)
    o = options(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if o.threads:
        torch.set_num_threads(o.threads)
    if o.case:
        print(json.dumps(run_case(o, o.case)))
        return []
    results = []
    for key in cases(o):
        start = time.perf_counter()
        r = skipped(o, key) or (run_isolated(key, argv, o) if o.isolate else safe_case(o, key))
        print(json.dumps(r), f"({time.perf_counter() - start:.0f} s)", flush=True)
        results.append(r)
    text = entry(results, o)
    print(text)
    if o.record:
        bench.record(text, SECTION, o.out or bench.BENCHMARKS_MD, intro=INTRO)
    return results


if __name__ == "__main__":
    main()
