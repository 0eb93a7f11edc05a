"""The model card every training run writes (``README.md`` in the run folder).

YAML metadata through ``huggingface_hub``'s card classes (model-index with exact match, character
accuracy and CER per evaluation set), then baseline vs fine-tuned, training, hardware, usage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vin_ocr.data.sample import atomic_write_text

BASE_MODELS = {
    "rapidocr": "PaddlePaddle/PP-OCRv6_small_rec",
}
PIPELINE = {"pp_ocr": "image-to-text", "lfm2_vl": "image-text-to-text"}
TABLE_HEAD = (
    "| set | exact (base) | exact (fine-tuned) | char acc (base) | char acc (fine-tuned) "
    "| CER (base) | CER (fine-tuned) |\n| --- | --- | --- | --- | --- | --- | --- |"
)
METRICS = (("exact_match", "Exact match"), ("char_accuracy", "Character accuracy"), ("cer", "CER"))


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def render_model_card(info: dict[str, Any], run_name: str) -> str:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    model = info["model"]
    metrics = info["metrics"]
    base = BASE_MODELS.get(str(model.get("checkpoint")), model.get("checkpoint"))
    results = []
    sets = [k.removeprefix("test/") for k in metrics if k.startswith("test/")]
    sets = [s for s in sets if not s.endswith("_baseline")]
    for name in sets:
        for key, pretty in METRICS:
            result = EvalResult(
                task_type="image-to-text",
                dataset_type=name,
                dataset_name=name,
                metric_type=key,
                metric_name=pretty,
                metric_value=metrics[f"test/{name}"][key],
            )
            results.append(result)
    data = ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag=PIPELINE.get(info["family"], "image-to-text"),
        tags=["vin", "ocr", "vin-ocr", info["family"]],
        base_model=base if isinstance(base, str) and "/" in base else None,
        model_name=run_name,
        eval_results=results or None,
    )
    rows = []
    for name in ["val", *sets]:
        ft = metrics.get("val" if name == "val" else f"test/{name}")
        bl = metrics.get("val_baseline" if name == "val" else f"test/{name}_baseline")
        if ft and bl:
            rows.append(
                f"| {name} | {_pct(bl['exact_match'])} | {_pct(ft['exact_match'])} | "
                f"{_pct(bl['char_accuracy'])} | {_pct(ft['char_accuracy'])} | "
                f"{bl['cer']:.4f} | {ft['cer']:.4f} |"
            )
    train = metrics.get("train", {})
    hw = info.get("hardware", {})
    body = f"""
# {run_name}

A VIN reader fine-tuned with [vin-ocr](https://github.com/vin-ocr/vin-ocr) from
`{model.get("checkpoint")}` (family `{info["family"]}`).

## Results: pretrained baseline vs fine-tuned

{TABLE_HEAD}
{chr(10).join(rows)}

`val` is the validation split used during training; other sets are evaluated at the end.

## Training

- steps: {train.get("steps")}, best step: {train.get("best_step")}, time: {train.get("seconds")} s,
  {train.get("samples_per_s") or 0:.1f} samples/s
- data: see `config.yaml` (`data.*`; synthetic samples are rendered by `vin_ocr.data.synth`)
- hardware: {hw.get("device")} × {hw.get("device_count")}, dtype {hw.get("dtype")},
  attention {hw.get("attn_implementation")}
- versions: {", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())}

## Intended use and limits

Reads the 17-character VIN (ISO 3779) from line crops. The check digit (position 9) is mandatory
in North America and China only: a European VIN may fail it by design, so vin-ocr never forces
it outside those regions. Synthetic training data does not cover every real surface; evaluate on
your own labelled photos with `python -m vin_ocr.evaluation.evaluate` before relying on it.

## Usage

```python
from vin_ocr.models.engine import load_run
from PIL import Image

engine = load_run("{run_name}")          # the run folder
print(engine.predict([Image.open("vin_crop.jpg")]))
```

or from the command line:
`python -m vin_ocr.evaluation.evaluate engine=checkpoint engine.path={run_name} \\
data=manifest data.path=FILE.jsonl`
"""
    return str(ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body))


def write_model_card(run_dir: Path, info: dict[str, Any], cfg: Any = None) -> Path:
    run_dir = Path(run_dir)
    return atomic_write_text(run_dir / "README.md", render_model_card(info, run_dir.name))
