"""The output of a merge: the merged run folder (written through a temporary folder renamed when
complete), its 4-bit re-quantisation (``requantize=4bit``), and the publishing of a full
fine-tune as it is (nothing to merge; ``hub.push`` / ``hub.dry_run``)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from vin_ocr.data.sample import Sample, atomic_write_text
from vin_ocr.errors import check_writable
from vin_ocr.hub.push import push_run, replace_dir
from vin_ocr.run_folder import MODEL_DIR, RUN_FILE, base_model_cfg
from vin_ocr.training.merging import MergeConf, MergeError, Verification


@dataclass
class MergeResult:
    """What :func:`merge` returns."""

    out: Path
    verification: Verification | None  # None: a full fine-tune pushed as it is (no merge)
    sources: list[Path]
    pushed: Any = None  # a vin_ocr.hub.push.PushResult when hub.push / hub.dry_run


def publish_full_run(run: Path, conf: MergeConf) -> MergeResult:
    """A full fine-tune: nothing to merge; push (or stage) its ``model/`` as is, with its card."""
    if not (conf.hub.push or conf.hub.dry_run):
        raise MergeError(
            f"{run} is a full fine-tune (model/ holds all the weights, no LoRA adapter): there is "
            "nothing to merge. To publish it: python -m vin_ocr.training.merge "
            f"run={run} hub.push=true hub.repo_id=org/name (or hub.dry_run=true)"
        )
    if conf.out or conf.base or conf.requantize != "none":
        raise MergeError(
            f"{run} is a full fine-tune: out=, base= and requantize= apply to merges only"
        )
    pushed = push_run(run, conf.hub)
    print(f"{run}: a full fine-tune, published as it is (no merge)")
    return MergeResult(out=run, verification=None, sources=[run], pushed=pushed)


def output_folder(conf: MergeConf, first_run: Path) -> Path:
    """``out`` (default: RUN/merged for run=, merged/<run>_<combination> for adapters=), refused
    when it exists (unless ``overwrite``) or cannot be written."""
    if conf.out:
        out = Path(conf.out)
    elif conf.run:
        out = first_run / "merged"
    else:
        out = Path("merged") / f"{first_run.name}_{conf.combination}"
    if out.exists() and not conf.overwrite:
        raise MergeError(f"{out} exists; choose another out= or set overwrite=true")
    check_writable(out, "out")
    return out


def write_output(
    out: Path,
    merged: torch.nn.Module,
    processor: Any,
    conf: MergeConf,
    runs: Sequence[tuple[Path, Path, dict[str, Any]]],
    check: Verification,
    hardware: Any,
    samples: Sequence[Sample],
) -> None:
    from vin_ocr.hub.card import write_model_card

    first_run, _, info = runs[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp_{out.name}_", dir=out.parent))
    try:
        merged.save_pretrained(tmp / MODEL_DIR)  # type: ignore[operator]
        if processor is not None and hasattr(processor, "save_pretrained"):
            processor.save_pretrained(tmp / MODEL_DIR)
        new = dict(info)
        new["model"] = OmegaConf.to_container(base_model_cfg(info, conf.base), resolve=True)
        new["merge"] = {
            "sources": [str(r) for r, _, _ in runs],
            "combination": conf.combination if len(runs) > 1 else None,
            "weights": list(conf.weights) if conf.weights is not None else None,
            "density": conf.density,
            "base": conf.base or info["model"].get("checkpoint"),
            "verification": check.to_dict(),
        }
        if len(runs) == 1:  # the same model, merged: the run's evaluation still describes it
            for name in ("eval", "config.yaml"):
                src = first_run / name
                if src.is_dir():
                    shutil.copytree(src, tmp / name)
                elif src.is_file():
                    shutil.copy2(src, tmp / name)
        else:  # a new model: no figures until it is evaluated
            new["metrics"] = {}
        if conf.requantize == "4bit":
            new["merge"]["requantized"] = _requantize(tmp, new, hardware, samples, check)
        atomic_write_text(tmp / RUN_FILE, json.dumps(new, indent=1))
        cfg = OmegaConf.load(tmp / "config.yaml") if (tmp / "config.yaml").is_file() else None
        write_model_card(tmp, new, cfg, name=out.name)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _requantize(
    folder: Path,
    info: dict[str, Any],
    hardware: Any,
    samples: Sequence[Sample],
    check: Verification,
) -> dict[str, Any]:
    """Load the merged 16-bit model back in 4 bits, save it in ``model_4bit/``, and count the
    verification samples it still reads as the merged model did (quantisation changes outputs:
    reported, not failed)."""
    from vin_ocr.models.registry import get_family

    model_cfg = OmegaConf.create(info["model"])
    model_cfg.checkpoint = str(folder / MODEL_DIR)
    model_cfg.quantization = "4bit"
    family = get_family(info["family"], model_cfg)
    model, processor = family.build(model_cfg, hardware)
    model.save_pretrained(folder / "model_4bit")  # type: ignore[operator]
    processor.save_pretrained(folder / "model_4bit")
    predictions = family.predict(model, [s.load_image() for s in samples])
    kept = sum(a == b for a, b in zip(predictions, check.predictions, strict=True))
    return {"folder": "model_4bit", "samples": len(samples), "predictions_kept": kept}
