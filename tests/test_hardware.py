"""Hardware choices on fake machines, and the preflight numbers on models of known size."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

import vin_ocr
from vin_ocr.hardware import (
    AttnSupport,
    DeviceInfo,
    Estimate,
    FlashAttnInfo,
    HardwareError,
    PreflightError,
    Probe,
    TrainingSpec,
    activation_bytes,
    attn_support,
    configure_platform,
    detect,
    detect_flash_attn,
    estimate,
    model_spec,
    pick_auto,
    preflight,
    resolve,
)
from vin_ocr.hardware.__main__ import run
from vin_ocr.hardware.estimate import GIB, NF4_BYTES, OVERHEAD_GB, auto_order, load_model_cfg
from vin_ocr.models.lfm2_vl import lfm2_vl_spec, tiny_config

A100 = DeviceInfo(0, "NVIDIA A100-SXM4-80GB", 80.0, 79.0, (8, 0), bf16=True)
T4 = DeviceInfo(0, "Tesla T4", 15.0, 14.5, (7, 5), bf16=False)
REAL_FA = FlashAttnInfo("real", "2.7.4")
STUB_FA = FlashAttnInfo("stub", "0.0.0+vinocr.stub")


def probe(kind: str = "cpu", gpu: DeviceInfo = A100, ram: float = 24.0, **kw) -> Probe:
    """A fake machine: cpu, cuda (with ``gpu``) or mps."""
    base = dict(
        platform="linux",
        machine="x86_64",
        torch_version="2.14.1",
        torch_cuda_version=None,
        cuda_available=False,
        mps_built=False,
        mps_available=False,
        devices=(),
        ram_total_gb=ram,
        ram_available_gb=ram,
        cpu_count=8,
    )
    if kind == "cuda":
        base.update(torch_cuda_version="13.0", cuda_available=True, devices=(gpu,))
    elif kind == "mps":
        mps = DeviceInfo(0, "Apple arm64 (MPS)", 12.0, 12.0, None, bf16=kw.pop("bf16", True))
        base.update(platform="darwin", machine="arm64", mps_built=True, mps_available=True)
        base.update(devices=(mps,))
    base.update(kw)
    return Probe(**base)


# --- device / dtype / attention -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        (probe("cpu"), ("cpu", "fp32", "sdpa")),
        (probe("cuda", flash_attn=REAL_FA), ("cuda", "bf16", "flash_attention_2")),
        (probe("cuda"), ("cuda", "bf16", "sdpa")),  # flash-attn not installed
        (probe("cuda", flash_attn=STUB_FA), ("cuda", "bf16", "sdpa")),
        (probe("cuda", gpu=T4, flash_attn=REAL_FA), ("cuda", "fp16", "sdpa")),  # pre-Ampere
        (probe("mps"), ("mps", "bf16", "sdpa")),
        (probe("mps", bf16=False), ("mps", "fp16", "sdpa")),
        (probe("mps", flash_attn=REAL_FA), ("mps", "bf16", "sdpa")),  # flash is CUDA only
    ],
)
def test_auto_choices(machine, expected):
    hw = resolve(None, machine)
    assert (hw.device, hw.dtype, hw.attn_implementation) == expected
    assert len(hw.reasons) == 3


def test_cuda_wins_over_mps_and_eager_when_the_model_has_no_sdpa():
    both = dataclasses.replace(probe("cuda"), mps_built=True, mps_available=True)
    assert resolve(None, both).device == "cuda"
    hw = resolve(None, probe("cpu"), AttnSupport(flash_attention_2=False, sdpa=False))
    assert hw.attn_implementation == "eager"
    no_sdpa = AttnSupport(flash_attention_2=True, sdpa=False)
    assert resolve(None, probe("cuda", flash_attn=REAL_FA), no_sdpa).attn_implementation == (
        "flash_attention_2"
    )


@pytest.mark.parametrize("amx", [True, False])
def test_cpu_stays_fp32_and_names_bf16_when_the_cpu_has_amx(amx):
    hw = resolve(None, probe("cpu", cpu_amx=amx))
    assert hw.dtype == "fp32"
    assert ("hardware.dtype=bf16 runs LoRA" in hw.reasons[1]) == amx
    assert resolve({"dtype": "bf16"}, probe("cpu", cpu_amx=amx)).dtype == "bf16"


@pytest.mark.parametrize(
    ("machine", "cfg"),
    [
        (probe("cpu"), {"device": "cpu", "dtype": "bf16", "attn_implementation": "eager"}),
        (probe("cuda"), {"device": "cpu"}),
        (probe("cuda", gpu=T4), {"dtype": "fp32"}),
        (probe("cuda", flash_attn=REAL_FA), {"dtype": "fp16"}),
    ],
)
def test_forced_choices_are_kept(machine, cfg):
    hw = resolve(cfg, machine)
    for key, value in cfg.items():
        assert getattr(hw, key) == value
    assert any("forced" in r for r in hw.reasons)


@pytest.mark.parametrize(
    ("machine", "cfg", "message"),
    [
        (
            probe("cpu"),
            {"device": "cuda"},
            "hardware.device=cuda was asked for, but torch.cuda.is_available() is False "
            "(torch 2.14.1 is built without CUDA)",
        ),
        (
            probe("cpu", torch_cuda_version="13.0"),
            {"device": "cuda"},
            "built for CUDA 13.0, but no GPU or driver is visible",
        ),
        (probe("cpu"), {"device": "mps"}, "this is not macOS on Apple silicon"),
        (probe("cuda", gpu=T4), {"dtype": "bf16"}, "compute capability 7.5) has no bf16"),
        (probe("mps", bf16=False), {"dtype": "bf16"}, "bf16 on MPS needs macOS 14+"),
        (probe("cuda", flash_attn=STUB_FA), {"attn_implementation": "flash_attention_2"}, "stub"),
        (
            probe("cuda"),
            {"attn_implementation": "flash_attention_2"},
            "flash_attn is not installed",
        ),
        (
            probe("cuda", flash_attn=REAL_FA),
            {"attn_implementation": "flash_attention_2", "dtype": "fp32"},
            "needs fp16 or bf16",
        ),
        (
            probe("cuda", gpu=T4, flash_attn=REAL_FA),
            {"attn_implementation": "flash_attention_2", "dtype": "fp16"},
            "Ampere or newer GPU (8.0+); Tesla T4 is 7.5",
        ),
        (
            probe("cpu", flash_attn=REAL_FA),
            {"attn_implementation": "flash_attention_2"},
            "runs on CUDA only",
        ),
        (
            probe("cuda", flash_attn=FlashAttnInfo("broken", None, "undefined symbol")),
            {"attn_implementation": "flash_attention_2"},
            "does not import (undefined symbol)",
        ),
        (probe("cpu"), {"device": "cdua"}, "hardware.device='cdua' is not one of auto, cuda"),
    ],
)
def test_impossible_forced_choices_fail_with_the_reason(machine, cfg, message):
    with pytest.raises(HardwareError) as info:
        resolve(cfg, machine)
    assert message in str(info.value)


def test_forced_sdpa_on_a_model_without_it_fails():
    with pytest.raises(HardwareError, match="does not implement sdpa"):
        resolve({"attn_implementation": "sdpa"}, probe(), AttnSupport(sdpa=False))


def test_hardware_object_is_frozen_and_serialisable():
    hw = resolve(None, probe("cuda", flash_attn=REAL_FA))
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.dtype = "fp32"  # type: ignore[misc]
    data = json.loads(json.dumps(hw.to_dict()))
    assert data["devices"][0]["capability"] == [8, 0]
    assert hw.torch_dtype is torch.bfloat16
    assert "A100" in hw.summary() and "flash_attention_2" in hw.summary()
    assert hw.memory_gb == A100.free_gb


def test_detect_this_machine_agrees_with_torch():
    machine = detect()
    assert machine.cuda_available == torch.cuda.is_available()
    assert machine.cpu_count >= 1 and 0 < machine.ram_available_gb <= machine.ram_total_gb
    hw = resolve(None, machine)
    if torch.cuda.is_available():
        assert hw.device == "cuda"
    else:
        mps = getattr(torch.backends, "mps", None)
        assert hw.device == ("mps" if mps is not None and mps.is_available() else "cpu")
        assert hw.device != "cpu" or hw.dtype == "fp32"  # CPU training runs in fp32


def test_kmp_duplicate_lib_ok_only_on_macos(monkeypatch):
    monkeypatch.delenv("KMP_DUPLICATE_LIB_OK", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    configure_platform()
    assert "KMP_DUPLICATE_LIB_OK" not in os.environ
    monkeypatch.setattr(sys, "platform", "darwin")
    configure_platform()
    assert os.environ["KMP_DUPLICATE_LIB_OK"] == "TRUE"
    monkeypatch.setenv("KMP_DUPLICATE_LIB_OK", "FALSE")  # a user's own value is kept
    configure_platform()
    assert os.environ["KMP_DUPLICATE_LIB_OK"] == "FALSE"


@pytest.mark.parametrize(
    ("source", "status"),
    [
        (None, "absent"),
        ("__version__ = '2.7.4'\n", "real"),
        ("__version__ = '2.0.4'\n", "too_old"),
        ("raise ImportError('undefined symbol: _ZN3c10')\n", "broken"),
        ("__version__ = '0.0.0+vinocr.stub'\n__vin_ocr_stub__ = True\n", "stub"),
    ],
)
def test_detect_flash_attn(tmp_path, monkeypatch, source, status):
    for name in [m for m in sys.modules if m.split(".")[0] == "flash_attn"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "flash_attn_stub" not in p])
    if source is not None:
        (tmp_path / "flash_attn").mkdir()
        (tmp_path / "flash_attn" / "__init__.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
    info = detect_flash_attn()
    sys.modules.pop("flash_attn", None)
    assert info.status == status
    if status == "broken":
        assert "undefined symbol" in info.detail


# --- the estimate on a tiny model of known size -------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    """A tiny LFM2-VL built for real on CPU (as in offline-models.md) and its spec."""
    from transformers import Lfm2VlForConditionalGeneration

    config = tiny_config(vocab_size=100)
    torch.manual_seed(0)
    model = Lfm2VlForConditionalGeneration(config)
    spec = lfm2_vl_spec("tiny", "tiny", config, source="test")
    return model, config, spec


def cpu_hw(ram: float = 24.0, **cfg):
    return resolve(cfg, probe("cpu", ram=ram))


def test_parameter_count_is_exact(tiny):
    model, _, spec = tiny
    assert spec.params == sum(p.numel() for p in model.parameters())
    linear = sum(
        m.weight.numel()
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and n != "lm_head"
    )
    assert spec.quantizable_params == linear


@pytest.mark.parametrize("targets", ["all-linear", ["q_proj", "v_proj"], r".*language_model.*w1"])
def test_lora_trainable_count_matches_peft(tiny, targets):
    from peft import LoraConfig, get_peft_model
    from transformers import Lfm2VlForConditionalGeneration

    _, config, spec = tiny
    fresh = Lfm2VlForConditionalGeneration(config)
    peft_model = get_peft_model(fresh, LoraConfig(r=4, target_modules=targets))
    trainable, _ = peft_model.get_nb_trainable_parameters()
    assert spec.lora_params(4, targets if isinstance(targets, str) else tuple(targets)) == trainable
    assert trainable > 0


def test_weights_gradients_optimizer_bytes(tiny):
    _, _, spec = tiny
    n = spec.params
    full = estimate(spec, TrainingSpec(method="full", batch_size=1), cpu_hw(), ways_out=False)
    assert full.weights_gb * GIB == pytest.approx(n * 4)
    assert full.gradients_gb * GIB == pytest.approx(n * 4)
    assert full.optimizer_gb * GIB == pytest.approx(n * 8)  # AdamW: two fp32 moments
    sgd = TrainingSpec(method="full", batch_size=1, optimizer="sgd")
    assert estimate(spec, sgd, cpu_hw(), ways_out=False).optimizer_gb == 0
    lora_spec = TrainingSpec(method="lora", lora_r=4)
    lora = estimate(spec, lora_spec, cpu_hw(), ways_out=False)
    k = spec.lora_params(4, "all-linear")
    assert lora.trainable == k
    assert lora.weights_gb * GIB == pytest.approx(n * 4 + k * 4)  # fp32 base on CPU + adapters
    assert lora.optimizer_gb * GIB == pytest.approx(k * 8)
    gpu = resolve(None, probe("cuda"))
    bf16 = estimate(spec, lora_spec, gpu, ways_out=False)
    assert bf16.weights_gb * GIB == pytest.approx(n * 2 + k * 4)
    qlora = estimate(spec, dataclasses.replace(lora_spec, method="qlora"), gpu, ways_out=False)
    q = spec.quantizable_params
    assert qlora.weights_gb * GIB == pytest.approx(q * NF4_BYTES + (n - q) * 2 + k * 4)
    assert qlora.blockers == ()
    cpu_qlora = estimate(spec, dataclasses.replace(lora_spec, method="qlora"), cpu_hw())
    assert "CUDA" in cpu_qlora.blockers[0] and not cpu_qlora.ok
    assert lora.total_gb == pytest.approx(
        lora.weights_gb
        + lora.gradients_gb
        + lora.optimizer_gb
        + lora.activations_gb
        + OVERHEAD_GB["cpu"]
    )


def test_activations_scale_and_shrink(tiny):
    _, _, spec = tiny
    one = TrainingSpec(method="full", batch_size=1, image_size=256)
    base = activation_bytes(spec, one, "fp32")
    assert activation_bytes(spec, dataclasses.replace(one, batch_size=4), "fp32") == 4 * base
    assert activation_bytes(spec, one, "bf16") < base
    assert activation_bytes(spec, dataclasses.replace(one, gradient_checkpointing=True), "fp32") < (
        base
    )
    assert activation_bytes(spec, one, "fp32", attn="eager") > base
    assert activation_bytes(spec, dataclasses.replace(one, image_size=128), "fp32") < base
    # LoRA on the language model only: no gradient flows through the vision tower.
    lm_only = TrainingSpec(batch_size=1, image_size=256, lora_target_modules=r".*language_model.*")
    assert activation_bytes(spec, lm_only, "fp32") < base


@pytest.mark.parametrize(
    ("total", "verdict"),
    [(8.0, "fits"), (8.5, "fits"), (9.0, "tight"), (10.0, "tight"), (10.1, "does not fit")],
)
def test_verdict_thresholds(total, verdict):
    est = Estimate("m", "lora", "cpu", "fp32", 1, 1, "t", 0, total, 0, 0, 0, 0, 10.0, 1, 512)
    assert est.verdict == verdict
    assert est.ok == (verdict != "does not fit")


def test_training_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"training\.method='lroa'"):
        TrainingSpec.from_cfg({"method": "lroa"})
    with pytest.raises(ValueError, match=r"training\.batch_size must be at least 1"):
        TrainingSpec.from_cfg({"batch_size": 0})
    with pytest.raises(ValueError, match=r"training\.optimizer='adam8'"):
        TrainingSpec.from_cfg({"optimizer": "adam8"})


# --- the built-in table, preflight and model=auto -----------------------------------------------


def test_builtin_parameter_counts():
    counts = {name: model_spec(load_model_cfg(name)) for name in ("lfm2_vl_450m", "pp_ocr")}
    assert counts["lfm2_vl_450m"].params == 450_822_656  # LFM2-VL-450M, from its config.json
    assert counts["pp_ocr"].params == 5_275_722  # PP-OCRv6-small rec, transformers default config
    v1 = model_spec(load_model_cfg("deepseek_ocr_v1"))
    assert v1.params == 6_672_212_480 // 2 and "built-in table" in v1.source
    assert v1.attn == AttnSupport(flash_attention_2=True, sdpa=False)
    assert attn_support(load_model_cfg("deepseek_ocr_v1")) == v1.attn
    assert attn_support(load_model_cfg("auto")) == AttnSupport()


def test_preflight_refuses_what_does_not_fit_unless_forced():
    small = cpu_hw(ram=4.0)
    with pytest.raises(PreflightError) as info:
        preflight(load_model_cfg("lfm2_vl_450m"), {"method": "lora"}, small)
    report = str(info.value)
    assert "DOES NOT FIT" in report and "hardware.force=true" in report
    assert "gradient checkpointing" in report and "model=pp_ocr" in report
    est = preflight(load_model_cfg("lfm2_vl_450m"), {"method": "lora"}, small, force=True)
    assert est.verdict == "does not fit"
    forced = cpu_hw(ram=4.0, force=True)
    assert preflight(load_model_cfg("lfm2_vl_450m"), {"method": "lora"}, forced).total_gb > 4.0


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        (probe("cuda", gpu=DeviceInfo(0, "H100", 80.0, 79.0, (9, 0), bf16=True)), "lfm3_vl"),
        (
            probe("cuda", gpu=DeviceInfo(0, "RTX 4090", 24.0, 23.5, (8, 9), bf16=True)),
            "lfm2_vl_450m",
        ),
        (probe("cuda", gpu=DeviceInfo(0, "RTX 4060", 8.0, 7.6, (8, 9), bf16=True)), "pp_ocr"),
        (probe("cpu", ram=24.0), "pp_ocr"),  # no VLM fits 24 GB of RAM with LoRA, batch 8
        (probe("cpu", ram=2.0), "pp_ocr"),
    ],
)
def test_pick_auto(machine, expected):
    hw = resolve(None, machine)
    training = {"method": "lora", "batch_size": 8}
    name, est = pick_auto(training, hw)
    assert est.verdict in ("fits", "tight") and not est.blockers
    assert name == expected
    # Every stronger candidate really does not fit (or cannot run) here.
    order = list(auto_order())
    for stronger in order[: order.index(name)]:
        other = estimate(model_spec(load_model_cfg(stronger)), TrainingSpec(), hw, ways_out=False)
        assert other.verdict != "fits" or other.blockers


# --- the command line ---------------------------------------------------------------------------


def compose_preflight(*overrides: str):
    with initialize_config_dir(config_dir=str(vin_ocr.CONFIG_DIR), version_base="1.3"):
        return compose(config_name="preflight", overrides=list(overrides))


def test_cli_machine_report_and_estimate():
    text, code = run(compose_preflight(), probe("cuda", flash_attn=REAL_FA))
    assert code == 0 and "A100" in text and "attention flash_attention_2" in text
    text, code = run(compose_preflight("model=lfm2_vl_450m", "training=lora"), probe(ram=64))
    assert code == 0 and "Preflight: lfm2_vl_450m, lora on cpu" in text and "FITS" in text
    text, code = run(compose_preflight("model=lfm2_vl_450m"), probe(ram=4))
    assert code == 1 and "DOES NOT FIT" in text and "ways out" in text
    text, code = run(compose_preflight("model=lfm2_vl_450m", "hardware.force=true"), probe(ram=4))
    assert code == 0 and "forced" in text
    text, code = run(compose_preflight("model=auto"), probe(ram=2))
    assert code == 0 and "model=auto picks pp_ocr" in text
    text, code = run(compose_preflight("hardware=cuda"), probe())
    assert code == 2 and "hardware.device=cuda was asked for" in text


@pytest.mark.parametrize("force", [False, True])
def test_qlora_on_cpu_gets_one_verdict_and_only_ways_out_that_help(force):
    overrides = ["model=lfm2_vl_450m", "training=qlora", f"hardware.force={force}"]
    text, code = run(compose_preflight(*overrides), probe(ram=64))
    assert code == 1  # forcing cannot make 4-bit run without CUDA
    verdicts = [line.strip() for line in text.splitlines() if "verdict:" in line]
    assert verdicts == ["verdict: CANNOT RUN (memory alone would be fits)"]
    assert "why: QLoRA 4-bit needs bitsandbytes on a CUDA GPU" in text
    assert "FITS" not in text and "hardware.force=true" not in text
    ways = text.split("ways out:")[1]
    assert "LoRA without 4-bit (training=lora)" in ways
    assert "image_size" not in ways and "batch_size" not in ways  # memory is not the problem


def test_config_groups_compose_and_typos_fail():
    cfg = compose_preflight("training=qlora", "hardware=cpu")
    assert cfg.training.method == "qlora" and cfg.training.lora.r == 16
    assert cfg.hardware.device == "cpu"
    assert compose_preflight("training=full").training.method == "full"
    with pytest.raises(ConfigCompositionException, match="devcie"):
        compose_preflight("hardware.devcie=cpu")


def test_cli_subprocess():
    """The real entry point on this machine (machine report only: no transformers import)."""
    out = subprocess.run(
        [sys.executable, "-m", "vin_ocr.hardware", "hardware=cpu"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=vin_ocr.REPO_ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "vin-ocr hardware report" in out.stdout
    assert "chosen      device cpu, dtype fp32, attention sdpa" in out.stdout
