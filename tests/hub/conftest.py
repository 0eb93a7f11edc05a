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


def train_run(root, name: str, *overrides: str):
    """A real 2-step run of PP-OCRv6-small, evaluated on 12 bundled line crops; (run, result)."""
    from vin_ocr.training.hf_finetune import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    crops = [s for s in read_manifest(vin_ocr.SAMPLES_DIR / "manifest.jsonl") if s.crop][:12]
    test = write_manifest(crops, root / "crops.jsonl")
    run = root / name
    try:
        with initialize_config_dir(str(vin_ocr.CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[*RUN, f"run_dir={run}", f"data.test=[{test}]",
                                              *overrides])  # fmt: skip
            result = train(cfg)
    finally:
        torch.set_num_threads(threads)
    return run, result


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("hub"), "vin-run")[0]


@pytest.fixture(scope="session")
def full_run(tmp_path_factory):
    """The same, fully fine-tuned (no LoRA): model/ holds every weight, no adapter."""
    return train_run(tmp_path_factory.mktemp("hub_full"), "vin-full", "training=full")[0]


@pytest.fixture
def make_run():
    """:func:`train_run`, for tests that train with their own overrides."""
    return train_run
