"""The shared loop on a toy family: loss falls, the best model is kept, resume is exact."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vin_ocr.data.sample import Sample
from vin_ocr.training.loop import LoopConfig, evaluate_model, fit, latest_checkpoint

ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
VINS = ["1M8GDM9AXKP042788", "WVWZZZ1JZXW000001", "JHMCM56557C404453", "5YJ3E1EA7KF317000"]


class ToyFamily:
    """17 independent classifiers over an 8x8 thumbnail: small enough to overfit in steps."""

    name = "toy"

    def collate(self, samples):
        x = torch.stack([self._pixels(s.load_image()) for s in samples])
        y = torch.tensor([[ALPHABET.index(c) for c in s.vin] for s in samples])
        return {"x": x, "y": y}

    @staticmethod
    def _pixels(im):
        return torch.from_numpy(
            np.asarray(im.convert("L").resize((8, 8)), np.float32) / 255
        ).flatten()

    def loss(self, model, batch):
        logits = model(batch["x"]).view(-1, 17, len(ALPHABET))
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch["y"])

    def predict(self, model, images):
        x = torch.stack([self._pixels(im) for im in images])
        idx = model(x).view(-1, 17, len(ALPHABET)).argmax(-1)
        return ["".join(ALPHABET[i] for i in row) for row in idx.tolist()]


def _samples(n: int) -> list[Sample]:
    out = []
    for i in range(n):
        rng = np.random.default_rng(i % len(VINS))
        im = Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8))
        out.append(Sample(image=Path(f"mem{i}.png"), vin=VINS[i % len(VINS)], pixels=im))
    return out


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 17 * 33)
    )


def _fit(run_dir: Path, **over):
    from accelerate import Accelerator

    cfg = LoopConfig(
        max_steps=16,
        batch_size=4,
        learning_rate=0.03,
        warmup_steps=1,
        eval_every=8,
        eval_batch_size=4,
        save_every=4,
        keep_checkpoints=5,
        log_every=1,
        seed=1,
    )
    for k, v in over.items():
        setattr(cfg, k, v)
    model = _model()
    saved = []
    result = fit(
        ToyFamily(),
        model,
        _samples(16),
        _samples(4),
        cfg,
        run_dir,
        Accelerator(cpu=True),
        save_best=lambda m, d: saved.append(d),
    )
    return result, model, saved


def test_fit_learns_and_keeps_the_best(tmp_path):
    result, model, saved = _fit(tmp_path)
    assert result.step == 16 and not result.stopped_early
    steps = [h["step"] for h in result.history]
    assert steps == [0, 8, 16]  # baseline, every eval_every, end
    assert result.history[0]["exact_match"] == 0.0
    assert result.best_exact_match == 1.0 == result.history[-1]["exact_match"]
    assert saved and saved[-1] == tmp_path / "best"
    summary, preds = evaluate_model(ToyFamily(), model, _samples(4), batch_size=3)
    assert preds == VINS and summary["exact_match"] == 1.0


def test_resume_reaches_the_same_state_as_an_uninterrupted_run(tmp_path):
    _, straight, _ = _fit(tmp_path / "a")
    first, _, _ = _fit(tmp_path / "b", stop_after=12)
    assert first.stopped_early and first.step == 12
    assert latest_checkpoint(tmp_path / "b").name == "step_000012"
    second, resumed, _ = _fit(tmp_path / "b", resume="auto")
    assert second.step == 16
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert [h["step"] for h in second.history] == [0, 8, 16]


def test_incomplete_checkpoint_is_never_resumed(tmp_path):
    (tmp_path / "checkpoints" / ".tmp_step_000010").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step_000012").mkdir()  # no trainer_state.json: not complete
    assert latest_checkpoint(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        _fit(tmp_path / "x", resume=str(tmp_path / "checkpoints" / "step_000012"))


def test_too_few_samples_for_a_batch_is_a_clear_error(tmp_path):
    from accelerate import Accelerator

    cfg = LoopConfig(max_steps=2, batch_size=64, eval_every=0)
    with pytest.raises(ValueError, match="make no full batch of 64"):
        fit(ToyFamily(), _model(), _samples(8), [], cfg, tmp_path, Accelerator(cpu=True))


def test_loop_config_ignores_keys_it_does_not_own():
    cfg = LoopConfig.from_mapping({"max_steps": 3, "method": "lora", "lora": {"r": 8}})
    assert cfg.max_steps == 3
    random.seed(0)
