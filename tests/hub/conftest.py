"""One real training run shared by the hub and card tests: PP-OCRv6-small (from the rapidocr
wheel), LoRA, 2 steps, evaluated on 12 bundled line crops: its figures are the real evaluation
reports of a real model (~11 s of CPU)."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

import vin_ocr
from vin_ocr.data.sample import read_manifest, write_manifest

RUN = [
    "training=lora", "hardware.device=cpu", "debug=smoke", "export_onnx=false",
    "training.num_workers=0",
]  # fmt: skip


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    from vin_ocr.training.hf_finetune import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hub")
    crops = [s for s in read_manifest(vin_ocr.SAMPLES_DIR / "manifest.jsonl") if s.crop][:12]
    test = write_manifest(crops, root / "crops.jsonl")
    run = root / "vin-run"
    try:
        with initialize_config_dir(str(vin_ocr.CONFIG_DIR), version_base="1.3"):
            train(compose("train", overrides=[*RUN, f"run_dir={run}", f"data.test=[{test}]"]))
    finally:
        torch.set_num_threads(threads)
    return run
