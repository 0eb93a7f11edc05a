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

Before anything expensive (model loading, the baseline evaluation, the first step) a run checks
its inputs and ends with one ``error: ...`` line and exit code 1 when one is wrong: an unknown
config key (``+batchsize=4``, ``+training.max_step=2``), ``hub.push=true`` without a token or
``hub.repo_id``, a run folder that holds a previous run (``training.resume=auto`` continues it,
``overwrite=true`` replaces it) or cannot be written, a damaged checkpoint to resume, a manifest
with an unreadable image or a label that is not a VIN, an empty split, a VIN in train and val, a
model that cannot be loaded.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

import vin_ocr
import vin_ocr.hardware  # configure_platform() before torch is imported
from vin_ocr import run_folder as rf
from vin_ocr.config import register_configs
from vin_ocr.data.sample import atomic_write_text, read_manifest
from vin_ocr.errors import UserError, check_writable, exit_on_user_error
from vin_ocr.models.engine import FamilyEngine
from vin_ocr.run_folder import CHECKPOINTS_DIR, LOG_FILE, MODEL_DIR
from vin_ocr.training.data import build_datasets, read_test_sets
from vin_ocr.training.loggers import build_logger, worst_predictions
from vin_ocr.training.loop import STATE_FILE, LoopConfig, find_resume, fit

log = logging.getLogger(__name__)
# hydra.run.dir: the working folder when run_dir is given (Hydra then writes nothing: train.yaml
# turns off its .hydra copy and log file; train() checks run_dir and logs into run_dir/train.log)
OmegaConf.register_new_resolver("vin_or", lambda a, b: a or b, replace=True)
#: the default run folder when it cannot be created (``runs`` is a file, read-only folder): Hydra
#: is given "." instead (it would fail with a traceback) and train() refuses the run in one line
_UNCREATABLE: list[str] = []


def _hydra_dir(run_dir: str | None, default: str) -> str:
    _UNCREATABLE.clear()
    if run_dir:
        return "."
    try:
        check_writable(default, "run_dir")
    except UserError:
        _UNCREATABLE.append(default)
        return "."
    return default


OmegaConf.register_new_resolver("vin_hydra_dir", _hydra_dir, replace=True)
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
#: what a previous run leaves in its folder (overwrite=true removes these, and only these)
RUN_ARTEFACTS = rf.ARTEFACTS


class StartError(UserError):
    """A run that cannot start as asked (config, run folder, Hub settings, data, model): the
    Hydra main prints the message alone and exits 1; nothing has been written."""


@dataclass
class TrainingConf(LoopConfig):
    """The ``training`` group: the loop's keys plus what the model set-up and preflight read.
    A key outside it (``+training.max_step=2``) stops the run at start-up, naming it."""

    method: str = "full"  # full | lora | qlora
    optimizer: str = "adamw"
    max_length: int = 64
    image_size: Any = None
    lora: Any = None  # checked by vin_ocr.models.lora.resolve_lora
    merge: bool = True


@dataclass
class TrainConf:
    """The top level of ``train.yaml`` (groups are checked by their own schemas)."""

    model: Any = None
    training: Any = None
    data: Any = None
    hardware: Any = None
    hub: Any = None
    logger: Any = None
    seed: int = 0
    run_dir: str | None = None
    export_onnx: bool = True
    overwrite: bool = False


def check_config(cfg: DictConfig) -> None:
    """Refuse keys the run would silently ignore (``+key=value`` bypasses Hydra's struct mode),
    with the nearest known key as a hint, and values of the wrong type in ``training``."""
    known = [f.name for f in fields(TrainConf)]
    known_training = [f.name for f in fields(TrainingConf)]
    everything = known + [f"training.{k}" for k in known_training]

    def hint(key: str) -> str:
        bare = {k.split(".")[-1].replace("_", ""): k for k in everything}
        near = difflib.get_close_matches(key, everything, n=1)
        near = near or difflib.get_close_matches(key.split(".")[-1].replace("_", ""), bare, n=1)
        near = [bare.get(n, n) for n in near]
        return f" (did you mean {near[0]}?)" if near else ""

    for key in cfg:
        if key not in known:
            raise StartError(f"unknown config key {key!r}{hint(str(key))}")
    training = cfg.get("training") or {}
    for key in training:
        if key not in known_training:
            raise StartError(f"unknown config key 'training.{key}'{hint(f'training.{key}')}")
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.merge(OmegaConf.structured(TrainingConf), training)
    except OmegaConfBaseException as err:
        bad = getattr(err, "full_key", None)
        where = f"training.{bad}" if bad else "training config"
        raise StartError(f"{where}: {str(err).splitlines()[0]}") from None


def check_hub(hub: Any) -> None:
    """``hub.push=true`` needs ``hub.repo_id`` and a token: say so before training, not after
    (:func:`vin_ocr.hub.push.check_push`)."""
    if not hub:
        return
    from vin_ocr.hub.push import HubError, check_push

    try:
        check_push(hub)
    except HubError as err:
        raise StartError(str(err)) from None


