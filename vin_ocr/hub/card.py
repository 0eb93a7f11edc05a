"""The model card every training run (and every merge) writes: ``README.md`` in the run folder.

YAML metadata through ``huggingface_hub``'s card classes (license, base_model, library_name,
pipeline_tag, tags, datasets, metrics, and a model-index with exact match, character accuracy and
CER per evaluation set), then: baseline vs fine-tuned, training data (real vs synthetic share),
hyper-parameters, hardware and time, the merge check, intended use (with the check-digit caveat),
and a usage snippet that loads the model and reads a VIN. Every figure comes from ``run.json``'s
``metrics``, which hold the evaluation reports' values (``eval/<set>/report.json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vin_ocr.data.sample import atomic_write_text

TABLE_HEAD = (
    "| set | exact (base) | exact (fine-tuned) | char acc (base) | char acc (fine-tuned) "
    "| CER (base) | CER (fine-tuned) |\n| --- | --- | --- | --- | --- | --- | --- |"
)
METRICS = (("exact_match", "Exact match"), ("char_accuracy", "Character accuracy"), ("cer", "CER"))
#: Hyper-parameters shown (``training.*`` keys), in this order.
HYPER = (
    "method", "max_steps", "batch_size", "gradient_accumulation_steps", "learning_rate",
    "weight_decay", "warmup_steps", "max_grad_norm", "optimizer", "gradient_checkpointing",
)  # fmt: skip


def pipeline_tag(family: str) -> str:
    """The Hub pipeline tag the family declares (``FamilyFacts.pipeline_tag``)."""
    from vin_ocr.models.registry import FAMILIES, facts

    return facts(family).pipeline_tag if family in FAMILIES else "image-to-text"


def named_source(
    model: Mapping[str, Any], family: str | None = None
) -> tuple[str | None, str | None] | None:
    """(Hub id, sentence) for a ``model.checkpoint`` that names a source rather than a Hub id
    (``FamilyFacts.named_source``, e.g. PP-OCR's ``rapidocr`` wheel and ``hub``), asked of
    ``family`` or, when the family is not known, of every family; None for a plain checkpoint."""
    from vin_ocr.models.registry import FAMILIES, facts

    for name in [family] if family in FAMILIES else list(FAMILIES):
        named = facts(name).named_source
        found = named(model) if named is not None else None
        if found is not None:
            return found
    return None


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _cer(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def _get(cfg: Any, *keys: str, default: Any = None) -> Any:
    node = cfg
    for key in keys:
        if not hasattr(node, "get"):
            return default
        node = node.get(key)
    return default if node is None else node


def eval_sets(metrics: Mapping[str, Any]) -> list[str]:
    """The evaluation sets of a run's ``metrics`` (``test/<set>`` keys, baselines aside)."""
    sets = [k.removeprefix("test/") for k in metrics if k.startswith("test/")]
    return [s for s in sets if not s.endswith("_baseline")]


#: The license of a tiny random model: vin-ocr's own (it holds no one else's weights).
PROJECT_LICENSE = "apache-2.0"


def license_metadata(model: Mapping[str, Any]) -> dict[str, Any]:
    """The card's license keys: those of the base checkpoint (``model.license``), since the
    fine-tune is a derivative of it; none at all when it is unknown, rather than a wrong claim.

    >>> license_metadata({"license": "mit"})
    {'license': 'mit'}
    >>> license_metadata({"license": {"id": "other", "name": "lfm1.0", "link": "https://x/LICENSE"}})
    {'license': 'other', 'license_name': 'lfm1.0', 'license_link': 'https://x/LICENSE'}
    >>> license_metadata({"checkpoint": "some/model"})
    {}
    """
    if model.get("tiny"):
        return {"license": PROJECT_LICENSE}
    value = model.get("license")
    if not value:
        return {}
    if isinstance(value, str):
        return {"license": value}
    out = {"license": str(value.get("id") or "other")}
    if value.get("name"):
        out["license_name"] = str(value["name"])
    if value.get("link"):
        out["license_link"] = str(value["link"])
    return out


def _license(model: Mapping[str, Any], base: str) -> str:
    meta = license_metadata(model)
    if model.get("tiny"):
        return ""
    if not meta:
        return (
            "## License\n\nThis model is a fine-tune of `"
            + base
            + "`, and that model's license applies to it. vin-ocr does not know that license, "
            "so this card states none: read it on the base model's page and add it to the "
            "metadata (`license:`) before you publish, or set `model.license` for the run."
        )
    name = meta.get("license_name", meta["license"])
    link = f" ({meta['license_link']})" if "license_link" in meta else ""
    return f"## License\n\nA fine-tune of `{base}`, under that model's license: `{name}`{link}."


def base_model_id(info: Mapping[str, Any]) -> str | None:
    """The Hub id of the model fine-tuned (None for a tiny random model or a local folder).

    >>> base_model_id({"model": {"checkpoint": "LiquidAI/LFM2-VL-450M"}})
    'LiquidAI/LFM2-VL-450M'
    >>> base_model_id({"model": {"checkpoint": "rapidocr", "variant": "v6_small"}})
    'PaddlePaddle/PP-OCRv6_small_rec_safetensors'
    """
    model = info["model"]
    if model.get("tiny"):
        return None
    base = model.get("checkpoint")
    named = named_source(model, info.get("family") or model.get("family"))
    if named is not None:
        base = named[0]
    return base if is_hub_id(base) else None


def is_hub_id(name: Any) -> bool:
    """``org/name`` that is not a local path (a dataset or model id the Hub can resolve)."""
    if not isinstance(name, str) or name.count("/") != 1 or name.startswith((".", "/", "~")):
        return False
    path = Path(name)
    local = path.exists() or path.parent.is_dir() or path.suffix.lower() in _FILE_SUFFIXES
    return not local


_FILE_SUFFIXES = frozenset({".jsonl", ".json", ".csv", ".tsv", ".txt", ".parquet", ".arrow"})


def _source(model: Mapping[str, Any], family: str | None = None) -> str:
    named = named_source(model, family)
    if named is not None and named[1]:
        return named[1]
    return f"`{model.get('checkpoint')}`"


def data_share(info: Mapping[str, Any], cfg: Any) -> tuple[int | None, int]:
    """(real, synthetic) training samples per epoch: ``run.json``'s ``data`` when recorded."""
    data = info.get("data") or {}
    synth = data.get("synthetic_train", _get(cfg, "data", "synth_train", default=0))
    return data.get("real_train", 0 if not _get(cfg, "data", "train") else None), int(synth)


def render_model_card(
    info: dict[str, Any], run_name: str, cfg: Any = None, repo_id: str | None = None
) -> str:
    """The card's text for a run's ``run.json`` ``info`` and resolved config ``cfg``;
    ``repo_id``: the Hub repo it is pushed to (the usage snippet downloads it)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    model = info["model"]
    metrics = info.get("metrics", {})
    family = info["family"]
    sets = eval_sets(metrics)
    results = [
        EvalResult(
            task_type="image-to-text",
            dataset_type=name,
            dataset_name=name,
            metric_type=key,
            metric_name=pretty,
            metric_value=metrics[f"test/{name}"][key],
        )
        for name in sets
        for key, pretty in METRICS
    ]
    real, synth = data_share(info, cfg)
    merge = info.get("merge")
    data = ModelCardData(
        **license_metadata(model),
        library_name="transformers",
        pipeline_tag=pipeline_tag(family),
        tags=["vin", "ocr", "vin-ocr", family, *(["merged-lora"] if merge else [])],
        base_model=base_model_id(info),
        datasets=[d for d in _data_sources(cfg) if is_hub_id(d)] or None,  # Hub ids only
        metrics=[key for key, _ in METRICS],
        model_name=repo_id or run_name,
        eval_results=results or None,
    )
    sections = [
        f"# {repo_id or run_name}",
        f"A VIN reader fine-tuned with vin-ocr from {_source(model, family)} (family `{family}`"
        + (", a tiny random test model" if model.get("tiny") else "")
        + ").",
        _results(metrics, sets),
        _training_data(real, synth, cfg, sets),
        _hyper(info, cfg),
        _hardware(info),
        _merge(merge),
        _license(model, base_model_id(info) or str(model.get("checkpoint"))),
        _INTENDED_USE,
        _usage(repo_id, run_name),
    ]
    body = "\n\n".join(s for s in sections if s) + "\n"
    card = ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + body)
    return str(card)


def _results(metrics: Mapping[str, Any], sets: list[str]) -> str:
    rows = []
    for name in ["val", *sets]:
        ft = metrics.get("val" if name == "val" else f"test/{name}")
        bl = metrics.get("val_baseline" if name == "val" else f"test/{name}_baseline")
        if ft and bl:
            rows.append(
                f"| {name} | {_pct(bl['exact_match'])} | {_pct(ft['exact_match'])} | "
                f"{_pct(bl['char_accuracy'])} | {_pct(ft['char_accuracy'])} | "
                f"{_cer(bl['cer'])} | {_cer(ft['cer'])} |"
            )
    if not rows:
        return (
            "## Results\n\nNot evaluated yet (a combination of adapters is a new model): run "
            "`python -m vin_ocr.evaluation.evaluate engine=checkpoint engine.path=FOLDER`."
        )
    return (
        "## Results: pretrained baseline vs fine-tuned\n\n"
        f"{TABLE_HEAD}\n" + "\n".join(rows) + "\n\n"
        "`val` is the validation split used during training (the fine-tuned column is its best "
        "evaluation); the other sets are evaluated at the end with the harness "
        "(`eval/<set>/report.json`)." + _not_improved(metrics)
    )


def _not_improved(metrics: Mapping[str, Any]) -> str:
    """The plain fact when no trained step beat the pretrained model on validation."""
    if metrics.get("train", {}).get("beat_baseline") is not False:
        return ""
    return (
        "\n\n**No training step beat the pretrained model on validation** (exact match, then "
        "CER): the weights published here are the pretrained ones (step 0)."
    )


def _data_sources(cfg: Any) -> list[str]:
    """The training / validation / evaluation data the config names (paths, manifests, ids)."""
    data = _get(cfg, "data")
    if data is None:
        return []
    names = []
    for key in ("train", "val", "test"):
        value = data.get(key)
        values = [value] if isinstance(value, str) else list(value or [])
        names += [str(v) for v in values if v]
    return names


def _training_data(real: int | None, synth: int, cfg: Any, sets: list[str]) -> str:
    if real is None:
        share = f"real samples from `{_get(cfg, 'data', 'train')}` and {synth} synthetic per epoch"
    else:
        total = max(real + synth, 1)
        share = (
            f"{real} real ({100 * real / total:.0f} %) and {synth} synthetic "
            f"({100 * synth / total:.0f} %) samples per epoch"
        )
    val = _get(cfg, "data", "val") or f"{_get(cfg, 'data', 'synth_val', default='?')} synthetic"
    return (
        "## Training data\n\n"
        f"- training: {share}; synthetic VIN images are rendered by `vin_ocr.data.synth` "
        f"(kind `{_get(cfg, 'data', 'synth', 'kind', default='line')}`)\n"
        f"- validation: {val}\n"
        f"- evaluation sets: {', '.join(sets) or 'none'} (`samples` is the bundled synthetic set "
        "`data/samples`"
        + (
            '; `real` is 20 real windshield photos, `data/real`, from "Vin detection", '
            "kirill-sergeev, Roboflow Universe, CC BY 4.0, evaluation only"
            if "real" in sets
            else ""
        )
        + ")\n\n"
        "These are local data sets (vin-ocr manifests), not Hugging Face Hub datasets, so the "
        "card's `datasets` metadata lists only sets given as Hub ids."
    )


def _hyper(info: Mapping[str, Any], cfg: Any) -> str:
    training = _get(cfg, "training")
    if training is None:
        return ""
    rows = [f"| {k} | {training.get(k)} |" for k in HYPER if training.get(k) is not None]
    lora = training.get("lora") if training.get("method") in ("lora", "qlora") else None
    if lora:
        for key in ("r", "alpha", "dropout", "target_modules"):
            rows.append(f"| lora.{key} | {lora.get(key)} |")
    rows.append(f"| seed | {info.get('seed', _get(cfg, 'seed'))} |")
    return "## Hyper-parameters\n\n| key | value |\n| --- | --- |\n" + "\n".join(rows)


def _hardware(info: Mapping[str, Any]) -> str:
    train = info.get("metrics", {}).get("train", {})
    hw = info.get("hardware", {})
    versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
    return (
        "## Hardware and time\n\n"
        f"- {hw.get('device')} × {hw.get('device_count')}, dtype {hw.get('dtype')}, "
        f"attention {hw.get('attn_implementation')}\n"
        f"- {train.get('steps')} steps (best {train.get('best_step')}) in "
        f"{train.get('seconds')} s, {train.get('samples_per_s') or 0:.1f} samples/s\n"
        f"- versions: {versions}"
    )


def _merge(merge: Mapping[str, Any] | None) -> str:
    if not merge:
        return ""
    if "error" in merge:
        return f"## Merge\n\nThe merge failed verification ({merge['error']}): use the adapter."
    check = merge["verification"]
    how = f"combined ({merge['combination']}) from" if merge.get("combination") else "merged from"
    return (
        "## Merge\n\n"
        f"LoRA {how} {', '.join(f'`{Path(s).name}`' for s in merge['sources'])} into "
        f"`{merge.get('base')}` (16-bit base). Verified on {check['samples']} samples: largest "
        f"logit difference {check['max_abs_diff']:.3g} (relative {check['relative_diff']:.3g}, "
        f"tolerance {check['tolerance']:g}), VIN predictions identical."
    )


_INTENDED_USE = """## Intended use and limits

Reads the 17-character VIN (ISO 3779) from line crops (a photo is read whole). The check digit
(position 9) is mandatory in North America and China only: a European VIN may fail it by design,
so vin-ocr never forces it outside those regions; read `validate(vin).reasons` instead of
rejecting such VINs. Synthetic training data does not cover every real surface; evaluate on your
own labelled photos with `python -m vin_ocr.evaluation.evaluate` before relying on it."""


def _usage(repo_id: str | None, run_name: str) -> str:
    if repo_id:
        load = (
            "from huggingface_hub import snapshot_download\n\n"
            "from vin_ocr.data.images import open_image\n"
            "from vin_ocr.run_folder import load_run\n"
            "from vin_ocr.vin import normalize, validate\n\n"
            f'engine = load_run(snapshot_download("{repo_id}"))'
        )
    else:
        load = (
            "from vin_ocr.data.images import open_image\n"
            "from vin_ocr.run_folder import load_run\n"
            "from vin_ocr.vin import normalize, validate\n\n"
            f'engine = load_run("{run_name}")  # the run folder'
        )
    return f"""## Usage

With vin-ocr installed (from its source: `pip install -e .`):

```python
{load}
raw = engine.predict([open_image("vin_crop.jpg")])[0]  # EXIF rotation, 16-bit scans handled
vin = normalize(raw)
print(vin, validate(vin).valid)
```"""


def write_model_card(
    run_dir: Path, info: dict[str, Any], cfg: Any = None, name: str | None = None
) -> Path:
    """Write ``README.md`` in ``run_dir`` (atomically); ``name`` defaults to the folder's."""
    run_dir = Path(run_dir)
    return atomic_write_text(
        run_dir / "README.md", render_model_card(info, name or run_dir.name, cfg)
    )
