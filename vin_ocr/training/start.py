"""The start of a training run: the ``train.yaml`` schemas and every check made before anything
expensive (config keys, Hub settings, hardware and preflight, run folder, checkpoint to resume,
data), then the run folder created and the run's log file opened. A wrong input raises
:class:`StartError` with one line saying what and where; nothing has been written or loaded.
"""

from __future__ import annotations

import difflib
import json
import logging
import shutil
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vin_ocr import run_folder as rf
from vin_ocr.data.sample import atomic_write_text
from vin_ocr.errors import UserError, check_writable
from vin_ocr.run_folder import CHECKPOINTS_DIR, LOG_FILE
from vin_ocr.training.data import build_datasets, read_test_sets
from vin_ocr.training.loop import AUTOCAST, STATE_FILE, LoopConfig, find_resume

log = logging.getLogger(__name__)
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
#: what a previous run leaves in its folder (overwrite=true removes these, and only these)
RUN_ARTEFACTS = rf.ARTEFACTS
MIXED_PRECISION = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}
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
    autocast = training.get("autocast", "none")
    if autocast not in AUTOCAST:
        raise StartError(f"training.autocast={autocast!r}; known: {', '.join(AUTOCAST)}")


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


def remove_previous_run(run_dir: Path) -> list[str]:
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


def _run_dir(accelerator: Any, cfg: DictConfig) -> Path:
    """The main process's run folder, shared with every process."""
    from accelerate.utils import broadcast_object_list

    mine: str | None
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


@dataclass
class Start:
    """What :func:`start_run` checked and set up, for the stages of :func:`train`."""

    hardware: Any
    model_cfg: DictConfig
    estimate: Any
    loop_cfg: LoopConfig
    accelerator: Any
    run_dir: Path
    train_data: Any
    val_data: Any
    test_sets: dict[str, Path]
    resumed: bool
    log_handler: logging.Handler | None = None


def start_run(cfg: DictConfig) -> Start:
    """Everything checked before the expensive part, in the order a user would fix it; then the
    run folder is created (main process) and the run logs into it."""
    from accelerate import Accelerator

    from vin_ocr.hardware import attn_support, resolve

    check_config(cfg)
    check_hub(cfg.get("hub"))
    try:
        hardware = resolve(cfg.hardware, model_supports=attn_support(cfg.model))
        model_cfg, estimate = _resolve_model(cfg, hardware)
        training: Any = OmegaConf.to_container(cfg.training, resolve=True)
        loop_cfg = LoopConfig.from_mapping(training)
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
        removed = remove_previous_run(run_dir) if cfg.get("overwrite") and not resume_from else []
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
    test_sets = {_label(n): p for n, p in test_sets.items()}
    return Start(hardware, model_cfg, estimate, loop_cfg, accelerator, run_dir, train_data,
                 val_data, test_sets, resume_from is not None, handler)  # fmt: skip


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


def _label(test_name: str) -> str:
    return test_name if test_name in ("samples", "real") else Path(test_name).stem