def check_run_dir(run_dir: Path, resume: str, overwrite: bool) -> None:
    """A run folder that holds anything needs ``training.resume`` (continue) or
    ``overwrite=true`` (replace the previous run's files); a new one must be writable (it is
    created later, once every input is checked)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise StartError(f"run_dir {run_dir} is a file, not a folder")
    held = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    held = [name for name in held if name != LOG_FILE]  # a run that failed to start logs there
    if held and resume in ("none", "", None) and not overwrite:
        what = (
            "a finished run" if rf.is_finished(run_dir)
            else "an unfinished run's checkpoints" if (run_dir / CHECKPOINTS_DIR).is_dir()
            else f"files ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''})"
        )  # fmt: skip
        raise StartError(
            f"run_dir {run_dir} already holds {what}: training.resume=auto continues it, "
            "overwrite=true replaces it, or choose another run_dir"
        )
    try:  # created once every check passed; its nearest existing folder must take it
        check_writable(run_dir, "run_dir")
    except UserError as err:
        raise StartError(str(err)) from None


def _remove_previous_run(run_dir: Path) -> list[str]:
    removed = []
    for name in RUN_ARTEFACTS:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


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
        if mine and _UNCREATABLE and Path(mine) == Path.cwd():  # see _hydra_dir
            hint = "pass run_dir=DIR, or run from another folder (run_dir=null: runs/ here)"
            try:
                check_writable(_UNCREATABLE[0], "run_dir", hint)
            except UserError as err:
                raise StartError(str(err)) from None
        mine = mine or str(Path("runs") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    shared = [mine]
    if accelerator.num_processes > 1:
        broadcast_object_list(shared, from_process=0)
    return Path(shared[0])


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
    """Compose nothing, read ``cfg``, train, evaluate, save: the whole run as a function.

    Raises :class:`StartError` (nothing written, nothing loaded) when an input is wrong."""
    handler: logging.Handler | None = None
    try:
        start = _start(cfg)
        handler = start.pop("log_handler")
        return _train(cfg, **start)
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _start(cfg: DictConfig) -> dict[str, Any]:
    """Everything checked before the expensive part, in the order a user would fix it."""
    from accelerate import Accelerator

    from vin_ocr.hardware import attn_support, resolve

    check_config(cfg)
    check_hub(cfg.get("hub"))
    try:
        hardware = resolve(cfg.hardware, model_supports=attn_support(cfg.model))
        model_cfg, estimate = _resolve_model(cfg, hardware)
        loop_cfg = LoopConfig.from_mapping(OmegaConf.to_container(cfg.training, resolve=True))
    except (OSError, ValueError) as err:
        raise StartError(str(err)) from None
    loop_cfg.seed = cfg.seed
    accelerator = Accelerator(
        cpu=hardware.device == "cpu",
        mixed_precision=MIXED_PRECISION.get(hardware.dtype, "no"),
        gradient_accumulation_steps=loop_cfg.gradient_accumulation_steps,
    )
    main = accelerator.is_main_process
    run_dir = _run_dir(accelerator, cfg)
    check_run_dir(run_dir, loop_cfg.resume, bool(cfg.get("overwrite")))
    try:  # before any baseline evaluation: a damaged newest checkpoint falls back to the one before
        resume_from = find_resume(run_dir, loop_cfg.resume)
    except (OSError, ValueError) as err:
        raise StartError(str(err)) from None
    try:
        train_data, val_data = build_datasets(cfg.data)
        test_sets = read_test_sets(list(cfg.data.test), train_data)
    except (OSError, ValueError) as err:  # the message names the file, the line and why
        raise StartError(str(err)) from None
    accelerator.wait_for_everyone()
    handler = None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        removed = _remove_previous_run(run_dir) if cfg.get("overwrite") and not resume_from else []
        if resume_from is not None:
            _trim_metrics(run_dir, json.loads((resume_from / STATE_FILE).read_text())["step"])
        handler = logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logging.getLogger().addHandler(handler)
        log.info("run folder: %s", run_dir)
        if removed:
            log.warning("overwrite=true: removed the previous run's %s", ", ".join(removed))
        if resume_from is not None:
            log.info("resuming from %s", resume_from)
        log.info("hardware: %s", hardware.summary())
        log.info("preflight: %s, %.2f GiB estimated", estimate.verdict, estimate.total_gb)
    accelerator.wait_for_everyone()
    loop_cfg.resume = str(resume_from) if resume_from is not None else "none"
    return {
        "hardware": hardware, "model_cfg": model_cfg, "estimate": estimate, "loop_cfg": loop_cfg,
        "accelerator": accelerator, "run_dir": run_dir, "train_data": train_data,
        "val_data": val_data, "test_sets": {_label(n): p for n, p in test_sets.items()},
        "resumed": resume_from is not None, "log_handler": handler,
    }  # fmt: skip


def _trim_metrics(run_dir: Path, step: int) -> None:
    """Drop metrics.jsonl rows logged after the checkpoint a run resumes from (they are logged
    again), so the file reads as an uninterrupted run's."""
    path = run_dir / rf.METRICS_FILE
    if path.is_file():
        kept = []
        for row in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(row).get("step", 0) <= step:
                    kept.append(row)
            except ValueError:  # a line cut short by the kill
                continue
        atomic_write_text(path, "".join(r + "\n" for r in kept))


