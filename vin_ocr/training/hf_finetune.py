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

import hydra
from omegaconf import DictConfig

import vin_ocr
import vin_ocr.hardware  # configure_platform() before torch is imported
from vin_ocr.config import register_configs
from vin_ocr.errors import exit_on_user_error
from vin_ocr.hardware import PreflightError
from vin_ocr.training.loop import fit
from vin_ocr.training.start import (
    MIXED_PRECISION,
    RUN_ARTEFACTS,
    StartError,
    TrainConf,
    TrainingConf,
    check_config,
    check_hub,
    check_run_dir,
)
from vin_ocr.training.train import HEADLINE, RunResult, save_model, train

__all__ = ["HEADLINE", "MIXED_PRECISION", "RUN_ARTEFACTS", "RunResult", "StartError", "TrainConf",
           "TrainingConf", "check_config", "check_hub", "check_run_dir", "fit", "main",
           "save_model", "train"]  # fmt: skip


@hydra.main(config_path=str(vin_ocr.CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # bad input, or a run the preflight says does not fit: the message, no trace, nothing written
    with exit_on_user_error(StartError, PreflightError):
        train(cfg)


if __name__ == "__main__":
    register_configs()  # every Hydra schema, before main() composes
    main()
