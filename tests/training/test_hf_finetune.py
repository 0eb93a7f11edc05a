"""The training entry point end to end on a tiny PP-OCR model (CPU, no Hub)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir

import vin_ocr
import vin_ocr.training.hf_finetune
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
    info = json.loads((run / "run.json").read_text())["metrics"]
    beat = info["train"]["beat_baseline"]
    assert beat == (info["train"]["best_step"] != 0)
    assert ("No training step beat the pretrained model" in card) == (not beat)
    # the run folder is an evaluation engine: it reads the same as the model that was saved
    from PIL import Image

    from vin_ocr.evaluation.engines import build_engine

    engine = build_engine("checkpoint", path=str(run))
    lines = (run / "eval/samples/predictions.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    images = [Image.open(vin_ocr.SAMPLES_DIR / r["image"]).convert("RGB") for r in rows[:4]]
    assert engine.predict(images) == [r["raw"] for r in rows[:4]]
    # reading settings can be changed without retraining; a key the run lacks is refused
    plain = build_engine("checkpoint", path=str(run), model={"check_digit_search": False})
    assert plain._engine.family.settings.check_digit_search is False
    assert engine._engine.family.settings.check_digit_search is True
    assert all(r.unconstrained is None for r in plain.read(images))
    with pytest.raises(ValueError, match="no key 'check_digit_serch'"):
        build_engine("checkpoint", path=str(run), model={"check_digit_serch": False})


@pytest.mark.slow
def test_a_run_that_never_beats_the_baseline_says_so(tmp_path):
    """Learning rate 0: no step can beat step 0. run.json and the card say the published weights
    are the pretrained ones instead of presenting them as fine-tuned."""
    from vin_ocr.training.hf_finetune import train

    run = tmp_path / "run"
    over = [*TINY, "debug=smoke", f"run_dir={run}", "data.test=[]", "export_onnx=false",
            "training.learning_rate=0"]  # fmt: skip
    result = train(_cfg(over))
    info = json.loads((run / "run.json").read_text())["metrics"]
    assert info["train"]["best_step"] == 0 and info["train"]["beat_baseline"] is False
    assert info["val"] == info["val_baseline"] == result.metrics["val"]
    assert "No training step beat the pretrained model" in (run / "README.md").read_text()


def test_evaluation_data_config_is_refused_for_training():
    from hydra.errors import MissingConfigException
    from omegaconf import OmegaConf

    from vin_ocr.training.data import build_datasets

    with pytest.raises(MissingConfigException, match="data/manifest"):  # eval's: configs/eval/
        _cfg([*TINY, "data=manifest", "data.path=x.jsonl"])
    with pytest.raises(ValueError, match="training takes data=synth or data=user"):
        build_datasets(OmegaConf.create({"path": "x.jsonl"}))


def test_mistyped_training_data_key_fails_at_compose():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="synth_trian"):
        _cfg([*TINY, "data.synth_trian=3"])


# A run where the best validation step (2) is not the last one: resuming without the best model
# in the checkpoint would publish other weights. Four bundled line crops are its test set, so
# the card and run.json hold baseline and fine-tuned test figures too.
KILL_RUN = [
    *TINY, "training.max_steps=6", "training.save_every=2", "training.eval_every=2",
    "training.batch_size=2", "training.num_workers=0", "training.warmup_steps=0",
    "training.learning_rate=3e-3", "training.keep_checkpoints=2", "data.synth_train=8",
    "data.synth_val=4", "export_onnx=false",
]  # fmt: skip
TRAIN_CMD = [sys.executable, "-m", "vin_ocr.training.hf_finetune"]


@pytest.fixture(scope="module")
def kill_test_set(tmp_path_factory):
    rows = (vin_ocr.SAMPLES_DIR / "manifest.jsonl").read_text().splitlines()[:4]
    rows = [{**json.loads(r), "image": str(vin_ocr.SAMPLES_DIR / json.loads(r)["image"])}
            for r in rows]  # fmt: skip
    path = tmp_path_factory.mktemp("test_set") / "lines.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run(args, test_set, **env):
    cmd = [*TRAIN_CMD, *KILL_RUN, f"data.test=[{test_set}]", *args]
    return subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def _outcome(run):
    """What a finished run publishes: model weights, run.json figures (timings aside), the
    metrics log and the card (its timing line aside)."""
    from safetensors.torch import load_file

    weights = {}
    for f in sorted((run / "model").rglob("*.safetensors")):
        weights.update({f"{f.name}:{k}": v for k, v in load_file(f).items()})
    info = json.loads((run / "run.json").read_text())
    for key in ("seconds", "samples_per_s"):
        info["metrics"]["train"].pop(key)
    card = [x for x in (run / "README.md").read_text().splitlines() if " samples/s" not in x]
    assert "test/lines" in info["metrics"] and "test/lines_baseline" in info["metrics"]
    metrics = (run / "metrics.jsonl").read_text().splitlines()
    vals = [json.loads(x) for x in metrics if "val/exact_match" in x]
    return weights, info["metrics"], vals, card


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, kill_test_set):
    """The uninterrupted run's outcome, per extra overrides (computed once each)."""
    done: dict[tuple[str, ...], tuple] = {}

    def get(extra: tuple[str, ...]):
        if extra not in done:
            run = tmp_path_factory.mktemp("straight") / "run"
            proc = _run([f"run_dir={run}", *extra], kill_test_set)
            assert proc.returncode == 0, proc.stderr[-3000:]
            done[extra] = _outcome(run)
            # the premise: the best step is not the last one
            assert done[extra][1]["train"]["best_step"] < 6
        return done[extra]

    return get


