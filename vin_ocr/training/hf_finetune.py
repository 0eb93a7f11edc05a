"""Fine-tune a VIN reader: ``python -m vin_ocr.training.hf_finetune [overrides]``.

With no argument it fine-tunes the pretrained PP-OCRv6-small recogniser (converted from the ONNX
in the rapidocr wheel: no Hub, no GPU) on synthetic VIN line crops rendered on the fly,
evaluates before and after, and leaves in its run folder (``runs/<date>/<time>_<model>``)::

    model/            the fine-tuned weights + processor (save_pretrained layout)
    model.onnx        the ONNX export (PP-OCR), checked against torch
    eval/<set>/       the harness's report (report.json, report.md, predictions, chart) per test set
    README.md         the model card
    run.json          family, resolved config, hardware, metrics (what engine=checkpoint reads)
    checkpoints/      resumable state (training.resume=auto)

Other families and scale::

    python -m vin_ocr.training.hf_finetune model=lfm2_5_vl training=lora
    python -m vin_ocr.training.hf_finetune debug=smoke            # any run, two steps
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml \\
        -m vin_ocr.training.hf_finetune model=lfm2_5_vl training=lora

Under ``accelerate launch`` every process resolves the main process's run folder, and only the
main process writes files (checkpoints aside, where each process saves its own RNG state).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

import vin_ocr
import vin_ocr.hardware  # registers the hardware schema for Hydra
from vin_ocr.data.sample import atomic_write_text, read_manifest
from vin_ocr.models.engine import MODEL_DIR, RUN_FILE, FamilyEngine
from vin_ocr.training.data import build_datasets, test_manifest
from vin_ocr.training.loop import LoopConfig, fit

log = logging.getLogger(__name__)
# hydra.run.dir: run_dir when given, so Hydra's own folder is the run folder
OmegaConf.register_new_resolver("vin_or", lambda a, b: a or b, replace=True)

MIXED_PRECISION = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}
HEADLINE = ("exact_match", "char_accuracy", "cer")


@dataclass
class RunResult:
    """What :func:`train` returns: the run folder, the figures and the files it wrote."""

    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    artefacts: dict[str, Path] = field(default_factory=dict)


def _run_dir(accelerator: Any, cfg: DictConfig) -> Path:
    """The main process's run folder, shared with every process."""
    from accelerate.utils import broadcast_object_list

    if cfg.get("run_dir"):
        mine = str(Path(cfg.run_dir).resolve())
    else:
        from hydra.core.hydra_config import HydraConfig

        mine = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None
        mine = mine or str(Path("runs") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    shared = [mine]
    if accelerator.num_processes > 1:
        broadcast_object_list(shared, from_process=0)
    run_dir = Path(shared[0])
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    return run_dir


def save_model(model: Any, processor: Any, out: Path) -> Path:
    """Save ``model`` (a PEFT model: merged weights, plus its adapter in ``adapter/``) and its
    processor in ``save_pretrained`` layout, through a temporary folder renamed when complete."""
    out = Path(out)
    tmp = out.with_name(f".tmp_{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(model, "merge_and_unload"):  # PEFT
        import copy

        model.save_pretrained(tmp / "adapter")
        copy.deepcopy(model).merge_and_unload().save_pretrained(tmp)
    else:
        model.save_pretrained(tmp)
    if processor is not None and hasattr(processor, "save_pretrained"):
        processor.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _resolve_model(cfg: DictConfig, hardware: Any) -> tuple[DictConfig, Any]:
    from vin_ocr.hardware import load_model_cfg, pick_auto, preflight

    model_cfg = cfg.model
    if model_cfg.get("name") == "auto":
        name, _ = pick_auto(cfg.training, hardware)
        log.info("model=auto picked %s", name)
        model_cfg = load_model_cfg(name)
        if cfg.model.get("tiny"):
            model_cfg.tiny = True
    estimate = preflight(model_cfg, cfg.training, hardware)
    return model_cfg, estimate


def _method_into_model(model_cfg: DictConfig, method: str) -> DictConfig:
    """``training.method`` decides what the family builds: a 4-bit base for QLoRA, and LoRA
    inside families that apply it themselves (PP-OCR's ``finetune`` key)."""
    model_cfg = model_cfg.copy()
    if method == "qlora":
        if "quantization" not in model_cfg:
            raise ValueError(
                f"training=qlora: model {model_cfg.name} has no 4-bit path; use training=lora"
            )
        model_cfg.quantization = "4bit"
    if "finetune" in model_cfg:
        model_cfg.finetune = "full" if method == "full" else "lora"
    return model_cfg


def _check_processes(family: str, processes: int) -> None:
    # PP-OCR's CTC loss reads the model's parts, not its forward, so DDP would not sync its
    # gradients: refuse rather than train diverging replicas.
    if family == "pp_ocr" and processes > 1:
        raise ValueError(
            f"model family pp_ocr trains in one process ({processes} were launched): run "
            "python -m vin_ocr.training.hf_finetune without accelerate launch"
        )


def train(cfg: DictConfig) -> RunResult:
    """Compose nothing, read ``cfg``, train, evaluate, save: the whole run as a function."""
    from accelerate import Accelerator

    from vin_ocr.hardware import attn_support, resolve
    from vin_ocr.models.registry import get_family
    from vin_ocr.training.loop import evaluate_model

    hardware = resolve(cfg.hardware, model_supports=attn_support(cfg.model))
    model_cfg, estimate = _resolve_model(cfg, hardware)
    loop_cfg = LoopConfig.from_mapping(OmegaConf.to_container(cfg.training, resolve=True))
    loop_cfg.seed = cfg.seed
    accelerator = Accelerator(
        cpu=hardware.device == "cpu",
        mixed_precision=MIXED_PRECISION.get(hardware.dtype, "no"),
        gradient_accumulation_steps=loop_cfg.gradient_accumulation_steps,
    )
    _check_processes(model_cfg.family, accelerator.num_processes)
    main = accelerator.is_main_process
    run_dir = _run_dir(accelerator, cfg)
    if main:
        log.info("run folder: %s", run_dir)
        log.info("hardware: %s", hardware.summary())
        log.info("preflight: %s, %.2f GiB estimated", estimate.verdict, estimate.total_gb)
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    model_cfg = _method_into_model(model_cfg, cfg.training.method)
    family = get_family(model_cfg.family, model_cfg)
    model, processor = family.build(model_cfg, hardware)
    if cfg.training.method in ("lora", "qlora") and hasattr(family, "lora_settings"):
        from vin_ocr.models.lora import apply_lora

        model = apply_lora(model, family.lora_settings(cfg.training.get("lora")))
    train_data, val_data = build_datasets(cfg.data)
    test_sets = {_label(name): test_manifest(name) for name in cfg.data.test}
    baselines: dict[str, dict[str, Any]] = {}
    if main:  # the test sets as the model reads them before any training
        for label, manifest in test_sets.items():
            summary, _ = evaluate_model(family, model, read_manifest(manifest), 32)
            baselines[label] = {k: summary[k] for k in HEADLINE}
    best_state: dict[str, Any] = {}

    def save_best(m: Any, _path: Path) -> None:  # kept in memory; written once at the end
        best_state.clear()
        best_state.update({k: v.detach().cpu().clone() for k, v in m.state_dict().items()})

    history_path = run_dir / "metrics.jsonl"

    def on_log(values: dict[str, Any], step: int) -> None:
        with history_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")

    t0 = time.perf_counter()
    result = fit(
        family, model, train_data, val_data, loop_cfg, run_dir, accelerator,
        save_best=save_best, on_log=on_log,
    )  # fmt: skip
    train_s = time.perf_counter() - t0
    model = accelerator.unwrap_model(model)
    if best_state:
        model.load_state_dict(best_state)
    out = RunResult(run_dir=run_dir)
    out.metrics["train"] = {
        "steps": result.step,
        "best_step": result.best_step,
        "last_loss": result.last_loss,
        "samples_per_s": result.samples_per_s,
        "seconds": round(train_s, 1),
        "stopped_early": result.stopped_early,
    }
    if result.history:
        out.metrics["val_baseline"] = result.history[0]
        out.metrics["val"] = max(result.history, key=lambda h: h["exact_match"])
    if result.stopped_early or not main:  # what follows is the main process's alone
        return out

    out.artefacts["model"] = save_model(model, processor, run_dir / MODEL_DIR)
    export = getattr(family, "export_onnx", None)
    if export is not None and cfg.get("export_onnx", True):
        out.artefacts["onnx"] = run_dir / "model.onnx"
        out.metrics["onnx_max_abs_diff"] = export(model, out.artefacts["onnx"])

    from vin_ocr.evaluation.evaluate import run_eval

    engine = FamilyEngine(family, model, name=f"{model_cfg.name}:finetuned")
    for label, manifest in test_sets.items():
        report = run_eval(
            engine, read_manifest(manifest), run_dir / "eval" / label, manifest=manifest,
            batch_size=loop_cfg.eval_batch_size, progress=False,
        )  # fmt: skip
        out.metrics[f"test/{label}"] = {k: report[k] for k in HEADLINE}
        out.metrics[f"test/{label}_baseline"] = baselines[label]
        out.artefacts[f"eval/{label}"] = run_dir / "eval" / label

    info = {
        "family": model_cfg.family,
        "model": OmegaConf.to_container(model_cfg, resolve=True),
        "hardware": hardware.to_dict(),
        "preflight": estimate.to_dict(),
        "metrics": out.metrics,
        "versions": _versions(),
    }
    from vin_ocr.hub.card import write_model_card

    out.artefacts["card"] = write_model_card(run_dir, info, cfg)
    out.artefacts["run"] = atomic_write_text(run_dir / RUN_FILE, json.dumps(info, indent=1))
    log.info("done: %s", json.dumps(out.metrics))
    return out


def _label(test_name: str) -> str:
    return "samples" if test_name == "samples" else Path(test_name).stem


def _versions() -> dict[str, str]:
    import accelerate
    import torch
    import transformers

    return {
        "vin_ocr": vin_ocr.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
    }


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
