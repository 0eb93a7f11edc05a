"""scripts/bench_gpu.sh and scripts/bench_gpu_extras.py on their CPU paths (CI has no GPU): the
models come from the configs and the registry, ``--dry-run`` takes a tiny model through every
stage (bench_train's loop and Trainer, QLoRA's load from a saved folder, LoRA, the verified merge)
and records its table; without a GPU the real run refuses with the reason. Figures are never
asserted, only that they were measured."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

import vin_ocr

SH = vin_ocr.REPO_ROOT / "scripts" / "bench_gpu.sh"
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def mod():
    path = vin_ocr.REPO_ROOT / "scripts" / "bench_gpu_extras.py"
    spec = importlib.util.spec_from_file_location("scripts_bench_gpu_extras", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _sh(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHON": str(vin_ocr.REPO_ROOT / ".venv" / "bin" / "python"), **env}
    if not os.access(environ["PYTHON"], os.X_OK):
        environ["PYTHON"] = sys.executable
    return subprocess.run(
        ["bash", str(SH), *args], capture_output=True, text=True, env=environ, timeout=1200
    )


def test_models_are_every_trainable_model_config(mod, tmp_path, monkeypatch):
    names = mod.trainable_models()
    assert {"pp_ocr", "lfm2_vl_450m", "lfm2_5_vl", "deepseek_ocr"} <= set(names)
    assert "auto" not in names and "deepseek_ocr_v1" not in names  # no family; inference only
    # a new model config is benchmarked with no edit of the script; an unknown family is not
    configs = tmp_path / "configs"
    shutil.copytree(vin_ocr.CONFIG_DIR / "model", configs / "model")
    (configs / "model" / "lfm9_vl.yaml").write_text("name: lfm9_vl\nfamily: lfm2_vl\n")
    (configs / "model" / "mystery.yaml").write_text("name: mystery\nfamily: mystery\n")
    monkeypatch.setattr(vin_ocr, "CONFIG_DIR", configs)
    assert mod.trainable_models() == sorted([*names, "lfm9_vl"])


def test_stages_plan_qlora_for_the_vlms_only(mod):
    plan = dict(mod.stages(mod.bench.parse_options(mod.GpuBench, ["dry_run=true"], "t")))
    assert plan["pp_ocr"] == ["pp_ocr:train:sdpa"]  # no quantization key: no QLoRA
    assert plan["lfm2_vl_450m"] == ["lfm2_vl_450m:train:sdpa", "lfm2_vl_450m:qlora"]
    assert set(plan) == set(mod.trainable_models())
    with pytest.raises(SystemExit, match=r"not a trainable model config.*deepseek_ocr_v1"):
        mod.stages(mod.bench.parse_options(mod.GpuBench, ["models=[deepseek_ocr_v1]"], "t"))


@pytest.mark.slow
def test_dry_run_takes_a_tiny_vlm_through_every_stage(tmp_path):
    md = tmp_path / "b.md"
    args = ["models=[lfm2_vl_450m]", "batch=1", "warmup=1", "steps=1", f"out={md}"]
    done = _sh("--dry-run", *args, f"out_dir={tmp_path / 'out'}")
    assert done.returncode == 0, done.stderr[-3000:]
    text = md.read_text()
    assert "## GPU training (`scripts/bench_gpu.sh`)" in text and "dry run: CPU, tiny" in text
    train_row = next(line for line in text.splitlines() if "| lfm2_vl_450m | tiny | 0." in line)
    qlora_row = next(line for line in text.splitlines() if "none, fp32 |" in line)
    assert "failed" not in text and "lora" in train_row
    assert "max abs" in qlora_row  # the merge was verified against the adapter model
    assert (tmp_path / "out" / "bench_gpu_entry.md").read_text().strip() in text


def test_the_gpu_run_refuses_without_cuda_naming_the_dry_run():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: the refusal is for CPU machines")
    done = _sh("models=[pp_ocr]")
    assert done.returncode == 1
    assert "error: bench_gpu.sh:" in done.stderr and "--dry-run" in done.stderr
    assert _sh("--bogus").returncode == 2


def test_a_stage_past_its_share_of_the_budget_is_killed_and_reported(mod):
    o = mod.bench.parse_options(mod.GpuBench, ["dry_run=true"], "t")
    r = mod.run_isolated(o, "lfm2_vl_450m:train:sdpa", ["dry_run=true"], timeout=0.1)
    assert r == {"case": "lfm2_vl_450m:train:sdpa", "failed": "out of its 0 s share of budget_s"}


def test_record_from_appends_an_entry_written_on_a_gpu_machine(mod, tmp_path):
    entry = tmp_path / "bench_gpu_entry.md"
    entry.write_text("- GPU benchmark, 300 s of budget_s=450:\n\n  | a |\n  |---|\n")
    md = tmp_path / "b.md"
    assert mod.main([f"record_from={entry}", f"out={md}"]) == []
    assert mod.SECTION in md.read_text() and "300 s of budget_s=450" in md.read_text()
    with pytest.raises(SystemExit, match=r"error: .*missing\.md: no such entry file"):
        mod.main([f"record_from={tmp_path / 'missing.md'}", f"out={md}"])
