"""The shared loop on a toy family: loss falls, the best model is kept, resume is exact."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vin_ocr.data.sample import Sample
from vin_ocr.training.loop import (
    BEST_FILE,
    LoopConfig,
    evaluate_model,
    find_resume,
    fit,
    latest_checkpoint,
)

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


class ScriptedFamily(ToyFamily):
    """The toy model trained as usual, but each validation pass reads a fixed share of every
    VIN's characters wrong (``cers``, one per evaluation): the best-step rule under test."""

    def __init__(self, cers):
        self.cers, self.calls = list(cers), 0

    def predict(self, model, images):
        wrong = round(17 * self.cers[self.calls])
        self.calls += 1
        return [VINS[i % len(VINS)][: 17 - wrong] + "0" * wrong for i in range(len(images))]


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


def _fit(run_dir: Path, family=None, on_log=None, **over):
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
        family or ToyFamily(),
        model,
        _samples(16),
        _samples(4),
        cfg,
        run_dir,
        Accelerator(cpu=True, gradient_accumulation_steps=cfg.gradient_accumulation_steps),
        save_best=lambda m, d: saved.append(d),
        on_log=on_log,
    )
    return result, model, saved


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


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


@pytest.mark.parametrize("accumulation", [1, 2])
def test_resume_reaches_the_same_state_as_an_uninterrupted_run(tmp_path, accumulation):
    over = {"gradient_accumulation_steps": accumulation, "batch_size": 4 // accumulation}
    done, straight, _ = _fit(tmp_path / "a", **over)
    first, _, _ = _fit(tmp_path / "b", stop_after=12, **over)
    assert first.stopped_early and first.step == 12
    assert latest_checkpoint(tmp_path / "b").name == "step_000012"
    second, resumed, _ = _fit(tmp_path / "b", resume="auto", **over)
    assert second.step == 16
    _assert_same(straight.state_dict(), resumed.state_dict())
    assert [h["step"] for h in second.history] == [0, 8, 16]
    # the best model (weights, step, scores) comes back from the checkpoint, not from memory
    assert (second.best_step, second.best_exact_match, second.best_cer) == (
        done.best_step, done.best_exact_match, done.best_cer)  # fmt: skip
    _assert_same(done.best_weights, second.best_weights)
    assert second.last_loss == done.last_loss


def test_best_weights_are_the_best_steps_and_live_in_each_checkpoint(tmp_path):
    from safetensors.torch import load_file

    # evaluated at 0, 8, 16 but the best (by CER, exact match tied at 0) is step 8
    result, model, _ = _fit(tmp_path, family=ScriptedFamily([1.0, 0.5, 0.75]))
    cers = [h["cer"] for h in result.history]
    assert [h["exact_match"] for h in result.history] == [0.0, 0.0, 0.0]
    assert cers[1] < cers[2] < cers[0]
    assert (result.best_step, result.best_exact_match, result.best_cer) == (8, 0.0, cers[1])
    assert result.beat_baseline is True
    stored = load_file(str(tmp_path / "checkpoints" / "step_000012" / BEST_FILE))
    _assert_same(stored, result.best_weights)
    final = {k: v for k, v in model.state_dict().items()}
    assert not all(torch.equal(final[k], v) for k, v in stored.items())  # not the last step's


def test_no_step_beating_the_baseline_is_said(tmp_path):
    # CER and exact match tie with the untrained model: the earlier step (0) is kept, and said
    result, _, _ = _fit(tmp_path, family=ScriptedFamily([1.0, 1.0, 1.0]))
    assert result.best_step == 0 and result.beat_baseline is False
    _assert_same(result.best_weights, _model().state_dict())


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    _, straight, _ = _fit(tmp_path / "a")
    _fit(tmp_path / "b", stop_after=12)
    newest = tmp_path / "b" / "checkpoints" / "step_000012" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # a kill -9 during a copy, a full disk
    assert find_resume(tmp_path / "b", "auto").name == "step_000008"
    assert "skipping damaged checkpoint" in caplog.text and "step_000012" in caplog.text
    with pytest.raises(ValueError, match=r"is damaged: model\.safetensors has 100 bytes"):
        find_resume(tmp_path / "b", str(newest.parent))
    second, resumed, _ = _fit(tmp_path / "b", resume="auto")
    assert second.step == 16
    _assert_same(straight.state_dict(), resumed.state_dict())
    for ckpt in (tmp_path / "b" / "checkpoints").glob("step_*"):
        (ckpt / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="no intact checkpoint"):
        find_resume(tmp_path / "b", "auto")


def test_gradient_accumulation_matches_a_larger_batch(tmp_path):
    """2 micro-batches of 2, accumulated, make the same updates as batches of 4 (same samples
    per optimiser step: the sampler's order does not depend on the batch size)."""
    _, big, _ = _fit(tmp_path / "a", batch_size=4, eval_every=0, save_every=0)
    _, acc, _ = _fit(tmp_path / "b", batch_size=2, gradient_accumulation_steps=2,
                     eval_every=0, save_every=0)  # fmt: skip
    _, small, _ = _fit(tmp_path / "c", batch_size=2, eval_every=0, save_every=0)
    for k, v in big.state_dict().items():
        torch.testing.assert_close(acc.state_dict()[k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert not torch.allclose(small.state_dict()["0.weight"], big.state_dict()["0.weight"])


def test_learning_rate_follows_warmup_then_cosine(tmp_path):
    import math

    lrs = {}
    _fit(tmp_path, on_log=lambda values, step: lrs.update({step: values["lr"]})
         if "lr" in values else None, warmup_steps=4, eval_every=0, save_every=0)  # fmt: skip
    base, warm, total = 0.03, 4, 16
    for step in range(1, total + 1):  # the rate used for the next step, after ``step`` steps
        if step < warm:
            want = base * step / warm
        else:
            want = base * 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))
        assert lrs[step] == pytest.approx(want, abs=1e-9), step
    assert lrs[total] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("max_norm", [0.01, 0.0])
def test_gradients_are_clipped_to_max_grad_norm(tmp_path, monkeypatch, max_norm):
    norms = []
    real_step = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    _fit(tmp_path, max_grad_norm=max_norm, eval_every=0, save_every=0, max_steps=4)
    assert len(norms) == 4
    if max_norm:
        assert max(norms) <= max_norm * (1 + 1e-4)
    else:  # 0: no clipping, the raw gradients are far larger
        assert min(norms) > 0.1


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


def test_loop_config_ignores_keys_it_does_not_own():  # the training schema refuses them
    cfg = LoopConfig.from_mapping({"max_steps": 3, "method": "lora", "lora": {"r": 8}})
    assert cfg.max_steps == 3
    random.seed(0)
