"""The model card of a real run: Hub metadata parsed with huggingface_hub's card utilities, and
every figure in it checked against the run's evaluation reports and run.json."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

import vin_ocr
from vin_ocr.hub.card import render_model_card
from vin_ocr.hub.push import push_run
from vin_ocr.models.pp_ocr import HUB_CHECKPOINTS
from vin_ocr.vin import normalize, validate

pytestmark = pytest.mark.slow  # the shared training run (~11 s of CPU) comes first


def pct(v):
    return f"{100 * v:.1f} %"


def row(text, name):
    [line] = [x for x in text.splitlines() if x.startswith(f"| {name} |")]
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_card_metadata_validates_and_matches_the_reports(trained_run):
    card = ModelCard.load(trained_run / "README.md")
    data = card.data.to_dict()
    ModelCardData(**data)  # the metadata round-trips through the Hub's own class
    assert data["license"] == "apache-2.0" and data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "image-to-text"
    # the id the code loads for this model (checkpoint: hub), not a name of our own
    assert data["base_model"] == HUB_CHECKPOINTS["v6_small"]
    assert {"vin", "ocr", "vin-ocr", "pp_ocr", "merged-lora"} <= set(data["tags"])
    assert "datasets" not in data  # the sets are local manifests, described in the body
    assert "not Hugging Face Hub datasets" in card.text
    assert "github.com" not in card.content and "pip install vin-ocr" not in card.content
    assert data["metrics"] == ["exact_match", "char_accuracy", "cer"]
    name, results = model_index_to_eval_results(data["model-index"])
    assert name == trained_run.name
    seen = set()
    for result in results:
        report = json.loads(
            (trained_run / "eval" / result.dataset_type / "report.json").read_text()
        )
        assert result.metric_value == report[result.metric_type], result
        seen.add((result.dataset_type, result.metric_type))
    assert seen == {("crops", m) for m in ("exact_match", "char_accuracy", "cer")}


def test_card_body_figures_match_the_run(trained_run):
    text = (trained_run / "README.md").read_text()
    info = json.loads((trained_run / "run.json").read_text())
    report = json.loads((trained_run / "eval/crops/report.json").read_text())
    metrics = info["metrics"]
    for name, tuned, base in (
        ("crops", report, metrics["test/crops_baseline"]),
        ("val", metrics["val"], metrics["val_baseline"]),
    ):
        assert row(text, name) == [
            pct(base["exact_match"]), pct(tuned["exact_match"]),
            pct(base["char_accuracy"]), pct(tuned["char_accuracy"]),
            f"{base['cer']:.4f}", f"{tuned['cer']:.4f}",
        ]  # fmt: skip
    assert report["exact_match"] > 0.5  # real figures of a real model, not zeros
    data = info["data"]
    assert (
        f"{data['real_train']} real (0 %) and {data['synthetic_train']} synthetic (100 %)" in text
    )
    training = yaml.safe_load((trained_run / "config.yaml").read_text())["training"]
    for key in ("method", "max_steps", "batch_size", "learning_rate", "warmup_steps"):
        assert row(text, key) == [str(training[key])]
    assert row(text, "lora.r") == [str(training["lora"]["r"])] and row(text, "seed") == ["0"]
    train = metrics["train"]
    assert f"{train['steps']} steps (best {train['best_step']}) in {train['seconds']} s" in text
    check = info["merge"]["verification"]
    assert f"Verified on {check['samples']} samples" in text and check["predictions_identical"]
    assert "check digit" in text and "North America and China only" in text


def test_usage_snippet_reads_a_vin(trained_run, tmp_path, monkeypatch):
    import huggingface_hub
    from PIL import Image

    staged = tmp_path / "staged"
    push_run(trained_run, {"dry_run": True, "repo_id": "acme/vin", "staging_dir": str(staged)})
    text = (staged / "README.md").read_text()
    [code] = re.findall(r"```python\n(.*?)```", text, re.S)
    downloads = []
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda repo: downloads.append(repo) or str(staged)
    )
    [first] = [json.loads(x) for x in (staged / "eval/crops/predictions.jsonl").open()][:1]
    manifest = trained_run.parent / "crops.jsonl"  # the run's test set (conftest)
    src = json.loads(manifest.read_text().splitlines()[0])["image"]
    assert first["image"].endswith(Path(src).name)
    Image.open(manifest.parent / src).save(tmp_path / "vin_crop.jpg")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "card-usage", "exec"), {})
    vin = normalize(first["raw"])
    assert downloads == ["acme/vin"]
    assert out.getvalue().strip() == f"{vin} {validate(vin).valid}"


def test_a_combination_without_figures_says_so():
    info = {"family": "lfm2_vl", "model": {"checkpoint": "LiquidAI/LFM2-VL-450M"}, "metrics": {}}
    card = ModelCard(render_model_card(info, "ab"))
    assert "Not evaluated yet" in card.text and "model-index" not in card.content
    assert card.data.base_model == "LiquidAI/LFM2-VL-450M"


def test_card_lists_only_hub_datasets_and_maps_named_sources(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    monkeypatch.chdir(tmp_path)
    (tmp_path / "local").mkdir()
    cfg = OmegaConf.create(
        {"data": {"train": "local/train.jsonl", "val": None,
                  "test": ["samples", "acme/vin-photos", "local/x", "./a/b"]}}
    )  # fmt: skip
    info = {"family": "pp_ocr", "model": {"checkpoint": "hub", "variant": "v5_mobile"}}
    card = ModelCard(render_model_card(info, "r", cfg))
    assert card.data.datasets == ["acme/vin-photos"]
    assert card.data.base_model == HUB_CHECKPOINTS["v5_mobile"]
    tiny = {"family": "pp_ocr", "model": {"checkpoint": "rapidocr", "tiny": True}}
    assert ModelCard(render_model_card(tiny, "t")).data.base_model is None


MODELS = Path(vin_ocr.__file__).parent / "configs" / "model"


def _license_card(model):
    info = {"family": model["family"], "model": model, "metrics": {}}
    card = ModelCard(render_model_card(info, "run"))
    return card.data.to_dict(), card.text


def test_the_card_states_the_base_checkpoints_license_or_none():
    # every shipped model config says its checkpoint's license (null: not known here)
    for path in sorted(MODELS.glob("*.yaml")):
        assert "license" in yaml.safe_load(path.read_text()) or path.stem == "auto", path
    lfm = yaml.safe_load((MODELS / "lfm2_vl_450m.yaml").read_text())
    data, text = _license_card(lfm)
    ModelCardData(**data)
    assert (data["license"], data["license_name"]) == ("other", "lfm1.0")
    assert data["license_link"].startswith("https://huggingface.co/LiquidAI/LFM2-VL-450M/")
    assert "under that model's license: `lfm1.0`" in text
    # unknown: no claim at all (before: apache-2.0 for every model), and the card says why
    data, text = _license_card({**lfm, "license": None})
    assert "license" not in data and "vin-ocr does not know that license" in text
    data, _ = _license_card({**lfm, "license": "mit"})
    assert data["license"] == "mit"
    # a tiny random model holds no one else's weights: the project's license
    data, text = _license_card({**lfm, "tiny": True})
    assert data["license"] == "apache-2.0" and "## License" not in text
