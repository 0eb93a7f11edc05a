"""The Python half of ``scripts/bench_gpu.sh``: every trainable model family at real size on one
CUDA GPU, within a time budget, and its table in ``docs/benchmarks.md``.

    scripts/bench_gpu.sh                      # the GPU run (8 minutes at most on an H100/H200)
    scripts/bench_gpu.sh --dry-run            # the same stages on the CPU with tiny models
    python scripts/bench_gpu_extras.py record_from=ENTRY.md   # append an entry a GPU machine wrote

Options are ``key=value`` (:class:`GpuBench`). The models are every ``configs/model/*.yaml`` whose
family is registered and trainable (:func:`trainable_models`: its ``FamilyFacts.tiny`` is set), so a
new family is benchmarked as soon as its YAML and registry line exist. For each model, in its own
process (its own peak memory, killed when its share of the budget is spent):

1. ``scripts/bench_train.py``'s case at real size: vin-ocr's loop and a plain
   ``transformers.Trainer``, bf16, sdpa, and again with flash-attention 2 when a real
   ``flash_attn`` is installed and the model supports it (``bench_train.attentions``);
2. the VLMs (a model config with a ``quantization`` key): QLoRA and a merge, through the same paths
   as a user's run: the random real-size weights are saved to a folder, the family's ``build``
   loads them from it in 4-bit NF4 (bitsandbytes), LoRA goes on and the loop trains
   ``warmup + steps`` steps; then ``merging.merge_verified`` reloads the base in bf16, moves the
   adapter onto it, merges and checks the merged model's logits and readings against the adapter
   model's.

``dry_run=true`` runs the same stages on the CPU with the tiny models in fp32 (no 4-bit there:
stage 2 loads the saved folder unquantised and trains LoRA), in this process; the tests call it.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
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

SECTION = "## GPU training (`scripts/bench_gpu.sh`)"
INTRO = (
    "Every trainable family at real size (random weights from the published configs) on one CUDA "
    "GPU in bf16: vin-ocr's loop against a plain `transformers.Trainer` (`scripts/bench_train.py`)"
    ", with sdpa and flash-attention 2 when installed; then QLoRA (4-bit NF4 base loaded from a "
    "saved folder, LoRA trained by the loop) and the verified merge into a bf16 reload of the "
    "base. How to run it: `scripts/bench_gpu.sh --help`."
)


@dataclass
class GpuBench:
    dry_run: bool = False  # CPU, tiny models, in this process (tests, CI)
    models: list[str] = field(default_factory=list)  # [] = every trainable model config
    batch: int = 8
    warmup: int = 2
    steps: int = 5
    budget_s: float = 450.0  # the whole run; each model gets an equal share of what is left
    record: bool = True
    out: str = ""  # the Markdown file to append to; "" = docs/benchmarks.md
    out_dir: str = ""  # also write the entry here (bench_gpu.sh passes $OUT on a device machine)
    record_from: str = ""  # append this entry file to `out` and stop (after a GPU run elsewhere)
    stage: str = ""  # internal: run the stage MODEL:train:ATTN or MODEL:qlora, print its JSON
    seed: int = 0


def _script(name: str) -> Any:
    """``scripts/<name>.py`` as a module (scripts/ is not a package)."""
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench_train = _script("bench_train")


def trainable_models() -> list[str]:
    """Model config names (``configs/model/*.yaml``) whose family is registered and has a tiny
    model, i.e. trains offline (inference-only families and ``auto`` are left out)."""
    from omegaconf import OmegaConf

    import vin_ocr
    from vin_ocr.models.registry import FAMILIES, facts

    names = []
    for path in sorted((vin_ocr.CONFIG_DIR / "model").glob("*.yaml")):
        family = OmegaConf.load(path).get("family")
        if family in FAMILIES and facts(family).tiny is not None:
            names.append(path.stem)
    return names


def has_quantization(model: str) -> bool:
    """Whether the model config takes ``quantization`` (the VLMs: none | 4bit)."""
    from vin_ocr.hardware import load_model_cfg

    return "quantization" in load_model_cfg(model)


def train_options(o: GpuBench) -> Any:
    """bench_train's options for this run: real size on a GPU, tiny on the CPU."""
    size = "tiny" if o.dry_run else "real"
    args = [f"sizes=[{size}]", f"batch={o.batch}", f"warmup={o.warmup}", f"steps={o.steps}"]
    args += ["max_real_params=1e12", f"isolate={not o.dry_run}", "record=false", f"seed={o.seed}"]
    return bench_train.options(args)


def stages(o: GpuBench) -> list[tuple[str, list[str]]]:
    """(model, its stage keys), smallest model first on a GPU: ``MODEL:train:ATTN`` for each
    attention, then ``MODEL:qlora`` for the VLMs."""
    models = o.models or trainable_models()
    known = set(trainable_models())
    unknown = [m for m in models if m not in known]
    if unknown:
        raise SystemExit(
            f"bench_gpu: not a trainable model config: {unknown}; known: {sorted(known)}"
        )
    if not o.dry_run:  # smallest first: what a small model leaves of its share goes to the big
        from vin_ocr.hardware import load_model_cfg, model_spec

        models = sorted(models, key=lambda m: model_spec(load_model_cfg(m)).params)
    plan = []
    for model in models:
        keys = [f"{model}:train:{attn}" for attn in bench_train.attentions(model)]
        if has_quantization(model):
            keys.append(f"{model}:qlora")
        plan.append((model, keys))
    return plan


# -- stage 1: bench_train's case ------------------------------------------------------------------


def train_stage(o: GpuBench, model: str, attn: str) -> dict[str, Any]:
    to = train_options(o)
    key = f"{model}:{to.sizes[0]}:{attn}"
    return bench_train.skipped(to, key) or bench_train.run_case(to, key)


# -- stage 2: QLoRA and the merge -----------------------------------------------------------------


def qlora_stage(o: GpuBench, model: str) -> dict[str, Any]:
    """QLoRA (LoRA on an unquantised base on the CPU) from a saved folder, then the verified merge
    into a 16-bit reload of the base: samples/s, peak memory, load and merge seconds."""
    import torch
    from accelerate.state import AcceleratorState
    from omegaconf import OmegaConf

    import vin_ocr
    from vin_ocr.data.synth import SynthDataset
    from vin_ocr.hardware import load_model_cfg
    from vin_ocr.models.lora import apply_lora
    from vin_ocr.models.registry import get_family
    from vin_ocr.training.merging import merge_verified

    # in one process (dry run) after bench_train's runners: a Trainer with bf16=True leaves
    # Accelerate's shared state set to bf16, and the loop's Accelerator would be refused
    AcceleratorState._reset_state()
    to = train_options(o)
    size = to.sizes[0]
    hw = bench_train.hardware("sdpa")
    quant = "4bit" if hw.device == "cuda" else "none"
    train_cfg = OmegaConf.load(vin_ocr.CONFIG_DIR / "training" / "qlora.yaml")
    del train_cfg["defaults"]
    train_cfg = OmegaConf.merge(
        OmegaConf.load(vin_ocr.CONFIG_DIR / "training" / "lora.yaml"), train_cfg
    )
    train_cfg.batch_size = o.batch
    out: dict[str, Any] = {"case": f"{model}:{size}:qlora", "device": hw.device, "dtype": hw.dtype}
    out["quantization"] = quant
    synth = SynthDataset(o.batch * (o.warmup + o.steps), seed=o.seed, cfg={"kind": "line"})
    data = [synth.sample(i) for i in range(len(synth))]
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        torch.manual_seed(o.seed)
        family, net = bench_train.build(model, size, hw, train_cfg)  # method qlora: no LoRA yet
        net.save_pretrained(f"{tmp}/base")
        family.processor.save_pretrained(f"{tmp}/base")
        cfg = load_model_cfg(model)
        # the settings that build ran with (image sizes the tiny processor forces, no tiles)
        used = getattr(family, "settings", None)
        for key, value in (
            dataclasses.asdict(used) if dataclasses.is_dataclass(used) else {}
        ).items():
            if key in cfg:
                cfg[key] = value
        del family, net
        gc.collect()
        if hw.device == "cuda":
            torch.cuda.empty_cache()
        cfg.checkpoint, cfg.quantization = f"{tmp}/base", quant
        if "tiny" in cfg:
            cfg.tiny = False
        cfg16 = cfg.copy()
        cfg16.quantization = "none"
        bench.reset_peak_memory(hw.device)
        start = time.perf_counter()
        family = get_family(cfg.family, cfg)
        base, _ = family.build(cfg, hw)
        out["load_s"] = time.perf_counter() - start
        settings = family.lora_settings(train_cfg.get("lora"), cfg.get("lora") or {})
        net = apply_lora(base, settings)
        out["params"] = sum(p.numel() for p in net.parameters())
        out["trainable"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
        rate = bench_train.run_loop(family, net, data, to, hw, train_cfg)
        out["loop"] = {"samples_per_s": rate, "peak_gib": bench.peak_memory_gib(hw.device)}
        start = time.perf_counter()
        rebuild = get_family(cfg16.family, cfg16)
        _, check = merge_verified(
            family, net, data[:4], base_loader=lambda: rebuild.build(cfg16, hw)[0]
        )
        out["merge"] = {"seconds": time.perf_counter() - start, **check.to_dict()}
    return out


# -- running ------------------------------------------------------------------------------------


def run_stage(o: GpuBench, key: str) -> dict[str, Any]:
    model, kind, *rest = key.split(":")
    if kind == "train":
        return train_stage(o, model, rest[0])
    if kind == "qlora":
        return qlora_stage(o, model)
    raise SystemExit(f"bench_gpu: unknown stage {key!r}")


def run_isolated(o: GpuBench, key: str, argv: list[str], timeout: float) -> dict[str, Any]:
    """``run_stage`` in a child process, killed after ``timeout`` seconds."""
    args = [a for a in argv if not a.startswith(("stage=", "models="))]
    cmd = [sys.executable, __file__, *args, f"stage={key}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        return {"case": key, "failed": f"out of its {timeout:.0f} s share of budget_s"}
    sys.stderr.write(proc.stderr[-4000:])
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or [f"exit {proc.returncode}"]
        return {"case": key, "failed": lines[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def safe_stage(o: GpuBench, key: str) -> dict[str, Any]:
    try:
        return run_stage(o, key)
    except Exception as err:  # one failing stage must not lose the others' figures
        traceback.print_exc()
        return {"case": key, "failed": f"{type(err).__name__}: {err}".splitlines()[0]}


def run_all(o: GpuBench, argv: list[str]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + o.budget_s
    plan = stages(o)
    results = []
    for i, (_, keys) in enumerate(plan):
        share = (deadline - time.monotonic()) / (len(plan) - i)  # this model's share
        model_end = time.monotonic() + share
        for key in keys:
            start = time.perf_counter()
            if o.dry_run:
                r = safe_stage(o, key)
            else:
                r = run_isolated(o, key, argv, model_end - time.monotonic())
            r["seconds"] = time.perf_counter() - start
            print(json.dumps(r), flush=True)
            results.append(r)
    return results


# -- report ---------------------------------------------------------------------------------------


def qlora_table(results: list[dict[str, Any]], o: GpuBench) -> str:
    rows = []
    size = "tiny" if o.dry_run else "real"
    for r in results:
        model = r["case"].split(":")[0]  # MODEL:SIZE:qlora, or the stage key MODEL:qlora
        if "failed" in r or "skipped" in r:
            rows.append([model, size, f"failed: {r.get('failed', r.get('skipped'))}", *[""] * 5])
            continue
        m = r["merge"]
        rows.append([
            model,
            size,
            f"{r['params'] / 1e6:,.1f} M ({r['trainable'] / 1e6:,.2f} M trained), "
            f"{r['quantization']}, {r['dtype']}",
            f"{r['load_s']:.1f}",
            f"{r['loop']['samples_per_s']:.1f}",
            f"{r['loop']['peak_gib']:.2f}",
            f"{m['seconds']:.1f}",
            f"max abs {m['max_abs_diff']:.2g} (rel {m['relative_diff']:.2g} <= {m['tolerance']:g})",
        ])  # fmt: skip
    headers = ["model", "size", "base", "load s", "loop samples/s", "peak GiB", "merge s",
               "merged vs adapter logits"]  # fmt: skip
    return bench.table(headers, rows, indent="  ", left=3)


def entry(results: list[dict[str, Any]], o: GpuBench, wall: float) -> str:
    to = train_options(o)
    train = [r for r in results if not r["case"].endswith(":qlora")]
    qlora = [r for r in results if r["case"].endswith(":qlora")]
    for r in train:  # failures keep bench_train's case key MODEL:SIZE:ATTN
        if ":train:" in r["case"]:
            model, _, attn = r["case"].split(":")
            r["case"] = f"{model}:{to.sizes[0]}:{attn}"
    head = (
        f"- GPU benchmark{' (dry run: CPU, tiny models)' if o.dry_run else ''}, "
        f"{wall:.0f} s of budget_s={o.budget_s:.0f}:"
    )
    text = head + "\n\n" + bench_train.entry(train, to)
    if qlora:
        text += "\n\n  QLoRA and merge (method qlora, loop only):\n\n" + qlora_table(qlora, o)
    return text


def write(text: str, o: GpuBench) -> None:
    if o.out_dir:
        Path(o.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(o.out_dir) / "bench_gpu_entry.md").write_text(text + "\n", encoding="utf-8")
    if o.record:
        bench.record(text, SECTION, o.out or bench.BENCHMARKS_MD, intro=INTRO)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else list(argv)
    o = bench.parse_options(GpuBench, argv, "bench_gpu")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if o.record_from:
        path = Path(o.record_from)
        if not path.is_file():
            raise SystemExit(f"error: {path}: no such entry file (bench_gpu_entry.md of a run)")
        bench.record(path.read_text(encoding="utf-8"), SECTION, o.out or bench.BENCHMARKS_MD,
                     intro=INTRO)  # fmt: skip
        return []
    import torch

    if not o.dry_run and not torch.cuda.is_available():
        raise SystemExit("error: bench_gpu: no CUDA GPU visible to torch; use dry_run=true")
    if o.stage:
        print(json.dumps(run_stage(o, o.stage)))
        return []
    start = time.perf_counter()
    results = run_all(o, argv)
    text = entry(results, o, time.perf_counter() - start)
    print(text)
    write(text, o)
    return results


if __name__ == "__main__":
    main()
