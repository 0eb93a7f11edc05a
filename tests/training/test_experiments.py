"""Every ``configs/experiment/*.yaml`` composes, sets only keys that exist, passes the preflight on
the hardware it is sized for, and trains two steps (``debug=smoke``) on its tiny model; QLoRA on a
CPU stops at start-up with the reason. Plus the one LoRA rule (vin_ocr.models.lora.resolve_lora).

A new experiment file is picked up by these tests with no edit here.
"""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import vin_ocr
import vin_ocr.training.hf_finetune  # registers the config schemas
from vin_ocr.models.lora import resolve_lora

EXPERIMENT_DIR = vin_ocr.CONFIG_DIR / "experiment"
EXPERIMENTS = sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))
TINY = ["model.tiny=true", "hardware.device=cpu"]
GROUPS = ("model", "training", "data")


def _cfg(overrides, hydra=False):
    with initialize_config_dir(str(vin_ocr.CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=hydra)


def _leaves(node, prefix=""):
    """(dotted key, value) of every leaf of a plain dict."""
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _gpu_probe(total_gb: float):
    from vin_ocr.hardware import DeviceInfo, Probe

    gpu = DeviceInfo(0, "a 24 GB GPU", total_gb, total_gb - 0.5, (8, 9), bf16=True)
    return Probe("linux", "x86_64", "2.14.1", "12.8", True, False, False, (gpu,), 64, 60, 16)


def _cpu_probe(ram_gb: float):
    from vin_ocr.hardware import Probe

    return Probe("linux", "x86_64", "2.14.1", None, False, False, False, (), ram_gb, ram_gb, 4)


def test_there_are_experiments():
    assert {"pp_ocr_full", "pp_ocr_lora", "lfm2_5_vl_lora", "deepseek_ocr2_qlora"} <= set(
        EXPERIMENTS
    )


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_sets_only_existing_keys(name):
    path = EXPERIMENT_DIR / f"{name}.yaml"
    assert path.read_text().startswith("# @package _global_\n"), path
    cfg = _cfg([f"experiment={name}"], hydra=True)
    choices = {g: cfg.hydra.runtime.choices[g] for g in GROUPS}
    base = _cfg([f"{g}={c}" for g, c in choices.items()])  # the same groups, no experiment
    own = OmegaConf.to_container(OmegaConf.load(path))
    own.pop("defaults", None)
    for key, value in _leaves(own):
        # a key the base lacks is a typo nobody reads; a value that did not win (train.yaml's
        # _self_ comes last) would be silently ignored
        assert OmegaConf.select(base, key, default="<absent>") != "<absent>", f"{path}: {key}"
        assert OmegaConf.select(cfg, key) == value, f"{path}: {key} is overridden after it"
    if cfg.training.method in ("lora", "qlora"):  # its LoRA keys are where they belong
        from vin_ocr.models.registry import get_family

        family = get_family(cfg.model.family, cfg.model)
        settings = family.lora_settings(cfg.training.lora, cfg.model.lora)
        assert (settings.r, settings.alpha) == (cfg.training.lora.r, cfg.training.lora.alpha)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_preflight_accepts_experiment_on_its_hardware(name):
    """Recipes of families that run on a CPU (``FamilyFacts.cpu_inference``: PP-OCR) fit one
    with 8 GiB of RAM; every recipe fits one 24 GB GPU; QLoRA on a CPU is refused naming CUDA."""
    from vin_ocr.hardware import PreflightError, preflight, resolve
    from vin_ocr.models.registry import facts

    cfg = _cfg([f"experiment={name}"])
    targets = [("cuda", _gpu_probe(24.0))]
    if facts(cfg.model.family).cpu_inference:
        targets.append(("cpu", _cpu_probe(8.0)))
    for device, probe in targets:
        hardware = resolve({"device": device}, probe=probe)
        estimate = preflight(cfg.model, cfg.training, hardware, force=False)
        assert estimate.ok, (name, device, estimate.report())
    if cfg.training.method == "qlora":
        with pytest.raises(PreflightError, match="QLoRA 4-bit needs bitsandbytes on a CUDA GPU"):
            preflight(cfg.model, cfg.training, resolve({"device": "cpu"}, probe=_cpu_probe(64.0)))


@pytest.fixture(scope="module")
def user_manifests(tmp_path_factory):
    """train/val manifests of bundled line crops (different VINs), for data=user experiments."""
    from vin_ocr.data.sample import read_manifest, write_manifest

    lines = [s for s in read_manifest(vin_ocr.SAMPLES_DIR / "manifest.jsonl") if s.crop]
    folder = tmp_path_factory.mktemp("user")
    return (
        write_manifest(lines[:4], folder / "train.jsonl"),
        write_manifest(lines[4:6], folder / "val.jsonl"),
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_trains_two_steps(name, tmp_path, user_manifests):
    from vin_ocr.training.hf_finetune import train

    run = tmp_path / "run"
    overrides = [
        f"experiment={name}", "debug=smoke", *TINY, f"run_dir={run}", "data.test=[]",
        "export_onnx=false", "training.num_workers=0",
    ]  # fmt: skip
    if "qlora" not in _cfg([f"experiment={name}"]).training.method:
        # the preflight sizes the real checkpoint, not the tiny model (tested above): skip it
        overrides.append("hardware.force=true")
    cfg = _cfg(overrides)
    if cfg.data.get("synth_val") == 0:  # data=user: smoke empties data.train/val, give them back
        train_m, val_m = user_manifests
        cfg = _cfg([*overrides, f"data.train={train_m}", f"data.val={val_m}"])
    if cfg.training.method == "qlora":  # CUDA only: stops before any model is built
        with pytest.raises(RuntimeError, match="QLoRA 4-bit needs bitsandbytes on a CUDA GPU"):
            train(cfg)
        assert not (run / "model").exists()
        return
    result = train(cfg)
    assert result.metrics["train"]["steps"] == 2
    assert (run / "model").is_dir() and (run / "run.json").is_file()
    if cfg.training.method == "lora":  # training.lora reached the adapters, whatever the family
        adapter = json.loads((run / "model" / "adapter" / "adapter_config.json").read_text())
        assert (adapter["r"], adapter["lora_alpha"]) == (
            cfg.training.lora.r, cfg.training.lora.alpha,
        )  # fmt: skip


# -- the one LoRA rule ---------------------------------------------------------------------------


def test_lora_targets_precedence_training_over_model_over_family():
    family = {"target_modules": "family-regex", "scope": "model.language_model"}
    assert resolve_lora(family).target_modules == "family-regex"
    assert resolve_lora(family, {"target_modules": ["w1"]}).target_modules == ["w1"]
    both = resolve_lora(family, {"target_modules": ["w1"]}, {"target_modules": ["q_proj"]})
    assert both.target_modules == ["q_proj"]
    # null and all-linear in either layer mean "not set here": the next layer down decides
    for unset in (None, "all-linear"):
        s = resolve_lora(family, {"target_modules": ["w1"]}, {"target_modules": unset})
        assert s.target_modules == ["w1"]
        assert resolve_lora(family, {"target_modules": unset}).target_modules == "family-regex"
    s = resolve_lora(family, {"target_parameters": ["mlp.experts.down_proj"]}, {"dropout": 0.0})
    assert (s.target_parameters, s.dropout) == (["mlp.experts.down_proj"], 0.0)


def test_lora_size_comes_from_training_only():
    s = resolve_lora({"target_modules": "x"}, {}, {"r": 4, "alpha": 8, "dropout": 0.1})
    assert (s.r, s.alpha, s.dropout) == (4, 8, 0.1)
    assert (resolve_lora({"target_modules": "x"}).r, resolve_lora({}).alpha) == (16, 32)


@pytest.mark.parametrize(
    ("model", "training", "message"),
    [
        ({"r": 8}, None, r"model\.lora\.r: .*set training\.lora\.r"),
        ({"dropout": 0}, None, r"model\.lora\.dropout: .*training\.lora\.dropout"),
        (None, {"scope": "model"}, r"training\.lora\.scope: .*set model\.lora\.scope"),
        (None, {"rank": 8}, r"training\.lora\.rank: .*known: r, alpha"),
        ({"target_module": "x"}, None, r"model\.lora\.target_module: .*known: target_modules"),
    ],
)
def test_misplaced_or_unknown_lora_key_fails_naming_it(model, training, message):
    with pytest.raises(ValueError, match=message):
        resolve_lora({"target_modules": "x"}, model, training)


def _lora_model_configs() -> list[str]:
    """Every model config whose family is registered and fine-tunes with LoRA."""
    from vin_ocr.models.base import Lora
    from vin_ocr.models.registry import FAMILIES, supports

    names = []
    for path in sorted((vin_ocr.CONFIG_DIR / "model").glob("*.yaml")):
        family = OmegaConf.load(path).get("family")
        if family in FAMILIES and supports(family, Lora):
            names.append(path.stem)
    return names


@pytest.mark.parametrize("name", _lora_model_configs())
def test_model_configs_hold_only_where_adapters_go(name):
    """Each family's YAML resolves with training=lora to the family's default targets, and
    training.lora.target_modules overrides them when set."""
    from vin_ocr.models.registry import get_family

    cfg = _cfg([f"model={name}", "training=lora"])
    family = get_family(cfg.model.family, cfg.model)
    default = family.lora_settings(None, {}).target_modules  # no config layer: the family's own
    settings = family.lora_settings(cfg.training.lora, cfg.model.lora)
    assert settings.target_modules == default and settings.r == cfg.training.lora.r == 16
    cfg = _cfg([f"model={name}", "training=lora", "training.lora.target_modules=[q_proj]"])
    assert family.lora_settings(cfg.training.lora, cfg.model.lora).target_modules == ["q_proj"]


def test_mistyped_training_lora_key_fails_at_compose():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="rank"):
        _cfg(["training=lora", "training.lora.rank=4"])


def test_train_refuses_a_misplaced_lora_key_before_building(tmp_path):
    from vin_ocr.training.hf_finetune import train

    cfg = _cfg(["model=lfm2_vl_450m", "training=lora", *TINY, "debug=smoke", "+model.lora.r=8",
                f"run_dir={tmp_path / 'run'}"])  # fmt: skip
    with pytest.raises(ValueError, match=r"model\.lora\.r: .*training\.lora\.r"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()
