"""Merging LoRA adapters: verification (and its failures), the merge CLI, combinations against
PEFT's own weighted adapter, the 4-bit refusal and 16-bit reload (tiny LFM2-VL, CPU)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from safetensors.torch import load_file

import vin_ocr
from vin_ocr.models.lora import apply_lora, lora_module_names, merge_lora
from vin_ocr.training.merge import (
    MergeError,
    MergeVerificationError,
    base_model_cfg,
    build_base,
    compare_outputs,
    merge,
    merge_verified,
    verification_samples,
    verify_merge,
)
from vin_ocr.training.merging import _outputs

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),
]

MODEL = {
    "name": "lfm2_vl_450m",
    "family": "lfm2_vl",
    "checkpoint": "LiquidAI/LFM2-VL-450M",
    "tiny": True,
    "min_image_tokens": 4,
    "max_image_tokens": 16,
    "do_image_splitting": False,
    "max_new_tokens": 20,
    "quantization": "none",
}
INFO = {"family": "lfm2_vl", "model": MODEL, "seed": 0, "metrics": {}, "hardware": {}}


@pytest.fixture(scope="module")
def base():
    family, model, _ = build_base(INFO)
    return family, model


@pytest.fixture(scope="module")
def samples():
    return verification_samples(4)


def adapter_run(path, base_model, family, seed):
    """A run folder holding a LoRA adapter with random (non-zero) weights on the tiny base."""
    peft = apply_lora(copy.deepcopy(base_model), family.lora_settings({"r": 4, "dropout": 0.0}))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if ".lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    peft.save_pretrained(path / "model" / "adapter")
    (path / "run.json").write_text(json.dumps(INFO))
    return peft


def merge_cfg(*overrides):
    with initialize_config_dir(str(vin_ocr.CONFIG_DIR), version_base="1.3"):
        return compose("merge", overrides=["hardware.device=cpu", *overrides])


def test_tiny_base_is_rebuilt_identically_from_the_run_seed(base):
    _, again, _ = build_base(INFO)
    mine, theirs = base[1].state_dict(), again.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


@pytest.mark.slow
def test_merge_reproduces_the_adapter_model_and_a_corrupted_merge_fails(base, samples, tmp_path):
    family, model = base
    peft = adapter_run(tmp_path / "a", model, family, seed=1)
    merged, check = merge_verified(family, peft, samples)
    assert check.predictions_identical and check.relative_diff <= check.tolerance == 1e-3
    assert check.predictions == family.predict(peft, [s.load_image() for s in samples])
    assert lora_module_names(peft), "the adapter model was merged in place"
    assert not any(".lora_" in name for name, _ in merged.named_parameters())
    name = "model.language_model.layers.1.self_attn.q_proj.weight"
    delta = merged.state_dict()[name] - model.state_dict()[name]
    assert delta.abs().max() > 1e-2  # the adapter really changed the weights

    with torch.no_grad():
        merged.get_parameter(name).add_(0.5)
    with pytest.raises(MergeVerificationError, match=r"logits differ by .* > tolerance 0\.001"):
        verify_merge(family, peft, merged, samples)


def test_different_predictions_fail_even_with_equal_logits(base, samples, tmp_path):
    family, model = base
    logits, predictions = _outputs(family, model, samples)
    other = [*predictions[:1], predictions[1] + "X", *predictions[2:]]
    with pytest.raises(MergeVerificationError, match=r"predictions differ \(sample 1"):
        compare_outputs((logits, predictions), (logits.clone(), other), 1e-4)


@pytest.mark.slow
def test_merge_cli_writes_a_loadable_run_folder(base, samples, tmp_path):
    from vin_ocr.run_folder import load_run

    family, model = base
    run = tmp_path / "run"
    peft = adapter_run(run, model, family, seed=2)
    result = merge(merge_cfg(f"run={run}", "verify.samples=4"))
    out = run / "merged"
    assert result.out == out and result.verification.samples == 4
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "model/model.safetensors" in files and "README.md" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth"))]
    info = json.loads((out / "run.json").read_text())
    assert info["merge"]["verification"]["predictions"] == result.verification.predictions
    images = [s.load_image() for s in samples]
    assert load_run(out).predict(images) == family.predict(peft, images)
    with pytest.raises(MergeError, match="exists; choose another out"):
        merge(merge_cfg(f"run={run}"))


@pytest.mark.parametrize("combination", ["ties", "dare_linear"])
def test_combined_adapters_equal_peft_weighted_adapter(base, tmp_path, combination):
    from peft import PeftModel

    family, model = base
    runs = [tmp_path / "a", tmp_path / "b"]
    for i, run in enumerate(runs):
        adapter_run(run, model, family, seed=10 + i)
    out = tmp_path / "ab"
    result = merge(
        merge_cfg(
            f"adapters=[{runs[0]},{runs[1]}]",
            f"combination={combination}",
            "weights=[1.0,0.5]",
            "density=0.5",
            "seed=3",
            f"out={out}",
            "verify.samples=4",
        )
    )
    assert result.verification.predictions_identical
    reference = PeftModel.from_pretrained(copy.deepcopy(model), runs[0] / "model/adapter", "a")
    reference.load_adapter(runs[1] / "model/adapter", adapter_name="b")
    torch.manual_seed(3)
    reference.add_weighted_adapter(
        ["a", "b"], [1.0, 0.5], "ab", combination_type=combination, density=0.5
    )
    reference.set_adapter("ab")
    expected = reference.merge_and_unload().state_dict()
    got = load_file(out / "model" / "model.safetensors")
    changed = 0
    for key, value in got.items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6, msg=key)
        changed += not torch.equal(value, model.state_dict()[key])
    assert changed >= 8  # the combined update reached the adapted layers
    info = json.loads((out / "run.json").read_text())
    assert info["merge"]["combination"] == combination and info["metrics"] == {}


def test_merge_refuses_4bit_weights_and_reloads_the_base_in_16_bit(base, samples, tmp_path):
    family, model = base
    peft = adapter_run(tmp_path / "q", model, family, seed=4)
    flagged = copy.deepcopy(peft)
    flagged.get_base_model().is_loaded_in_4bit = True  # what a bitsandbytes 4-bit load sets
    with pytest.raises(ValueError, match="refusing to merge a LoRA adapter into 4-bit"):
        merge_lora(copy.deepcopy(flagged))
    with pytest.raises(MergeError, match="needs the base reloaded in 16 bits"):
        merge_verified(family, flagged, samples)
    reloads = []

    def reload():
        reloads.append(1)
        return build_base({**INFO, "model": {**MODEL, "quantization": "4bit"}})[1]

    merged, check = merge_verified(family, flagged, samples, base_loader=reload)
    assert reloads == [1] and check.predictions_identical
    expected, _ = merge_verified(family, peft, samples)
    for key, value in merged.state_dict().items():
        torch.testing.assert_close(value, expected.state_dict()[key], rtol=0, atol=0)


def test_base_config_for_a_qlora_run():
    cfg = base_model_cfg({"model": {**MODEL, "quantization": "4bit"}})
    assert cfg.quantization == "none" and cfg.tiny
    # a family that applies LoRA in build (FamilyFacts.lora_in_build) rebuilds without it
    pp = base_model_cfg({"model": {"name": "pp_ocr", "family": "pp_ocr", "finetune": "lora"}})
    assert pp.finetune == "full"
    other = base_model_cfg({"model": MODEL}, base="/models/lfm2")
    assert other.checkpoint == "/models/lfm2" and other.tiny is False


def test_requantize_needs_cuda_and_fails_before_writing(base, tmp_path):
    family, model = base
    run = tmp_path / "run"
    adapter_run(run, model, family, seed=5)
    with pytest.raises(RuntimeError, match="needs bitsandbytes on a CUDA GPU"):
        merge(merge_cfg(f"run={run}", "requantize=4bit"))
    assert not (run / "merged").exists()


def test_merge_config_errors(base, tmp_path):
    family, model = base
    adapter_run(tmp_path / "a", model, family, seed=6)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "run.json").write_text(json.dumps({**INFO, "family": "pp_ocr"}))
    cases = [
        ([f"run={tmp_path / 'a'}", f"adapters=[{tmp_path / 'a'}]"], "either run="),
        ([f"adapters=[{tmp_path / 'a'},{tmp_path / 'a'}]", "combination=ties"], "needs density"),
        ([f"adapters=[{tmp_path / 'a'},{tmp_path / 'a'}]", "weights=[1.0]"], "2 adapters but 1"),
        ([f"run={tmp_path / 'b'}"], "no LoRA adapter"),
        ([f"run={tmp_path}"], "not a training run folder"),
    ]
    for overrides, message in cases:
        with pytest.raises(MergeError, match=message):
            merge(merge_cfg(*overrides))
    other = tmp_path / "c"
    adapter_run(other, model, family, seed=7)
    info = {**INFO, "model": {**MODEL, "checkpoint": "LiquidAI/LFM2.5-VL-1.6B"}}
    (other / "run.json").write_text(json.dumps(info))
    with pytest.raises(MergeError, match="different base models"):
        merge(merge_cfg(f"adapters=[{tmp_path / 'a'},{other}]"))


def test_save_model_without_merge_keeps_the_adapter_only(base, tmp_path):
    from vin_ocr.training.hf_finetune import save_model

    family, model = base
    peft = adapter_run(tmp_path / "r", model, family, seed=8)
    out = save_model(peft, family.processor, tmp_path / "model")
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert not list(out.glob("model*.safetensors")) and (out / "tokenizer.json").is_file()


def test_a_failed_merge_at_the_end_of_a_run_keeps_the_adapter(base, tmp_path, monkeypatch):
    import vin_ocr.models.lora as lora
    from vin_ocr.training.merge import merge_run_model

    family, model = base
    peft = adapter_run(tmp_path / "r", model, family, seed=9)
    real_merge = lora.merge_lora

    def corrupting_merge(peft_model):  # the real merge, then one weight broken
        merged = real_merge(peft_model)
        with torch.no_grad():
            merged.get_parameter("model.language_model.layers.0.conv.in_proj.weight").mul_(3)
        return merged

    monkeypatch.setattr(lora, "merge_lora", corrupting_merge)
    merged, record = merge_run_model(family, peft, OmegaConf.create(MODEL), None, 0, tmp_path / "r")
    assert merged is None and record["error"].startswith("merge verification failed")
    assert lora_module_names(peft)  # the trained adapter is intact, to be saved


def test_load_run_reads_an_adapter_only_run(base, samples, tmp_path):
    """training.merge=false (or an adapter pushed alone) leaves model/adapter/ only: the engine
    rebuilds the base from run.json and puts the adapter on it."""
    from vin_ocr.run_folder import load_run

    family, model = base
    peft = adapter_run(tmp_path, model, family, seed=3)
    images = [s.load_image() for s in samples]
    engine = load_run(tmp_path)
    assert type(engine.model).__name__ == "PeftModel"
    assert engine.predict(images) == family.predict(peft, images)


def test_bad_merges_fail_before_any_work_or_write(base, tmp_path, monkeypatch):
    """Each bad request ends with one MergeError/HubError naming the problem; nothing written."""
    from vin_ocr.hub.push import HubError

    family, model = base
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    adapter_run(a, model, family, seed=10)
    adapter_run(b, model, family, seed=11)
    (b / "run.json").write_text(json.dumps({**INFO, "family": "pp_ocr"}))
    full = tmp_path / "full"
    (full / "model").mkdir(parents=True)
    (full / "model" / "model.safetensors").write_bytes(b"weights")
    (full / "run.json").write_text(json.dumps(INFO))
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    cases = [
        ([f"run={a}", "hub.push=true"], HubError, "hub.push=true needs hub.repo_id=org/name"),
        ([f"run={a}", "hub.push=true", "hub.repo_id=no org"], HubError, "must be org/name"),
        ([f"adapters=[{a},{b}]"], MergeError, "different model families cannot be combined"),
        ([f"run={full}"], MergeError, "is a full fine-tune .* nothing to merge.* hub.push=true"),
        ([f"run={full}", "hub.dry_run=true", f"out={out}"], MergeError, "merges only"),
        ([f"run={a}", f"out={out}"], MergeError, "exists; choose another out= or set overwrite"),
    ]
    for overrides, error, message in cases:
        with pytest.raises(error, match=message):
            merge(merge_cfg(*overrides))
    assert not (a / "merged").exists() and not (b / "merged").exists()
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match="no Hugging Face token"):  # before the merge, not after
        merge(merge_cfg(f"run={a}", "hub.push=true", "hub.repo_id=acme/vin"))
    assert not (a / "merged").exists()


def test_pp_ocr_lora_runs_are_not_combined_and_the_reason_is_given(base, tmp_path):
    family, model = base
    runs = [tmp_path / "eu", tmp_path / "na"]
    for i, run in enumerate(runs):
        adapter_run(run, model, family, seed=12 + i)
        config = run / "model" / "adapter" / "adapter_config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()),
                                      "modules_to_save": ["head.head"]}))  # fmt: skip
    with pytest.raises(MergeError, match=r"eu: its adapter also trains \['head.head'\] fully"):
        merge(merge_cfg(f"adapters=[{runs[0]},{runs[1]}]"))
    assert not (tmp_path / "merged").exists() and not any(tmp_path.glob("**/merged"))


def test_the_merge_cli_prints_one_line_and_exits_1(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "vin_ocr.training.merge", f"run={tmp_path / 'nope'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: {tmp_path / 'nope'}: not a training run folder (no run.json in it or above it)"
    )
