"""A family is its module, its model config and one registry call: the toy family of
``toy_family.py`` goes through ``debug=smoke`` training (LoRA, merge, evaluation), the preflight,
the model card and the Space export with no other file knowing it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard, SpaceCard
from hydra import compose, initialize_config_dir

import vin_ocr
from vin_ocr.data.sample import read_manifest, write_manifest

TOY_YAML = "name: toy\nfamily: toy\ncheckpoint: none\ntiny: true\n"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy family registered (one registry call); its model config in a config folder of
    its own (``model=toy`` once on Hydra's search path, see :func:`_compose`), checked against
    the schema of the keys it declares, as every model file is (:mod:`vin_ocr.config`)."""
    from hydra.core.config_store import ConfigStore

    from vin_ocr.config import model_schema, register_configs
    from vin_ocr.models import registry

    configs = tmp_path_factory.mktemp("toy_configs")
    (configs / "model").mkdir()
    (configs / "model" / "toy.yaml").write_text(TOY_YAML)
    register_configs()
    store = ConfigStore.instance()
    store.store(group="model_schema", name="toy", node=model_schema(configs / "model" / "toy.yaml"))
    here = str(Path(__file__).parent)
    sys.path.insert(0, here)
    registry.register("toy", "toy_family:ToyFamily")
    try:
        yield configs
    finally:
        registry.unregister("toy")
        store.repo["model_schema"].pop("toy.yaml", None)
        sys.path.remove(here)


def _compose(configs: Path, name: str, *overrides: str):
    """``name`` composed from the project's configs, with ``configs`` on the search path."""
    with initialize_config_dir(str(vin_ocr.CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=[f"hydra.searchpath=[file://{configs}]", *overrides])


@pytest.fixture(scope="module")
def toy_run(toy, tmp_path_factory):
    """A real ``debug=smoke`` LoRA run of the toy family, tested on 6 bundled line crops."""
    import vin_ocr.training.hf_finetune as hf

    root = tmp_path_factory.mktemp("toy")
    crops = [s for s in read_manifest(vin_ocr.SAMPLES_DIR / "manifest.jsonl") if s.crop][:6]
    test = write_manifest(crops, root / "crops.jsonl")
    cfg = _compose(
        toy, "train", "model=toy", "training=lora", "hardware.device=cpu", "debug=smoke",
        "training.num_workers=0", f"run_dir={root / 'run'}", f"data.test=[{test}]",
    )  # fmt: skip
    return hf.train(cfg)


def test_registration_checks_the_class_once(toy):
    from vin_ocr.models.base import ExportsOnnx, Logits, Lora, Reads
    from vin_ocr.models.registry import register, registered, supports

    assert registered("toy").capabilities == {Lora, Logits}
    assert supports("toy", Lora) and not supports("toy", Reads)
    assert not supports("toy", ExportsOnnx)
    register("toy_broken", "toy_family:ToyModel")  # not a family class
    try:
        with pytest.raises(TypeError, match="toy_broken"):
            registered("toy_broken")
    finally:
        from vin_ocr.models.registry import unregister

        unregister("toy_broken")


def test_smoke_training_merges_evaluates_and_writes_the_card(toy_run):
    run = toy_run.run_dir
    info = json.loads((run / "run.json").read_text())
    assert info["family"] == "toy" and info["model"]["name"] == "toy"
    assert info["merge"]["verification"]["predictions_identical"]  # merged = adapter's outputs
    assert (run / "model" / "adapter").is_dir() and (run / "model" / "model.safetensors").is_file()
    assert toy_run.metrics["train"]["steps"] == 2
    assert 0.0 <= toy_run.metrics["test/crops"]["exact_match"] <= 1.0
    assert info["preflight"]["model"] == "toy" and info["preflight"]["param_source"] == (
        "the toy's own count"
    )
    card = ModelCard.load(run / "README.md")
    assert card.data.pipeline_tag == "image-classification"  # the toy's own fact
    assert "toy" in card.data.tags and "(family `toy`" in card.text


def test_preflight_reads_the_toy_spec(toy):
    from vin_ocr.hardware import AttnSupport, Probe, attn_support, model_spec, preflight, resolve
    from vin_ocr.hardware.__main__ import run

    cfg = _compose(toy, "preflight", "model=toy", "training=lora")
    spec = model_spec(cfg.model)
    from toy_family import ToyConfig, ToyModel

    assert spec.params == sum(p.numel() for p in ToyModel(ToyConfig()).parameters())
    probe = Probe(
        platform="linux", machine="x86_64", torch_version=torch.__version__,
        torch_cuda_version=None, cuda_available=False, mps_built=False, mps_available=False,
        devices=(), ram_total_gb=8.0, ram_available_gb=8.0, cpu_count=2,
    )  # fmt: skip
    est = preflight(cfg.model, cfg.training, resolve({"device": "cpu"}, probe))
    assert est.verdict == "fits" and est.activations_gb > 0 and est.trainable > 0
    text, code = run(cfg, probe)
    assert code == 0 and "Preflight: toy, lora on cpu" in text and "the toy's own count" in text
    assert attn_support(cfg.model) == AttnSupport(flash_attention_2=False, sdpa=False)


def test_space_export_of_the_toy_run(toy_run, tmp_path):
    from vin_ocr.app.export_space import export_space
    from vin_ocr.config import register_configs

    register_configs()
    out = tmp_path / "space"
    with initialize_config_dir(str(vin_ocr.CONFIG_DIR / "app"), version_base="1.3"):
        cfg = compose("space", overrides=[f"out={out}", f"model={toy_run.run_dir}"])
    result = export_space(cfg)
    assert result.hardware == "cpu-basic" and "CPU is enough" in result.why  # cpu_inference
    assert SpaceCard.load(out / "README.md").data.suggested_hardware == "cpu-basic"
    assert (out / "run" / "run.json").is_file()
