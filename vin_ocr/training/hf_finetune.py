"""Fine-tune a VIN reader: ``python -m vin_ocr.training.hf_finetune [overrides]``.

With no argument it fine-tunes the pretrained PP-OCRv6-small recogniser (converted from the ONNX
in the rapidocr wheel: no Hub, no GPU) on synthetic VIN line crops rendered on the fly,
evaluates before and after, and leaves in its run folder (``runs/<date>/<time>_<model>``)::

    model/            the fine-tuned weights + processor (save_pretrained layout)
    model.onnx        the ONNX export (PP-OCR), checked against torch
    eval/<set>/       the harness's report (report.json, report.md, predictions, chart) per test set
    eval_baseline/    the same reports of the pretrained model, before training
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

import vin_ocr
import vin_ocr.hardware  # registers the hardware schema for Hydra
from vin_ocr.data.sample import atomic_write_text, read_manifest
from vin_ocr.models.engine import MODEL_DIR, RUN_FILE, FamilyEngine
from vin_ocr.training.data import build_datasets, test_manifest
from vin_ocr.training.loggers import build_logger, worst_predictions
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


def save_model(model: Any, processor: Any, out: Path, merged: Any = None) -> Path:
    """Save ``model`` and its processor in ``save_pretrained`` layout, through a temporary folder
    renamed when complete. A PEFT model is saved as its adapter in ``adapter/``, plus ``merged``
    (its verified merge, :func:`vin_ocr.training.merge.merge_verified`) as the weights if given."""
    out = Path(out)
    tmp = out.with_name(f".tmp_{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(model, "peft_config"):  # PEFT
        model.save_pretrained(tmp / "adapter")
        if merged is not None:
            merged.save_pretrained(tmp)
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


def _lora_settings(family: Any, model_cfg: DictConfig, training: DictConfig) -> Any:
    """The run's LoRA settings (``training.lora`` over ``model.lora``, see
    :func:`vin_ocr.models.lora.resolve_lora`), or None for full fine-tuning. Families that apply
    LoRA in ``build`` (PP-OCR's ``finetune`` key) receive them resolved as ``model.lora``."""
    if training.method not in ("lora", "qlora") or not hasattr(family, "lora_settings"):
        return None
    settings = family.lora_settings(training.get("lora"), model_cfg.get("lora") or {})
    if "finetune" in model_cfg:
        model_cfg.lora = asdict(settings)
    return settings


def train(cfg: DictConfig) -> RunResult:
    """Compose nothing, read ``cfg``, train, evaluate, save: the whole run as a function."""
    from accelerate import Accelerator

    from vin_ocr.hardware import attn_support, resolve
    from vin_ocr.models.registry import get_family

    hardware = resolve(cfg.hardware, model_supports=attn_support(cfg.model))
    model_cfg, estimate = _resolve_model(cfg, hardware)
    loop_cfg = LoopConfig.from_mapping(OmegaConf.to_container(cfg.training, resolve=True))
    loop_cfg.seed = cfg.seed
    accelerator = Accelerator(
        cpu=hardware.device == "cpu",
        mixed_precision=MIXED_PRECISION.get(hardware.dtype, "no"),
        gradient_accumulation_steps=loop_cfg.gradient_accumulation_steps,
    )
    main = accelerator.is_main_process
    run_dir = _run_dir(accelerator, cfg)
    if main:
        log.info("run folder: %s", run_dir)
        log.info("hardware: %s", hardware.summary())
        log.info("preflight: %s, %.2f GiB estimated", estimate.verdict, estimate.total_gb)
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    logger = build_logger(cfg.get("logger"), run_dir, main)  # main process only
    logger.start(OmegaConf.to_container(cfg, resolve=True), hardware.to_dict())

    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    model_cfg = _method_into_model(model_cfg, cfg.training.method)
    family = get_family(model_cfg.family, model_cfg)
    lora = _lora_settings(family, model_cfg, cfg.training)  # a misplaced key fails before loading
    model, processor = family.build(model_cfg, hardware)
    if lora is not None and "finetune" not in model_cfg:  # PP-OCR applies it in build
        from vin_ocr.models.lora import apply_lora

        model = apply_lora(model, lora)
    train_data, val_data = build_datasets(cfg.data)
    test_sets = {_label(name): test_manifest(name) for name in cfg.data.test}
    baselines: dict[str, dict[str, Any]] = {}
    if main:  # the test sets read by the model before any training, through the same harness
        for label, manifest in test_sets.items():
            out_dir = run_dir / "eval_baseline" / label
            report = _test_eval(family, model, manifest, out_dir, f"{model_cfg.name}:pretrained",
                                loop_cfg.eval_batch_size)  # fmt: skip
            baselines[label] = {k: report[k] for k in HEADLINE}
    best_state: dict[str, Any] = {}

    def save_best(m: Any, _path: Path) -> None:  # kept in memory; written once at the end
        best_state.clear()
        best_state.update({k: v.detach().cpu().clone() for k, v in m.state_dict().items()})

    history_path = run_dir / "metrics.jsonl"

    def on_log(values: dict[str, Any], step: int) -> None:
        with history_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        logger.log(values, step)

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
        logger.finish()
        return out

    merged, merge_info = None, None
    if hasattr(model, "peft_config") and cfg.training.get("merge", True):
        from vin_ocr.training.merge import merge_run_model

        merged, merge_info = merge_run_model(family, model, model_cfg, hardware, cfg.seed, run_dir)
    out.artefacts["model"] = save_model(model, processor, run_dir / MODEL_DIR, merged)
    export = getattr(family, "export_onnx", None)
    if export is not None and cfg.get("export_onnx", True):
        out.artefacts["onnx"] = run_dir / "model.onnx"
        out.metrics["onnx_max_abs_diff"] = export(model, out.artefacts["onnx"])

    for label, manifest in test_sets.items():
        report = _test_eval(family, model, manifest, run_dir / "eval" / label,
                            f"{model_cfg.name}:finetuned", loop_cfg.eval_batch_size)  # fmt: skip
        out.metrics[f"test/{label}"] = {k: report[k] for k in HEADLINE}
        out.metrics[f"test/{label}_baseline"] = baselines[label]
        out.artefacts[f"eval/{label}"] = run_dir / "eval" / label
        logger.log_eval(label, report, worst_predictions(report))
    adapter = out.artefacts["model"] / "adapter"
    logger.log_artifact(adapter if adapter.is_dir() else out.artefacts["model"], "model")
    logger.finish()

    info = {
        "family": model_cfg.family,
        "model": OmegaConf.to_container(model_cfg, resolve=True),
        "hardware": hardware.to_dict(),
        "preflight": estimate.to_dict(),
        "metrics": out.metrics,
        "versions": _versions(),
        "seed": cfg.seed,
        "data": _data_share(cfg.data, train_data, val_data),
        **({"merge": merge_info} if merge_info else {}),
    }
    from vin_ocr.hub.card import write_model_card

    out.artefacts["card"] = write_model_card(run_dir, info, cfg)
    out.artefacts["run"] = atomic_write_text(run_dir / RUN_FILE, json.dumps(info, indent=1))
    if cfg.get("hub") and (cfg.hub.push or cfg.hub.dry_run):  # after the run is complete
        from vin_ocr.hub.push import push_run

        pushed = push_run(run_dir, cfg.hub)
        if pushed is not None and pushed.staged is not None:
            out.artefacts["hub"] = pushed.staged
    log.info("done: %s", json.dumps(out.metrics))
    return out


def _test_eval(
    family: Any, model: Any, manifest: Path, out: Path, name: str, batch_size: int
) -> dict[str, Any]:
    """The harness's report of ``model`` on a test manifest (scenes through the family's own
    detection where it has one), written to ``out``: before training and after, the same path."""
    from vin_ocr.evaluation.evaluate import run_eval

    engine = FamilyEngine(family, model, name=name)
    return run_eval(engine, read_manifest(manifest), out, manifest=manifest,
                    batch_size=batch_size, progress=False)  # fmt: skip


def _data_share(data: DictConfig, train_data: Any, val_data: Any) -> dict[str, int]:
    """Training samples per epoch, real vs synthetic (the model card shows the share)."""
    synth = int(data.synth_train or 0)
    return {"real_train": len(train_data) - synth, "synthetic_train": synth, "val": len(val_data)}


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
