"""``accelerate launch`` with two CPU processes (gloo, no MPI) on a tiny LFM2-VL LoRA run.

accelerate 1.15: ``--cpu`` (or ``distributed_type: MULTI_CPU``) always picks its "simple" launcher,
which starts one process, or N under ``mpirun`` only (``--mpirun_hostfile``); the torchrun launcher
(``--multi_gpu`` / ``distributed_type: MULTI_GPU``) starts N processes, and they run on the CPU
with gloo when training asks for the CPU (``hardware=cpu``). ``configs/accelerate/cpu_2proc.yaml``
is that second form; docs/training.md has the exact lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import vin_ocr

ACCELERATE = str(Path(sys.executable).with_name("accelerate"))  # the CLI beside this python
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
def test_two_cpu_processes_share_one_run_folder(tmp_path):
    """Both processes train (each saves its RNG state in the checkpoint), the main process's run
    folder is the only one, and the model, card and run.json are written once."""
    run = tmp_path / "run"
    cmd = [
        ACCELERATE, "launch",
        "--config_file", str(vin_ocr.CONFIG_DIR / "accelerate" / "cpu_2proc.yaml"),
        "-m", "vin_ocr.training.hf_finetune", "hardware=cpu", "model=lfm2_vl_450m",
        "training=lora", "model.tiny=true", "training.max_steps=3", "training.save_every=3",
        "training.eval_every=0", "training.batch_size=2", "training.num_workers=0",
        "data.synth_train=8", "data.synth_val=3", "data.test=[]", f"run_dir={run}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["metrics"]["train"]["steps"] == 3
    ckpt = run / "checkpoints" / "step_000003"
    assert sorted(p.name for p in ckpt.glob("random_states_*.pkl")) == [
        "random_states_0.pkl", "random_states_1.pkl",
    ]  # fmt: skip
    assert out.count("done: ") == 1, "the end of the run (model/, card, run.json) ran twice"
    assert (run / "model" / "adapter" / "adapter_config.json").is_file()
    assert not list(run.glob(".tmp_*")), "a half-written folder was left behind"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "a second run folder appeared"


@pytest.mark.slow
def test_cpu_flag_starts_a_single_process():
    """The trap docs/training.md warns about: ``accelerate launch --cpu --num_processes 2`` without
    MPI starts one process, which sees a world of one. Should a later accelerate start two here,
    this fails: switch the docs and the test above to the plain ``--cpu`` line."""
    probe = "from accelerate import PartialState as S; print('world', S(cpu=True).num_processes)"
    cmd = [ACCELERATE, "launch", "--cpu", "--num_processes", "2", "--no_python",
           sys.executable, "-c", probe]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["world", "1"]
