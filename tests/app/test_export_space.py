"""export_space: a Space folder whose README header, app.py and requirements are right."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
from huggingface_hub import SpaceCard
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import vin_ocr
from vin_ocr.app.export_space import SpaceError, export_space, pick_hardware
from vin_ocr.config import register_configs
from vin_ocr.hardware import load_model_cfg

FAKE_TOKEN = "hf_FakeTokenThatMustNeverBeWritten123"


def space_cfg(*overrides: str):
    register_configs()
    with initialize_config_dir(str(vin_ocr.CONFIG_DIR / "app"), version_base="1.3"):
        return compose("space", overrides=list(overrides))


def fake_run(tmp_path, model: str):
    """A run folder as training writes it (run.json + model/); nothing in model/ is read here."""
    run = tmp_path / f"run_{model}"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    (run / "model" / "model.safetensors").write_bytes(b"")  # a weights file is all it checks
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
    assert (out / "vin_ocr" / "configs" / "app" / "app.yaml").is_file()  # configs inside
    assert (out / "vin_ocr" / "assets" / "samples" / "manifest.jsonl").is_file()
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
    with pytest.raises(SpaceError, match=r"is not empty; .* overwrite=true"):
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


def tiny_run(tmp_path):
    """A real run folder (run.json + model/) of a tiny random PP-OCR model, as training saves."""
    from vin_ocr.models.registry import get_family

    run = tmp_path / "runs" / "tiny"
    model_cfg = load_model_cfg("pp_ocr")
    model_cfg.tiny = True
    family = get_family("pp_ocr", model_cfg)
    model, processor = family.build(model_cfg, None)
    model.save_pretrained(run / "model")
    processor.save_pretrained(run / "model")
    info = {"family": "pp_ocr", "model": OmegaConf.to_container(model_cfg), "seed": 0}
    (run / "run.json").write_text(json.dumps(info))
    return run


def test_bad_requests_end_with_one_message_and_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    (tmp_path / "runs").mkdir()
    interrupted = tmp_path / "runs" / "interrupted"
    (interrupted / "checkpoints").mkdir(parents=True)
    saving = tmp_path / "runs" / "saving"
    (saving / "model").mkdir(parents=True)
    (saving / "run.json").write_text(json.dumps({"family": "pp_ocr", "model": {}}))
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep")
    out = tmp_path / "space"
    cases = [
        ([f"out={full}"], r"full is not empty; choose an empty or new folder, or pass overwrite"),
        (["model=someone/vin-lfm2"], "HF_HUB_OFFLINE is set.*Pass model_config=NAME"),
        (["model=runs/tiny-typo"], "the folder runs/tiny-typo does not exist. model= takes"),
        (["model=./tiny"], "the folder tiny does not exist"),
        (["model=mymodel"], "the folder mymodel does not exist.*baseline"),
        ([f"model={interrupted}"], "not a finished run folder .no run.json: still training"),
        ([f"model={saving}"], "the run is incomplete .no model/ weights"),
        (["push_to=you/vin-space"], "push_to=you/vin-space: no Hugging Face token"),
        (["push_to=not a space id"], "expected a Space id user/name"),
    ]  # fmt: skip
    for overrides, message in cases:
        with pytest.raises(SpaceError, match=message):
            export_space(space_cfg(f"out={out}", *overrides))
        assert not out.exists()
    assert [p.name for p in full.iterdir()] == ["mine.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders


def test_cli_prints_one_error_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "vin_ocr.app.export_space", f"out={tmp_path / 's'}", "model=./nope"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: model=./nope: the folder nope does not exist")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "s").exists()


STARTS = """
import sys, vin_ocr, app
from pathlib import Path
from PIL import Image
from vin_ocr.app import EngineCache, build_app, engine_choices
assert Path(vin_ocr.__file__).resolve().parent == Path("vin_ocr").resolve(), vin_ocr.__file__
cache = EngineCache(engine_choices(app.cfg))
engine = cache.get(app.cfg.model)  # serve() loads the model first: a bad one stops here
demo = build_app(app.cfg, cache)
print(type(demo).__name__, app.cfg.model, len(engine.predict([Image.new("RGB", (200, 40))])))
"""


@pytest.mark.slow
def test_the_exported_space_starts_offline_with_its_run(tmp_path):
    """The Space's own app.py, run from its folder with the vendored package and no network,
    loads its bundled run and builds the Gradio page (everything ``serve`` does but launch)."""
    import os
    import subprocess
    import sys

    run = tiny_run(tmp_path)
    out = tmp_path / "space"
    export_space(space_cfg(f"out={out}", f"model={run}"))
    assert (out / "run" / "model" / "model.safetensors").is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HUB_OFFLINE="1", HOME=str(tmp_path), GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.run(
        [sys.executable, "-c", STARTS], cwd=out, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-3:] == ["Blocks", "run", "1"]
