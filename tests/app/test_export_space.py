"""export_space: a Space folder whose README header, app.py and requirements are right."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
from huggingface_hub import SpaceCard
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import vin_ocr
from vin_ocr.app.export_space import export_space, pick_hardware, register_configs
from vin_ocr.hardware import load_model_cfg

FAKE_TOKEN = "hf_FakeTokenThatMustNeverBeWritten123"


def space_cfg(*overrides: str):
    register_configs()
    with initialize_config_dir(str(vin_ocr.CONFIG_DIR / "app"), version_base="1.3"):
        return compose("space", overrides=list(overrides))


def fake_run(tmp_path, model: str):
    """A run folder as training writes it (run.json + model/); only run.json is read here."""
    run = tmp_path / f"run_{model}"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    info = {"family": "x", "model": OmegaConf.to_container(load_model_cfg(model))}
    (run / "run.json").write_text(json.dumps(info))
    return run


def test_baseline_space(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    out = tmp_path / "space"
    result = export_space(space_cfg(f"out={out}"))
    assert result.hardware == "cpu-basic"
    card = SpaceCard.load(out / "README.md")
    gradio = importlib.metadata.version("gradio")
    assert (card.data.sdk, card.data.sdk_version, card.data.app_file) == (
        "gradio",
        gradio,
        "app.py",
    )
    assert card.data.suggested_hardware == "cpu-basic"
    app = (out / "app.py").read_text()
    compile(app, "app.py", "exec")
    assert "'custom_engines': False" in app and "'host': '0.0.0.0'" in app
    reqs = (out / "requirements.txt").read_text().splitlines()
    assert f"gradio=={gradio}" in reqs and "--extra-index-url" in reqs[1]
    torch = importlib.metadata.version("torch").split("+")[0]
    assert f"torch=={torch}+cpu" in reqs
    assert f"rapidocr=={importlib.metadata.version('rapidocr')}" in reqs
    assert (out / "vin_ocr" / "app" / "ui.py").is_file()  # vendored package
    assert (out / "configs" / "app" / "app.yaml").is_file()
    assert (out / "data" / "samples" / "manifest.jsonl").is_file()
    for path in out.rglob("*"):
        if path.is_file():
            assert FAKE_TOKEN.encode() not in path.read_bytes(), path


@pytest.mark.slow  # the first model_spec imports transformers
def test_vlm_run_gets_a_gpu_and_is_bundled(tmp_path):
    run = fake_run(tmp_path, "lfm2_5_vl")
    out = tmp_path / "space"
    result = export_space(space_cfg(f"out={out}", f"model={run}", "package='vin-ocr==0.1.0'"))
    assert result.hardware == "t4-small" and "1.6" in result.why
    assert (out / "run" / "run.json").is_file() and (out / "run" / "model").is_dir()
    assert "'model': 'run'" in (out / "app.py").read_text()
    reqs = (out / "requirements.txt").read_text()
    assert "vin-ocr==0.1.0" in reqs and "+cpu" not in reqs and "rapidocr" not in reqs
    assert not (out / "vin_ocr").exists()
    # An existing Space is never overwritten by accident, and stays intact.
    with pytest.raises(FileExistsError, match="overwrite=true"):
        export_space(space_cfg(f"out={out}"))
    assert (out / "run" / "run.json").is_file()
    zero = export_space(space_cfg(f"out={out}", f"model={run}", "zero_gpu=true", "overwrite=true"))
    assert zero.hardware == "zero-a10g"
    app = (out / "app.py").read_text()
    assert "import spaces" in app and "gpu=spaces.GPU" in app
    compile(app, "app.py", "exec")


def test_hub_model_offline_needs_a_model_config(tmp_path):
    with pytest.raises(ValueError, match="Pass model_config=NAME"):
        export_space(space_cfg(f"out={tmp_path / 's'}", "model=someone/vin-lfm2"))
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())
    out = tmp_path / "s2"
    export_space(space_cfg(f"out={out}", "model=someone/vin-pp", "model_config=pp_ocr"))
    card = SpaceCard.load(out / "README.md")
    assert card.data.models == ["someone/vin-pp"] and card.data.suggested_hardware == "cpu-basic"


def test_pick_hardware():
    assert pick_hardware(None)[0] == "cpu-basic"
    assert pick_hardware(load_model_cfg("pp_ocr"))[0] == "cpu-basic"
    assert pick_hardware(None, "a10g-small") == ("a10g-small", "set with hardware=")
    with pytest.raises(ValueError, match="not a Space hardware"):
        pick_hardware(None, "gpu-large")