def _read_report(path: Path) -> dict[str, Any] | None:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report if all(k in report for k in HEADLINE) else None


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


def _train(
    cfg: DictConfig,
    hardware: Any,
    model_cfg: DictConfig,
    estimate: Any,
    loop_cfg: LoopConfig,
    accelerator: Any,
    run_dir: Path,
    train_data: Any,
    val_data: Any,
    test_sets: dict[str, Path],
    resumed: bool,
) -> RunResult:
    from accelerate.utils import set_seed

    from vin_ocr.models.registry import get_family

    main = accelerator.is_main_process
    set_seed(cfg.seed)
    try:
        model_cfg = _method_into_model(model_cfg, cfg.training.method)
        family = get_family(model_cfg.family, model_cfg)
        lora = _lora_settings(family, model_cfg, cfg.training)  # a misplaced key fails here
    except (KeyError, ValueError) as err:
        raise StartError(str(err).strip("'\"")) from None
    model, processor = _build_model(family, model_cfg, hardware)
    if main:
        atomic_write_text(run_dir / rf.CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    logger = build_logger(cfg.get("logger"), run_dir, main)  # main process only
    logger.start(OmegaConf.to_container(cfg, resolve=True), hardware.to_dict())
    if lora is not None and "finetune" not in model_cfg:  # PP-OCR applies it in build
        from vin_ocr.models.lora import apply_lora

        model = apply_lora(model, lora)
    baselines: dict[str, dict[str, Any]] = {}
    if main:  # the test sets read by the model before any training, through the same harness
        for label, manifest in test_sets.items():
            out_dir = run_dir / rf.BASELINE_DIR / label
            done = out_dir / "report.json"
            report = _read_report(done) if resumed else None  # from before the kill
            if report is None:
                name, batch = f"{model_cfg.name}:pretrained", loop_cfg.eval_batch_size
                report = _test_eval(family, model, manifest, out_dir, name, batch)
            baselines[label] = {k: report[k] for k in HEADLINE}
    history_path = run_dir / rf.METRICS_FILE

    def on_log(values: dict[str, Any], step: int) -> None:
        with history_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        logger.log(values, step)

    t0 = time.perf_counter()
    result = fit(family, model, train_data, val_data, loop_cfg, run_dir, accelerator, on_log=on_log)
    train_s = time.perf_counter() - t0
    model = accelerator.unwrap_model(model)
    if result.best_weights is not None:  # the best step's weights (from the checkpoint on resume)
        unexpected = model.load_state_dict(result.best_weights, strict=False).unexpected_keys
        if unexpected:
            raise RuntimeError(f"best weights with keys the model lacks: {unexpected[:3]}")
    out = RunResult(run_dir=run_dir)
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
    if result.beat_baseline is False and main and not result.stopped_early:
        log.warning(
            "no trained step beat the untrained model on validation (exact match, then CER): "
            "model/ holds the step-0 weights; train longer or check the data and learning rate"
        )
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
        out.artefacts["onnx"] = run_dir / rf.ONNX_FILE
        out.metrics["onnx_max_abs_diff"] = export(model, out.artefacts["onnx"])

    for label, manifest in test_sets.items():
        report = _test_eval(family, model, manifest, run_dir / rf.EVAL_DIR / label,
                            f"{model_cfg.name}:finetuned", loop_cfg.eval_batch_size)  # fmt: skip
        out.metrics[f"test/{label}"] = {k: report[k] for k in HEADLINE}
        out.metrics[f"test/{label}_baseline"] = baselines[label]
        out.artefacts[f"eval/{label}"] = run_dir / rf.EVAL_DIR / label
        logger.log_eval(label, report, worst_predictions(report))
    adapter = out.artefacts["model"] / rf.ADAPTER_DIR
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
    out.artefacts["run"] = rf.write_info(run_dir, info)
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
    from vin_ocr.evaluation.evaluate import check_labels, run_eval

    engine = FamilyEngine(family, model, name=name)
    samples, labels = check_labels(read_manifest(manifest), manifest)  # as the eval CLI does
    return run_eval(engine, samples, out, manifest=manifest, labels=labels,
                    batch_size=batch_size, progress=False)  # fmt: skip


def _data_share(data: DictConfig, train_data: Any, val_data: Any) -> dict[str, int]:
    """Training samples per epoch, real vs synthetic (the model card shows the share)."""
    synth = int(data.synth_train or 0)
    return {"real_train": len(train_data) - synth, "synthetic_train": synth, "val": len(val_data)}


def _label(test_name: str) -> str:
    return test_name if test_name in ("samples", "real") else Path(test_name).stem


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
    with exit_on_user_error(StartError):  # bad input: the message, no trace, nothing written
        train(cfg)


if __name__ == "__main__":
    register_configs()  # every Hydra schema, before main() composes
    main()
