"""The loop's speed settings (``autocast``, ``channels_last``) on a toy conv family: they change
how the steps run, not what is trained, saved or resumed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vin_ocr.data.sample import Sample
from vin_ocr.training.loop import LoopConfig, fit, latest_checkpoint

ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
VINS = ["1M8GDM9AXKP042788", "WVWZZZ1JZXW000001", "JHMCM56557C404453", "5YJ3E1EA7KF317000"]


class ConvFamily:
    """17 classifiers over a conv feature of an 8x8 image; records how each step ran."""

    name = "toy_conv"

    def __init__(self) -> None:
        self.seen: list[dict] = []

    @staticmethod
    def _pixels(im):
        rgb = np.asarray(im.convert("RGB").resize((8, 8)), np.float32) / 255
        return torch.from_numpy(rgb).permute(2, 0, 1)  # 3 channels: channels-last differs

    def collate(self, samples):
        x = torch.stack([self._pixels(s.load_image()) for s in samples])
        y = torch.tensor([[ALPHABET.index(c) for c in s.vin] for s in samples])
        return {"x": x, "y": y}

    def loss(self, model, batch):
        x = batch["x"]
        logits = model(x).view(-1, 17, len(ALPHABET))
        self.seen.append({
            "channels_last": x.is_contiguous(memory_format=torch.channels_last),
            "autocast": torch.is_autocast_enabled("cpu"),
            "logits": logits.dtype,
        })  # fmt: skip
        return torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), batch["y"])

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
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 64, 17 * 33),
    )


def _fit(run_dir: Path, family: ConvFamily, **over):
    from accelerate import Accelerator

    cfg = LoopConfig(max_steps=12, batch_size=4, learning_rate=0.02, warmup_steps=1, eval_every=6,
                     eval_batch_size=4, save_every=6, log_every=1, seed=1)  # fmt: skip
    for k, v in over.items():
        setattr(cfg, k, v)
    model = _model()
    result = fit(family, model, _samples(16), _samples(4), cfg, run_dir, Accelerator(cpu=True))
    return result, model


def test_channels_last_trains_the_same_model_and_gives_it_back_in_the_default_format(tmp_path):
    plain_family, fast_family = ConvFamily(), ConvFamily()
    plain, plain_model = _fit(tmp_path / "plain", plain_family)
    fast, fast_model = _fit(tmp_path / "fast", fast_family, channels_last=True)
    assert not any(s["channels_last"] for s in plain_family.seen)
    assert all(s["channels_last"] for s in fast_family.seen)
    assert len(fast.history) == len(plain.history)
    for a, b in zip(fast.history, plain.history, strict=True):
        assert a == pytest.approx(b)
    fast_state = fast_model.state_dict()
    for name, a in plain_model.state_dict().items():
        torch.testing.assert_close(a, fast_state[name], rtol=1e-3, atol=1e-4, msg=name)
        assert fast_state[name].is_contiguous(), name  # saved / exported as usual
    assert fast.best_exact_match == 1.0
    assert latest_checkpoint(tmp_path / "fast") is not None  # checkpoints written meanwhile


def test_channels_last_resume_continues_like_an_uninterrupted_run(tmp_path):
    whole, whole_model = _fit(tmp_path / "whole", ConvFamily(), channels_last=True)
    _fit(tmp_path / "cut", ConvFamily(), channels_last=True, stop_after=6)
    resumed, resumed_model = _fit(tmp_path / "cut", ConvFamily(), channels_last=True,
                                  resume="auto")  # fmt: skip
    assert resumed.history == whole.history
    resumed_state = resumed_model.state_dict()
    for name, a in whole_model.state_dict().items():
        torch.testing.assert_close(a, resumed_state[name], rtol=0, atol=0, msg=name)


def test_bf16_autocast_runs_the_steps_in_bf16_and_keeps_fp32_weights(tmp_path):
    family = ConvFamily()
    result, model = _fit(tmp_path, family, autocast="bf16")
    assert family.seen and all(s["autocast"] and s["logits"] == torch.bfloat16 for s in family.seen)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not torch.is_autocast_enabled("cpu")  # nothing leaks out of the step
    assert result.best_exact_match == 1.0  # it still learns the toy task


def test_default_runs_without_autocast(tmp_path):
    family = ConvFamily()
    _fit(tmp_path, family, max_steps=2, eval_every=0, save_every=0)
    assert not any(s["autocast"] for s in family.seen)
    assert all(s["logits"] == torch.float32 for s in family.seen)


def test_unknown_autocast_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"training.autocast='fp8'; known: none, bf16, auto"):
        _fit(tmp_path, ConvFamily(), autocast="fp8")


def test_unknown_autocast_stops_the_run_at_start_up():
    from omegaconf import OmegaConf

    from vin_ocr.training.start import StartError, check_config

    check_config(OmegaConf.create({"training": {"autocast": "bf16", "channels_last": True}}))
    with pytest.raises(StartError, match=r"training.autocast='fp8'; known: none, bf16, auto"):
        check_config(OmegaConf.create({"training": {"autocast": "fp8"}}))


@pytest.mark.parametrize("amx", [True, False])
def test_auto_autocast_is_bf16_on_a_cpu_with_amx_only(tmp_path, monkeypatch, amx):
    import importlib

    detect = importlib.import_module("vin_ocr.hardware.detect")  # the module, not the function
    monkeypatch.setattr(detect, "_cpu_amx", lambda: amx)
    family = ConvFamily()
    _fit(tmp_path, family, autocast="auto", max_steps=2, eval_every=0, save_every=0)
    assert family.seen and all(s["autocast"] is amx for s in family.seen)
