"""The training entry point end to end on a tiny PP-OCR model (CPU, no Hub)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from hydra import compose, initialize_config_dir

import vin_ocr
from vin_ocr.data.sample import read_manifest

TINY = ["model.tiny=true", "hardware.device=cpu"]


def _cfg(overrides):
    with initialize_config_dir(str(vin_ocr.CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.mark.slow
def test_smoke_run_leaves_a_complete_run_folder(tmp_path):
    from vin_ocr.training.hf_finetune import train

    run = tmp_path / "run"
    result = train(_cfg([*TINY, "debug=smoke", f"run_dir={run}"]))
    assert result.run_dir == run
    assert result.metrics["train"]["steps"] == 2
    for name in ("model", "onnx", "card", "run", "eval/samples"):
        assert result.artefacts[name].exists(), name
    report = json.loads((run / "eval" / "samples" / "report.json").read_text())
    assert report["n"] == len(read_manifest(vin_ocr.SAMPLES_DIR / "manifest.jsonl"))
    assert result.metrics["test/samples"]["exact_match"] == report["exact_match"]
    assert result.metrics["onnx_max_abs_diff"] < 1e-3
    card = (run / "README.md").read_text()
    assert card.startswith("---\n") and "model-index" in card
    # the run folder is an evaluation engine: it reads the same as the model that was saved
    from PIL import Image

    from vin_ocr.evaluation.engines import build_engine

    engine = build_engine("checkpoint", path=str(run))
    lines = (run / "eval/samples/predictions.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    images = [Image.open(vin_ocr.SAMPLES_DIR / r["image"]).convert("RGB") for r in rows[:4]]
    assert engine.predict(images) == [r["raw"] for r in rows[:4]]


def test_evaluation_data_config_is_refused_for_training():
    from vin_ocr.training.data import build_datasets

    cfg = _cfg([*TINY, "data=manifest", "data.path=x.jsonl"])
    with pytest.raises(ValueError, match="training takes data=synth or data=user"):
        build_datasets(cfg.data)


def test_mistyped_training_data_key_fails_at_compose():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="synth_trian"):
        _cfg([*TINY, "data.synth_trian=3"])


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_state(tmp_path):
    """SIGKILL a run after its first checkpoint; training.resume=auto ends where an
    uninterrupted run ends (same weights)."""
    from safetensors.torch import load_file

    common = [
        *TINY, "training.max_steps=6", "training.save_every=2", "training.eval_every=0",
        "training.batch_size=2", "training.num_workers=0", "data.synth_train=8",
        "data.synth_val=2", "data.test=[]", "export_onnx=false",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "vin_ocr.training.hf_finetune"]
    straight = tmp_path / "straight"
    subprocess.run([*cmd, *common, f"run_dir={straight}"], check=True, env=env,
                   capture_output=True, timeout=300)  # fmt: skip

    killed = tmp_path / "killed"
    args = [*cmd, *common, f"run_dir={killed}", "training.keep_checkpoints=10"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "step_000002" / "trainer_state.json").exists():
        assert time.time() < deadline and proc.poll() is None, "no checkpoint before the deadline"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "run.json").exists()  # it really died before finishing
    subprocess.run([*cmd, *common, f"run_dir={killed}", "training.resume=auto"], check=True,
                   env=env, capture_output=True, timeout=300)  # fmt: skip
    a = load_file(straight / "checkpoints" / "step_000006" / "model.safetensors")
    b = load_file(killed / "checkpoints" / "step_000006" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), k


@pytest.mark.slow
def test_two_cpu_processes_share_one_run_folder(tmp_path):
    """Two processes (torchrun, gloo; what `accelerate launch --multi_gpu` does on GPUs): one run
    folder, written by the main process, with every process's RNG state in the checkpoint."""
    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "vin_ocr.training.hf_finetune", "model=lfm2_vl_450m", "training=lora",
        *TINY, "training.max_steps=3", "training.save_every=3", "training.eval_every=0",
        "training.batch_size=2", "training.num_workers=0", "data.synth_train=8",
        "data.synth_val=3", "data.test=[]", f"run_dir={run}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["metrics"]["train"]["steps"] == 3
    ckpt = run / "checkpoints" / "step_000003"
    assert sorted(p.name for p in ckpt.glob("random_states_*.pkl")) == [
        "random_states_0.pkl", "random_states_1.pkl",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "a second run folder appeared"


def test_pp_ocr_refuses_several_processes():
    from vin_ocr.training.hf_finetune import _check_processes

    with pytest.raises(ValueError, match="one process"):
        _check_processes("pp_ocr", 2)
    _check_processes("pp_ocr", 1)
    _check_processes("lfm2_vl", 2)
