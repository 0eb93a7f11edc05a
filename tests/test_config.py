"""Every Hydra schema comes from one explicit call (:func:`vin_ocr.config.register_configs`):
each top-level config composes in a fresh interpreter after that call alone, and a mistyped
``model`` or ``training`` key fails while composing, naming the key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vin_ocr.config import CONFIG_DIRS, TOP_LEVEL, compose

#: The least each top-level config needs to compose (its ``???`` keys).
REQUIRED = {"prepare": ["out=x"], "synth": ["out=x"], "compare": ["runs=[a]"]}


def test_every_top_level_config_composes_in_a_fresh_interpreter():
    """No import side effect is needed: only ``register_configs()`` before composing."""
    script = f"""
import json, sys
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
import vin_ocr
from vin_ocr.config import CONFIG_DIRS, TOP_LEVEL, _schemas, register_configs
_schemas()  # imports every module that holds a schema: none registers on import
ours = [k for k in ConfigStore.instance().repo if k not in ("hydra", "_dummy_empty_config_.yaml")]
assert not ours, f"registered on import: {{ours}}"
register_configs()
out = {{}}
for name in TOP_LEVEL:
    folder = CONFIG_DIRS.get(name, vin_ocr.CONFIG_DIR)
    with initialize_config_dir(str(folder), version_base="1.3"):
        cfg = compose(name, overrides={REQUIRED!r}.get(name, []))
    out[name] = sorted(map(str, cfg))
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    keys = json.loads(done.stdout.splitlines()[-1])
    assert set(keys) == set(TOP_LEVEL)
    assert {"model", "training", "data", "hardware", "hub", "logger"} <= set(keys["train"])
    assert {"engine", "data"} <= set(keys["eval"])


def test_the_top_level_list_is_every_config_file():
    """A new command's config is added to TOP_LEVEL (and so composed above)."""
    from vin_ocr import CONFIG_DIR

    files = {p.stem for p in CONFIG_DIR.glob("*.yaml")}
    files |= {p.stem for d in set(CONFIG_DIRS.values()) for p in d.glob("*.yaml")}
    assert files == set(TOP_LEVEL)


@pytest.fixture
def experiments(tmp_path):
    """A config folder with experiments that mistype keys, added to Hydra's search path."""
    folder = tmp_path / "extra" / "experiment"
    folder.mkdir(parents=True)
    for name, body in {
        "model_typo": "model:\n  tinny: true\n",
        "training_typo": "training:\n  max_step: 2\n",
        "training_type": "training:\n  max_steps: lots\n",
        "fine": "model:\n  tiny: true\ntraining:\n  max_steps: 3\n",
    }.items():
        (folder / f"{name}.yaml").write_text(f"# @package _global_\n{body}")
    return f"hydra.searchpath=[file://{tmp_path / 'extra'}]"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["experiment=model_typo"], "tinny"),
        (["model=lfm2_vl_450m", "experiment=model_typo"], "tinny"),
        (["experiment=training_typo"], "max_step"),
        (["experiment=training_type"], "max_steps"),
        (["model.tinny=true"], "model.tinny"),
        (["training.max_step=2"], "training.max_step"),
        (["training.max_steps=lots"], "training.max_steps"),
        (["model=pp_ocr", "model.min_image_tokens=4"], "model.min_image_tokens"),  # lfm2's key
    ],
)
def test_a_mistyped_model_or_training_key_fails_naming_it(experiments, overrides, key):
    with pytest.raises(Exception, match=key.replace(".", r"\.")):
        compose("train", [experiments, *overrides])


def test_the_schemas_keep_what_the_files_say(experiments):
    cfg = compose("train", [experiments, "experiment=fine"])
    assert cfg.model.tiny is True and cfg.training.max_steps == 3
    assert "quantization" not in cfg.model  # PP-OCR has no 4-bit path: no key added
    lfm = compose("train", ["model=lfm2_vl_450m", "training=lora"])
    assert lfm.model.quantization == "none" and lfm.training.lora.r == 16
    assert "variant" not in lfm.model  # PP-OCR's key


def test_training_and_eval_data_are_separate_groups():
    with pytest.raises(Exception, match="data/samples"):
        compose("train", ["data=samples"])
    with pytest.raises(Exception, match="data/synth"):
        compose("eval", ["data=synth"])
    assert compose("eval", ["data=manifest", "data.path=x.jsonl"]).data.path == "x.jsonl"
    assert compose("train", ["data=user", "data.train=a", "data.val=b"]).data.train == "a"
