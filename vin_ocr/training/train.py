"""A training run as named stages: :func:`train` reads a composed ``train.yaml`` and leaves a
complete run folder (:mod:`vin_ocr.run_folder`). The stages, in order::

    start_run          every input checked, the run folder created (vin_ocr.training.start)
    build_model        the family's model, LoRA applied, the resolved config saved
    evaluate_baseline  the test sets read by the untrained model (eval_baseline/)
    fit_model          the training loop (vin_ocr.training.loop), the best step's weights back in
    save_outputs       model/ (a LoRA run: its adapter and the verified merge), model.onnx
    evaluate_tests     the test sets read by the trained model (eval/)
    write_run          the model card and run.json (written last: the run is complete)
    push               hub.push / hub.dry_run
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import vin_ocr
from vin_ocr import run_folder as rf
from vin_ocr.data.sample import atomic_write_text, read_manifest
from vin_ocr.models.base import ExportsOnnx, Lora
from vin_ocr.models.engine import FamilyEngine
from vin_ocr.models.registry import facts, supports
from vin_ocr.training.loggers import build_logger, worst_predictions
from vin_ocr.training.loop import fit
from vin_ocr.training.start import Start, StartError, start_run

log = logging.getLogger(__name__)
HEADLINE = ("exact_match", "char_accuracy", "cer")


@dataclass
class RunResult:
    """What :func:`train` returns: the run folder, the figures and the files it wrote."""

    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    artefacts: dict[str, Path] = field(default_factory=dict)


def train(cfg: DictConfig) -> RunResult:
    """Compose nothing, read ``cfg``, train, evaluate, save: the whole run as a function.

    Raises :class:`StartError` (nothing written, nothing loaded) when an input is wrong."""
    from accelerate.utils import set_seed

    run = start_run(cfg)
    try:
        set_seed(cfg.seed)
        built = build_model(cfg, run)
        logger = build_logger(cfg.get("logger"), run.run_dir, _main(run))  # main process only
        config: Any = OmegaConf.to_container(cfg, resolve=True)
        logger.start(config, run.hardware.to_dict())
        baselines = evaluate_baseline(built, run)
        out = fit_model(built, run, logger)
        if out.metrics["train"]["stopped_early"] or not _main(run):  # the rest: main process's
            logger.finish()
            return out
        merge_info = save_outputs(cfg, built, run, out)
        evaluate_tests(built, run, out, baselines, logger)
        logger.finish()
        write_run(cfg, built, run, out, merge_info)
        push(cfg, run, out)
        log.info("done: %s", json.dumps(out.metrics))
        return out
    finally:
        if run.log_handler is not None:
            logging.getLogger().removeHandler(run.log_handler)
            run.log_handler.close()


def _main(run: Start) -> bool:
    return bool(run.accelerator.is_main_process)


@dataclass
class Built:
    """The model a run trains: its family, resolved config, model and processor."""

    family: Any
    model_cfg: DictConfig
    model: Any
    processor: Any


def build_model(cfg: DictConfig, run: Start) -> Built:
    """The family's model as ``training.method`` asks (4-bit base, LoRA), and the resolved
    config saved in the run folder."""
    from vin_ocr.models.registry import get_family

    try:
        model_cfg = _method_into_model(run.model_cfg, cfg.training.method)
        family = get_family(model_cfg.family, model_cfg)
        lora = _lora_settings(family, model_cfg, cfg.training)  # a misplaced key fails here
    except (KeyError, ValueError) as err:
        raise StartError(str(err).strip("'\"")) from None
    model, processor = _build_model(family, model_cfg, run.hardware)
    if _main(run):
        atomic_write_text(run.run_dir / rf.CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    if lora is not None and not facts(model_cfg.family).lora_in_build:
        from vin_ocr.models.lora import apply_lora

        model = apply_lora(model, lora)
    return Built(family, model_cfg, model, processor)


def evaluate_baseline(built: Built, run: Start) -> dict[str, dict[str, Any]]:
    """The test sets read by the model before any training, through the same harness (main
    process; a resumed run reuses the reports written before the kill)."""
    baselines: dict[str, dict[str, Any]] = {}
    if not _main(run):
        return baselines
    for label, manifest in run.test_sets.items():
        out_dir = run.run_dir / rf.BASELINE_DIR / label
        report = _read_report(out_dir / "report.json") if run.resumed else None
        if report is None:
            name, batch = f"{built.model_cfg.name}:pretrained", run.loop_cfg.eval_batch_size
            report = _test_eval(built.family, built.model, manifest, out_dir, name, batch)
        baselines[label] = {k: report[k] for k in HEADLINE}
    return baselines


def fit_model(built: Built, run: Start, logger: Any) -> RunResult:
    """Train (metrics.jsonl and the logger get every logged step), then put the best step's
    weights in the model; the result holds the training and validation figures."""
    history_path = run.run_dir / rf.METRICS_FILE

    def on_log(values: dict[str, Any], step: int) -> None:
        with history_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        logger.log(values, step)

    t0 = time.perf_counter()
    result = fit(built.family, built.model, run.train_data, run.val_data, run.loop_cfg,
                 run.run_dir, run.accelerator, on_log=on_log)  # fmt: skip
    train_s = time.perf_counter() - t0
    built.model = model = run.accelerator.unwrap_model(built.model)
    if result.best_weights is not None:  # the best step's weights (from the checkpoint on resume)
        unexpected = model.load_state_dict(result.best_weights, strict=False).unexpected_keys
        if unexpected:
            raise RuntimeError(f"best weights with keys the model lacks: {unexpected[:3]}")
    out = RunResult(run_dir=run.run_dir)
    out.metrics["train"] = {
        "steps": result.step,
        "best_step": result.best_step,
        "beat_baseline": result.beat_baseline,
        "last_loss": result.last_loss,
        "samples_per_s": result.samples_per_s,
        "seconds": round(train_s, 1),
        "stopped_early": result.stopped_early,
    }
    if result.history:
        out.metrics["val_baseline"] = result.history[0]
        out.metrics["val"] = next(h for h in result.history if h["step"] == result.best_step)
    if result.beat_baseline is False and _main(run) and not result.stopped_early:
        log.warning(
            "no trained step beat the untrained model on validation (exact match, then CER): "
            "model/ holds the step-0 weights; train longer or check the data and learning rate"
        )
    return out


def save_outputs(cfg: DictConfig, built: Built, run: Start, out: RunResult) -> Any:
    """``model/`` (a LoRA run: its adapter, plus the verified merge when ``training.merge``) and
    ``model.onnx`` for families that export; returns what run.json records of the merge."""
    model, merged, merge_info = built.model, None, None
    if hasattr(model, "peft_config") and cfg.training.get("merge", True):
        from vin_ocr.training.merging import merge_run_model

        merged, merge_info = merge_run_model(
            built.family, model, built.model_cfg, run.hardware, cfg.seed, run.run_dir
        )
    out.artefacts["model"] = save_model(model, built.processor, run.run_dir / rf.MODEL_DIR, merged)
    if supports(built.family, ExportsOnnx) and cfg.get("export_onnx", True):
        family: Any = built.family  # an ExportsOnnx family
        out.artefacts["onnx"] = run.run_dir / rf.ONNX_FILE
        out.metrics["onnx_max_abs_diff"] = family.export_onnx(model, out.artefacts["onnx"])
        if hasattr(family, "export_scene_onnx"):  # PP-OCR: the detector and general reader too
            det, general = run.run_dir / rf.DET_ONNX_FILE, run.run_dir / rf.GENERAL_ONNX_FILE
            out.metrics.update(family.export_scene_onnx(det, general))
    return merge_info


def evaluate_tests(
    built: Built, run: Start, out: RunResult, baselines: dict[str, Any], logger: Any
) -> None:
    """The test sets read by the trained model (``eval/<set>/``), beside their baselines."""
    for label, manifest in run.test_sets.items():
        folder = run.run_dir / rf.EVAL_DIR / label
        name = f"{built.model_cfg.name}:finetuned"
        report = _test_eval(built.family, built.model, manifest, folder, name,
                            run.loop_cfg.eval_batch_size)  # fmt: skip
        out.metrics[f"test/{label}"] = {k: report[k] for k in HEADLINE}
        out.metrics[f"test/{label}_baseline"] = baselines[label]
        out.artefacts[f"eval/{label}"] = folder
        logger.log_eval(label, report, worst_predictions(report))
    adapter = out.artefacts["model"] / rf.ADAPTER_DIR
    logger.log_artifact(adapter if adapter.is_dir() else out.artefacts["model"], "model")


def write_run(cfg: DictConfig, built: Built, run: Start, out: RunResult, merge_info: Any) -> None:
    """The model card, then ``run.json``: the last file, so a run folder holding it is complete."""
    from vin_ocr.hub.card import write_model_card

    info = {
        "family": built.model_cfg.family,
        "model": OmegaConf.to_container(built.model_cfg, resolve=True),
        "hardware": run.hardware.to_dict(),
        "preflight": run.estimate.to_dict(),
        "metrics": out.metrics,
        "versions": _versions(),
        "seed": cfg.seed,
        "data": _data_share(cfg.data, run.train_data, run.val_data),
        **({"merge": merge_info} if merge_info else {}),
    }
    out.artefacts["card"] = write_model_card(run.run_dir, info, cfg)
    out.artefacts["run"] = rf.write_info(run.run_dir, info)


def push(cfg: DictConfig, run: Start, out: RunResult) -> None:
    """``hub.push`` / ``hub.dry_run``, once the run folder is complete."""
    if cfg.get("hub") and (cfg.hub.push or cfg.hub.dry_run):
        from vin_ocr.hub.push import push_run

        pushed = push_run(run.run_dir, cfg.hub)
        if pushed is not None and pushed.staged is not None:
            out.artefacts["hub"] = pushed.staged


def save_model(model: Any, processor: Any, out: Path, merged: Any = None) -> Path:
    """Save ``model`` and its processor in ``save_pretrained`` layout, through a temporary folder
    renamed when complete. A PEFT model is saved as its adapter in ``adapter/``, plus ``merged``
    (its verified merge, :func:`vin_ocr.training.merge.merge_verified`) as the weights if given."""
    out = Path(out)
    tmp = out.with_name(f".tmp_{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(model, "peft_config"):  # PEFT
        model.save_pretrained(tmp / rf.ADAPTER_DIR)
        if merged is not None:
            merged.save_pretrained(tmp)
    else:
        model.save_pretrained(tmp)
    if processor is not None and hasattr(processor, "save_pretrained"):
        processor.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


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
    if facts(model_cfg.family).lora_in_build:
        model_cfg.finetune = "full" if method == "full" else "lora"
    return model_cfg


def _lora_settings(family: Any, model_cfg: DictConfig, training: DictConfig) -> Any:
    """The run's LoRA settings (``training.lora`` over ``model.lora``, see
    :func:`vin_ocr.models.lora.resolve_lora`), or None for full fine-tuning. Families that apply
    LoRA in ``build`` (PP-OCR's ``finetune`` key) receive them resolved as ``model.lora``."""
    if training.method not in ("lora", "qlora") or not supports(family, Lora):
        return None
    settings = family.lora_settings(training.get("lora"), model_cfg.get("lora") or {})
    if facts(model_cfg.family).lora_in_build:
        model_cfg.lora = asdict(settings)
    return settings


def _build_model(family: Any, model_cfg: DictConfig, hardware: Any) -> tuple[Any, Any]:
    from vin_ocr.models.vlm import ModelLoadError

    try:
        return family.build(model_cfg, hardware)
    except ModelLoadError as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        where = (
            "the Hugging Face Hub is off (HF_HUB_OFFLINE=1)"
            if offline
            else ("the Hugging Face Hub is unreachable from here, or the model is not in its cache")
        )
        raise StartError(
            f"{err}\n{where}: download the model where the Hub is reachable and set "
            "model.checkpoint=LOCAL_FOLDER, or check the pipeline with model.tiny=true "
            "(a tiny random model, no download)"
        ) from None


def _read_report(path: Path) -> dict[str, Any] | None:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report if all(k in report for k in HEADLINE) else None


def _test_eval(
    family: Any, model: Any, manifest: Path, out: Path, name: str, batch_size: int
) -> dict[str, Any]:
    """The harness's report of ``model`` on a test manifest (scenes through the family's own
    detection where it has one), written to ``out``: before training and after, the same path."""
    from vin_ocr.evaluation.evaluate import check_labels, run_eval

    engine = FamilyEngine(family, model, name=name)
    samples, labels = check_labels(read_manifest(manifest), manifest)  # as the eval CLI does
    return run_eval(engine, samples, out, manifest=manifest, labels=labels,
                    batch_size=batch_size, progress=False)  # fmt: skip


def _data_share(data: DictConfig, train_data: Any, val_data: Any) -> dict[str, int]:
    """Training samples per epoch, real vs synthetic (the model card shows the share)."""
    synth = int(data.synth_train or 0)
    return {"real_train": len(train_data) - synth, "synthetic_train": synth, "val": len(val_data)}


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