ACCUMULATE = ("training.batch_size=1", "training.gradient_accumulation_steps=2")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_after", "truncate", "extra"),
    [
        (3, None, ()),  # between checkpoints, after the best step
        (6, None, ()),  # after the last checkpoint, before model/ and run.json are written
        (5, "step_000004", ()),  # the newest checkpoint damaged: resume falls back to step 2
        (3, None, ACCUMULATE),  # with gradient accumulation
    ],
)
@pytest.mark.timeout(1200)  # up to five short trainings in subprocesses, on a loaded machine
def test_killed_run_resumes_to_the_same_result(
    tmp_path, straight_run, kill_test_set, kill_after, truncate, extra
):
    """kill -9 (the loop kills itself after step N: no timing race), then training.resume=auto:
    model/, run.json's best step and scores, the metrics log and the card equal those of an
    uninterrupted run."""
    run = tmp_path / "run"
    want_weights, want_metrics, want_vals, want_card = straight_run(extra)
    args = [f"run_dir={run}", *extra]
    proc = _run(args, kill_test_set, VIN_OCR_KILL_AFTER_STEP=str(kill_after))
    assert proc.returncode == -9, proc.stderr[-3000:]  # SIGKILL
    assert not (run / "run.json").exists() and not (run / "model").exists()
    if truncate:
        weights = run / "checkpoints" / truncate / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    refused = _run(args, kill_test_set)  # without resume: refused, nothing touched
    assert refused.returncode == 1 and "training.resume=auto continues it" in refused.stderr
    assert "Traceback" not in refused.stderr
    proc = _run([*args, "training.resume=auto"], kill_test_set)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if truncate:
        log = proc.stdout + proc.stderr
        assert "skipping damaged checkpoint" in log and truncate in log, log[-3000:]
        assert "resuming from the previous intact one, step_000002" in log
    weights, metrics, vals, card = _outcome(run)
    assert weights.keys() == want_weights.keys()
    for k in weights:
        assert torch.equal(weights[k], want_weights[k]), k
    assert metrics == want_metrics
    assert vals == want_vals
    assert card == want_card


# Runs train(cfg) in each torchrun process, with the real fit wrapped to write a checksum of the
# process's weights before and after training (argv: out folder, then Hydra overrides).
_CHECKSUM_RUN = """
import hashlib, os, sys
from pathlib import Path
from hydra import compose, initialize_config_dir
import vin_ocr
from vin_ocr.config import register_configs
from vin_ocr.training import hf_finetune, train

out, real_fit = Path(sys.argv[1]), train.fit

def checksum(model):
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode() + value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()

def fit(family, model, *args, **kwargs):
    rank = os.environ["RANK"]
    (out / f"before_{rank}").write_text(checksum(model))
    result = real_fit(family, model, *args, **kwargs)
    (out / f"after_{rank}").write_text(checksum(model))
    return result

train.fit = fit  # the module whose fit_model stage calls it
register_configs()
with initialize_config_dir(str(vin_ocr.CONFIG_DIR), version_base="1.3"):
    hf_finetune.train(compose("train", overrides=sys.argv[2:]))
"""


@pytest.mark.slow
def test_pp_ocr_trains_in_two_processes_with_synced_gradients(tmp_path):
    """PP-OCR under DDP (torchrun, gloo): each process trains on other samples, so only
    synchronised gradients leave both with the same weights after 3 steps."""
    script = tmp_path / "checksum_run.py"
    script.write_text(_CHECKSUM_RUN)
    sums = tmp_path / "sums"
    sums.mkdir()
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(script), str(sums), *TINY, "training.max_steps=3", "training.save_every=0",
        "training.eval_every=0", "training.batch_size=2", "training.num_workers=0",
        "training.learning_rate=1e-2", "training.warmup_steps=0", "data.synth_train=8",
        "data.synth_val=2", "data.test=[]", "export_onnx=false", f"run_dir={tmp_path / 'run'}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after = (
        {(sums / f"{when}_{r}").read_text() for r in "01"} for when in ("before", "after")
    )
    assert len(before) == 1, "the processes started from different weights"
    assert before != after, "training changed nothing"
    assert len(after) == 1, "the processes' weights diverged: gradients were not synchronised"
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["metrics"]["train"]["steps"] == 3
